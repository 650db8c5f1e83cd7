"""Act on an unlink plan: turn a link back into a plain directory holding a copy of the share's data.

The share's data is copied (verified, file by file) into `.<name>.storage-links-unlink`
beside the link, then that directory and the symlink swap names atomically (where
the kernel cannot swap, the symlink is removed just before the rename). The share
keeps its copy: other containers may still use it. A run killed midway leaves the
link in place; the next unlink starts its copy afresh, and an init migrates the
copy back (identical files are simply dropped).
"""

from __future__ import annotations

import os
import shutil
import stat

from storage_links._errors import StorageLinksError
from storage_links._fileops import copy_verified, exchange, fsync_dir, partial_name, retry_busy
from storage_links._lock import ShareLock
from storage_links._plan import UNLINK_COPY, LinkPlan, reserved


def unlink_link(lp: LinkPlan, lock: ShareLock) -> int:
    """Carry out one link's unlink plan; return the number of files copied back."""
    copy = reserved(lp.local, UNLINK_COPY)
    for path in lp.leftovers:
        if os.path.islink(path):
            retry_busy(os.unlink, path)  # the symlink itself, never what it points to
        elif os.path.isdir(path):
            shutil.rmtree(path)  # an interrupted copy of ours; the share still holds the data
    os.mkdir(copy)
    copied = 0
    for source in lp.sources:
        copied += _copy_tree(source, copy, lock)
    for sub in lp.link[4]:
        os.makedirs(os.path.join(copy, sub), exist_ok=True)
    if lp.state == "missing":
        retry_busy(os.rename, copy, lp.local)
    elif exchange(copy, lp.local):
        retry_busy(os.unlink, copy)  # now the old symlink
    else:
        retry_busy(os.unlink, lp.local)
        retry_busy(os.rename, copy, lp.local)
    fsync_dir(os.path.dirname(lp.local))
    return copied


def _copy_tree(src_dir: str, dst_dir: str, lock: ShareLock) -> int:
    copied = 0
    for entry in sorted(os.scandir(src_dir), key=lambda e: e.name):
        dst = os.path.join(dst_dir, entry.name)
        lock.heartbeat()
        mode = entry.stat(follow_symlinks=False).st_mode
        if stat.S_ISDIR(mode):
            os.mkdir(dst)
            copied += _copy_tree(entry.path, dst, lock)
        elif stat.S_ISREG(mode):
            copy_verified(entry.path, dst, partial_name(dst), lock.heartbeat)
            copied += 1
        else:
            raise StorageLinksError(f"{entry.path}: appeared on the share after planning and is not a plain file")
    return copied
