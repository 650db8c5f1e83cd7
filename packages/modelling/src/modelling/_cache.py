"""The parameter cache, cache/sarima_params/: auto_sarima's chosen model per series, as JSON.

One file per (series, config): its name hashes both, so a config change starts afresh. The entry
records the fingerprint of the values it was fitted to and a hash of every prefix length it can
vouch for (its own length), so a lookup tells three cases apart:
- "same": the values are unchanged: reuse the parameters as they are, no fit;
- "extended": the old values are a prefix of the new ones: refit from the cached order and params;
- None: no usable entry: full search.
It also records the model each backtest fold's search chose, by training length, with a hash of those
training values: a fold whose training values are unchanged (a run resumed after a stop, or a series
whose newest value alone was revised) reuses it as it is, which forecasts exactly what the search
would have, and the other folds are searched. An entry written before folds were recorded has none.
Once a run completes, or finds nothing new, the entries no run under its config and manifest can
find are removed (prune): those of another config, and those of a series the manifest no longer
lists. Without this the cache grew by one file per series with every config change, for ever, on a
long-lived share.
JSON, never pickle: a foreign file is data to check, not code to run. Anything that does not parse
into a well-formed entry (a choice the search could have made for this season length, with one
parameter per coefficient) is ignored with a warning naming the file; the full search that follows
writes its result over it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from storage_links import atomic_write

from modelling._inputs import fingerprint

# numpy and _sarima (statsmodels, about a second) are imported where an entry is read or written: a
# run with nothing new prunes the cache without them.
if TYPE_CHECKING:
    import pandas as pd

    from modelling._sarima import Choice

log = logging.getLogger(__name__)

FORMAT = 1
NAME = re.compile(r"[0-9a-f]{24}\.json")  # entry_path's names: nothing else in the directory is removed


@dataclass(frozen=True)
class Hit:
    kind: str | None  # "same" or "extended"; None: the final model is searched afresh
    choice: Choice | None
    folds: dict[int, Choice] = field(default_factory=dict)  # by training length, for unchanged training values


def entry_path(cache_dir: Path, series: str, config_fingerprint: str) -> Path:
    digest = hashlib.sha256(f"{series}\0{config_fingerprint}".encode()).hexdigest()[:24]
    return cache_dir / f"{digest}.json"


def lookup(
    cache_dir: Path, series_name: str, series: pd.Series, season_length: int, config_fingerprint: str
) -> Hit | None:
    path = entry_path(cache_dir, series_name, config_fingerprint)
    if not path.exists():
        return None
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
        if entry.get("format") != FORMAT or entry.get("series") != series_name:
            raise ValueError("not an entry of this format for this series")
        if entry.get("config") != config_fingerprint:
            raise ValueError("written for another configuration")
        choice = _choice(entry["choice"], season_length)
        length = int(entry["length"])
        values_fp = str(entry["fingerprint"])
        folds = [(int(f["length"]), str(f["fingerprint"]), _choice(f["choice"], season_length))
                 for f in entry.get("folds", [])]  # fmt: skip
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("ignoring cache entry %s for %s: %s", path, series_name, exc)
        return None
    reusable = {n: c for n, fp, c in folds if 0 < n <= len(series) and fp == fingerprint(series.iloc[:n])}
    if values_fp == fingerprint(series):
        return Hit("same", choice, reusable)
    if 0 < length < len(series) and values_fp == fingerprint(series.iloc[:length]):
        return Hit("extended", choice, reusable)
    return Hit(None, None, reusable) if reusable else None


def _choice(data: dict, season_length: int) -> Choice:
    from modelling._sarima import Choice

    choice = Choice.from_json(data)
    if choice.seasonal_order[3] not in (0, season_length):
        raise ValueError(f"seasonal period {choice.seasonal_order[3]} for a season of {season_length}")
    return choice


def store(
    cache_dir: Path, series_name: str, series: pd.Series, config_fingerprint: str, choice: dict,
    folds: dict[int, dict] | None = None,
) -> None:  # fmt: skip
    """Write the entry for `series`: its final `choice` and the `folds`' choices by training length."""
    import numpy as np

    entry = {
        "format": FORMAT,
        "series": series_name,
        "config": config_fingerprint,
        "length": len(series),
        "fingerprint": fingerprint(series),
        "last_date": str(series.index[-1]) if len(series) else None,
        "choice": choice,
        "folds": [
            {"length": n, "fingerprint": fingerprint(series.iloc[:n]), "choice": c}
            for n, c in sorted((folds or {}).items())
            if all(np.isfinite(c["params"]))
        ],
    }
    if not all(np.isfinite(choice["params"])):
        return
    atomic_write(entry_path(cache_dir, series_name, config_fingerprint), json.dumps(entry, indent=1) + "\n")


def prune(cache_dir: Path, config_fingerprint: str, listed: Iterable[str], unread_keys: Iterable[str] = ()) -> None:
    """Remove every entry but those of the `listed` series under `config_fingerprint`.

    `listed` is every series the manifest lists, not only those a run fitted: a --series run keeps
    the others' entries for the next full run. `unread_keys` are manifest keys whose entry could not
    be read, so their series' names are unknown: their entries under this config are kept too (read
    to find whose they are), for the run after the manifest is mended. A file that vanishes first is
    no matter; one that cannot be removed is a warning, never a failed run.
    """
    keep = {entry_path(cache_dir, name, config_fingerprint).name for name in listed}
    prefixes = tuple(unread_keys)
    removed, failures = 0, []
    try:
        with os.scandir(cache_dir) as found:
            items = list(found)
    except FileNotFoundError:
        return
    except OSError as exc:
        log.warning("%s: cannot list the cache to remove stale entries: %s", cache_dir, exc)
        return
    for item in items:
        if item.name in keep or not NAME.fullmatch(item.name):
            continue
        try:
            # A symlink or anything but a regular file is not an entry this cache wrote: left alone.
            if not item.is_file(follow_symlinks=False) or _of_unread(Path(item.path), config_fingerprint, prefixes):
                continue
            os.unlink(item.path)
            removed += 1
        except FileNotFoundError:
            continue
        except OSError as exc:
            failures.append(f"{item.path}: {exc}")
    if removed:
        log.info("removed %d cache entr%s of another config or of series the manifest no longer lists",
                 removed, "y" if removed == 1 else "ies")  # fmt: skip
    if failures:
        log.warning("cannot remove %d stale cache entr%s (%s)", len(failures), "y" if len(failures) == 1 else "ies",
                    "; ".join(failures[:3]) + ("; ..." if len(failures) > 3 else ""))  # fmt: skip


def _of_unread(path: Path, config_fingerprint: str, keys: tuple[str, ...]) -> bool:
    """Whether `path` is an entry under `config_fingerprint` of a series of one of the manifest `keys`."""
    if not keys:
        return False
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with open(fd, encoding="utf-8") as fh:
            entry = json.load(fh)
    except (OSError, UnicodeDecodeError, ValueError):
        return False  # unreadable or no entry at all: no lookup can use it
    if not isinstance(entry, dict) or entry.get("config") != config_fingerprint:
        return False
    series = entry.get("series")
    return isinstance(series, str) and any(series == key or series.startswith(f"{key}:") for key in keys)
