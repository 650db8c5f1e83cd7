"""The share's migration lock: one file created with O_CREAT|O_EXCL.

Byte-range locks are unreliable on SMB, so the lock is the existence of
`<share>/.storage-links.lock`, holding its owner (host, pid, the pid's start time,
when). The holder touches it at least every HEARTBEAT seconds while it works.

A lock is stale, and is broken automatically with a warning naming its owner and
age, when its owner ran on this host and that process is gone, when it has not
been touched for STALE_AFTER seconds, or when it records no owner and is older
than WRITE_GRACE (its writer died between creating and filling it). Any other
lock makes init fail with LockHeldError naming owner and age; `--break-lock`
breaks it anyway, for a human who knows its owner is dead.

A stage holds the same kind of lock in the data dir it writes (`run_lock`), so that two runs
of it (an overlapping cron run, a second container on the share) cannot interleave their
writes: the second fails at once, naming the first.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from storage_links._busy import is_busy, retry_busy
from storage_links._declared import LOCK_NAME
from storage_links._errors import LockHeldError, ShareError
from storage_links._process import pid_exists
from storage_links._runtime import check_no_dangling_link

HEARTBEAT = 30.0
STALE_AFTER = 600.0
WRITE_GRACE = 2.0
INIT_HINT = "wait for it to finish, or if that process is gone re-run with --break-lock"
RUN_HINT = "wait for it to finish (a lock whose process is gone is broken by the next run)"

log = logging.getLogger("storage_links")


def _process_start(pid: int) -> str | None:
    """The kernel's start time of `pid` (tells a reused pid from the original), None if gone or unknown.

    A zombie is gone: killed, it holds nothing, though it stays listed until its parent (or, its
    parent killed too, PID 1, which in some containers never does) reaps it.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return None
    except OSError:
        return "unknown"
    fields = data[data.rfind(b")") + 2 :].split()
    if fields[:1] in ([b"Z"], [b"X"]):
        return None
    return fields[19].decode() if len(fields) > 19 else "unknown"


def _pid_alive(pid: int, start: str) -> bool:
    if not os.path.isdir("/proc/self"):
        return pid_exists(pid)
    now = _process_start(pid)
    return now is not None and (start in ("", "unknown") or now in ("unknown", start))


def format_age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


@contextlib.contextmanager
def _stops_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block is done, so that a stop never leaves a lock half
    written or half removed (storage-links runs in one thread, which the mask covers)."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class ShareLock:
    """Held between acquire() and release(); `warnings` says which stale locks were broken."""

    def __init__(self, share: str, command: str, *, break_lock: bool = False, hint: str = INIT_HINT) -> None:
        self.path = os.path.join(share, LOCK_NAME)
        self.command = command
        self.break_lock = break_lock
        self.hint = hint  # what LockHeldError tells its reader to do
        self.warnings: list[str] = []
        self._content = b""
        self._touched = 0.0
        self._held = False

    def acquire(self) -> None:
        with _stops_deferred():
            self._acquire()
            self._held = True  # before a deferred stop is let through: release() then removes the lock

    def _acquire(self) -> None:
        host, pid = os.uname().nodename, os.getpid()
        self._content = (
            f"host={host}\npid={pid}\nstart={_process_start(pid) or 'unknown'}\n"
            f"since={time.time():.3f}\ncommand={self.command}\n"
        ).encode()
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                self._judge_existing()
                continue
            except OSError as exc:
                raise ShareError(f"{os.path.dirname(self.path)}: cannot create {LOCK_NAME}: {exc.strerror}") from None
            try:
                os.write(fd, self._content)
                os.fsync(fd)
            except OSError:
                pass  # an owner-less lock is judged by its age; the content is a courtesy to humans
            finally:
                os.close(fd)
            self._touched = time.monotonic()
            return
        raise LockHeldError(f"{self.path}: could not take the lock after breaking stale ones; another init is racing")

    def heartbeat(self) -> None:
        """Touch the lock if HEARTBEAT seconds passed, so that others see its holder is alive."""
        now = time.monotonic()
        if now - self._touched >= HEARTBEAT:
            self._touched = now
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def release(self) -> None:
        """Remove the lock if acquire() took it (a no-op otherwise, so it may sit in a `finally`)."""
        if not self._held:
            return
        with _stops_deferred():
            self._release()
            self._held = False

    def _release(self) -> None:
        try:
            with open(self.path, "rb") as fh:
                ours = fh.read() == self._content
        except OSError:
            return
        if ours:
            try:
                retry_busy(os.unlink, self.path)  # SMB may report the just-closed file busy for a moment
            except FileNotFoundError:
                pass
            except OSError as exc:
                if is_busy(exc):
                    self.warnings.append(f"{self.path}: could not remove the lock; the next init breaks it")
        else:
            self.warnings.append(f"{self.path}: the lock was taken over by another process while this one worked")

    def clear_if_stale(self) -> None:
        """Break a stale lock left by a run that died after its work was done (a warm init's tidy-up)."""
        with contextlib.suppress(LockHeldError):  # a live holder is at work; nothing of ours to clear
            self._judge_existing()

    def _judge_existing(self) -> None:
        try:
            with open(self.path, "rb") as fh:
                content = fh.read()
            age = time.time() - os.stat(self.path).st_mtime
        except FileNotFoundError:
            return  # released meanwhile: try again
        owner = dict(line.split("=", 1) for line in content.decode(errors="replace").splitlines() if "=" in line)
        if owner:
            who = f"pid {owner.get('pid', '?')} on {owner.get('host', '?')} ({owner.get('command', '?')})"
        elif content:  # not written by storage-links (or overwritten): no owner to name
            who = f"an unknown owner (unreadable lock file, {len(content)} bytes)"
        else:
            who = "an unknown owner (empty lock file)"
        stale = self._stale_reason(owner, age)
        if stale is None and not self.break_lock:
            raise LockHeldError(f"{self.path}: held by {who}, last touched {format_age(age)} ago; {self.hint}")
        reason = stale or "--break-lock was given"
        self._break(content)
        self.warnings.append(
            f"broke stale lock {self.path} held by {who}, last touched {format_age(age)} ago: {reason}"
        )

    def _stale_reason(self, owner: dict[str, str], age: float) -> str | None:
        if not owner.get("pid"):
            return "it records no owner" if age >= WRITE_GRACE else None
        if age >= STALE_AFTER:
            return f"not touched for {format_age(age)} (holders touch it every {int(HEARTBEAT)}s)"
        if owner.get("host") == os.uname().nodename:
            try:
                pid = int(owner["pid"])
            except ValueError:
                return "its pid is not a number"
            if pid == os.getpid() or not _pid_alive(pid, owner.get("start", "")):
                return "its process is gone"
        return None

    def _break(self, seen: bytes) -> None:
        # Rename first, so that two processes breaking the same stale lock cannot both delete a fresh one.
        aside = f"{self.path}.broken-{os.getpid()}"
        # Over SMB each step can meet the file busy for a moment after the previous one closed it.
        try:
            retry_busy(os.rename, self.path, aside)
        except FileNotFoundError:
            return
        with open(aside, "rb") as fh:
            taken = fh.read()
        if taken != seen:
            # We moved a lock someone took a moment ago: give it back.
            if not os.path.lexists(self.path):
                retry_busy(os.rename, aside, self.path)
            raise LockHeldError(f"{self.path}: another process took the lock while a stale one was being broken")
        retry_busy(os.unlink, aside)


@contextlib.contextmanager
def run_lock(directory: Path, command: str) -> Iterator[None]:
    """Hold `directory`'s lock (made if missing) while a stage's run writes there; LockHeldError
    names the run that holds it. A thread touches it every HEARTBEAT seconds, so that a run on
    another host sees its holder is alive however long it works."""
    directory = Path(directory)
    try:
        check_no_dangling_link(directory)
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ShareError(f"{directory}: cannot create the directory: {exc.strerror}") from None
    lock = ShareLock(str(directory), command, hint=RUN_HINT)
    lock.acquire()
    stopped = threading.Event()

    def beat() -> None:
        while not stopped.wait(HEARTBEAT):
            lock.heartbeat()

    beating = threading.Thread(target=beat, name="storage-links-heartbeat", daemon=True)
    beating.start()
    try:
        yield
    finally:
        stopped.set()
        beating.join()
        lock.release()
        for warning in lock.warnings:  # a stale lock broken, or this one taken over meanwhile
            log.warning("%s", warning)
