"""Variance-stabilising transform: Box-Cox with Guerrero's lambda, snapped to log / square root / none.

Rule: only for strictly positive series with at least two full seasons of at least MIN_SEASON points
each; Guerrero's method picks the
lambda in [0, 1] that makes the per-season coefficient of variation most constant, and it is snapped
to the nearest of 0 (log), 0.5 (square root) or 1 (no transform) so the choice is readable and stable
from one run to the next. Forecasts are back-transformed (they become medians, which is what MASE
and the interval bounds want).
"""

from __future__ import annotations

import numpy as np

SNAP = (0.0, 0.5, 1.0)
NAMES = {0.0: "log", 0.5: "sqrt", 1.0: "none"}  # as models report their transform
# Guerrero compares one standard deviation per season; from 2-4 points (annual, quarterly data) those
# are mostly noise. Chosen on the M3 categories outside the benchmark's target sets (the target sets'
# test part was not used): monthly "auto" MASE 0.802 vs 0.830 without a transform, quarterly 1.474 vs 1.427.
MIN_SEASON = 6


def guerrero(x: np.ndarray, m: int) -> float:
    period = max(2, m)
    blocks = len(x) // period
    tail = x[len(x) - blocks * period :].reshape(blocks, period)
    means = tail.mean(axis=1)
    sds = tail.std(axis=1, ddof=1)
    best, best_cv = 1.0, np.inf
    for lam in np.linspace(0.0, 1.0, 21):
        ratio = sds / means ** (1.0 - lam)
        cv = ratio.std(ddof=1) / ratio.mean() if ratio.mean() > 0 else np.inf
        if cv < best_cv:
            best, best_cv = float(lam), cv
    return best


def choose_lambda(x: np.ndarray, m: int) -> float:
    """1.0 means no transform."""
    if np.any(x <= 0) or m < MIN_SEASON or len(x) < 2 * m:
        return 1.0
    lam = guerrero(x, m)
    return min(SNAP, key=lambda s: abs(s - lam))


def forward(x: np.ndarray, lam: float) -> np.ndarray:
    if lam == 1.0:
        return x
    if lam == 0.0:
        return np.log(x)
    return (np.power(x, lam) - 1.0) / lam


def inverse(z: np.ndarray, lam: float) -> np.ndarray:
    if lam == 1.0:
        return z
    if lam == 0.0:
        return np.exp(np.minimum(z, 700.0))
    # Below the transform's floor the original scale is 0, not a complex number.
    return np.power(np.maximum(lam * z + 1.0, 0.0), 1.0 / lam)
