"""The careful file operations everything else is built from.

Verified copies (staging name, fsync, read back and compared with the source byte
for byte, rename into place), renames retried while SMB reports a busy file,
directory fsyncs that a network file system may refuse, and the atomic swap of a
directory for a symlink. Only the migration paths import this module.

The read-back compares bytes rather than digests: a digest of each side cost more
CPU than the copy itself (sha256 twice over every byte), and the source, local and
in the page cache, is cheap to read again. It also sees a source that changed
after it was copied, which a digest taken while copying would not.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import stat
from collections.abc import Callable

from storage_links._busy import retry_busy
from storage_links._errors import StorageLinksError

PARTIAL_SUFFIX = ".storage-links-partial"  # reserved: a copy that is not verified yet
_CHUNK = 1 << 20
_UNSUPPORTED = {errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EBADF, errno.EACCES, errno.EPERM}


class CopyError(StorageLinksError):
    """A copy did not read back as written; the source is untouched."""


def fsync_dir(path: str) -> None:
    # Makes renames durable on a local disk; SMB through FUSE may refuse, which is harmless there.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def partial_name(final: str) -> str:
    """The staging name beside `final` (one per name, so a retried copy reuses and overwrites it).

    Named by a digest of the name, not the name itself: `.<name>.storage-links-partial` passes
    NAME_MAX (255 bytes) for any name longer than 232, which a user's file may legally be."""
    head, tail = os.path.split(final)
    digest = hashlib.sha256(os.fsencode(tail)).hexdigest()[:16]
    return os.path.join(head, f".{digest}{PARTIAL_SUFFIX}")


def same_content(a: str, b: str, tick: Callable[[], None] | None = None) -> bool:
    """Whether the regular files `a` and `b` hold the same bytes (never following a symlink)."""
    if os.lstat(a).st_size != os.lstat(b).st_size:
        return False
    with _reader(a) as fa, _reader(b) as fb:
        while chunk := fa.read(_CHUNK):
            if chunk != fb.read(_CHUNK):
                return False
            if tick:
                tick()
        return not fb.read(1)


def _reader(path: str) -> io.BufferedReader:
    # read(n) on a buffered reader returns n bytes until the end, however the file system splits them.
    return open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb")  # the callers close it


class Staged:
    """A copy written to its staging name, not yet durable, verified or renamed into place."""

    __slots__ = ("final", "size", "src", "src_stat", "staging")

    def __init__(self, src: str, final: str, staging: str, size: int, src_stat: os.stat_result):
        self.src, self.final, self.staging = src, final, staging
        self.size, self.src_stat = size, src_stat


def copy_verified(src: str, final: str, staging: str, tick: Callable[[], None] | None = None) -> int:
    """Copy the regular file `src` to `final` via `staging`; return the bytes copied.

    The staging file is written, fsynced, read back and compared byte for byte
    with `src`, and only then renamed to `final`, which must not
    exist. `src` is left alone; removing it is the caller's next step.
    """
    item = stage(src, final, staging, tick)
    make_durable([item])
    commit(item, tick)
    fsync_dir(os.path.dirname(final))
    return item.size


def stage(src: str, final: str, staging: str, tick: Callable[[], None] | None = None) -> Staged:
    """Write `src` to `staging` (a source that changes while it is copied is copied again)."""
    for _ in range(3):
        before = os.lstat(src)
        size = _copy_bytes(src, staging, tick)
        after = os.lstat(src)
        if before.st_size == after.st_size == size and before.st_mtime_ns == after.st_mtime_ns:
            return Staged(src, final, staging, size, after)
    raise CopyError(f"{src}: kept changing while it was copied; nothing moved, re-run when it is quiet")


def make_durable(items: list[Staged]) -> None:
    """Flush staged copies to stable storage: one syncfs of their file system for a batch, else fsync each."""
    if len(items) > 1 and _syncfs(os.path.dirname(items[0].final)):
        return
    for item in items:
        fd = os.open(item.staging, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            _fsync_file(fd)
        finally:
            os.close(fd)


def commit(item: Staged, tick: Callable[[], None] | None = None) -> None:
    """Read the staged copy back, compare it with the source, then rename it into place."""
    if not same_content(item.src, item.staging, tick):
        retry_busy(os.unlink, item.staging)
        raise CopyError(f"{item.staging}: read back differs from {item.src}; the source is untouched")
    copy_metadata(item.src_stat, item.staging)
    if os.path.lexists(item.final):
        raise CopyError(f"{item.final}: appeared while {item.src} was being copied; nothing overwritten, re-run")
    retry_busy(os.rename, item.staging, item.final)


def _syncfs(directory: str) -> bool:
    # One flush of the whole file system costs about what one fsync does; Python's os module lacks it.
    try:
        import ctypes

        syncfs = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError, ImportError):
        return False
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return syncfs(fd) == 0
    finally:
        os.close(fd)


def _copy_bytes(src: str, staging: str, tick: Callable[[], None] | None) -> int:
    size = 0
    fin = os.open(src, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        fout = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            buf = bytearray(_CHUNK)
            view = memoryview(buf)
            while n := os.readv(fin, [buf]):
                chunk = view[:n]
                written = 0
                while written < n:
                    written += os.write(fout, chunk[written:])
                size += n
                if tick:
                    tick()
        finally:
            os.close(fout)
    finally:
        os.close(fin)
    return size


def _fsync_file(fd: int) -> None:
    try:
        os.fsync(fd)
    except OSError as exc:
        # Some FUSE file systems do not implement fsync; the read-back check still guards the content.
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS):
            raise


def copy_metadata(st: os.stat_result, path: str) -> None:
    """Give `path` (a file, or a directory once its last entry is in) the permission bits and times in `st`.

    Like cp -a for what a share can hold (SMB may refuse either, which is not worth failing for)."""
    with contextlib.suppress(OSError):
        os.chmod(path, stat.S_IMODE(st.st_mode))
    with contextlib.suppress(OSError):
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def exchange(a: str, b: str) -> bool:
    """Atomically swap the names `a` and `b` (renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        import ctypes  # only here: the swap is the one call the os module lacks

        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError, ImportError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in _UNSUPPORTED:
        return False
    raise OSError(err, os.strerror(err), a, None, b)
