"""The stage run: plan from scraped_data/, fit in worker processes, write predictions/<run_id>/.

Writing order keeps readers safe: the Parquet files first, run.json last (a directory without it is
incomplete and ignored), then LATEST. A run directory that already exists is never written into,
and a run in which every series failed writes nothing at all. A previous run (the one LATEST names)
whose run.json or Parquet files cannot be read is ignored with a warning naming the file: every
series is fitted again and the new run replaces it as LATEST.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import logging
import math
import os
import signal
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from storage_links import ContractError, Progress, atomic_path, atomic_write, data_dir, links, run_lock
from threadpoolctl import threadpool_limits

from modelling import _cache
from modelling._config import SEASON_LENGTH, Config
from modelling._errors import ConfigError, InputError, OutputError, SeriesError, WorkerDied
from modelling._inputs import MANIFEST, SeriesRef, fingerprint, inputs_digest, read_manifest, read_series
from modelling._schema import SCHEMA

log = logging.getLogger("modelling")

RUN_FILE = "run.json"
LATEST = "LATEST"
FILES = ("forecasts", "backtests", "scores", "history")
CALIBRATED = ("forecasts", "backtests")  # the files whose intervals _calibrate rescales


if TYPE_CHECKING:
    import pandas as pd

    from modelling._fit import Outcome, Task


@dataclass
class Report:
    run_id: str | None  # None when nothing was written
    fitted: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)  # finished by a stopped run: its outcome taken, not fitted
    reused: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    nothing_new: bool = False


@dataclass(frozen=True)
class Planned:
    ref: SeriesRef
    series: pd.Series
    fingerprint: str
    future: pd.DatetimeIndex  # the forecast's dates


def run(
    config: Config, run_id: str, *, jobs: int | None = None, only: list[str] | None = None,
    dry_run: bool = False, level: str = "INFO",
) -> Report:  # fmt: skip
    """Model every series. The run holds predictions/' lock from before it reads LATEST or the cache
    (a dry run writes nothing and takes none): a second run at the same time fails at once with
    LockHeldError naming this one, instead of both building on the same previous run."""
    predictions = data_dir("modelling", "predictions")
    with contextlib.nullcontext() if dry_run else run_lock(predictions, "modelling run"):
        return _run(config, run_id, predictions, jobs=jobs, only=only, dry_run=dry_run, level=level)


def _run(
    config: Config, run_id: str, predictions: Path, *, jobs: int | None, only: list[str] | None,
    dry_run: bool, level: str,
) -> Report:  # fmt: skip
    scraped = data_dir("scraping", "scraped_data")
    refs, failed = read_manifest(scraped)
    # Every series the manifest lists, before --series narrows them: whose cache entries stay.
    listed, unread_keys = {r.name for r in refs}, set(failed)
    if only:
        _check_named(scraped, only, {r.name for r in refs} | {r.key for r in refs} | set(failed))
    config_fp = config.fingerprint()
    previous = _previous_run(predictions)

    def nothing_new() -> Report:
        log.info("nothing new since run %s: no fits, no new run", previous["run_id"])
        # LATEST's run stands for this one, complete under this config and manifest: the cache is pruned
        # as that run's completion pruned it (a run stopped since, under another config, left entries).
        if not dry_run:
            _cache.prune(_cache_dir("sarima_params"), config_fp, listed, unread_keys)
        return Report(None, nothing_new=True)

    if only:
        refs, failed = _select(refs, failed, only, previous, config_fp)
    digest = inputs_digest(scraped, refs)
    # Same bytes in, same config, and every series modelled last time: planning would find nothing new,
    # so it is skipped (it reads every series with pandas, most of a nothing-new run's time).
    if not only and previous and previous.get("inputs_digest") == digest \
            and previous.get("config_fingerprint") == config_fp and not previous.get("fit_failed"):  # fmt: skip
        return nothing_new()

    planned = []
    for ref in refs:
        try:
            planned.append(_plan(scraped, ref, config))
        except SeriesError as exc:
            failed[ref.name] = str(exc)
    for name, reason in failed.items():
        log.warning("%s: %s", name, reason)
    inputs = {p.ref.key: p.ref.content_hash for p in planned}
    fingerprints = {p.ref.name: p.fingerprint for p in planned}
    carried: set[str] = set()
    if only:  # the others are carried over from the previous run as they were, fingerprints and all
        carried = {p.ref.name for p in planned if p.ref.name not in only and p.ref.key not in only}
        fingerprints |= {name: previous["fingerprints"][name] for name in carried}
        inputs |= {p.ref.key: previous["inputs"][p.ref.key] for p in planned if p.ref.name in carried}
    labels = {p.ref.name: asdict(p.ref.label) for p in planned}  # a retitled series is news for the report
    if previous and previous.get("config_fingerprint") == config_fp and previous.get("fingerprints") == fingerprints \
            and previous.get("failed") == failed and previous.get("labels") == labels:  # fmt: skip
        return nothing_new()
    if not planned:
        raise InputError(f"{scraped}: no series could be read; nothing modelled")
    frequency = {p.ref.name: p.ref.frequency for p in planned}
    reuse, reused_parts = _reusable(predictions, previous, fingerprints, config_fp, frequency)
    cache_dir, checkpoints = _cache_dir("sarima_params"), _cache_dir("checkpoints")
    from modelling import _checkpoint

    keys = {p.ref.name: _checkpoint.Key(p.ref.name, p.ref.frequency, p.fingerprint, config_fp) for p in planned}
    resumed = {}  # the outcomes a stopped run finished, under the same values, config and code
    for p in planned:
        if p.ref.name not in reuse and (outcome := _checkpoint.lookup(checkpoints, keys[p.ref.name], config.models)):
            resumed[p.ref.name] = outcome
    to_fit = [p for p in planned if p.ref.name not in reuse and p.ref.name not in resumed]
    log.info("%d series: %d to fit, %d unchanged (reused from run %s)%s", len(planned), len(to_fit), len(reuse),
             previous["run_id"] if previous else "-",
             f", {len(resumed)} finished by a stopped run (not fitted again)" if resumed else "")  # fmt: skip
    if dry_run:
        for p in to_fit:
            log.info("would fit %s (%d points, m=%d, h=%d)", p.ref.name, len(p.series),
                     SEASON_LENGTH[p.ref.frequency], config.horizon[p.ref.frequency])  # fmt: skip
        return Report(None, fitted=[p.ref.name for p in to_fit], resumed=sorted(resumed), reused=sorted(reuse),
                      failed=failed)  # fmt: skip
    run_dir = predictions / run_id
    if run_dir.exists():
        raise OutputError(f"{run_dir}: run directory already exists; refusing to overwrite it")
    by_name = {p.ref.name: p for p in planned}

    def cache_fit(outcome: Outcome) -> None:
        # As each fit arrives, not after all of them: a run that is stopped or killed halfway
        # leaves the fits it finished for the next run to start from.
        if outcome.error:
            return
        try:
            if outcome.choice is not None:
                _cache.store(cache_dir, outcome.name, by_name[outcome.name].series, config_fp, outcome.choice,
                             outcome.fold_choices)  # fmt: skip
            _checkpoint.store(checkpoints, keys[outcome.name], outcome)
        except OSError as exc:
            log.warning("%s: cannot write cache entry: %s", outcome.name, exc)

    tasks = [_task(p, config, cache_dir, config_fp) for p in to_fit]
    outcomes = {o.name: o for o in _fit_all(tasks, jobs, level, cache_fit)} | resumed
    report = Report(run_id, resumed=sorted(resumed), reused=sorted(reuse), failed=dict(failed))
    parts: dict[str, list[pd.DataFrame]] = {name: [reused_parts[name]] if reuse else [] for name in FILES}
    # In the plan's order, not the order the fits finished in: the files are then the same whichever
    # series a stopped run had finished, and however the workers were scheduled.
    for planned_series in planned:
        outcome = outcomes.get(planned_series.ref.name)
        if outcome is None:
            continue
        if outcome.error:
            report.failed[outcome.name] = outcome.error
            log.warning("%s: failed: %s", outcome.name, outcome.error)
            continue
        for note in outcome.notes:
            log.info("%s: %s", outcome.name, note)
        if outcome.name not in resumed:
            report.fitted.append(outcome.name)
        _collect(parts, outcome, planned_series.series)
    modelled = set(report.fitted) | set(report.resumed) | set(report.reused)
    if not modelled:
        raise InputError("every series failed; nothing written (see the messages above)")
    frames = _frames(parts)
    calibration = _calibrate(frames, frequency, config) if config.calibrate else {}
    meta = {
        "run_id": run_id,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "frequency": {n: by_name[n].ref.frequency for n in sorted(modelled)},
        "season_length": {n: SEASON_LENGTH[by_name[n].ref.frequency] for n in sorted(modelled)},
        "horizon": {n: config.horizon[by_name[n].ref.frequency] for n in sorted(modelled)},
        "labels": {n: labels[n] for n in sorted(modelled)},
        "inputs": inputs,
        "failed": report.failed,
        "config_fingerprint": config_fp,
        "fingerprints": fingerprints,
        # A --series run's carried series were fitted to older inputs: its digest would tell the next
        # run that nothing changed, and they would never be fitted to what is stored now.
        "inputs_digest": None if only else digest,
        "fit_failed": sorted(set(report.failed) - set(failed)),
        "calibration": _calibration_record(calibration),
    }
    _write(run_dir, frames, meta)
    atomic_write(predictions / LATEST, run_id + "\n")
    try:  # the run is complete: what the checkpoints held is in it, for the next run to reuse
        # A --series run's own series only: the others' may be a stopped full run's, for the next full run.
        _checkpoint.clear(checkpoints, set(by_name) - carried if only else None)
    except OSError as exc:
        log.warning("%s: cannot remove the checkpoints: %s", checkpoints, exc)
    # Only once complete: a new config that fails or is stopped has not replaced the old one, whose
    # entries then still serve the next run.
    _cache.prune(cache_dir, config_fp, listed, unread_keys)
    return report


def _cache_dir(name: str) -> Path:
    """cache/<name>, which modelling's [tool.storage-links] must declare among cache's subdirs (init
    makes those on the share): the contract stays the one place the stage's directories are named."""
    cache = data_dir("modelling", "cache")
    if not any(link.local == cache and name in link.subdirs for link in links()):
        raise ContractError(f"modelling: [tool.storage-links] declares no subdir {name!r} of cache")
    return cache / name


def _plan(scraped: Path, ref: SeriesRef, config: Config) -> Planned:
    import numpy as np

    series = read_series(scraped, ref)
    finite = series.dropna()
    if finite.empty:
        raise SeriesError(f"{scraped / ref.file}: column {ref.column!r} has no values")
    series = series.loc[finite.index[0] : finite.index[-1]]
    if ref.frequency in ("D", "B") and len(series) > config.daily_window:
        series = series.iloc[-config.daily_window :]
    # inf is no missing value but a broken one (a ratio over zero, the log of zero upstream): taken
    # for a gap, it would be filled in and the series forecast as if sound. Checked on the values
    # modelled only: a daily series' older values outside its window are not.
    infinite = series.index[np.isinf(series.to_numpy())]
    if len(infinite):
        count = f"{len(infinite)} infinite value{'s' if len(infinite) > 1 else ''}"
        raise SeriesError(f"{scraped / ref.file}: column {ref.column!r}: {count} (the first on "
                          f"{infinite[0]:%Y-%m-%d}); fix them at the source, or store them as missing")  # fmt: skip
    usable = int(series.notna().sum())
    if usable < config.min_points:
        raise SeriesError(f"{scraped / ref.file}: column {ref.column!r}: too few points ({usable} < min_points "
                          f"{config.min_points} in {config.source})")  # fmt: skip
    try:
        future = future_dates(series.index[-1], ref.frequency, config.horizon[ref.frequency])
    except SeriesError as exc:
        raise SeriesError(f"{scraped / ref.file}: column {ref.column!r}: {exc} (horizon.{ref.frequency} in "
                          f"{config.source})") from None  # fmt: skip
    return Planned(ref, series, fingerprint(series), future)


MONTHS = {"M": 1, "Q": 3, "A": 12}  # months per step of the month-based manifest codes


def future_dates(last: pd.Timestamp, frequency: str, horizon: int) -> pd.DatetimeIndex:
    """The `horizon` dates after `last`, one manifest `frequency` step apart, anchored as `last` is.

    From the manifest's code, not inferred from the dates: a series missing one date has no
    inferable frequency, and stepping by its median gap drifts off the calendar (a quarter is 90 to
    92 days). Month-based codes keep the day `last` is on: the first of a month (quarter, year), the
    last, or else the same day of the month. "B" steps over weekends, "W" is 7 days. SeriesError
    if they run past the last date pandas can hold.
    """
    import pandas as pd

    if frequency in MONTHS:
        if last.is_month_start:
            step = pd.offsets.MonthBegin(MONTHS[frequency])
        elif last.is_month_end:
            step = pd.offsets.MonthEnd(MONTHS[frequency])
        else:
            step = pd.DateOffset(months=MONTHS[frequency])
    else:
        step = {"D": pd.offsets.Day(1), "B": pd.offsets.BDay(1), "W": pd.offsets.Week(1)}[frequency]
    try:
        dates = pd.DatetimeIndex([last + step * k for k in range(1, horizon + 1)])
    except (OverflowError, pd.errors.OutOfBoundsDatetime):
        dates = None
    # pandas 2 fails past its nanosecond range above; pandas 3 holds such dates at a coarser
    # resolution, and the stored columns (datetime64[ns]) fail on them later.
    if dates is None or dates[-1] > pd.Timestamp.max:
        raise SeriesError(
            f"{horizon} steps from {last:%Y-%m-%d} run past {pd.Timestamp.max:%Y-%m-%d}, the last date pandas can hold"
        )
    return dates


def _task(planned: Planned, config: Config, cache_dir: Path, config_fp: str) -> Task:
    from modelling._fit import Task

    ref = planned.ref
    horizon = config.horizon[ref.frequency]
    m = SEASON_LENGTH[ref.frequency]
    hit = _cache.lookup(cache_dir, ref.name, planned.series, m, config_fp) if "auto_sarima" in config.models else None
    return Task(
        name=ref.name,
        series=planned.series,
        future=planned.future,
        season_length=m,
        horizon=horizon,
        models=config.models,
        levels=config.levels,
        transform=config.transform,
        folds=config.backtest_folds,
        step=config.backtest_step,
        min_points=config.min_points,
        cached=hit.choice if hit else None,
        cache_kind=hit.kind if hit else None,
        cached_folds=hit.folds if hit else {},
    )


def _start_worker() -> None:
    # Parallelism is one process per CPU; a multi-threaded BLAS inside each fights over the same
    # cores and, on these models' small matrices, spins more than it computes (measured: 4x the CPU
    # time per series).
    threadpool_limits(1)
    # Ctrl-C reaches every process of the terminal's group; the parent alone decides what stops
    # (the workers would otherwise each print a traceback and break the pool).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A SIGTERM (the parent's terminate(), or one sent to the whole group: a killed `make run`)
    # ends a worker at once. The handler inherited from the parent would instead raise inside the
    # fit under way, which the pool hands back as that fit's error, and the worker would then wait
    # for more work, for ever once the parent is gone.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _fit_all(tasks: list[Task], jobs: int | None, level: str, on_outcome: Callable[[Outcome], None]) -> list[Outcome]:
    """Every task's outcome, in the order they finish; `on_outcome` is called on each as it arrives."""
    with Progress(len(tasks), "modelling", level) as progress:
        return _fit_each(tasks, jobs, progress, on_outcome)


def _fit_each(
    tasks: list[Task], jobs: int | None, progress: Progress, on_outcome: Callable[[Outcome], None]
) -> list[Outcome]:
    from modelling._fit import fit_series

    outcomes = []

    def arrived(outcome: Outcome) -> None:
        outcomes.append(outcome)
        on_outcome(outcome)
        progress.step(outcome.name, "failed" if outcome.error else "ok")

    jobs = max(1, jobs or os.cpu_count() or 1)
    if jobs == 1 or len(tasks) <= 1:
        with threadpool_limits(1):
            for task in tasks:
                arrived(fit_series(task))
        return outcomes
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), initializer=_start_worker)
    try:
        try:
            for future in as_completed([pool.submit(fit_series, task) for task in tasks]):
                arrived(future.result())
        except BrokenProcessPool:
            # A fit's own failure comes back as its outcome's error: only a killed process gets here.
            raise WorkerDied(
                f"a worker process was killed while fitting (most often for lack of memory: --jobs 1 needs "
                f"less); the fits finished before it ({len(outcomes)}) are cached for the next run"
            ) from None
    except BaseException:
        # Stopped (Ctrl-C, SIGTERM) or failed: the fits not yet arrived are of no use, and waiting for
        # those under way (and those already queued to the workers) could take longer than the 10 s
        # `docker stop` allows. The executor has no public way to end its workers before Python 3.14.
        workers = list((pool._processes or {}).values())  # None once the executor has shut down
        pool.shutdown(wait=False, cancel_futures=True)
        for worker in workers:
            worker.terminate()
        raise
    finally:
        pool.shutdown()
    return outcomes


def _collect(parts: dict[str, list[pd.DataFrame]], outcome: Outcome, series: pd.Series) -> None:
    import pandas as pd

    for name, frame in (("forecasts", outcome.forecasts), ("backtests", outcome.backtests), ("scores", outcome.scores)):
        if frame is not None and not frame.empty:
            frame = frame.copy()
            frame.insert(0, "series", outcome.name)
            parts[name].append(frame)
    parts["history"].append(pd.DataFrame({"series": outcome.name, "date": series.index, "value": series.to_numpy()}))


def _frames(parts: dict[str, list[pd.DataFrame]]) -> dict[str, pd.DataFrame]:
    """Each file's parts as one frame in its documented columns and types."""
    import pandas as pd

    frames = {}
    for name, columns in SCHEMA.items():
        present = [f for f in parts[name] if not f.empty]
        frame = pd.concat(present, ignore_index=True) if present else pd.DataFrame(columns=list(columns))
        frames[name] = frame[list(columns)].astype(columns)
    return frames


def _calibrate(frames: dict[str, pd.DataFrame], frequency: dict[str, str], config: Config) -> dict:
    """Rescale forecasts and backtests in place per (frequency, model); scores get the new coverage."""
    from modelling._backtest import coverage_by_series
    from modelling._calibrate import calibrate_groups, rescale_groups

    calibration = calibrate_groups(frames["backtests"], frequency, config.calibration_min_points)
    factors = {group: c.factors for group, c in calibration.items()}
    for name in CALIBRATED:
        frames[name] = rescale_groups(frames[name], frequency, factors)
    for (series_frequency, model), result in calibration.items():
        if result.points < config.calibration_min_points:
            log.info("%s %s: intervals as the model gave them (%d backtest points, fewer than %d)",
                     series_frequency, model, result.points, config.calibration_min_points)  # fmt: skip
        else:
            log.info("%s %s: intervals calibrated on %d backtest points: %s", series_frequency, model,
                     result.points, result.describe())  # fmt: skip
    if not frames["backtests"].empty:
        scores = frames["scores"].set_index(["series", "model"])
        scores.update(coverage_by_series(frames["backtests"]))
        frames["scores"] = scores.reset_index()[list(SCHEMA["scores"])]
    return calibration


def _calibration_record(calibration: dict) -> dict:
    record: dict[str, dict] = {}
    for (series_frequency, model), result in calibration.items():
        record.setdefault(series_frequency, {})[model] = result.to_json()
    return record


def _write(run_dir: Path, frames: dict[str, pd.DataFrame], meta: dict) -> None:
    try:
        run_dir.mkdir(parents=True)
        for name, frame in frames.items():
            with atomic_path(run_dir / f"{name}.parquet") as tmp:
                frame.to_parquet(tmp, index=False)
        atomic_write(run_dir / RUN_FILE, json.dumps(_jsonable(meta), indent=1, sort_keys=True) + "\n")
    except OSError as exc:
        raise OutputError(f"{run_dir}: cannot write predictions: {exc}") from None


def _jsonable(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _check_named(scraped: Path, only: list[str], known: set[str]) -> None:
    """ConfigError naming every --series id the manifest does not list (the closest known id beside a
    near miss), before anything is read or fitted: the user asked for every one of them, and a run of
    the others alone would pass a typo off as done."""
    unknown = sorted(set(only) - known)
    if not unknown:
        return
    names = []
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=1)
        names.append(f"{name} (did you mean {close[0]}?)" if close else name)
    raise ConfigError(f"--series: no series {', '.join(names)} in {scraped / MANIFEST}, which lists what scraping "
                      "stored (a series is a manifest key, or key:column for a multi-column file)")  # fmt: skip


def _select(
    refs: list[SeriesRef], failed: dict[str, str], only: list[str], previous: dict | None, config_fp: str
) -> tuple[list[SeriesRef], dict[str, str]]:
    """The series of a --series run: those named, to be fitted, and every other one the previous run
    modelled, to be carried over as it was. A run becomes LATEST, which forecasting publishes: one
    that held only the named series would drop all the others from the published forecasts."""

    def named(name: str, key: str) -> bool:
        return name in only or key in only

    if previous is None:
        return [r for r in refs if named(r.name, r.key)], {k: v for k, v in failed.items() if k in only}
    if previous.get("config_fingerprint") != config_fp:
        raise InputError(f"--series: the config changed since run {previous['run_id']}, so its other series cannot "
                         "be carried over; run without --series to fit every series")  # fmt: skip
    modelled, old_inputs = previous.get("fingerprints") or {}, previous.get("inputs") or {}
    keep = [
        r for r in refs
        if named(r.name, r.key) or (r.name in modelled and r.name not in previous.get("failed", {})
                                    and r.key in old_inputs)
    ]  # fmt: skip
    left_out = sorted({r.name for r in refs} - {r.name for r in keep})
    if left_out:
        log.info("--series: not in run %s, so not carried over: %s", previous["run_id"], ", ".join(left_out))
    carried_failures = {k: v for k, v in (previous.get("failed") or {}).items() if k not in only}
    return keep, {**carried_failures, **{k: v for k, v in failed.items() if k in only}}


def _previous_run(predictions: Path) -> dict | None:
    """The run.json of the run LATEST names, or None (with a warning naming the file) if that run is unusable."""
    latest = predictions / LATEST
    if not latest.exists():
        return None
    try:
        run_id = latest.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        log.warning("ignoring %s: %s", latest, exc)
        return None
    path = predictions / run_id / RUN_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or meta.get("run_id") != run_id:
            raise ValueError("run.json does not name this run")
        # Its files' ends only (no pyarrow, which a run with nothing new does not import): a run that
        # forecasting cannot read must not pass for one with nothing new. _reusable reads them whole.
        for name in FILES:
            path = predictions / run_id / f"{name}.parquet"
            _check_parquet_ends(path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        log.warning("ignoring run %s: %s: %s; every series is fitted again", run_id, path, exc)
        return None
    return meta


def _check_parquet_ends(path: Path) -> None:
    with path.open("rb") as fh:
        head = fh.read(4)
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - 4))
        tail = fh.read(4)
    if size < 12 or head != b"PAR1" or tail != b"PAR1":
        raise ValueError("not a Parquet file (no PAR1 magic bytes at its start and end)")


def _reusable(
    predictions: Path, previous: dict | None, fingerprints: dict[str, str], config_fp: str, frequency: dict[str, str]
) -> tuple[set[str], dict[str, pd.DataFrame]]:
    """Series whose values and config are unchanged since the previous complete run (copied, not refit),
    and their rows of each of its files, the intervals back on their models' own (to be pooled with
    the new fits for calibration)."""
    if not previous or previous.get("config_fingerprint") != config_fp:
        return set(), {}
    old = previous.get("fingerprints") or {}
    reuse = {
        name for name, fp in fingerprints.items() if old.get(name) == fp and name not in previous.get("failed", {})
    }
    if not reuse:
        return set(), {}
    import pandas as pd
    import pyarrow as pa

    from modelling._calibrate import read_factors, rescale_groups

    run_id = previous["run_id"]
    try:  # a reused series' intervals are put back on its models' own with these factors
        recorded = read_factors(previous.get("calibration", {}))
    except ValueError as exc:
        log.warning("run %s: run.json: %s; every series is fitted again", run_id, exc)
        return set(), {}
    frames = {}
    for name, columns in SCHEMA.items():
        path = predictions / run_id / f"{name}.parquet"
        try:
            frame = pd.read_parquet(path)
            missing = [c for c in columns if c not in frame.columns]
            if missing:
                raise ValueError(f"no column {missing[0]!r}")
        except (pa.ArrowException, OSError, ValueError) as exc:
            # Arrow's messages can run to many lines: the first says what is wrong.
            reason = (str(exc).strip() or type(exc).__name__).splitlines()[0]
            log.warning("ignoring run %s: %s: %s; every series is fitted again", run_id, path, reason)
            return set(), {}
        frame = frame[frame["series"].isin(reuse)]
        frames[name] = rescale_groups(frame, frequency, recorded, undo=True) if name in CALIBRATED else frame
    return reuse, frames
