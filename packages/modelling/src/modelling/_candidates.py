"""The candidates beside auto_sarima, with its signature: ETS, Theta and seasonal naive.

Each returns the same frame as `auto_sarima` (mean, lo/hi per level, future index, attrs), and each
falls back to seasonal naive / naive on a series too short or too flat to fit, saying so in
attrs["fallback"].
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from statsmodels.tools.sm_exceptions import ConvergenceWarning
from statsmodels.tsa.exponential_smoothing.ets import ETSModel
from statsmodels.tsa.forecasting.theta import ThetaModel

from modelling import _boxcox
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


def ets(
    y: Series, season_length: int, horizon: int, levels: Sequence[float] = (80, 95), *, transform: str = "auto"
) -> pd.DataFrame:
    """Additive-error ETS chosen by AICc among trend none / additive / damped and seasonal none / additive.

    Additive errors keep the intervals analytical (multiplicative ones need simulation, ~50x slower).
    `transform` as for auto_sarima: with "auto", a series whose seasonal swings grow with its level
    is modelled on the log or square-root scale (`_boxcox`'s rule), the additive model there standing
    in for multiplicative seasonality; forecasts and bounds are transformed back.
    """
    x, m, future, attrs = begin(y, season_length, horizon, "ets")
    if (reason := unfit_reason(x, m, "ETS")) is not None:
        return fallback_forecast(x, m, future, levels, reason, attrs)
    lam = _boxcox.choose_lambda(x, m) if transform == "auto" else 1.0
    seasonal_options = [None, "add"] if m > 1 and len(x) >= 2 * m + 2 else [None]
    best, endog = None, pd.Series(_boxcox.forward(x, lam))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (ConvergenceWarning, RuntimeWarning, UserWarning))
        for trend, damped in ((None, False), ("add", False), ("add", True)):
            for seasonal in seasonal_options:
                try:
                    # A Series, not an array: statsmodels 0.15's ETS prediction needs an index.
                    fit = ETSModel(
                        endog, error="add", trend=trend, damped_trend=damped, seasonal=seasonal,
                        seasonal_periods=m if seasonal else None,
                    ).fit(disp=False, maxiter=200)  # fmt: skip
                except (ValueError, np.linalg.LinAlgError):
                    continue
                if np.isfinite(fit.aicc) and (best is None or fit.aicc < best.aicc):
                    best = fit
        if best is None:
            return fallback_forecast(x, m, future, levels, "no ETS model could be fitted", attrs)
        prediction = best.get_prediction(start=len(x), end=len(x) + horizon - 1)
        mean = _boxcox.inverse(np.asarray(prediction.predicted_mean), lam)
        bounds = {}
        for level in levels:
            ci = np.asarray(prediction.pred_int(alpha=1.0 - level / 100.0))
            bounds[level] = (_boxcox.inverse(ci[:, 0], lam), _boxcox.inverse(ci[:, 1], lam))
    if not np.all(np.isfinite(mean)) or not all(np.all(np.isfinite(b)) for pair in bounds.values() for b in pair):
        return fallback_forecast(x, m, future, levels, "non-finite ETS forecast", attrs)
    spec = best.model
    attrs["spec"] = f"ETS(A,{_ets_trend(spec)},{'A' if spec.seasonal else 'N'})"
    attrs["transform"] = _boxcox.NAMES[lam]
    attrs["aicc"] = float(best.aicc)
    return frame(mean, bounds, future, attrs)


def _ets_trend(model: ETSModel) -> str:
    if not model.trend:
        return "N"
    return "Ad" if model.damped_trend else "A"


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
