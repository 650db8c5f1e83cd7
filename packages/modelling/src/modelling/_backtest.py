"""Rolling-origin backtests and their scores: MASE, sMAPE and interval coverage.

MASE is scaled by the in-sample mean absolute seasonal difference of each fold's training part (the
seasonal-naive scale of Hyndman & Koehler), so 1.0 means "as good as seasonal naive in sample".
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd

LEVELS = (80, 95)


def origins(n: int, horizon: int, folds: int, step: int, min_train: int) -> list[int]:
    """Training lengths of the folds, oldest first; the last fold's test part ends at the last value."""
    step = step or max(1, math.ceil(horizon / 2))
    lengths = [n - horizon - k * step for k in range(folds)]
    return sorted(length for length in lengths if length >= min_train)


def run_folds(
    forecaster: Callable[[pd.Series, int, int], pd.DataFrame],
    series: pd.Series,
    season_length: int,
    horizon: int,
    train_lengths: list[int],
) -> pd.DataFrame:
    """One row per fold and step: fold, step, date, actual and the forecast's columns."""
    rows = []
    for fold, length in enumerate(train_lengths):
        train, test = series.iloc[:length], series.iloc[length : length + horizon]
        forecast = forecaster(train, season_length, len(test))
        part = forecast.reset_index(drop=True)
        part.insert(0, "actual", test.to_numpy())
        part.insert(0, "date", test.index)
        part.insert(0, "step", np.arange(1, len(test) + 1))
        part.insert(0, "fold", fold)
        part["scale"] = mase_scale(train.to_numpy(), season_length)
        rows.append(part)
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def mase_scale(train: np.ndarray, m: int) -> float:
    train = train[np.isfinite(train)]
    m = m if len(train) > m else 1
    if len(train) <= m:
        return math.nan
    scale = float(np.mean(np.abs(train[m:] - train[:-m])))
    return scale if scale > 0 else math.nan


def smape(actual: np.ndarray, forecast: np.ndarray) -> np.ndarray:
    """Per-point sMAPE in percent (0..200); 0 where both are 0."""
    denominator = np.abs(actual) + np.abs(forecast)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, 200.0 * np.abs(actual - forecast) / denominator, 0.0)


def scores(backtest: pd.DataFrame) -> dict[str, float]:
    """Scores over every fold and step with an actual value; NaN where nothing could be scored."""
    if backtest.empty:
        return {"mase": math.nan, "smape": math.nan, "coverage80": math.nan, "coverage95": math.nan, "folds": 0}
    ok = backtest[np.isfinite(backtest["actual"])]
    error = np.abs(ok["actual"] - ok["mean"])
    per_fold_mase = (error / ok["scale"]).groupby(ok["fold"]).mean()
    return {
        "mase": float(per_fold_mase.mean()),
        "smape": float(np.mean(smape(ok["actual"].to_numpy(), ok["mean"].to_numpy()))),
        **{f"coverage{level}": float(np.mean(covered(ok, level))) for level in LEVELS},
        "folds": int(backtest["fold"].nunique()),
    }


def covered(backtest: pd.DataFrame, level: int) -> pd.Series:
    """Per row: whether the actual lies inside the `level` interval."""
    return (backtest["actual"] >= backtest[f"lo{level}"]) & (backtest["actual"] <= backtest[f"hi{level}"])


def coverage_by_series(backtests: pd.DataFrame) -> pd.DataFrame:
    """Interval coverage per series and model of a long backtests frame (index: series, model)."""
    ok = backtests[np.isfinite(backtests["actual"])]
    hits = pd.DataFrame({f"coverage{level}": covered(ok, level).astype(float) for level in LEVELS})
    return hits.groupby([ok["series"], ok["model"]]).mean()
