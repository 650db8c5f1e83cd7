"""What every stage shares at run time: the run id, atomic writes, logging, progress and stopping.

It lives here because every stage may import storage_links and nothing else of
the project; keeping it in one place keeps the stages' behaviour the same.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from storage_links._busy import retry_busy
from storage_links._contract import logs_dir
from storage_links._process import pid_exists

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# Temporaries are named .<target>.tmp-<host>-<pid>-<random>.tmp, so that a later writer on the same
# host can tell one left by a killed process (its pid is gone) from one still being written.
_HOST = socket.gethostname().replace("-", "_")
_swept: set[str] = set()


def _file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


# mkstemp creates 0600 files; a published file gets the mode a plain open() would give it, so
# other readers of the share (a report server, another container's user) can read it.
_FILE_MODE = _file_mode()


def is_run_id(name: str) -> bool:
    """Whether `name` may name a run: one path component of letters, digits, '-', '_', '.', never hidden."""
    return bool(name) and not name.startswith(".") and all(c.isalnum() or c in "-_." for c in name)


def run_id() -> str:
    """PIPELINE_RUN_ID if set (make run sets one for all stages), else a new sortable id."""
    env = os.environ.get("PIPELINE_RUN_ID")
    if env:
        if not is_run_id(env):
            raise ValueError(
                f"PIPELINE_RUN_ID={env!r}: a run id is letters, digits, '-', '_' and '.', and does not start with '.'"
            )
        return env
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(2)}"


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success fsync it and move it into place.

    On any exception the temporary file is removed and `path` is left as it was. Temporaries
    that a killed writer on this host left in the directory are removed on the first write there.
    """
    path = Path(path)
    fd, tmp = _temporary_beside(path)
    os.close(fd)
    with _replacing(tmp, path):
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())


def atomic_write(path: Path, data: bytes | str, *, sync_directory: bool = True) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never half.

    The file is synced before it replaces the old one, and its directory after, which makes the
    replacement durable. A writer of many files into one directory may pass sync_directory=False
    and call fsync_directory once, before it records them (in a manifest, say): one directory
    sync instead of one a file, each a round trip on a network share.
    """
    path = Path(path)
    view = memoryview(data.encode() if isinstance(data, str) else data)
    fd, tmp = _temporary_beside(path)
    with _replacing(tmp, path, sync_directory=sync_directory):
        try:
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _replacing(tmp: Path, path: Path, *, sync_directory: bool = True) -> Iterator[None]:
    """Move `tmp` onto `path` once the block has written and synced it; remove it if anything fails."""
    try:
        yield
        retry_busy(os.replace, tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync_directory:
        fsync_directory(path.parent)


def _temporary_beside(path: Path) -> tuple[int, Path]:
    """A new temporary file in `path`'s directory (made if missing), open, with the published mode.

    The directory is only examined when the file cannot be made: most writes go to one that exists.
    """
    directory = path.parent
    prefix = f".{path.name}.tmp-{_HOST}-{os.getpid()}-"
    try:
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=directory)
    except FileNotFoundError:
        check_no_dangling_link(directory)
        directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, _FILE_MODE)
        _sweep_stale_temporaries(directory)
    except BaseException:
        os.close(fd)
        os.unlink(name)
        raise
    return fd, Path(name)


def check_no_dangling_link(directory: Path) -> None:
    """Say so when a data dir's link points at a share that is gone, instead of "File exists" from mkdir."""
    for ancestor in (directory, *directory.parents):
        if ancestor.is_symlink() and not ancestor.exists():
            target = os.readlink(ancestor)
            message = f"the link {ancestor.name} -> {target} leads nowhere (is the share mounted?)"
            raise FileNotFoundError(errno.ENOENT, message, str(directory))


def _sweep_stale_temporaries(directory: Path) -> None:
    if str(directory) in _swept:
        return
    _swept.add(str(directory))
    mark = f".tmp-{_HOST}-"
    with contextlib.suppress(OSError), os.scandir(directory) as entries:
        for entry in entries:
            name = entry.name
            at = name.rfind(mark)
            if not name.startswith(".") or not name.endswith(".tmp") or at < 0:
                continue
            pid = name[at + len(mark) :].split("-", 1)[0]
            if pid.isdigit() and not pid_exists(int(pid)):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def fsync_directory(directory: Path) -> None:
    """Make the renames into `directory` durable."""
    # Some file systems (SMB through FUSE) refuse it, which is harmless.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class _RunLogHandler(logging.FileHandler):
    """Appends to the run's log without O_APPEND, which smbnetfs (the tests' SMB mount) refuses
    with EIO. The stages of a run write one after another, so seeking to the end once is the same."""

    def _open(self):
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT, 0o666)
        stream = open(fd, "w", encoding=self.encoding, errors=self.errors)  # noqa: SIM115 (the handler closes it)
        stream.seek(0, os.SEEK_END)
        return stream


def configure_logging(stage: str, level: str, run: str, *, root: Path | None = None) -> Path:
    """Log to stderr and to logs/<run>.log (appended to, so the stages of one run share a file)."""
    level = level.upper()
    if level not in LOG_LEVELS:
        raise ValueError(f"log level {level!r}: choose one of {', '.join(LOG_LEVELS)}")
    log_file = logs_dir(root) / f"{run}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter(f"%(asctime)s {stage} %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S")
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(logging.Formatter(f"{stage}: %(message)s"))
    stderr.setLevel(level)
    # A file name that is not UTF-8 (surrogate escapes) is written escaped, as stderr does, not a traceback.
    to_file = _RunLogHandler(log_file, encoding="utf-8", errors="backslashreplace")
    to_file.setFormatter(fmt)
    to_file.setLevel(min(logging.INFO, logging.getLevelName(level)))
    top = logging.getLogger()
    for handler in list(top.handlers):
        top.removeHandler(handler)
        handler.close()
    top.addHandler(stderr)
    top.addHandler(to_file)
    top.setLevel(min(logging.INFO, logging.getLevelName(level)))
    return log_file


class Progress:
    """Per-item progress on stderr, shown only on a terminal and below WARNING."""

    def __init__(self, total: int, label: str, level: str = "INFO", stream=None) -> None:
        self.total = total
        self.label = label
        self.done = 0
        self.stream = stream or sys.stderr
        isatty = getattr(self.stream, "isatty", lambda: False)()
        self.enabled = isatty and logging.getLevelName(level.upper()) < logging.WARNING

    def step(self, item: str, outcome: str) -> None:
        self.done += 1
        if self.enabled:
            self.stream.write(f"\r\x1b[K[{self.done}/{self.total}] {self.label} {item}: {outcome}")
            if self.done == self.total:
                self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        # Stopped or failed halfway: end the line, so that the message that follows starts its own.
        if self.enabled and 0 < self.done < self.total:
            self.stream.write("\n")
            self.stream.flush()


class Interrupted(KeyboardInterrupt):
    """The run was asked to stop: Ctrl-C (SIGINT), or SIGTERM from `docker stop` or a stopped Azure container."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 after Ctrl-C, 143 after SIGTERM


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, the first SIGINT or SIGTERM raises `Interrupted` in the main thread.

    Python's default for SIGTERM ends the process at once, so a stage stopped with the container
    would skip its clean-up (writes in flight, the manifest of what did land); raised as an
    exception, it runs the same clean-up as Ctrl-C. A second signal ends the process at once, as
    a user pressing Ctrl-C again expects, except a SIGTERM within RELAY_WINDOW_S of the first:
    that is the same stop relayed (make passes a SIGTERM on to its children, which a stop of the
    whole process group, systemd's or a killed `make run`'s, has already reached). A signal ignored
    at start (a background job of a non-interactive shell) stays ignored, and the previous handlers
    come back after the block. Outside the main thread, where handlers cannot be set, the block
    runs as it is.
    """
    global _stopping_since
    signals = (signal.SIGINT, signal.SIGTERM)
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _stopping_since = None
    previous = {signum: signal.getsignal(signum) for signum in signals}
    for signum, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(signum, _interrupt)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


RELAY_WINDOW_S = 1.0
_stopping_since: float | None = None  # when the block's first signal came


def _interrupt(signum: int, frame: object) -> None:
    global _stopping_since
    if _stopping_since is not None:  # only SIGTERM gets here twice: SIGINT's default is back by now
        if time.monotonic() - _stopping_since < RELAY_WINDOW_S:
            return
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    _stopping_since = time.monotonic()
    if signal.getsignal(signal.SIGINT) is _interrupt:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    raise Interrupted(signum)
