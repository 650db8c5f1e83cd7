"""The parameter cache, cache/sarima_params/: auto_sarima's chosen model per series, as JSON.

One file per (series, config): its name hashes both, so a config change starts afresh. The entry
records the fingerprint of the values it was fitted to and a hash of every prefix length it can
vouch for (its own length), so a lookup tells three cases apart:
- "same": the values are unchanged: reuse the parameters as they are, no fit;
- "extended": the old values are a prefix of the new ones: refit from the cached order and params;
- None: no usable entry: full search.
JSON, never pickle: a foreign file is data to check, not code to run. Anything that does not parse
into a well-formed entry (a choice the search could have made for this season length, with one
parameter per coefficient) is ignored with a warning naming the file; the full search that follows
writes its result over it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from storage_links import atomic_write

from modelling._inputs import fingerprint
from modelling._sarima import Choice

log = logging.getLogger(__name__)

FORMAT = 1


@dataclass(frozen=True)
class Hit:
    kind: str  # "same" or "extended"
    choice: Choice


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
        choice = Choice.from_json(entry["choice"])
        if choice.seasonal_order[3] not in (0, season_length):
            raise ValueError(f"seasonal period {choice.seasonal_order[3]} for a season of {season_length}")
        length = int(entry["length"])
        values_fp = str(entry["fingerprint"])
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("ignoring cache entry %s for %s: %s", path, series_name, exc)
        return None
    if values_fp == fingerprint(series):
        return Hit("same", choice)
    if 0 < length < len(series) and values_fp == fingerprint(series.iloc[:length]):
        return Hit("extended", choice)
    return None


def store(cache_dir: Path, series_name: str, series: pd.Series, config_fingerprint: str, choice: dict) -> None:
    entry = {
        "format": FORMAT,
        "series": series_name,
        "config": config_fingerprint,
        "length": len(series),
        "fingerprint": fingerprint(series),
        "last_date": str(series.index[-1]) if len(series) else None,
        "choice": choice,
    }
    if not all(np.isfinite(choice["params"])):
        return
    atomic_write(entry_path(cache_dir, series_name, config_fingerprint), json.dumps(entry, indent=1) + "\n")
