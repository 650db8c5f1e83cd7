"""Calibrating the published intervals on the backtest folds (split conformal, pooled per frequency).

The candidates' intervals come from their models, which assume the model is right; on real series
they are usually too narrow (and sometimes too wide). The backtest folds give out-of-sample errors
of exactly the forecast being published, so each interval is rescaled around its mean by the
factor that makes the intervals of all series of the same frequency cover the backtest
actuals at their nominal level:

    score   = |actual - mean| / (half-width on the actual's side)    one per backtest point
    factor  = the ceil((n + 1) L) / n empirical quantile of the n scores  (split conformal, level L)
    bounds' = mean -/+ factor x half-width

Pooling over series keeps the factor stable (one series has only folds x horizon correlated
points); a group with fewer than `min_points` scores keeps the models' own intervals.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import pandas as pd

from forecasting._combine import POINT

LEVELS = (80, 95)


@dataclass(frozen=True)
class Calibration:
    """Interval factors for one group of series, and the backtest coverage before and after."""

    factors: Mapping[int, float]  # level -> factor on the half-widths (1.0: unchanged)
    points: int  # backtest points the factors were estimated from
    coverage_before: Mapping[int, float]  # level -> backtest coverage of the models' intervals
    coverage_after: Mapping[int, float]  # level -> backtest coverage once rescaled

    @property
    def applied(self) -> bool:
        return any(f != 1.0 for f in self.factors.values())

    def describe(self) -> str:
        """One line for logs and the report, e.g. "80% x1.09 (backtest coverage 76% -> 80%), ..."."""
        return ", ".join(
            f"{lvl}% x{self.factors[lvl]:.2f} (backtest coverage {self.coverage_before[lvl]:.0%} -> "
            f"{self.coverage_after[lvl]:.0%})"
            for lvl in sorted(self.factors)
        )


def conformity_scores(backtest: pd.DataFrame, level: int) -> np.ndarray:
    """Each backtest point's distance from the mean in half-widths of its `level` interval.

    backtest: columns actual, mean, lo<level>, hi<level>. A zero-width interval scores 0 when it
    holds the actual and infinity when it does not (no factor can widen it).
    """
    actual = backtest["actual"].to_numpy(dtype=float)
    mean = backtest[POINT].to_numpy(dtype=float)
    above = actual >= mean
    half = np.where(above, backtest[f"hi{level}"].to_numpy(float) - mean, mean - backtest[f"lo{level}"].to_numpy(float))
    miss = np.abs(actual - mean)
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = np.where(half > 0, miss / half, np.where(miss > 0, np.inf, 0.0))
    return scores[np.isfinite(actual) & np.isfinite(mean)]


def calibrate(backtests: Iterable[pd.DataFrame], min_points: int = 40, levels: Iterable[int] = LEVELS) -> Calibration:
    """The interval factors from the published forecasts' backtests of a group of series.

    backtests: one frame per series (columns actual, mean, lo/hi per level). With fewer than
    `min_points` backtest points in all, or a factor that is not finite, the factors stay 1.0.
    """
    frames = [b for b in backtests if len(b)]
    factors, before, after = {}, {}, {}
    points = 0
    for level in levels:
        scores = np.concatenate([conformity_scores(b, level) for b in frames]) if frames else np.empty(0)
        points = len(scores)
        factor = 1.0
        if points >= max(min_points, 1):
            rank = min(math.ceil((points + 1) * level / 100.0), points)
            quantile = float(np.sort(scores)[rank - 1])
            if np.isfinite(quantile) and quantile > 0:
                factor = quantile
        factors[level] = factor
        before[level] = float(np.mean(scores <= 1.0)) if points else float("nan")
        after[level] = float(np.mean(scores <= factor)) if points else float("nan")
    return Calibration(factors=factors, points=points, coverage_before=before, coverage_after=after)


def rescale(forecast: pd.DataFrame, factors: Mapping[int, float]) -> pd.DataFrame:
    """The forecast with each level's interval rescaled around the mean by its factor.

    Nesting is kept: the wider level's bounds never fall inside the narrower level's.
    """
    out = forecast.copy()
    mean = forecast[POINT].to_numpy(dtype=float)
    for level, factor in factors.items():
        out[f"lo{level}"] = mean - factor * (mean - forecast[f"lo{level}"].to_numpy(float))
        out[f"hi{level}"] = mean + factor * (forecast[f"hi{level}"].to_numpy(float) - mean)
    for narrow, wide in pairwise(sorted(factors)):
        out[f"lo{wide}"] = np.minimum(out[f"lo{wide}"], out[f"lo{narrow}"])
        out[f"hi{wide}"] = np.maximum(out[f"hi{wide}"], out[f"hi{narrow}"])
    return out
