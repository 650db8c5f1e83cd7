"""How many differences a series needs: KPSS for d, seasonal strength for D (as Hyndman-Khandakar).

Both follow the defaults of R's forecast::auto.arima and statsforecast's AutoARIMA, which the
benchmark compares against: KPSS at the 5% level with the "short" lag rule, and D = 1 when the STL
seasonal strength exceeds 0.64.
"""

from __future__ import annotations

import warnings

import numpy as np
from statsmodels.tools.sm_exceptions import InterpolationWarning
from statsmodels.tsa.seasonal import STL
from statsmodels.tsa.stattools import kpss

KPSS_CRITICAL_5PCT = 0.463  # level-stationarity critical value at 5% (Kwiatkowski et al. 1992, table 1)
SEASONAL_STRENGTH_THRESHOLD = 0.64
# The decomposition the 0.64 threshold was set with: R's forecast::mstl runs stl() with s.window 11 and
# its default s.degree 0 (statsforecast's mstl does the same), not statsmodels' STL defaults (7 and 1).
STL_SEASONAL_WINDOW = 11


def is_constant(x: np.ndarray) -> bool:
    return bool(np.ptp(x) <= 1e-10 * max(1.0, float(np.abs(x).max())))


def ndiffs(x: np.ndarray, max_d: int = 2) -> int:
    """Number of first differences after which KPSS no longer rejects level stationarity."""
    d = 0
    while d < max_d and len(x) > 4 and not is_constant(x) and _kpss_rejects(x):
        x = np.diff(x)
        d += 1
    return d


def _kpss_rejects(x: np.ndarray) -> bool:
    lags = int(3 * np.sqrt(len(x)) / 13)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InterpolationWarning)
        statistic = kpss(x, regression="c", nlags=lags, result_object=True).statistic
    return bool(statistic > KPSS_CRITICAL_5PCT)


def seasonal_strength(x: np.ndarray, m: int) -> float:
    """Wang-Smith-Hyndman strength of seasonality from an STL decomposition, in [0, 1]."""
    fit = STL(x, period=m, seasonal=STL_SEASONAL_WINDOW, seasonal_deg=0, robust=False).fit()
    remainder = fit.resid
    denominator = np.var(remainder + fit.seasonal)
    if denominator <= 0:
        return 0.0
    return float(max(0.0, 1.0 - np.var(remainder) / denominator))


def nsdiffs(x: np.ndarray, m: int) -> int:
    """1 when the series has strong seasonality (and enough seasons to see it), else 0."""
    if m <= 1 or len(x) < 2 * m + 1 or is_constant(x):
        return 0
    return int(seasonal_strength(x, m) > SEASONAL_STRENGTH_THRESHOLD)


def difference(x: np.ndarray, d: int, D: int, m: int) -> np.ndarray:
    for _ in range(D):
        x = x[m:] - x[:-m]
    for _ in range(d):
        x = np.diff(x)
    return x
