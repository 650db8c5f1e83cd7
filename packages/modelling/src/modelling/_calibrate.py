"""Calibrating the candidates' intervals on their backtests (split conformal, per frequency and model).

A model's intervals assume the model is right; on real series they are usually too narrow (auto_sarima
on quarterly M3 series covered 65% at 80%). The rolling-origin backtests give out-of-sample errors
of every model, so the stage rescales each model's intervals around their mean by the factor that
makes that model's intervals, over all series of one frequency, cover the backtest actuals at
their nominal level:

    score   = |actual - mean| / (half-width on the actual's side)    one per backtest point
    factor  = the ceil((n + 1) L) / n empirical quantile of the n scores  (split conformal, level L)
    bounds' = mean -/+ factor x half-width

Pooling over series keeps the factor stable (one series has only folds x horizon correlated
points); a group with fewer than `min_points` scores keeps the model's own intervals. A wider
level's factor is never below a narrower level's, so nested intervals stay nested without any
clipping, and the rescaling can be undone exactly: a series reused from an earlier run is put back
on its model's own intervals with the factors that run recorded, then pooled with the new fits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import pandas as pd

from modelling._backtest import LEVELS

Group = tuple[str, str]  # (frequency code, model)


@dataclass(frozen=True)
class Calibration:
    """One model's interval factors over one frequency's series, and its backtest coverage before and after."""

    factors: Mapping[int, float]  # level -> factor on the half-widths (1.0: the model's own intervals)
    points: int  # backtest points the factors were estimated from
    coverage_before: Mapping[int, float]  # level -> backtest coverage of the model's own intervals
    coverage_after: Mapping[int, float]  # level -> backtest coverage once rescaled

    def describe(self) -> str:
        """One line for the log, e.g. "80% x1.41 (backtest coverage 66% -> 80%), ..."."""
        return ", ".join(
            f"{lvl}% x{self.factors[lvl]:.2f} (backtest coverage {self.coverage_before[lvl]:.0%} -> "
            f"{self.coverage_after[lvl]:.0%})"
            for lvl in sorted(self.factors)
        )

    def to_json(self) -> dict:
        per_level = lambda values: {str(k): (None if math.isnan(v) else round(v, 6)) for k, v in values.items()}  # noqa: E731
        return {"factors": {str(k): v for k, v in self.factors.items()}, "points": self.points,
                "coverage_before": per_level(self.coverage_before),
                "coverage_after": per_level(self.coverage_after)}  # fmt: skip


def conformity_scores(backtest: pd.DataFrame, level: int) -> np.ndarray:
    """Each backtest point's distance from the mean in half-widths of its `level` interval.

    backtest: columns actual, mean, lo<level>, hi<level>. A zero-width interval scores 0 when it
    holds the actual and infinity when it does not (no factor can widen it).
    """
    actual = backtest["actual"].to_numpy(dtype=float)
    mean = backtest["mean"].to_numpy(dtype=float)
    above = actual >= mean
    half = np.where(above, backtest[f"hi{level}"].to_numpy(float) - mean, mean - backtest[f"lo{level}"].to_numpy(float))
    miss = np.abs(actual - mean)
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = np.where(half > 0, miss / half, np.where(miss > 0, np.inf, 0.0))
    return scores[np.isfinite(actual) & np.isfinite(mean)]


def calibrate(backtest: pd.DataFrame, min_points: int = 40, levels: tuple[int, ...] = LEVELS) -> Calibration:
    """The interval factors from one model's backtests over a group of series (see the module doc)."""
    scores = {level: conformity_scores(backtest, level) for level in sorted(levels)}
    points = len(next(iter(scores.values())))  # the same backtest rows at every level
    factors = {}
    for level, level_scores in scores.items():
        factors[level] = 1.0
        if points >= max(min_points, 1):
            rank = min(math.ceil((points + 1) * level / 100.0), points)
            quantile = float(np.sort(level_scores)[rank - 1])
            if np.isfinite(quantile) and quantile > 0:
                factors[level] = quantile
    for narrow, wide in pairwise(scores):
        factors[wide] = max(factors[wide], factors[narrow])
    before = {level: float(np.mean(s <= 1.0)) if points else math.nan for level, s in scores.items()}
    after = {level: float(np.mean(s <= factors[level])) if points else math.nan for level, s in scores.items()}
    return Calibration(factors=factors, points=points, coverage_before=before, coverage_after=after)


def rescale(frame: pd.DataFrame, factors: Mapping[int, float], *, undo: bool = False) -> pd.DataFrame:
    """`frame` (mean, lo/hi per level) with each level's half-widths multiplied (or divided) by its factor."""
    out = frame.copy()
    mean = frame["mean"].to_numpy(dtype=float)
    for level, factor in factors.items():
        scale = 1.0 / factor if undo else factor
        out[f"lo{level}"] = mean - scale * (mean - frame[f"lo{level}"].to_numpy(float))
        out[f"hi{level}"] = mean + scale * (frame[f"hi{level}"].to_numpy(float) - mean)
    return out


def rescale_groups(
    frame: pd.DataFrame,
    frequency: Mapping[str, str],
    factors: Mapping[Group, Mapping[int, float]],
    *,
    undo: bool = False,
) -> pd.DataFrame:
    """Rescale the rows of a long frame (series, model, mean, lo/hi) by their (frequency, model) group's factors."""
    if frame.empty:
        return frame
    parts = []
    for (series_frequency, model), rows in frame.groupby([frame["series"].map(frequency), frame["model"]], sort=False):
        group_factors = factors.get((series_frequency, model))
        parts.append(rescale(rows, group_factors, undo=undo) if group_factors else rows)
    return pd.concat(parts).loc[frame.index]


def calibrate_groups(
    backtests: pd.DataFrame, frequency: Mapping[str, str], min_points: int, levels: tuple[int, ...] = LEVELS
) -> dict[Group, Calibration]:
    """One Calibration per (frequency, model) present in the long backtests frame (series, model, ...)."""
    if backtests.empty:
        return {}
    grouped = backtests.groupby([backtests["series"].map(frequency), backtests["model"]], sort=True)
    return {group: calibrate(rows, min_points, levels) for group, rows in grouped}


def read_factors(raw: object) -> dict[Group, dict[int, float]]:
    """The factors a run recorded in run.json ("calibration": {frequency: {model: {"factors": ...}}}).

    Raises ValueError when the record is not in that shape or a factor is not a positive number.
    """
    if not isinstance(raw, dict):
        raise ValueError("calibration: expected an object")
    out = {}
    for series_frequency, models in raw.items():
        if not isinstance(models, dict):
            raise ValueError(f"calibration.{series_frequency}: expected an object")
        for model, record in models.items():
            factors = record.get("factors") if isinstance(record, dict) else None
            if not isinstance(factors, dict):
                raise ValueError(f"calibration.{series_frequency}.{model}.factors: missing")
            parsed = {}
            for level, factor in factors.items():
                if not level.isdigit() or isinstance(factor, bool) or not isinstance(factor, int | float) \
                        or not math.isfinite(factor) or factor <= 0:  # fmt: skip
                    raise ValueError(f"calibration.{series_frequency}.{model}.factors.{level}: not a positive number")
                parsed[int(level)] = float(factor)
            out[(series_frequency, model)] = parsed
    return out
