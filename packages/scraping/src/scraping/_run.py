"""One scraping run: decide per series what to ask for, fetch it, store what changed, report.

Offline (local profile, no FRED key): store the bundled dataset, touch no network.
Online: every configured FRED series (or only those given), then the Treasury curve and the
[[html]] tables.
A series that fails keeps its previous good file; the others go on.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING

from storage_links import data_dir, run_lock

from scraping import _bundled
from scraping._config import Config
from scraping._errors import ConfigError, LayoutChanged, SourceError
from scraping._store import Store, StoredSeries, content_hash, from_frame, normalise, to_parquet_bytes

if TYPE_CHECKING:
    import httpx
    import pandas as pd
    import pyarrow as pa

    from scraping._fred import FredSource
    from scraping._html_table import TableSource
    from scraping._http import Fetcher

# The network modules, pandas and numpy are imported where they are used: an offline run with
# nothing new (what a second `make run` does on a fresh machine) then starts in a fraction of a second.

log = logging.getLogger(__name__)
# Memory that the series fetched ahead of the parsing may hold (their answers and stored tables).
# Counted in bytes, not series, because series differ a hundredfold in size (FRED's longest daily
# answers are ~2 MB): the fetch thread runs ahead as far as this allows and, against a fast server,
# is done before the parsing is, instead of taking turns with it for the GIL.
FETCH_AHEAD_BYTES = 64 << 20


@dataclass(frozen=True)
class SeriesResult:
    """What happened to one series: status is "unchanged", "updated", "failed", "retired" (the bundled
    stand-in, dropped once network data are stored) or "planned" (dry run)."""

    key: str
    status: str
    added_rows: int = 0
    revised_rows: int = 0
    detail: str = ""

    def describe(self) -> str:
        if self.status == "updated":
            revised = f", {self.revised_rows} revised" if self.revised_rows else ""
            return f"updated ({self.added_rows:+d} rows{revised})"
        if self.status == "failed":
            return f"failed: {self.detail}"
        if self.status == "planned":
            return f"would {self.detail}"
        if self.status == "retired":
            return "retired: the offline stand-in, now that network data are stored"
        return "unchanged"


@dataclass(frozen=True)
class RunReport:
    results: list[SeriesResult]
    requests: int  # HTTP requests made, retries included
    files_written: int  # Parquet files and the manifest
    offline: bool

    @property
    def failed(self) -> list[SeriesResult]:
        return [r for r in self.results if r.status == "failed"]

    def summary(self) -> str:
        statuses = ("updated", "unchanged", "failed", "retired", "planned")
        counts = {s: sum(r.status == s for r in self.results) for s in statuses}
        parts = [f"{n} {s}" for s, n in counts.items() if n]
        requests = f"{self.requests} request{'' if self.requests == 1 else 's'}"
        offline = " (offline: bundled dataset)" if self.offline else ""
        return f"{len(self.results)} series{offline}: {', '.join(parts) or 'none'}; {requests}"


def run(
    config: Config,
    *,
    only: tuple[str, ...] | None = None,
    dry_run: bool = False,
    transport: httpx.BaseTransport | None = None,
    on_result: Callable[[SeriesResult], None] = lambda _: None,
) -> RunReport:
    """Bring scraped_data/ up to date. `only`: just these FRED ids. `transport`: an httpx transport (tests).

    The run holds scraped_data/'s lock (a dry run writes nothing and takes none): a second run at the
    same time fails with LockHeldError instead of overwriting the first one's manifest entries.
    """
    if only and config.offline:
        raise ConfigError("--series: FRED needs FRED_API_KEY or FRED_API_KEY_FILE; without one the run is offline")
    root = data_dir("scraping", "scraped_data")
    with contextlib.nullcontext() if dry_run else run_lock(root, "scraping run"):
        store = Store(root)
        results: list[SeriesResult] = []
        # Results are handed on in series order, each once its file has landed (the store writes in the
        # background): a series is never reported updated before its file is in place.
        waiting: deque[SeriesResult] = deque()

        def hand_on(*, wait: bool) -> None:
            while waiting and store.landed(waiting[0].key, wait=wait):
                results.append(waiting.popleft())
                on_result(results[-1])

        def record(result: SeriesResult) -> None:
            waiting.append(result)
            hand_on(wait=False)

        if config.offline:
            log.info(
                "no FRED_API_KEY: local profile runs offline and stores the bundled statsmodels macrodata dataset "
                "(set FRED_API_KEY to fetch FRED and the Treasury curve)"
            )
            if not dry_run and all(store.is_current(key, bundled_with=_bundled.stamp()) for key in _bundled.KEYS):
                # statsmodels ships the same data with the same version: nothing to load or compare.
                for key in _bundled.KEYS:
                    record(SeriesResult(key, "unchanged"))
                return RunReport(results, 0, 0, offline=True)
            try:
                for key, (frame, meta) in _bundled.load().items():
                    record(_bundled_series(store, key, frame, meta, dry_run))
                hand_on(wait=True)
            finally:
                if not dry_run:
                    store.save_manifest()
            return RunReport(results, 0, store.files_written, offline=True)

        from scraping import _treasury
        from scraping._fred import FredSource
        from scraping._http import Fetcher

        tables = [*([_treasury.source(config.treasury)] if config.treasury.enabled else []), *config.html]

        fetcher = Fetcher(config.http, transport=transport, secrets=[config.fred.api_key])
        stopped = False
        try:
            fred = FredSource(config.fred, fetcher)
            ids = list(dict.fromkeys(only or config.fred.series))  # each once: a series is fetched and stored once
            if dry_run:
                for series_id in ids:
                    record(_plan(store, f"fred/{series_id}"))
            else:
                _fred_series(store, fred, fetcher, ids, config.fred.revision_lookback_days, record)
            for table in [] if only else tables:  # --series names FRED ids only
                record(_plan(store, table.key) if dry_run else _guard(table.key, _table_source, store, fetcher, table))
            hand_on(wait=True)
            # A dry run cannot know whether its requests would succeed: it says what a successful run does.
            if dry_run or any(r.status in ("updated", "unchanged") for r in results):
                _retire_bundled(store, record, dry_run)
        except KeyboardInterrupt:
            stopped = True  # Ctrl-C, SIGTERM: the series whose files did land are reported too
            raise
        finally:
            fetcher.close()
            if not dry_run:
                store.save_manifest()  # entries change only once their file is in place, so this is always consistent
                if stopped:
                    hand_on(wait=False)
        return RunReport(results, fetcher.requests, store.files_written, offline=False)


def _retire_bundled(store: Store, record: Callable[[SeriesResult], None], dry_run: bool) -> None:
    """Drop the bundled dataset once network data are stored: it stands in for a run without a key,
    and left beside FRED's series it would be modelled and reported as if it were current. Only
    called once this run stored or confirmed a series from the network, so that a run whose every
    request failed leaves it (beside older network data, say), still something current to model.
    statsmodels ships it, so an offline run stores it again."""
    if not store.keys(origin="network"):
        return
    for key in store.keys(origin="bundled"):
        if dry_run:
            record(SeriesResult(key, "planned", detail="retire the offline stand-in"))
        else:
            store.remove(key)
            record(SeriesResult(key, "retired"))


def _guard(key: str, update: Callable[..., SeriesResult], *args: object) -> SeriesResult:
    try:
        return update(*args)
    except SourceError as exc:
        return SeriesResult(key, "failed", detail=str(exc))


def _plan(store: Store, key: str) -> SeriesResult:
    entry = store.entry(key)
    if entry is None:
        return SeriesResult(key, "planned", detail="fetch in full")
    return SeriesResult(key, "planned", detail=f"check for news after {entry['last_observation']}")


@dataclass(frozen=True)
class _FredAnswer:
    """One series as fetched: what is stored, the manifest entry from fresh metadata, and the
    observations answer (None when FRED's last_updated says nothing changed)."""

    stored: StoredSeries | None
    entry: dict
    body: bytes | None

    @cached_property  # read when the answer is held and again when it is released
    def size(self) -> int:
        """Bytes it holds in memory."""
        stored = self.stored.table.nbytes if self.stored is not None else 0
        return stored + len(self.body or b"")


def _fred_series(
    store: Store,
    fred: FredSource,
    fetcher: Fetcher,
    ids: Iterable[str],
    lookback_days: int,
    record: Callable[[SeriesResult], None],
) -> None:
    """Every FRED series in order. One thread fetches the answers, up to FETCH_AHEAD_BYTES ahead,
    while this one parses and stores, so that the stage's CPU time overlaps the network's. The
    requests are still made one at a time, in series order, through the one rate limiter. Once
    every answer is in, the fetch thread parses the ones not yet reached, last first (_Parsing)."""
    ahead = _ReadAhead(FETCH_AHEAD_BYTES)
    # A series' answer is let go (None) once it is stored: the answers held are those ahead.
    answers: list[tuple[str, Future[_FredAnswer] | None]] = [(series_id, Future()) for series_id in ids]
    parsing = _Parsing(fred)

    def fetch_all() -> None:
        for series_id, answer in answers:  # always ahead of the storing: none is let go yet
            assert answer is not None
            if not answer.set_running_or_notify_cancel():
                return  # the run stopped: nothing more is fetched
            try:
                if not ahead.wait_for_room():
                    raise CancelledError
                fetched = _fred_fetch(store, fred, series_id, lookback_days)
                ahead.hold(fetched.size)
                answer.set_result(fetched)
            except BaseException as exc:  # the series' own failure, raised where it is stored
                answer.set_exception(exc)
        parsing.help_from_the_end(answers)

    # A daemon thread: it writes nothing, so a stopped run need not wait for its answer under way.
    threading.Thread(target=fetch_all, name="scraping-fetch", daemon=True).start()
    try:
        for index, (series_id, answer) in enumerate(answers):
            assert answer is not None
            record(_guard(f"fred/{series_id}", _fred_store, store, fred, parsing, series_id, answer))
            if answer.exception() is None:
                ahead.release(answer.result().size)
            answers[index] = (series_id, None)
    except BaseException:
        # Stopped (a signal) or failed: the fetch thread's waits for a retry, the rate limiter or room
        # end at once and the series not yet fetched are dropped, so that the run's clean-up (the
        # manifest of what landed) is done before `docker stop` loses patience.
        fetcher.stop()
        ahead.stop()
        for _, answer in answers:
            if answer is not None:
                answer.cancel()
        raise


class _Parsing:
    """Each observations answer parsed once, by the first thread to claim it: the storing thread in
    series order, and the fetch thread, once it has fetched every answer, from the last one back
    until it meets the storing thread. A fast server leaves the parsing of the last answers behind
    the fetching; their numpy and pyarrow work, which runs outside the GIL, then overlaps the
    storing of the earlier ones instead of following it."""

    def __init__(self, fred: FredSource) -> None:
        self._fred = fred
        self._claimed: dict[str, Future[pa.Table] | None] = {}  # None: claimed, and handed over
        self._lock = threading.Lock()

    def observations(self, series_id: str, body: bytes) -> pa.Table:
        """The answer's observations, normalised: parsed here, or by the thread that claimed it first
        (its error, a MalformedAnswer say, is raised here)."""
        mine = self._claim(series_id)
        if mine is not None:
            self._parse(mine, series_id, body)
        with self._lock:
            parsed, self._claimed[series_id] = self._claimed[series_id], None  # the table is the caller's now
        assert parsed is not None  # each series is stored once
        return parsed.result()

    def help_from_the_end(self, answers: list[tuple[str, Future[_FredAnswer] | None]]) -> None:
        """Parse the fetched answers no thread has claimed, last first; stop at the first one claimed
        or already stored (None)."""
        for series_id, answer in reversed(answers):
            if answer is None:
                return
            if answer.cancelled() or answer.exception() is not None or answer.result().body is None:
                continue  # the run stopped, the fetch failed, or there is nothing new to parse
            mine = self._claim(series_id)
            if mine is None:
                return  # the storing thread got here first: the rest are behind it
            self._parse(mine, series_id, answer.result().body)

    def _claim(self, series_id: str) -> Future[pa.Table] | None:
        """A parsing for the caller to do, or None when another thread has claimed it."""
        with self._lock:
            if series_id in self._claimed:
                return None
            self._claimed[series_id] = parsing = Future()
            return parsing

    def _parse(self, parsed: Future[pa.Table], series_id: str, body: bytes) -> None:
        try:
            parsed.set_result(normalise(self._fred.parse_observations(series_id, body), ["value"]))
        except BaseException as exc:  # raised where the series is stored
            parsed.set_exception(exc)


class _ReadAhead:
    """The memory held by series fetched and not yet stored, and the limit the fetch thread waits under."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._held = 0
        self._stopped = False
        self._changed = threading.Condition()

    def wait_for_room(self) -> bool:
        """Wait until the memory held is under the limit; False if the run stopped meanwhile."""
        with self._changed:
            self._changed.wait_for(lambda: self._held < self._limit or self._stopped)
            return not self._stopped

    def hold(self, size: int) -> None:
        with self._changed:
            self._held += size

    def release(self, size: int) -> None:
        with self._changed:
            self._held -= size
            self._changed.notify_all()

    def stop(self) -> None:
        with self._changed:
            self._stopped = True
            self._changed.notify_all()


def _fred_fetch(store: Store, fred: FredSource, series_id: str, lookback_days: int) -> _FredAnswer:
    """The network half of a series (run on the fetch thread): metadata, then observations if needed."""
    stored = store.read(f"fred/{series_id}")
    meta = fred.info(series_id)
    entry = {
        "source": "fred",
        "id": meta.id,
        "title": meta.title,
        "units": meta.units,
        "frequency": meta.frequency,
        "seasonal_adjustment": meta.seasonal_adjustment,
        "last_updated": meta.last_updated,
    }
    if stored is not None and meta.last_updated and stored.entry.get("last_updated") == meta.last_updated:
        return _FredAnswer(stored, entry, None)
    start = None
    if stored is not None:
        # Re-read a window before the last stored observation: FRED revises recent values.
        start = date.fromisoformat(stored.entry["last_observation"]) - timedelta(days=lookback_days)
    return _FredAnswer(stored, entry, fred.fetch_observations(series_id, start))


def _fred_store(
    store: Store, fred: FredSource, parsing: _Parsing, series_id: str, fetched: Future[_FredAnswer]
) -> SeriesResult:
    """The CPU half of a series: parse the observations, merge them with what is stored, store.

    A revision that reaches the first row of the look-back window may reach further back (annual
    and benchmark revisions go years back): the series is then fetched whole and replaces what is
    stored, so that the file never mixes old and new vintages.
    """
    key = f"fred/{series_id}"
    answer = fetched.result()  # the fetch's SourceError, if any, is raised here
    if answer.body is None:
        store.update_meta(key, answer.entry)
        return SeriesResult(key, "unchanged")
    fresh = parsing.observations(series_id, answer.body)
    old = normalise(answer.stored.table, ["value"]) if answer.stored is not None else None
    whole = old is not None and _revised(old, fresh.slice(0, 1), ["value"]) > 0
    if whole:
        log.info("%s: revised from the start of the look-back window on; fetching the whole series", key)
        fresh = normalise(fred.parse_observations(series_id, fred.fetch_observations(series_id, None)), ["value"])
    if (old is None or whole) and not fresh.num_rows:
        raise SourceError(f"FRED observations {series_id}: the series has no observations")
    return _merge_and_store(store, key, answer.stored, fresh, answer.entry, ["value"], whole=whole)


def _table_source(store: Store, fetcher: Fetcher, source: TableSource) -> SeriesResult:
    """An HTML table: its monthly pages from the last stored month on (or the backfill), or its one page."""
    import pandas as pd
    import pyarrow.compute as pc

    from scraping._html_table import fetch_page, months_to_fetch

    stored = store.read(source.key)
    today = datetime.now(UTC).date()
    if source.spec.monthly:
        last = pc.max(stored.table.column("date")).as_py().date() if stored is not None else None
        months = months_to_fetch(last, today, source.backfill_months, weekdays_only=source.meta["frequency"] == "B")
        if not months:  # the last stored day ends its month, and the next month has not begun here
            store.update_meta(source.key, dict(source.meta))
            return SeriesResult(source.key, "unchanged")
    else:
        months = [today]
    pages = [fetch_page(fetcher, source, month) for month in months]
    for month, page in zip(months, pages, strict=True):
        _check_not_emptied(source, stored, month, page)
    columns = [c.name for c in source.spec.columns]
    fresh = from_frame(pd.concat(pages, ignore_index=True), columns)
    if stored is None and not fresh.num_rows:
        span = f" in {months[0]:%Y-%m}..{months[-1]:%Y-%m}" if source.spec.monthly else ""
        raise SourceError(f"{source.spec.title}: no rows{span}")
    return _merge_and_store(store, source.key, stored, fresh, dict(source.meta), columns)


def _check_not_emptied(source: TableSource, stored: StoredSeries | None, month: date, page: pd.DataFrame) -> None:
    """A page with no rows where rows are stored (the month's, or any for a single page) means the
    site moved or changed the table, not that the data went away: the series fails, its file stays."""
    import numpy as np

    if not page.empty or stored is None:
        return
    dates = stored.table.column("date").to_numpy()
    if source.spec.monthly:
        held = int((dates.astype("datetime64[M]") == np.datetime64(f"{month:%Y-%m}", "M")).sum())
        what, span = f"{source.spec.title} {month:%Y-%m}", " for that month"
    else:
        held, what, span = len(dates), source.spec.title, ""
    if held:
        raise LayoutChanged(f"{what}: the page has no rows, but {held} are stored{span}; the layout or address changed")


def _merge_and_store(
    store: Store,
    key: str,
    stored: StoredSeries | None,
    fresh: pa.Table,
    meta: dict,
    columns: list[str],
    *,
    whole: bool = False,
) -> SeriesResult:
    """Union of stored and fresh rows (fresh normalised), fresh values winning: a short or empty answer
    never drops stored rows. `whole`: fresh is the whole series and replaces what is stored."""
    import pyarrow as pa

    old = normalise(stored.table, columns) if stored is not None else None
    merged = fresh if old is None or whole else normalise(pa.concat_tables([old, fresh]), columns)
    if not store.put(key, merged, meta, origin="network"):
        return SeriesResult(key, "unchanged")
    added = merged.num_rows - (old.num_rows if old is not None else 0)
    return SeriesResult(key, "updated", added_rows=added, revised_rows=_revised(old, fresh, columns))


def _revised(old: pa.Table | None, fresh: pa.Table, columns: list[str]) -> int:
    """Rows present before whose values the fresh answer changed (NaN equals NaN)."""
    import numpy as np

    if old is None:
        return 0
    both = old.join(fresh, "date", join_type="inner", left_suffix="_old", right_suffix="_new", use_threads=False)
    before = np.column_stack([both.column(f"{c}_old").to_numpy() for c in columns])
    after = np.column_stack([both.column(f"{c}_new").to_numpy() for c in columns])
    differs = ~((before == after) | (np.isnan(before) & np.isnan(after)))
    return int(differs.any(axis=1).sum())


def _bundled_series(store: Store, key: str, frame: pd.DataFrame, meta: dict, dry_run: bool) -> SeriesResult:
    table = from_frame(frame, ["value"])
    entry = store.entry(key)
    before = entry["rows"] if entry else 0
    if dry_run:
        same = entry is not None and entry.get("content_hash") == content_hash(to_parquet_bytes(table))
        return SeriesResult(key, "planned", detail="leave it unchanged" if same else "store the bundled data")
    if not store.put(key, table, meta, origin="bundled"):
        return SeriesResult(key, "unchanged")
    return SeriesResult(key, "updated", added_rows=table.num_rows - before)
