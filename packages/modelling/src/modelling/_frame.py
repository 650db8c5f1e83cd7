"""What every model shares: cleaning the input series and shaping the forecast frame."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from modelling._errors import SeriesError


@dataclass(frozen=True)
class Prepared:
    """A series ready to fit: finite float values and the index of the forecast to come."""

    values: np.ndarray
    future: pd.Index
    notes: tuple[str, ...]


def prepare(y: np.ndarray | pd.Series | Sequence[float], horizon: int) -> Prepared:
    """Drop leading and trailing missing values, fill interior gaps, and build the future index.

    The forecast continues from the last observed value, so a missing tail is dropped (and said so)
    rather than forecast over.
    """
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1, got {horizon}")
    series = y if isinstance(y, pd.Series) else pd.Series(np.asarray(y, dtype=float))
    series = series.astype(float)
    finite = np.isfinite(series.to_numpy())
    if not finite.any():
        raise SeriesError("no observations (every value is missing)")
    first, last = np.flatnonzero(finite)[[0, -1]]
    notes = []
    if last < len(series) - 1:
        notes.append(f"dropped {len(series) - 1 - last} missing values at the end")
    kept = series.iloc[first : last + 1]
    values = kept.to_numpy(copy=True)
    gaps = ~np.isfinite(values)
    if gaps.any():
        # Interior gaps: linear interpolation keeps the seasonal positions of the other values.
        positions = np.arange(len(values))
        values[gaps] = np.interp(positions[gaps], positions[~gaps], values[~gaps])
        notes.append(f"interpolated {int(gaps.sum())} missing values")
    return Prepared(values, _future_index(series, first, last, horizon), tuple(notes))


def begin(
    y: np.ndarray | pd.Series | Sequence[float], season_length: int, horizon: int, model: str
) -> tuple[np.ndarray, int, pd.Index, dict]:
    """What every model starts from: the cleaned values, the season length, the future index, the attrs."""
    prepared = prepare(y, horizon)
    attrs = {"model": model, "notes": list(prepared.notes), "fallback": None}
    return prepared.values, max(1, int(season_length)), prepared.future, attrs


def inferred_freq(index: pd.DatetimeIndex) -> str | pd.DateOffset | None:
    """pandas' frequency of `index`, or None (also under 3 dates). pandas 3 warns on every call that
    infer_freq will return an offset instead of a string; where this is used either serves, so the
    offset is asked for where pandas has that option (pandas 2 has not, and does not warn)."""
    if len(index) < 3:
        return None
    try:
        with pd.option_context("future.infer_freq_returns_offset", True):
            return pd.infer_freq(index)
    except pd.errors.OptionError:
        return pd.infer_freq(index)


def _future_index(series: pd.Series, first: int, last: int, horizon: int) -> pd.Index:
    index = series.index
    if isinstance(index, pd.DatetimeIndex):
        freq = index.freq or inferred_freq(index)
        if freq is not None:
            return pd.date_range(index[last], periods=horizon + 1, freq=freq)[1:]
        if len(index) >= 2:
            step = pd.Series(index).diff().median()
            return pd.DatetimeIndex([index[last] + step * k for k in range(1, horizon + 1)])
        raise SeriesError("a one-point DatetimeIndex has no frequency to continue")
    return pd.RangeIndex(last + 1, last + 1 + horizon)


def z_value(level: float) -> float:
    return float(stats.norm.ppf(0.5 + level / 200.0))


def frame(
    mean: np.ndarray, bounds: dict[float, tuple[np.ndarray, np.ndarray]], future: pd.Index, attrs: dict
) -> pd.DataFrame:
    """The forecast frame: `mean` and one lo/hi pair per level, indexed by the future dates."""
    data = {"mean": np.asarray(mean, dtype=float)}
    for level, (lo, hi) in sorted(bounds.items()):
        name = f"{level:g}"
        data[f"lo{name}"] = np.asarray(lo, dtype=float)
        data[f"hi{name}"] = np.asarray(hi, dtype=float)
    result = pd.DataFrame(data, index=future)
    result.attrs.update(attrs)
    return result


def normal_bounds(
    mean: np.ndarray, sd: np.ndarray, levels: Sequence[float]
) -> dict[float, tuple[np.ndarray, np.ndarray]]:
    return {level: (mean - z_value(level) * sd, mean + z_value(level) * sd) for level in levels}
