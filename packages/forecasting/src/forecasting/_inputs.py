"""Reading what modelling published: predictions/LATEST and the complete run it names.

A run directory without run.json is unfinished and never read. Every frame is checked against
the documented columns here, so the rest of the stage can trust them; errors name the file.
Every file is read through `read_or_none`, so that an OS error (a file or directory this user may
not read, an I/O error on the share) or a file that is not a regular one (a named pipe, whose read
would wait for ever) is one InputError naming the file too, not a traceback or a hang.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from storage_links import data_dir, is_run_id

from forecasting._errors import ForecastingError, InputError

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
LATEST = "LATEST"
BOUND_COLUMNS = ["mean", "lo80", "hi80", "lo95", "hi95"]
COLUMNS = {
    "forecasts.parquet": ["series", "model", "step", "date", *BOUND_COLUMNS],
    "backtests.parquet": ["series", "model", "fold", "step", "date", "actual", *BOUND_COLUMNS],
    "scores.parquet": ["series", "model", "mase", "smape", "coverage80", "coverage95", "folds"],
    "history.parquet": ["series", "date", "value"],
}
RUN_KEYS = ("run_id", "created_at", "frequency", "season_length", "horizon", "inputs", "failed")
PER_SERIES = ("frequency", "season_length", "horizon")  # run.json keys with an entry for every series forecast
PER_SERIES_COUNTS = ("season_length", "horizon")
LABEL_KEYS = ("title", "units", "source", "id")


class Label(NamedTuple):
    """run.json's labels entry for one series: its title, units, and scraping's source name and id."""

    title: str
    units: str
    source: str
    id: str


@dataclass(frozen=True)
class Predictions:
    """One complete predictions run, checked."""

    run_id: str
    directory: Path
    meta: dict
    forecasts: pd.DataFrame
    backtests: pd.DataFrame
    scores: pd.DataFrame
    history: pd.DataFrame
    hashes: dict[str, str]  # file name -> sha256 of its bytes

    @property
    def models(self) -> set[str]:
        """Every model name the run holds, whether it forecast or was only scored."""
        return set(self.forecasts["model"]) | set(self.scores["model"])

    def season_length(self, series: str) -> int:
        return self.meta["season_length"][series]  # every forecast series has one (see _check_consistent)

    def label(self, series: str) -> Label:
        """What the source says of the series; runs made before modelling recorded it get the series name."""
        label = self.meta.get("labels", {}).get(series, {})
        return Label(label.get("title") or series, *(label.get(k, "") for k in LABEL_KEYS[1:]))


def predictions_dir() -> Path:
    return data_dir("modelling", "predictions")


def latest_run_id() -> str:
    """The run named by predictions/LATEST, which must be complete (hold run.json)."""
    root = predictions_dir()
    latest = root / LATEST
    content = read_or_none(latest)
    if content is None:
        hint = _unfinished_hint(root)
        raise InputError(f"no predictions yet: {latest} not found{hint}; run modelling first")
    run = content.decode("utf-8", errors="replace").strip()
    if not is_run_id(run):  # also what could not be opened as a path: a NUL, undecodable bytes
        raise InputError(f"{latest}: does not name a run (content {run[:40]!r})")
    if read_or_none(root / run / RUN_FILE) is None:
        raise InputError(f"{latest} names {run}, but {root / run / RUN_FILE} is missing: that run did not finish")
    return run


def load_predictions(run: str | None = None) -> Predictions:
    """Read and check a complete predictions run (default: the one LATEST names)."""
    run = run or latest_run_id()
    directory = predictions_dir() / run
    run_file = directory / RUN_FILE
    content = read_or_none(run_file)
    if content is None:
        raise InputError(f"{run_file} is missing: predictions run {run} did not finish")
    meta = _read_meta(run_file, content)
    # Hashed from the bytes parsed, so that inputs.json records exactly what was published from.
    hashes = {RUN_FILE: hashlib.sha256(content).hexdigest()}
    frames = {}
    for name, columns in COLUMNS.items():
        path = directory / name
        content = read_or_none(path)
        if content is None:
            raise InputError(f"{path}: missing from a run that has run.json")
        frames[name] = _read_frame(path, content, columns)
        hashes[name] = hashlib.sha256(content).hexdigest()
    predictions = Predictions(
        run_id=run,
        directory=directory,
        meta=meta,
        forecasts=frames["forecasts.parquet"],
        backtests=frames["backtests.parquet"],
        scores=frames["scores.parquet"],
        history=frames["history.parquet"],
        hashes=hashes,
    )
    _check_consistent(predictions)
    return predictions


def read_or_none(path: Path, error: type[ForecastingError] = InputError) -> bytes | None:
    """The file's bytes, or None when there is none (a directory in its place counts as none, as the
    run that should have written it did not); any other OS error, or a file that is not a regular one,
    is `error` naming the file: an InputError for modelling's predictions, a StorageError for the
    stage's own data/."""
    try:
        # O_NONBLOCK: opening a named pipe would otherwise wait for a writer; regular files ignore it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:  # EACCES, or EIO from the share, which names no file of its own
        raise error(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            return None
        if not stat.S_ISREG(mode):  # a pipe never ends without its writer, and a device is no data file
            raise error(f"{path}: is {_KINDS.get(stat.S_IFMT(mode), 'a special file')}, not a regular file")
        with open(fd, "rb", closefd=False) as file:
            return file.read()
    except OSError as exc:
        raise error(f"{path}: cannot be read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)


_KINDS = {
    stat.S_IFIFO: "a named pipe",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


def _unfinished_hint(root: Path) -> str:
    """' (2 run dir(s) without LATEST: ...)', or nothing: the hint is left out where root cannot be listed."""
    with contextlib.suppress(OSError):
        unfinished = sorted(p.name for p in root.iterdir() if p.is_dir())
        if unfinished:
            return f" ({len(unfinished)} run dir(s) without LATEST: {', '.join(unfinished[-3:])})"
    return ""


def _read_meta(path: Path, content: bytes) -> dict:
    try:
        meta = json.loads(content.decode("utf-8"), parse_constant=_not_json)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, or _not_json's
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise InputError(f"{path}: must hold a JSON object")
    missing = [k for k in RUN_KEYS if k not in meta]
    if missing:
        raise InputError(f"{path}: missing key(s) {', '.join(missing)}")
    for key in ("frequency", "season_length", "horizon", "inputs", "failed"):
        if not isinstance(meta[key], dict):
            raise InputError(f"{path}: {key} must be an object keyed by series")
    # Checked here, as run.json can be edited by hand: a bad value would otherwise surface as a
    # traceback mid-build, or as a wrong MASE scale or a blank cell in the report.
    for series, value in meta["frequency"].items():
        if not isinstance(value, str) or not value:
            raise InputError(f"{path}: frequency[{json.dumps(series)}] must be a frequency code, got {value!r}")
    for key in PER_SERIES_COUNTS:
        for series, value in meta[key].items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{path}: {key}[{json.dumps(series)}] must be a whole number >= 1, got {value!r}")
    labels = meta.get("labels", {})
    if not isinstance(labels, dict) or not all(
        isinstance(label, dict) and all(isinstance(label.get(k, ""), str) for k in LABEL_KEYS)
        for label in labels.values()
    ):
        raise InputError(f"{path}: labels must be an object keyed by series of {{{', '.join(LABEL_KEYS)}}} strings")
    return meta


def _not_json(token: str) -> None:
    """Python's json reads NaN and Infinity, which JSON has not: they would reach inputs.json, which is strict."""
    raise ValueError(f"{token} is not a JSON value")


def _read_frame(path: Path, content: bytes, columns: list[str]) -> pd.DataFrame:
    import pandas as pd  # here, not at the top: a run with nothing new never reads a frame

    try:
        frame = pd.read_parquet(io.BytesIO(content))
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise InputError(f"{path}: cannot be read as Parquet ({type(exc).__name__}: {exc})") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}")
    frame = frame.loc[:, columns].copy()
    try:
        for col in columns:
            if col in ("series", "model"):
                frame[col] = frame[col].astype(str)
            elif col == "date":
                frame[col] = pd.to_datetime(frame[col])
            elif col in ("step", "fold", "folds"):
                frame[col] = frame[col].astype("int64")
            else:
                frame[col] = frame[col].astype("float64")
    except (ValueError, TypeError) as exc:
        raise InputError(f"{path}: column {col!r} has values of the wrong type ({exc})") from None
    return frame


def _check_consistent(p: Predictions) -> None:
    where = p.directory
    forecast_series = set(p.forecasts["series"])
    failed = set(p.meta["failed"])
    orphans = sorted(set(p.scores["series"]) - forecast_series - failed)
    if orphans:
        raise InputError(
            f"{where}: series {', '.join(orphans)} have scores but no forecasts "
            "(and are not listed as failed in run.json)"
        )
    for key in PER_SERIES:
        missing = sorted(forecast_series - set(p.meta[key]))
        if missing:
            raise InputError(f"{where / RUN_FILE}: {key} has no entry for series {', '.join(missing)}")
    no_history = sorted(forecast_series - set(p.history["series"]))
    if no_history:
        raise InputError(f"{where / 'history.parquet'}: no history for series {', '.join(no_history)}")
    bad = p.forecasts[
        ~((p.forecasts.lo95 <= p.forecasts.lo80) & (p.forecasts.lo80 <= p.forecasts["mean"]))
        | ~((p.forecasts["mean"] <= p.forecasts.hi80) & (p.forecasts.hi80 <= p.forecasts.hi95))
    ]
    if not bad.empty:
        row = bad.iloc[0]
        raise InputError(
            f"{where / 'forecasts.parquet'}: {len(bad)} row(s) with bounds out of order or missing, "
            f"first: series {row.series}, model {row.model}, step {row.step}"
        )
