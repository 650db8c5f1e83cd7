"""scraped_data/: one Parquet file per series and the manifest that describes them.

Parquet bytes are a pure function of the data (same table -> same bytes), so "unchanged"
is a byte comparison and the manifest's content hash is stable across runs. A file is only
written when its bytes differ, always atomically, and the manifest is written last.

A series is held as a pyarrow Table, as it is read from and written to its file: a FRED answer
is read into one and stored without pandas (whose per-frame overhead was most of the time a
short series took); pandas sorts and merges only where rows need it.

Each atomic write waits on its file's fsync: one after the other they cost more than fetching a
series from a fast server, while concurrent ones share the file system's journal commits (50
files on this project's disk, shared with other work at the time: ~30 ms from 4 threads, ~300 ms
from one). So writes go to a few writer threads, and an entry joins the manifest's view only once
its file has landed (`landed`). The directories written into are synced once, before the
manifest that records their files is written, not once a file.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from storage_links import atomic_write, fsync_directory

from scraping._errors import StoreError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

# pandas and pyarrow are imported by the functions that handle tables: checking what is stored
# (the manifest and file hashes) needs neither.

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
WRITERS = 8  # concurrent atomic writes: more than the 4 that already share one journal commit here


@dataclass(frozen=True)
class StoredSeries:
    table: pa.Table
    entry: dict


def normalise(table: pa.Table, value_columns: list[str]) -> pa.Table:
    """The file contract: `date` timestamp[ns], sorted and unique (the later row wins), float64 values."""
    import numpy as np
    import pyarrow as pa

    schema = _contract(tuple(value_columns))
    conforming = table.schema.equals(schema, check_metadata=True)  # else read back or built elsewhere
    if not conforming:
        table = table.select(schema.names)
        if table.schema != schema:
            table = table.cast(schema)
    dates = table.column("date")
    # Answers usually arrive sorted and unique (strictly increasing, which a null never is): that
    # is checked on the raw dates, and pandas sorts and de-duplicates only the others.
    stamps = dates.to_numpy().view(np.int64)
    if dates.null_count or not (stamps[1:] > stamps[:-1]).all():
        return from_frame(table.to_pandas(), value_columns)
    # One chunk each and no metadata: the same rows give the same Parquet bytes however the table was put together.
    if conforming and all(column.num_chunks == 1 for column in table.columns):
        return table
    return pa.Table.from_arrays([column.combine_chunks() for column in table.columns], schema=schema)


@functools.cache
def _contract(value_columns: tuple[str, ...]) -> pa.Schema:
    import pyarrow as pa

    return pa.schema([("date", pa.timestamp("ns")), *((column, pa.float64()) for column in value_columns)])


def from_frame(frame: pd.DataFrame, value_columns: list[str]) -> pa.Table:
    """A pandas frame's `date` and `value_columns` as a normalised table (see normalise)."""
    import numpy as np
    import pyarrow as pa

    dtypes = {"date": np.dtype("datetime64[ns]"), **dict.fromkeys(value_columns, np.dtype("float64"))}
    frame = frame[list(dtypes)].astype(dtypes)
    dates = frame["date"].to_numpy()
    if len(dates) and (np.isnat(dates).any() or not (dates[1:] > dates[:-1]).all()):
        frame = frame.dropna(subset=["date"]).drop_duplicates("date", keep="last").sort_values("date")
    # From numpy, not pandas: no pandas metadata in the file, and NaN stays NaN (from_pandas makes it null).
    return pa.table({column: frame[column].to_numpy() for column in dtypes})


def to_parquet_bytes(table: pa.Table) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    # No dictionary encoding: dates never repeat and values seldom do, so building the dictionaries
    # cost ~40% of the write and made the files larger.
    pq.write_table(table, sink, compression="snappy", use_dictionary=False)
    return sink.getvalue().to_pybytes()


def content_hash(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Store:
    """The stage's view of scraped_data/: read what is there, write only what changed."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files_written = 0
        self._path = root / MANIFEST
        self._series = self._load()
        self._original = json.dumps(self._series, sort_keys=True)
        self._writer: ThreadPoolExecutor | None = None
        self._in_flight: dict[str, tuple[Future, Path, dict]] = {}  # key -> (write, file, entry once landed)
        self._removed: list[str] = []  # files of removed entries, deleted once the manifest no longer lists them
        self._unsynced: set[Path] = set()  # directories whose new files' renames are not yet durable

    def _load(self) -> dict[str, dict]:
        try:
            text = self._path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise StoreError(f"{self._path}: cannot read: {exc.strerror}") from None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise StoreError(f"{self._path}: not valid JSON ({exc}); move it aside to rebuild it") from None
        series = data.get("series") if isinstance(data, dict) else None
        if not isinstance(series, dict) or data.get("format") != MANIFEST_FORMAT:
            raise StoreError(f"{self._path}: not a format {MANIFEST_FORMAT} manifest; move it aside to rebuild it")
        for key, entry in series.items():
            problem = _entry_problem(entry)
            if problem:
                raise StoreError(f"{self._path}: series {key!r}: {problem}; move the manifest aside to rebuild it")
        return series

    def entry(self, key: str) -> dict | None:
        return self._series.get(key)

    def keys(self, *, origin: str) -> list[str]:
        """The stored series that came from `origin` ("network" or "bundled")."""
        return sorted(key for key, entry in self._series.items() if entry.get("origin") == origin)

    def remove(self, key: str) -> None:
        """Take `key` out of the manifest; its file goes once the manifest without it is saved."""
        self._removed.append(self._series.pop(key)["file"])

    def read(self, key: str) -> StoredSeries | None:
        """The stored table if its file is there and matches the manifest's hash; else None (refetch all)."""
        entry = self._series.get(key)
        if entry is None:
            return None
        path = self.root / entry["file"]
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            log.warning("%s: %s is missing; fetching it in full", key, path.name)
            return None
        except OSError as exc:
            raise StoreError(f"{path}: cannot read: {exc.strerror}") from None
        if content_hash(data) != entry.get("content_hash"):
            log.warning("%s: %s does not match the manifest's hash; fetching it in full", key, path.name)
            return None
        import pyarrow as pa
        import pyarrow.parquet as pq

        return StoredSeries(pq.read_table(pa.BufferReader(data)), entry)

    def is_current(self, key: str, **expected: str) -> bool:
        """The entry exists with these field values and its file still has the recorded hash."""
        entry = self._series.get(key)
        if entry is None or any(entry.get(field) != value for field, value in expected.items()):
            return False
        try:
            return content_hash((self.root / entry["file"]).read_bytes()) == entry.get("content_hash")
        except OSError:
            return False

    def put(self, key: str, table: pa.Table, meta: dict, *, origin: str) -> bool:
        """Store `table` (normalised) under `key`; True when the file's bytes change.

        A changed file is written in the background: `landed(key)` tells when it is in place.
        """
        import numpy as np

        data = to_parquet_bytes(table)
        digest = content_hash(data)
        rel = f"{key}.parquet"
        path = self.root / rel
        previous = self._series.get(key)
        unchanged = previous is not None and previous.get("content_hash") == digest and _same_bytes(path, data)
        first, last = np.datetime_as_string(table.column("date").to_numpy()[[0, -1]], unit="D")
        entry = {
            **meta,
            "file": rel,
            "columns": table.column_names[1:],
            "first_observation": str(first),
            "last_observation": str(last),
            "rows": table.num_rows,
            "content_hash": digest,
            "fetched_at": previous["fetched_at"] if unchanged else datetime.now(UTC).isoformat(timespec="seconds"),
            "origin": origin,
        }
        if unchanged:
            self._series[key] = entry
            return False
        if self._writer is None:
            self._writer = ThreadPoolExecutor(WRITERS, thread_name_prefix="scraping-store")
        self._in_flight[key] = (self._writer.submit(atomic_write, path, data, sync_directory=False), path, entry)
        self._unsynced.add(path.parent)
        return True

    def landed(self, key: str, *, wait: bool) -> bool:
        """Whether `key` has no write in flight (waiting for it if `wait`); StoreError if its write failed.

        A failed write leaves the previous file and entry as they were.
        """
        if key not in self._in_flight:
            return True
        write, path, entry = self._in_flight[key]
        if not (wait or write.done()):
            return False
        del self._in_flight[key]
        try:
            write.result()
        except OSError as exc:
            raise StoreError(f"{path}: cannot write: {exc.strerror}") from None
        self._series[key] = entry
        self.files_written += 1
        return True

    def update_meta(self, key: str, meta: dict) -> None:
        """Refresh an entry's metadata (title, last_updated...) when the data itself did not change."""
        self._series[key] = {**self._series[key], **meta}

    def save_manifest(self) -> bool:
        """Wait for the writes in flight, then write manifest.json if any entry changed.

        The entries of files that landed are saved even when another write failed; that failure
        is raised after the manifest is written.
        """
        failure = None
        for key in list(self._in_flight):
            try:
                self.landed(key, wait=True)
            except StoreError as exc:
                failure = failure or exc
        if self._writer is not None:
            self._writer.shutdown()
            self._writer = None
        for directory in self._unsynced:
            fsync_directory(directory)
        self._unsynced.clear()
        changed = json.dumps(self._series, sort_keys=True) != self._original
        if changed:
            text = json.dumps({"format": MANIFEST_FORMAT, "series": self._series}, indent=2, sort_keys=True) + "\n"
            try:
                atomic_write(self._path, text)
            except OSError as exc:
                raise StoreError(f"{self._path}: cannot write: {exc.strerror}") from None
            self.files_written += 1
            self._original = json.dumps(self._series, sort_keys=True)
        self._delete_removed()
        if failure is not None:
            raise failure
        return changed

    def _delete_removed(self) -> None:
        """Delete the files of removed entries: plain files under the root only, never through a link."""
        for rel in self._removed:
            parts = Path(rel).parts
            if Path(rel).is_absolute() or ".." in parts:
                continue  # not a file this stage wrote
            if any(self.root.joinpath(*parts[:n]).is_symlink() for n in range(1, len(parts) + 1)):
                continue  # a link below the root (scraping makes none) could lead anywhere
            path = self.root / rel
            if path.is_file():
                path.unlink()
            with contextlib.suppress(OSError):  # the folder, once empty
                path.parent.rmdir()
        self._removed.clear()


# The fields every entry has that the stage itself reads back (put writes them all).
_ENTRY_FIELDS = {"file": str, "content_hash": str, "last_observation": str, "fetched_at": str, "origin": str}


def _entry_problem(entry: object) -> str | None:
    """What makes a manifest entry unusable, or None: a hand-edited or foreign manifest fails
    here, in one line, rather than wherever the stage first reads the field."""
    if not isinstance(entry, dict):
        return "the entry is not an object"
    for field, kind in _ENTRY_FIELDS.items():
        if not isinstance(entry.get(field), kind):
            return f"{field!r} is missing or not a {kind.__name__}"
    try:
        date.fromisoformat(entry["last_observation"])
    except ValueError:
        return f"'last_observation' {entry['last_observation']!r} is not an ISO date"
    return None


def _same_bytes(path: Path, data: bytes) -> bool:
    try:
        return path.read_bytes() == data
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StoreError(f"{path}: cannot read: {exc.strerror}") from None
