"""Act on an unlink plan: turn a link back into a plain directory holding a copy of the share's data.

The share's data is copied (verified, file by file) into `.<name>.storage-links-unlink`
beside the link, its directories taking the share's modes and times as its files do,
then that directory and the symlink swap names atomically (where
the kernel cannot swap, the symlink is removed just before the rename). The share
keeps its copy: other containers may still use it. A run killed midway leaves the
link in place; the next unlink starts its copy afresh, and an init migrates the
copy back (identical files are simply dropped).
"""

from __future__ import annotations

import os
import shutil
import stat

from storage_links._busy import retry_busy
from storage_links._errors import StorageLinksError
from storage_links._fileops import (
    Staged,
    commit,
    copy_metadata,
    exchange,
    fsync_dir,
    make_durable,
    partial_name,
    stage,
)
from storage_links._lock import ShareLock
from storage_links._plan import UNLINK_COPY, LinkPlan, reserved


def unlink_link(lp: LinkPlan, lock: ShareLock) -> int:
    """Carry out one link's unlink plan; return the number of files copied back."""
    copy = reserved(lp.local, UNLINK_COPY)
    for path in lp.leftovers:
        if os.path.islink(path):
            retry_busy(os.unlink, path)  # the old link, swapped out; never what it points to
        elif os.path.isdir(path):
            _remove_copy(path)  # an interrupted copy of ours; the share still holds the data
    if lp.state == "directory":
        return 0  # already unlinked; only the leftovers needed removing
    os.mkdir(copy)
    for sub in lp.link[4]:  # first: the copy then gives each its mode and times, as it does the rest
        os.makedirs(os.path.join(copy, sub), exist_ok=True)
    copied = 0
    for source in lp.sources:
        copied += _copy_tree(source, copy, lock)
    if lp.state == "missing":
        retry_busy(os.rename, copy, lp.local)
    elif exchange(copy, lp.local):
        retry_busy(os.unlink, copy)  # now the old symlink
    else:
        retry_busy(os.unlink, lp.local)
        retry_busy(os.rename, copy, lp.local)
    fsync_dir(os.path.dirname(lp.local))
    return copied


def _remove_copy(path: str) -> None:
    """Remove an interrupted copy, whose directories may have the share's modes (555, say)."""
    _give_owner_access(path)
    shutil.rmtree(path)


def _give_owner_access(directory: str) -> None:
    # Removing an entry takes write and search permission on its directory, and listing one takes read,
    # which the copied modes may lack. Only the copy's own directories: lstat'd, never a symlink followed.
    mode = os.lstat(directory).st_mode
    if not stat.S_ISDIR(mode):
        return
    if mode & stat.S_IRWXU != stat.S_IRWXU:
        os.chmod(directory, stat.S_IMODE(mode) | stat.S_IRWXU)
    for entry in os.scandir(directory):
        if entry.is_dir(follow_symlinks=False):
            _give_owner_access(entry.path)


def _copy_tree(src_dir: str, dst_dir: str, lock: ShareLock) -> int:
    """Copy one directory's files as a batch (one flush for all), then recurse into its subdirectories."""
    src_st = os.lstat(src_dir)
    entries = sorted(os.scandir(src_dir), key=lambda e: e.name)
    batch: list[Staged] = []
    for entry in entries:
        lock.heartbeat()
        mode = entry.stat(follow_symlinks=False).st_mode
        if stat.S_ISREG(mode):
            dst = os.path.join(dst_dir, entry.name)
            batch.append(stage(entry.path, dst, partial_name(dst), lock.heartbeat))
        elif not stat.S_ISDIR(mode):
            raise StorageLinksError(f"{entry.path}: appeared on the share after planning and is not a plain file")
    if batch:
        make_durable(batch)
        for item in batch:
            commit(item, lock.heartbeat)
        fsync_dir(dst_dir)
    copied = len(batch)
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            dst = os.path.join(dst_dir, entry.name)
            os.makedirs(dst, exist_ok=True)  # a declared subdir is there already
            copied += _copy_tree(entry.path, dst, lock)
    copy_metadata(src_st, dst_dir)  # last: each entry copied in changed its mtime
    return copied
