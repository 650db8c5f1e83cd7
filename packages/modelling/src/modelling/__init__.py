"""modelling: automatic seasonal ARIMA and candidate models, from scraped_data/ to predictions/.

Public functions share one signature, `f(y, season_length, horizon, levels=(80, 95))`, and return a
frame of `horizon` rows (mean, lo80, hi80, lo95, hi95) continuing y's dates:
auto_sarima (_sarima, with _css, _differencing, _boxcox), ets / theta / seasonal_naive (_candidates).
"""

from modelling._candidates import ets, seasonal_naive, theta
from modelling._errors import ConfigError, InputError, ModellingError, OutputError, SeriesError
from modelling._sarima import Choice, auto_sarima

__all__ = [
    "Choice",
    "ConfigError",
    "InputError",
    "ModellingError",
    "OutputError",
    "SeriesError",
    "auto_sarima",
    "ets",
    "seasonal_naive",
    "theta",
]
