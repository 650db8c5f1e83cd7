"""Reading what scraping stored: manifest.json and one Parquet file per manifest key.

One modelled series is one (manifest key, column): named by the key for a `value` column, else
"<key>:<column>" (e.g. "treasury/par_yield_curve:10yr").
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from modelling._config import FREQUENCIES
from modelling._errors import InputError, SeriesError

if TYPE_CHECKING:
    import pandas as pd

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Label:
    """What a reader of the report is told about a series, as the manifest gives it (run.json 'labels')."""

    title: str
    units: str
    source: str  # scraping's source name: fred, treasury, bundled
    id: str  # the source's own id for it


@dataclass(frozen=True)
class SeriesRef:
    name: str
    key: str
    column: str
    frequency: str
    file: str
    content_hash: str
    label: Label


def read_manifest(scraped: Path) -> tuple[list[SeriesRef], dict[str, str]]:
    """Every series the manifest lists, and per-entry problems {series or key: reason} found on the way."""
    if not scraped.is_dir():
        raise InputError(f"{scraped}: scraped_data directory is missing (run the scraping stage first)")
    path = scraped / MANIFEST
    if not path.exists():
        raise InputError(f"{path}: no manifest (scraped_data is empty; run the scraping stage first)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: unreadable manifest: {exc}") from None
    entries = manifest.get("series") if isinstance(manifest, dict) else None
    if not isinstance(entries, dict):
        raise InputError(f"{path}: 'series' is missing or not an object")
    if not entries:
        raise InputError(f"{path}: the manifest lists no series")
    refs, problems = [], {}
    for key, entry in sorted(entries.items()):
        if not isinstance(entry, dict):
            problems[key] = f"{path}: series {key!r}: entry is not an object"
            continue
        frequency, file, columns = entry.get("frequency"), entry.get("file"), entry.get("columns", ["value"])
        if frequency not in FREQUENCIES:
            problems[key] = f"{path}: series {key!r}: unknown frequency {frequency!r} (known: {', '.join(FREQUENCIES)})"
            continue
        if not isinstance(file, str) or not isinstance(columns, list) or not columns:
            problems[key] = f"{path}: series {key!r}: 'file' or 'columns' missing"
            continue
        if not all(isinstance(column, str) and column for column in columns):
            problems[key] = f"{path}: series {key!r}: 'columns' must be a list of column names"
            continue
        if not _inside(file):
            problems[key] = f"{path}: series {key!r}: 'file' {file!r} is not a relative path inside {scraped.name}/"
            continue
        content_hash = str(entry.get("content_hash", ""))
        title, units, source, source_id = (str(entry.get(k) or "") for k in ("title", "units", "source", "id"))
        for column in columns:
            name = key if column == "value" else f"{key}:{column}"
            column_title = (title or key) if column == "value" else f"{title or key}: {column}"
            label = Label(column_title, units, source, source_id)
            refs.append(SeriesRef(name, key, str(column), frequency, file, content_hash, label))
    return refs, problems


def _inside(file: str) -> bool:
    """Whether a manifest's `file` names a path below scraped_data/, checked on the name alone.

    Scraping writes only there; an edited or foreign manifest must not make the stage read (and
    fingerprint) whatever else it names. Resolving is no help: scraped_data/ is itself a symlink.
    """
    parts = PurePosixPath(file).parts
    return bool(parts) and not PurePosixPath(file).is_absolute() and ".." not in parts


def inputs_digest(scraped: Path, refs: list[SeriesRef]) -> str:
    """sha256 over the manifest and every file it lists, as bytes: equal digests mean equal inputs.

    Reads bytes only (no pandas), so a run with nothing new can be recognised in milliseconds.
    """
    digest = hashlib.sha256()
    for path in [scraped / MANIFEST, *(scraped / f for f in sorted({r.file for r in refs}))]:
        digest.update(str(path.relative_to(scraped)).encode() + b"\0")
        try:
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        except OSError:
            digest.update(b"unreadable")
    return digest.hexdigest()


def read_series(scraped: Path, ref: SeriesRef) -> pd.Series:
    """The series as floats on a DatetimeIndex (with its frequency), or SeriesError naming file and column."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from modelling._frame import inferred_freq

    path = scraped / ref.file
    try:
        parquet = pq.ParquetFile(path)
        missing = [c for c in ("date", ref.column) if c not in parquet.schema_arrow.names]
        if missing:
            raise SeriesError(f"{path}: no column {missing[0]!r}, which the manifest lists")
        table = parquet.read(columns=["date", ref.column])
    except FileNotFoundError:
        raise SeriesError(f"{path}: file listed in the manifest is missing") from None
    except (pa.ArrowException, OSError) as exc:
        # Arrow's messages can run to many lines (a schema dump): the first says what is wrong.
        reason = (str(exc).strip() or type(exc).__name__).splitlines()[0]
        raise SeriesError(f"{path}: malformed Parquet: {reason}") from None
    frame = table.to_pandas()
    dates = pd.to_datetime(frame["date"], errors="coerce")
    if dates.isna().any() or not dates.is_monotonic_increasing or dates.duplicated().any():
        raise SeriesError(f"{path}: column 'date' must be valid, sorted and unique dates")
    try:
        values = frame[ref.column].to_numpy(dtype=float)
    except (TypeError, ValueError):
        raise SeriesError(f"{path}: column {ref.column!r} is not numeric") from None
    series = pd.Series(values, index=pd.DatetimeIndex(dates), name=ref.name)
    freq = inferred_freq(series.index)
    if freq is not None:
        series.index.freq = freq
    return series


def fingerprint(series: pd.Series) -> str:
    """sha256 over the dates and values: what decides whether a series changed."""
    import numpy as np

    digest = hashlib.sha256()
    digest.update(series.index.asi8.tobytes())
    digest.update(np.ascontiguousarray(series.to_numpy(dtype=float)).tobytes())
    return digest.hexdigest()
