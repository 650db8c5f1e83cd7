"""`forecasting run`: publish the newest predictions as data/output/<run>/ and move LATEST to it.

Order of writes, so a crash at any point leaves LATEST on the last complete run:
1. every output file into a hidden staging directory data/output/.<run>.partial/,
2. that directory renamed to data/output/<run>/ (a run directory exists only when complete),
3. data/input/<run>/inputs.json (which predictions run and content hashes it used),
4. data/output/LATEST, last.
A run that fails or is stopped before LATEST moves removes what it wrote (a run directory without
its inputs.json would otherwise be left for `upload` to refuse), and a write the file system refuses
is a StorageError naming the path, as is a file of data/ that cannot be read (data/ is this stage's
own: the share or its permissions are at fault, as for a write). Housekeeping (clearing a dead run's
staging directory, pruning to --keep) only warns when it fails: it never decides whether a run published.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from storage_links import Progress, atomic_path, atomic_write, data_dir, is_run_id, run_lock

from forecasting._config import Settings, check_floor
from forecasting._errors import ForecastingError, InputError, StorageError
from forecasting._inputs import Predictions, latest_run_id, load_predictions, read_or_none

if TYPE_CHECKING:
    from forecasting._select import Published

log = logging.getLogger(__name__)

LATEST = "LATEST"
INPUTS_FILE = "inputs.json"
OUTPUT_FILES = ("forecasts.parquet", "forecasts.csv", "scores.csv", "report.html")
_PARTIAL = ".partial"


@dataclass(frozen=True)
class RunResult:
    run_id: str | None  # None when nothing new was published
    predictions_run: str
    series: int = 0
    pruned: tuple[str, ...] = ()


def output_dir() -> Path:
    return data_dir("forecasting", "data") / "output"


def input_dir() -> Path:
    return data_dir("forecasting", "data") / "input"


def latest_output() -> str | None:
    """The run data/output/LATEST names, or None before the first run."""
    content = read_or_none(output_dir() / LATEST, StorageError)
    if content is None:
        return None
    return content.decode("utf-8", errors="replace").strip() or None


def run(
    run_id: str, settings: Settings, *, keep: int | None = None, dry_run: bool = False, level: str = "INFO"
) -> RunResult:
    """Publish the predictions run predictions/LATEST names, unless already published; then prune to `keep`.

    `level` is the stderr log level: below WARNING, and on a terminal, the report's charts show progress.

    Holds data/'s run lock from before LATEST is read until the end (a dry run writes nothing and takes
    none): a second run at the same time fails at once with LockHeldError naming the first, instead of
    racing it for LATEST or clearing its staging directory as one left by a dead run.
    """
    with contextlib.nullcontext() if dry_run else run_lock(data_dir("forecasting", "data"), "forecasting run"):
        return _run(run_id, settings, keep=keep, dry_run=dry_run, level=level)


def _run(run_id: str, settings: Settings, *, keep: int | None, dry_run: bool, level: str) -> RunResult:
    predictions_run = latest_run_id()
    if _already_published(predictions_run, settings):
        log.info("nothing new: predictions run %s is already published as %s", predictions_run, latest_output())
        return RunResult(None, predictions_run, pruned=prune(keep, dry_run=dry_run) if keep else ())
    # Imported only now: pandas and matplotlib are most of the start-up, and "nothing new" needs neither.
    from forecasting._select import build

    predictions = load_predictions(predictions_run)
    check_floor(settings, predictions.models, predictions_run)
    published = build(predictions, settings.select, settings.intervals)
    n_series = len(published.choices)
    combos = sum(c.is_combination for c in published.choices.values())
    log.info(
        "predictions run %s: %d series (%d combined, %d single model)%s",
        predictions_run, n_series, combos, n_series - combos,
        f", {len(published.failed)} failed in modelling" if published.failed else "",
    )  # fmt: skip
    final = output_dir() / run_id
    if _exists(final):
        raise ForecastingError(f"{final} already exists: output runs are never overwritten (set a new run id)")
    inputs = _inputs_path(run_id)
    # Before any write, and in a dry run too: each of these can fail.
    inputs_were_there = _exists(inputs.parent)
    inputs_json = _inputs_json(run_id, predictions, settings)
    if dry_run:
        log.info("dry run: would write %s/{%s}, %s and %s", final, ",".join(OUTPUT_FILES), inputs, LATEST)
        return RunResult(None, predictions_run, n_series, prune(keep, dry_run=True) if keep else ())
    _clear_stale_staging()
    staging = output_dir() / f".{run_id}{_PARTIAL}"
    moving_latest = False
    try:
        staging.mkdir(parents=True)
        _write_outputs(staging, run_id, predictions, published, settings, level)
        staging.rename(final)
        atomic_write(inputs, inputs_json)
        moving_latest = True
        atomic_write(output_dir() / LATEST, run_id + "\n")
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        # Before LATEST's write began, LATEST cannot name this run; after, it may (the rename done, its
        # fsync failed), and a run LATEST names is published, so it stays.
        if not (moving_latest and _latest_may_name(run_id)):  # not published: leave nothing of it behind
            shutil.rmtree(final, ignore_errors=True)
            if not inputs_were_there:
                shutil.rmtree(inputs.parent, ignore_errors=True)
        if isinstance(exc, OSError):
            raise StorageError(f"{final}: cannot publish the run: {exc}") from None
        raise
    log.info("published %s: %d series -> %s", run_id, n_series, final)
    pruned = prune(keep) if keep else ()
    return RunResult(run_id, predictions_run, n_series, pruned)


def _exists(path: Path) -> bool:
    """Whether `path` exists; a StorageError naming it where that cannot be told (Path.exists raises the
    PermissionError of a folder that cannot be searched, which would be a traceback)."""
    try:
        path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        raise StorageError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    return True


def _latest_may_name(run_id: str) -> bool:
    """Whether data/output/LATEST names `run_id`; where it cannot be read, True, with a warning: the
    failure being cleaned up is the one to report, and a run LATEST may name must not be removed."""
    try:
        return latest_output() == run_id
    except StorageError as exc:
        log.warning("%s; run %s is left in place, as LATEST may name it", exc, run_id)
        return True


def prune(keep: int, *, dry_run: bool = False) -> tuple[str, ...]:
    """Remove local runs beyond the newest `keep` (by run id, which sorts by time), their output and input
    folders both; never LATEST's. Input folders whose output run is already gone (left by versions that
    pruned outputs only) go too when older than every run kept. Returns the run ids removed.

    A failure here is a warning naming the path, never an error: the run is published (or there was
    nothing new) and LATEST names it, which exit 7 would deny, and the next --keep prunes what is left.
    What cannot be read (LATEST, a folder's listing) prunes nothing, as LATEST's run could be among it."""
    if keep < 1:
        raise ValueError("keep must be at least 1")
    try:
        latest = latest_output()
        outputs = _run_dirs(output_dir())
        inputs = _run_dirs(input_dir())
    except StorageError as exc:
        log.warning("%s; nothing pruned", exc)
        return ()
    doomed = [r for r in outputs[: max(len(outputs) - keep, 0)] if r != latest]
    kept = [r for r in outputs if r not in doomed]
    orphans = [r for r in inputs if r not in outputs and kept and r < kept[0]]
    pruned = []
    for run in doomed:
        # Output first, and its inputs only once it is gone: an input folder left by a failure is an orphan
        # the next prune removes, while an output run without its inputs.json would be refused by upload.
        if _remove(output_dir() / run, f"output run {run}", dry_run):
            pruned.append(run)
            if run in inputs:
                _remove(input_dir() / run, f"inputs of run {run}", dry_run)
    pruned += [r for r in orphans if _remove(input_dir() / r, f"inputs of run {r}", dry_run)]
    return tuple(sorted(pruned))


def _remove(path: Path, what: str, dry_run: bool) -> bool:
    """Remove one pruned folder; False, with a warning, where it could not be removed (or not wholly)."""
    if dry_run:
        log.info("dry run: would prune %s", what)
        return True
    try:
        shutil.rmtree(path)
    except OSError as exc:
        log.warning("%s: cannot prune %s: %s", path, what, exc)
        return False
    log.info("pruned %s", what)
    return True


def _run_dirs(root: Path) -> list[str]:
    """The run ids that name real folders in `root`, sorted; a StorageError where it cannot be listed.
    Links are never followed for removal: a linked run (or a linked `root`) may hold data that is not
    this stage's to delete."""
    try:
        if root.is_symlink():
            log.warning("%s is a symlink; its runs are not pruned", root)
            return []
        with os.scandir(root) as entries:
            return sorted(e.name for e in entries if is_run_id(e.name) and e.is_dir(follow_symlinks=False))
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        raise StorageError(f"{root}: cannot be listed ({exc.strerror or exc})") from None


def _already_published(predictions_run: str, settings: Settings) -> bool:
    """True when the run LATEST names was built from this predictions run under these settings (per its
    inputs.json): an edited forecasting.toml is published again, as the edit's author expects."""
    latest = latest_output()
    if latest is None:
        return False
    if not is_run_id(latest):  # a damaged LATEST: the run about to be published replaces it
        log.warning("%s names %r, which is not a run id; publishing again", output_dir() / LATEST, latest[:80])
        return False
    record = _inputs_path(latest)
    content = read_or_none(record, StorageError)
    if content is None:
        log.warning("%s is missing; publishing again", record)
        return False
    try:
        recorded = json.loads(content.decode("utf-8"))
        used = recorded["predictions"]["run_id"]
    except (ValueError, KeyError, TypeError) as exc:  # ValueError: JSONDecodeError, UnicodeDecodeError
        raise InputError(f"{record}: unreadable ({type(exc).__name__}: {exc})") from None
    if used != predictions_run:
        return False
    if recorded.get("settings") != settings.shaping():
        log.info("the settings in %s changed since run %s was published: publishing again", settings.source, latest)
        return False
    return True


def _write_outputs(
    directory: Path, run_id: str, predictions: Predictions, published: Published, settings: Settings, level: str
) -> None:
    from forecasting._report import render

    with atomic_path(directory / "forecasts.parquet") as tmp:
        published.forecasts.to_parquet(tmp, index=False)
    atomic_write(directory / "forecasts.csv", published.forecasts.to_csv(index=False, date_format="%Y-%m-%d"))
    atomic_write(directory / "scores.csv", published.scores.to_csv(index=False, float_format="%.6g"))
    # The charts are most of a run's time (about 0.2 s a series), so they show progress as modelling's fits do.
    with Progress(len(published.choices), "report", level) as progress:
        page = render(run_id, predictions, published, settings.report.history_points, progress)
    atomic_write(directory / "report.html", page)


def _inputs_json(run_id: str, predictions: Predictions, settings: Settings) -> str:
    """inputs.json's text, strict JSON: a NaN or infinity would be written as a bare NaN token that JSON
    readers refuse, and, NaN never equalling itself, would make every run look new to _already_published."""
    try:
        return json.dumps(_inputs_record(run_id, predictions, settings), indent=2, sort_keys=True, allow_nan=False)
    except ValueError as exc:
        raise ForecastingError(f"{_inputs_path(run_id)}: would not be valid JSON ({exc}); nothing published") from None


def _inputs_record(run_id: str, predictions: Predictions, settings: Settings) -> dict:
    return {
        "run_id": run_id,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "predictions": {
            "run_id": predictions.run_id,
            "created_at": predictions.meta["created_at"],
            "files": predictions.hashes,
        },
        # The scraped series (manifest keys and content hashes) the predictions were built from.
        "scraped": predictions.meta["inputs"],
        "settings": settings.shaping(),
    }


def _inputs_path(run_id: str) -> Path:
    return input_dir() / run_id / INPUTS_FILE


def _clear_stale_staging() -> None:
    """Remove the staging dirs of runs that died. Failing to is a warning, not an error: they are never
    published nor uploaded, and the next run tries again."""
    root = output_dir()
    try:
        with os.scandir(root) as entries:  # not Path.glob, which takes a folder it may not list for an empty one
            stale = [e.name for e in entries if e.name.startswith(".") and e.name.endswith(_PARTIAL)]
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        log.warning("%s: cannot be listed (%s); stale staging dirs are not cleared", root, exc.strerror or exc)
        return
    for name in stale:
        try:
            shutil.rmtree(root / name)
        except OSError as exc:  # one line for the folder, not one per file left in it
            reason = exc.strerror or exc  # rmtree's error names the file relative to its folder only
            log.warning("%s: cannot remove the staging dir of an interrupted run (%s)", root / name, reason)
        else:
            log.warning("removed %s, left by an interrupted run", name)
