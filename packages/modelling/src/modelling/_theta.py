"""The optimised Theta method (OTM) of Fiorucci, Pellegrini, Louzada, Petropoulos & Koehler (2016).

The standard Theta method (`theta`, statsmodels' ThetaModel) fixes theta = 2: SES plus half the
linear trend. OTM estimates theta together with the smoothing weight and the initial level by the
in-sample one-step squared error, in the paper's state-space form

    mu_t  = l_{t-1} + w * ((1 - a)^(t-1) A + (1 - (1 - a)^t) / a * B),   w = 1 - 1/theta
    l_t   = a y_t + (1 - a) l_{t-1}

with A, B the intercept and slope of the least-squares line through the whole series. theta = 2
(w = 1/2) is the standard method, so OTM can only fit as well or better in-sample; on the M3
monthly series it forecasts markedly better (bench/results/modelling.md). statsmodels has no
optimised Theta, and statsforecast's stays a benchmark-only reference, so the recursion is here:
a first-order linear filter (scipy's lfilter) and a three-parameter bounded minimisation.

Seasonality is removed first as the classical Theta method does (and statsmodels' ThetaModel):
a 90% autocorrelation test at the seasonal lag, then a classical multiplicative decomposition
(additive when the series is not positive or an index would be near zero). Intervals are SES's
analytical ones, sigma * sqrt(1 + (h - 1) a^2), on the seasonally adjusted scale, widened to the
root mean squared h-step error of the in-sample forecasts where that is larger: the analytical
form ignores the uncertainty of the estimated trend, and on M3 it covered 55% for 80% intervals
(61% widened; statsmodels' standard Theta: 63%).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.signal import lfilter
from statsmodels.tsa.seasonal import seasonal_decompose
from statsmodels.tsa.stattools import acf

from modelling._candidates import Series, fallback_forecast, unfit_reason
from modelling._frame import begin, frame, normal_bounds

SEASONAL_TEST_Z = 1.645  # one-sided 90%, the Theta method's customary seasonality test
ALPHA_BOUNDS = (0.1, 0.99)  # Fiorucci et al.'s (and forecTheta's) range for the smoothing weight
WEIGHT_BOUNDS = (0.0, 1.0)  # w = 1 - 1/theta for theta in [1, inf]
SMALLEST_INDEX = 0.01  # a multiplicative seasonal index below this divides by almost nothing
MIN_ERRORS = 8  # in-sample h-step errors needed before their spread is trusted
PARAMETERS = 3  # initial level, alpha, w: the degrees of freedom taken from the residual variance


def optimised_theta(y: Series, season_length: int, horizon: int, levels: Sequence[float] = (80, 95)) -> pd.DataFrame:
    """Forecast with the optimised Theta method; attrs hold "theta", "alpha" and "seasonal"."""
    x, m, future, attrs = begin(y, season_length, horizon, "optimised_theta")
    if (reason := unfit_reason(x, m, "Theta")) is not None:
        return fallback_forecast(x, m, future, levels, reason, attrs)
    kind, seasonal = _seasonal_component(x, m)
    adjusted = x / seasonal if kind == "multiplicative" else x - seasonal
    # Fitting on a unit scale keeps the optimiser's tolerances meaningful for any unit.
    scale = float(np.mean(np.abs(adjusted))) or 1.0
    z = adjusted / scale
    line = _trend_line(z)
    level0, alpha, weight = _fit(z, line)
    residuals = z - _one_step(z, line, level0, alpha, weight)
    dof = max(1, len(z) - PARAMETERS)
    sigma = float(np.sqrt(np.sum(residuals**2) / dof))
    steps = np.arange(1, horizon + 1)
    mean_z = _forecast(z, line, level0, alpha, weight, steps)
    sd_z = _widen(
        sigma * np.sqrt(1.0 + (steps - 1) * alpha**2), _in_sample_rmse(z, line, level0, alpha, weight, horizon)
    )
    future_seasonal = seasonal[len(x) - m + (steps - 1) % m] if m > 1 else np.zeros(horizon)
    bounds = normal_bounds(mean_z, sd_z, levels)
    if kind == "multiplicative":
        mean = mean_z * scale * future_seasonal
        bounds = {lv: (lo * scale * future_seasonal, hi * scale * future_seasonal) for lv, (lo, hi) in bounds.items()}
    else:
        mean = mean_z * scale + future_seasonal
        bounds = {lv: (lo * scale + future_seasonal, hi * scale + future_seasonal) for lv, (lo, hi) in bounds.items()}
    if not np.all(np.isfinite(mean)):
        return fallback_forecast(x, m, future, levels, "non-finite Theta forecast", attrs)
    attrs.update(
        theta=float(1.0 / (1.0 - weight)) if weight < 1.0 else float("inf"),
        alpha=float(alpha),
        seasonal=kind,
    )
    return frame(mean, bounds, future, attrs)


def _seasonal_component(x: np.ndarray, m: int) -> tuple[str, np.ndarray]:
    """("none" | "additive" | "multiplicative", the seasonal component aligned with x)."""
    none = ("none", np.zeros(len(x)))
    if m < 4 or len(x) < 2 * m:
        return none
    r = acf(x, nlags=m, fft=False)[1:]
    limit = SEASONAL_TEST_Z * np.sqrt((1.0 + 2.0 * np.sum(r[:-1] ** 2)) / len(x))
    if not abs(r[-1]) > limit:
        return none
    if np.all(x > 0):
        seasonal = seasonal_decompose(x, model="multiplicative", period=m).seasonal
        if np.all(seasonal >= SMALLEST_INDEX):
            return "multiplicative", seasonal
    return "additive", seasonal_decompose(x, model="additive", period=m).seasonal


def _trend_line(z: np.ndarray) -> tuple[float, float]:
    """Intercept and slope of the least-squares line through (t, z_t), t = 1..n."""
    t = np.arange(1, len(z) + 1, dtype=float)
    slope, intercept = np.polyfit(t, z, 1)
    return float(intercept), float(slope)


def _forecast_from(
    level: np.ndarray | float,
    origin: np.ndarray | int,
    h: np.ndarray | int,
    line: tuple[float, float],
    alpha: float,
    weight: float,
) -> np.ndarray:
    """The forecast h steps after origin t from the level l_t (the paper's equation; arrays broadcast):
    l_t + w ((1 - a)^t A + ((h - 1) + (1 - (1 - a)^(t + 1)) / a) B)."""
    intercept, slope = line
    decay = (1.0 - alpha) ** origin
    return level + weight * (decay * intercept + ((h - 1) + (1.0 - decay * (1.0 - alpha)) / alpha) * slope)


def _one_step(z: np.ndarray, line: tuple[float, float], level0: float, alpha: float, weight: float) -> np.ndarray:
    """mu_t, the one-step forecasts of z_1..z_n made at t - 1."""
    previous = np.concatenate(([level0], _levels(z, level0, alpha)[:-1]))
    return _forecast_from(previous, np.arange(len(z)), 1, line, alpha, weight)


def _forecast(
    z: np.ndarray, line: tuple[float, float], level0: float, alpha: float, weight: float, steps: np.ndarray
) -> np.ndarray:
    return _forecast_from(_levels(z, level0, alpha)[-1], len(z), steps, line, alpha, weight)


def _levels(z: np.ndarray, level0: float, alpha: float) -> np.ndarray:
    """l_1..l_n: simple exponential smoothing as a first-order linear filter."""
    return lfilter([alpha], [1.0, alpha - 1.0], z, zi=[(1.0 - alpha) * level0])[0]


def _in_sample_rmse(
    z: np.ndarray, line: tuple[float, float], level0: float, alpha: float, weight: float, horizon: int
) -> np.ndarray:
    """Root mean squared error of the h-step forecasts from every in-sample origin (nan: too few)."""
    n = len(z)
    levels = _levels(z, level0, alpha)
    rmse = np.full(horizon, np.nan)
    for h in range(1, min(horizon, n - MIN_ERRORS) + 1):
        origin = np.arange(1, n - h + 1)
        forecast = _forecast_from(levels[origin - 1], origin, h, line, alpha, weight)
        rmse[h - 1] = np.sqrt(np.mean((z[origin - 1 + h] - forecast) ** 2))
    return rmse


def _widen(analytical: np.ndarray, empirical: np.ndarray) -> np.ndarray:
    """The larger of the two per step; past the last empirical value, it grows as the analytical one."""
    known = np.isfinite(empirical)
    if not known.any():
        return analytical
    last = np.flatnonzero(known)[-1]
    extended = np.where(known, empirical, empirical[last] * analytical / analytical[last])
    return np.maximum(analytical, extended)


def _fit(z: np.ndarray, line: tuple[float, float]) -> tuple[float, float, float]:
    """(initial level, alpha, w) minimising the in-sample one-step squared error."""
    intercept, slope = line
    start_alpha, start_weight = 0.5, 0.5  # the standard method's theta = 2
    start = np.array([z[0] - start_weight * (intercept + slope), start_alpha, start_weight])

    def sse(params: np.ndarray) -> float:
        return float(np.sum((z - _one_step(z, line, *params)) ** 2))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = minimize(sse, start, method="L-BFGS-B", bounds=[(None, None), ALPHA_BOUNDS, WEIGHT_BOUNDS])
    params = result.x if np.all(np.isfinite(result.x)) and result.fun <= sse(start) else start
    return float(params[0]), float(params[1]), float(params[2])
