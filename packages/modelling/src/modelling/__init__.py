"""modelling: automatic seasonal ARIMA and candidate models, from scraped_data/ to predictions/.

Public functions share one signature, `f(y, season_length, horizon, levels=(80, 95))`, and return a
frame of `horizon` rows (mean, lo80, hi80, lo95, hi95) continuing y's dates:
auto_sarima (_sarima, with _css, _differencing, _boxcox), ets / theta / seasonal_naive (_candidates),
optimised_theta (_theta). Their intervals are the models' own; calibrate / rescale (_calibrate) are
the split-conformal step the stage applies to them per frequency and model.
The stage: _cli -> _run (plan, _cache and _checkpoint, _fit in workers, _backtest, _calibrate, write),
settings in _config.

Names are imported on first use (PEP 562), so that `python -m modelling run` with nothing new does
not pay for importing statsmodels.
"""

from __future__ import annotations

from storage_links import lazy_exports

_SOURCES = {
    "Calibration": "_calibrate",
    "calibrate": "_calibrate",
    "rescale": "_calibrate",
    "Choice": "_sarima",
    "auto_sarima": "_sarima",
    "ets": "_candidates",
    "seasonal_naive": "_candidates",
    "theta": "_candidates",
    "optimised_theta": "_theta",
    "ConfigError": "_errors",
    "InputError": "_errors",
    "ModellingError": "_errors",
    "OutputError": "_errors",
    "SeriesError": "_errors",
    "WorkerDied": "_errors",
}

__all__ = sorted(_SOURCES)

__getattr__, __dir__ = lazy_exports(__name__, _SOURCES)
