"""Series a run finished before it was stopped, cache/checkpoints/: what the resumed run takes instead of fitting.

A stopped run writes no predictions (run.json is written last, once every series is in), so without
these a resumed run fitted every series again, the finished ones included. Each entry is one
series' outcome as its worker returned it: forecasts, backtests and scores on the models' own
intervals. Calibration pools every series' backtests per frequency and model, so it is never
checkpointed; the resumed run calibrates the pool as the uninterrupted run would have.

An entry holds its key, everything that decides the outcome: the series' name, frequency and
values (their fingerprint), the config's fingerprint (which covers CONFIG_VERSION) and the versions
of this package and the libraries the fits run on. A lookup whose key differs finds nothing. One file
per series (its name hashes the series name), replaced by each new outcome, and removed once a run
that ran the series completes: its results then live in predictions/, where the next run reuses
them (a full run removes every entry, a --series run those of its own series only). JSON, never
pickle: a file that does not parse into a well-formed entry is ignored with a warning naming it,
and the series is fitted and its entry written over.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from storage_links import atomic_write

from modelling._schema import SCHEMA

if TYPE_CHECKING:
    from modelling._fit import Outcome

log = logging.getLogger(__name__)

FORMAT = 1
NAME = re.compile(r"[0-9a-f]{24}\.json")  # entry_path's names: nothing else in the directory is removed
# The outcome's frames, their columns and types: one series' rows of the run's files, less "series".
COLUMNS = {
    name: {column: kind for column, kind in SCHEMA[name].items() if column != "series"}
    for name in ("forecasts", "backtests", "scores")
}
LIBRARIES = ("modelling", "statsmodels", "scipy", "numpy", "pandas")


@dataclass(frozen=True)
class Key:
    """What decides a series' outcome besides the code: a checkpoint is used only under the same."""

    series: str
    frequency: str
    values: str  # the fingerprint of the values modelled
    config: str  # the config's fingerprint

    def to_json(self) -> dict:
        return {**asdict(self), "versions": _versions()}


@functools.cache
def _versions() -> dict[str, str | None]:
    # Once a run, when an entry is first read or written: the metadata lookups cost about 0.1 s.
    found: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def entry_path(directory: Path, series: str) -> Path:
    return directory / f"{hashlib.sha256(series.encode()).hexdigest()[:24]}.json"


def lookup(directory: Path, key: Key, models: tuple[str, ...]) -> Outcome | None:
    """The outcome checkpointed for `key`'s series if its entry was written under `key`, else None."""
    series, path = key.series, entry_path(directory, key.series)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        log.warning("ignoring checkpoint %s for %s: %s", path, series, exc)
        return None
    # Only here, with an entry to read: a run with none (most runs) pays for neither.
    from modelling._fit import Outcome

    expected = key.to_json()
    try:
        entry = json.loads(text)
        if not isinstance(entry, dict) or entry.get("format") != FORMAT or entry.get("key", {}).get("series") != series:
            raise ValueError("not a checkpoint of this format for this series")
        if entry["key"] != expected:
            return None  # written for other values, config or code: fitted again, and replaced
        frames = {name: _frame(entry[name], columns) for name, columns in COLUMNS.items()}
        forecasts, scores = frames["forecasts"], frames["scores"]
        if forecasts is None or scores is None or list(scores["model"]) != list(models) \
                or list(forecasts["model"].unique()) != list(models):  # fmt: skip
            raise ValueError(f"not an outcome of the models {', '.join(models)}")
        notes = [str(note) for note in entry["notes"]]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("ignoring checkpoint %s for %s: %s", path, series, exc)
        return None
    return Outcome(series, forecasts=forecasts, backtests=frames["backtests"], scores=scores, notes=notes)


def _frame(data: dict | None, columns: dict) -> pd.DataFrame | None:
    if data is None:
        return None
    if set(data) != set(columns) or len({len(data[c]) for c in columns}) != 1:
        raise ValueError("columns missing, unknown or of unequal lengths")
    # Dates travel as nanoseconds since the epoch and floats as JSON's shortest round-trip repr, so
    # the frame read back is the one written, to the bit.
    frame = pd.DataFrame({c: data[c] for c in columns})
    if "date" in columns:
        frame["date"] = pd.to_datetime(frame["date"].astype("int64"), unit="ns")
    return frame.astype(columns)


def store(directory: Path, key: Key, outcome: Outcome) -> None:
    """Write `outcome`, `key`'s series finished, as its checkpoint."""
    entry = {"format": FORMAT, "key": key.to_json(), "notes": outcome.notes}
    for name, columns in COLUMNS.items():
        frame = getattr(outcome, name)
        if frame is None:
            entry[name] = None
            continue
        frame = frame[list(columns)].astype(columns)
        entry[name] = {c: (frame[c].astype("int64") if c == "date" else frame[c]).tolist() for c in columns}
    atomic_write(entry_path(directory, outcome.name), json.dumps(entry) + "\n")


def clear(directory: Path, series: Iterable[str] | None = None) -> None:
    """Remove the entries of `series`, or every entry if None: called once a run is complete, whose
    predictions now hold what they held. A --series run names the series it ran: the others' entries
    may be a stopped full run's, which the next full run takes instead of fitting them again.

    Only regular files named as entry_path names them are removed: a symlink (never followed), a
    directory or any other file is left alone. An entry that vanishes first is no matter.
    """
    if series is None:
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return
    else:
        names = [entry_path(directory, name).name for name in series]
    for name in names:
        path = directory / name
        if not NAME.fullmatch(name):
            continue
        try:
            if stat.S_ISREG(path.lstat().st_mode):
                path.unlink()
        except FileNotFoundError:
            continue
