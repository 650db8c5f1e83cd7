"""The candidates beside auto_sarima, with its signature: ETS, Theta and seasonal naive.

Each returns the same frame as `auto_sarima` (mean, lo/hi per level, future index, attrs), and each
falls back to seasonal naive / naive on a series too short or too flat to fit, saying so in
attrs["fallback"].
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
from statsmodels.tools.sm_exceptions import ConvergenceWarning
from statsmodels.tsa.exponential_smoothing.ets import ETSModel
from statsmodels.tsa.forecasting.theta import ThetaModel

from modelling._differencing import is_constant
from modelling._frame import begin, frame, normal_bounds

Series = np.ndarray | pd.Series | Sequence[float]


def seasonal_naive(y: Series, season_length: int, horizon: int, levels: Sequence[float] = (80, 95)) -> pd.DataFrame:
    """Repeat the last season; intervals from the seasonal differences' spread, widening per season."""
    x, m, future, attrs = begin(y, season_length, horizon, "seasonal_naive")
    if len(x) <= m:
        return fallback_forecast(x, m, future, levels, f"too short for seasonal naive ({len(x)} points)", attrs)
    mean, sd = _naive_core(x, m, horizon)
    return frame(mean, normal_bounds(mean, sd, levels), future, attrs)


def fallback_forecast(
    x: np.ndarray, m: int, future: pd.Index, levels: Sequence[float], reason: str, attrs: dict
) -> pd.DataFrame:
    """The floor every model falls back to: seasonal naive, else naive, else the single value."""
    horizon = len(future)
    if is_constant(x) or len(x) < 2:
        name, mean, sd = "constant", np.full(horizon, x[-1]), np.zeros(horizon)
    elif m > 1 and len(x) > m:
        name, (mean, sd) = "seasonal_naive", _naive_core(x, m, horizon)
    else:
        name, (mean, sd) = "naive", _naive_core(x, 1, horizon)
    attrs = {**attrs, "fallback": reason, "fallback_model": name}
    return frame(mean, normal_bounds(mean, sd, levels), future, attrs)


def _naive_core(x: np.ndarray, m: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    steps = np.arange(horizon)
    mean = x[len(x) - m + steps % m]
    sigma = float(np.sqrt(np.mean((x[m:] - x[:-m]) ** 2)))
    return mean, sigma * np.sqrt(steps // m + 1.0)


def unfit_reason(x: np.ndarray, m: int, label: str) -> str | None:
    """Why a model named `label` should not be fitted to x (constant, or too short), or None."""
    if is_constant(x):
        return "constant series"
    if len(x) < max(8, m + 4):
        return f"too short for {label} ({len(x)} points)"
    return None


# R's forecast::ets model space (restrict = TRUE, no multiplicative trend; statsforecast's AutoETS
# by default): error additive or multiplicative, trend none / additive / damped, season none /
# additive / multiplicative. Multiplicative parts need a positive series, and additive error with a
# multiplicative season is left out as numerically unstable (as R does). Seasons longer than
# ETS_MAX_SEASON are not modelled, as in R and statsforecast: one state per season position makes a
# weekly (52) season slow to fit (about 12 s a fit) and poorly determined.
ETS_TRENDS = ((None, False), ("add", False), ("add", True))
ETS_MAX_SEASON = 24
# A model with a multiplicative part has no closed-form intervals: statsmodels simulates sample paths
# (about 2 ms a forecast), seeded so that the same series always gets the same bounds.
ETS_SIMULATIONS = 1000


def ets(y: Series, season_length: int, horizon: int, levels: Sequence[float] = (80, 95)) -> pd.DataFrame:
    """ETS chosen by AICc over error, trend and season types (R's ets model space, see ETS_TRENDS).

    Chosen on the held-out M3 categories over additive-error models on auto_sarima's Box-Cox scale:
    MASE 0.835 vs 0.859 on 428 monthly series and 1.338 vs 1.437 on 344 quarterly ones
    (statsforecast's AutoETS: 0.828 and 1.338).
    """
    x, m, future, attrs = begin(y, season_length, horizon, "ets")
    if (reason := unfit_reason(x, m, "ETS")) is not None:
        return fallback_forecast(x, m, future, levels, reason, attrs)
    best, endog = None, pd.Series(x)  # a Series, not an array: statsmodels 0.15's ETS prediction needs an index
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (ConvergenceWarning, RuntimeWarning, UserWarning))
        for error, trend, damped, seasonal in _ets_specs(x, m):
            try:
                fit = ETSModel(
                    endog, error=error, trend=trend, damped_trend=damped, seasonal=seasonal,
                    seasonal_periods=m if seasonal else None,
                ).fit(disp=False, maxiter=200)  # fmt: skip
            except (ValueError, np.linalg.LinAlgError):
                continue
            if np.isfinite(fit.aicc) and (best is None or fit.aicc < best.aicc):
                best = fit
        if best is None:
            return fallback_forecast(x, m, future, levels, "no ETS model could be fitted", attrs)
        prediction = best.get_prediction(
            start=len(x), end=len(x) + horizon - 1, simulate_repetitions=ETS_SIMULATIONS, rng=np.random.default_rng(0)
        )
        mean = np.asarray(prediction.predicted_mean)
        bounds = {}
        for level in levels:
            ci = np.asarray(prediction.pred_int(alpha=1.0 - level / 100.0))
            # Simulated quantiles may fall a hair on the wrong side of the point forecast.
            bounds[level] = (np.minimum(ci[:, 0], mean), np.maximum(ci[:, 1], mean))
    if not np.all(np.isfinite(mean)) or not all(np.all(np.isfinite(b)) for pair in bounds.values() for b in pair):
        return fallback_forecast(x, m, future, levels, "non-finite ETS forecast", attrs)
    name = best.model.short_name  # error, trend, season: e.g. "MAdM"
    attrs["spec"] = f"ETS({name[0]},{name[1:-1]},{name[-1]})"
    attrs["aicc"] = float(best.aicc)
    return frame(mean, bounds, future, attrs)


def _ets_specs(x: np.ndarray, m: int) -> Iterator[tuple[str, str | None, bool, str | None]]:
    positive = bool(np.all(x > 0))
    seasons: list[str | None] = [None]
    if 1 < m <= ETS_MAX_SEASON and len(x) >= 2 * m + 2:
        seasons += ["add", "mul"] if positive else ["add"]
    for error in ("add", "mul") if positive else ("add",):
        for trend, damped in ETS_TRENDS:
            for season in seasons:
                if not (error == "add" and season == "mul"):
                    yield error, trend, damped, season


def theta(y: Series, season_length: int, horizon: int, levels: Sequence[float] = (80, 95)) -> pd.DataFrame:
    """The standard Theta method (SES with drift) after a tested multiplicative/additive deseasonalisation."""
    x, m, future, attrs = begin(y, season_length, horizon, "theta")
    if (reason := unfit_reason(x, m, "Theta")) is not None:
        return fallback_forecast(x, m, future, levels, reason, attrs)
    seasonal = m > 1 and len(x) >= 2 * m
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (ConvergenceWarning, RuntimeWarning, UserWarning))
        try:
            model = ThetaModel(x, period=m if seasonal else 1, deseasonalize=seasonal,
                               method="auto" if np.all(x > 0) else "additive")  # fmt: skip
            fit = model.fit()
            mean = np.asarray(fit.forecast(horizon))
            bounds = {}
            for level in levels:
                ci = np.asarray(fit.prediction_intervals(horizon, alpha=1.0 - level / 100.0))
                bounds[level] = (ci[:, 0], ci[:, 1])
        except (ValueError, np.linalg.LinAlgError) as exc:
            return fallback_forecast(x, m, future, levels, f"Theta fit failed: {exc}", attrs)
    if not np.all(np.isfinite(mean)):
        return fallback_forecast(x, m, future, levels, "non-finite Theta forecast", attrs)
    return frame(mean, bounds, future, attrs)
