"""Act on an init plan: move local data onto the share without ever losing a byte, then link.

Order of every step, so that a process killed between any two of them leaves a
state the next `init` completes (its plan treats leftovers as more work):

1. create the share directories;
2. per file: verified copy to a staging name on the share, rename into place,
   only then remove the local file (a name already on the share: identical
   content drops the local copy, different content keeps the share's and saves
   the local one beside it as `<name>.local-conflict-<UTC time>`). Where the
   share is on the same file system (./local_fileshare in a checkout), a rename
   moves the file instead: atomic, so it is always under one of its two names;
3. remove each emptied local directory (rmdir: fails rather than deletes data); a
   directory this run created on the share then takes the local one's mode and
   times, as a file does (a directory the share had keeps its own, as a file does);
4. put a symlink to the share directory in place of the emptied local
   directory, swapping the two names atomically where the kernel can.

It never deletes through a symlink (it removes symlinks themselves, never what
they point to), never follows one, and never creates one on the share.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Callable

from storage_links._busy import retry_busy
from storage_links._errors import StorageLinksError
from storage_links._fileops import (
    Staged,
    commit,
    copy_metadata,
    copy_verified,
    exchange,
    fsync_dir,
    make_durable,
    partial_name,
    same_content,
    stage,
)
from storage_links._lock import ShareLock
from storage_links._plan import NEW_LINK, PARTIAL_SUFFIX, LinkPlan, reserved

ASIDE_MARK = ".local-conflict-"
ASIDE_TIME = "%Y%m%dT%H%M%SZ"
# A local version saved aside is named <name>.local-conflict-<UTC time>[-n]; a long name is cut so that
# the whole stays within NAME_MAX (255 bytes), with room for the time and a counter.
_ASIDE_NAME_ROOM = 255 - len(ASIDE_MARK) - len("20000101T000000Z") - len("-999")
# New files are copied in batches: one flush makes a whole batch durable before any of it is renamed into
# place, and one directory fsync makes the renames durable before any local copy is removed.
BATCH_FILES = 256
BATCH_BYTES = 64 << 20


class Changed(StorageLinksError):
    """The tree changed between plan and act; what was done so far is safe, re-run init."""


class MigrationReport:
    def __init__(self) -> None:
        self.moved = 0
        self.moved_bytes = 0
        self.identical = 0
        self.kept_aside: list[tuple[str, str]] = []  # (share path kept, local version saved as)

    def as_dict(self) -> dict:
        return {
            "moved_files": self.moved,
            "moved_bytes": self.moved_bytes,
            "identical_dropped": self.identical,
            "kept_aside": [{"share": kept, "local_saved_as": aside} for kept, aside in self.kept_aside],
        }


def migrate_link(lp: LinkPlan, lock: ShareLock) -> MigrationReport:
    report = MigrationReport()
    created: set[str] = set()  # share directories this run made: they take their local directory's mode
    for path in lp.make_dirs:
        if not os.path.isdir(path):
            os.makedirs(path, exist_ok=True)
            created.add(path)
    for path in lp.leftovers:
        if os.path.islink(path):  # only the symlink itself goes; never what it points to
            retry_busy(os.unlink, path)
    for source in lp.sources:
        _move_tree(source, lp.target, report, lock, created, ours=source != lp.local)
    _put_link(lp.local, lp.target)
    for source in lp.sources:
        if source != lp.local and os.path.isdir(source) and not os.path.islink(source):
            retry_busy(os.rmdir, source)
    return report


def _move_tree(
    src_dir: str, dst_dir: str, report: MigrationReport, lock: ShareLock, created: set[str], *, ours: bool
) -> None:
    src_st = os.lstat(src_dir)  # before its entries leave, which changes its mtime
    entries = sorted(os.scandir(src_dir), key=lambda e: e.name)
    same_fs = src_st.st_dev == os.lstat(dst_dir).st_dev
    batch: list[Staged] = []
    batch_bytes = renamed = 0
    for entry in entries:  # the files first, so that a batch never waits on a subdirectory
        dst = os.path.join(dst_dir, entry.name)
        lock.heartbeat()
        if entry.is_symlink():
            raise Changed(f"{entry.path}: a symlink appeared after planning; re-run init")
        if entry.is_dir(follow_symlinks=False):
            continue
        if not entry.is_file(follow_symlinks=False):
            raise Changed(f"{entry.path}: a special file appeared after planning; re-run init")
        if ours and entry.name.endswith(PARTIAL_SUFFIX):
            retry_busy(os.unlink, entry.path)  # an interrupted copy of ours; the original is on the share
        elif os.path.lexists(dst):
            _merge_file(entry.path, dst, report, lock)
        elif same_fs and _rename_file(entry.path, dst, report):
            renamed += 1
        else:
            batch.append(stage(entry.path, dst, partial_name(dst), lock.heartbeat))
            batch_bytes += batch[-1].size  # a running total: summing the batch for every file was quadratic
            if len(batch) >= BATCH_FILES or batch_bytes >= BATCH_BYTES:
                _commit_batch(batch, dst_dir, report, lock)
                batch_bytes = 0
    _commit_batch(batch, dst_dir, report, lock)
    if renamed:
        fsync_dir(dst_dir)
        fsync_dir(src_dir)
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            dst = os.path.join(dst_dir, entry.name)
            if not os.path.lexists(dst):
                os.mkdir(dst)
                created.add(dst)
            elif os.path.islink(dst) or not os.path.isdir(dst):
                raise Changed(f"{dst}: a file appeared on the share where a directory goes; re-run init")
            _move_tree(entry.path, dst, report, lock, created, ours=ours)
            retry_busy(os.rmdir, entry.path)
    if dst_dir in created:
        copy_metadata(src_st, dst_dir)  # last: each entry moved in changed its mtime


def _rename_file(src: str, dst: str, report: MigrationReport) -> bool:
    """Move a file within one file system; False if the kernel says it is not one (a bind mount: EXDEV)."""
    size = os.lstat(src).st_size
    try:
        retry_busy(os.rename, src, dst)
    except OSError as exc:
        if exc.errno == errno.EXDEV:
            return False
        raise
    report.moved += 1
    report.moved_bytes += size
    return True


def _commit_batch(batch: list[Staged], dst_dir: str, report: MigrationReport, lock: ShareLock) -> None:
    if not batch:
        return
    make_durable(batch)
    for item in batch:
        commit(item, lock.heartbeat)
    fsync_dir(dst_dir)
    for item in batch:
        retry_busy(os.unlink, item.src)
        report.moved += 1
        report.moved_bytes += item.size
    batch.clear()


def _merge_file(src: str, dst: str, report: MigrationReport, lock: ShareLock) -> None:
    """`dst` already exists on the share: drop the local copy if identical, else save it beside `dst`."""
    dst_st = os.lstat(dst)
    if not stat.S_ISREG(dst_st.st_mode):
        raise Changed(f"{dst}: not a regular file on the share, where {src} goes; re-run init")
    src_st = os.lstat(src)
    if (src_st.st_dev, src_st.st_ino) == (dst_st.st_dev, dst_st.st_ino):
        raise Changed(f"{src} and {dst} are the same file; refusing to remove it")
    if same_content(src, dst, lock.heartbeat):
        report.identical += 1
    else:
        aside = _saved_aside(src, dst, lock.heartbeat)
        if aside is None:
            aside = _free_aside_name(dst)
            copy_verified(src, aside, partial_name(dst), lock.heartbeat)
        report.kept_aside.append((dst, aside))
    retry_busy(os.unlink, src)


def preview_merges(lp: LinkPlan) -> tuple[int, list[tuple[str, str, str]]]:
    """What init will do with each name on both sides, for a dry run: compared as `_merge_file` compares.

    Returns how many local files are identical to the share's (dropped), and (share file kept, local
    file, where the local one is saved) for each that differs; a name not saved yet ends in <UTC time>."""
    identical, aside = 0, []
    for src, dst in lp.both_sides:
        if same_content(src, dst):
            identical += 1
        else:
            saved = _saved_aside(src, dst, None) or os.path.join(
                os.path.dirname(dst), _aside_prefix(os.path.basename(dst)) + "<UTC time>"
            )
            aside.append((dst, src, saved))
    return identical, aside


def _saved_aside(src: str, dst: str, tick: Callable[[], None] | None) -> str | None:
    """A conflict copy of `src` that an interrupted run already saved, so a re-run makes no second one."""
    head, name = os.path.split(dst)
    prefix = _aside_prefix(name)
    for entry in os.scandir(head):
        is_copy = entry.name.startswith(prefix) and entry.is_file(follow_symlinks=False)
        if is_copy and same_content(src, entry.path, tick):
            return entry.path
    return None


def _aside_prefix(name: str) -> str:
    while len(os.fsencode(name)) > _ASIDE_NAME_ROOM:  # bytes, as the kernel counts, cut between characters
        name = name[:-1]
    return name + ASIDE_MARK


def _free_aside_name(dst: str) -> str:
    head, name = os.path.split(dst)
    base = os.path.join(head, _aside_prefix(name) + time.strftime(ASIDE_TIME, time.gmtime()))
    candidate, n = base, 1
    while os.path.lexists(candidate):
        candidate, n = f"{base}-{n}", n + 1
    return candidate


def _put_link(local: str, target: str) -> None:
    """Make `local` a symlink to `target`; an (emptied) directory there is swapped out atomically."""
    try:
        mode = os.lstat(local).st_mode
    except FileNotFoundError:
        os.makedirs(os.path.dirname(local), exist_ok=True)
        os.symlink(target, local)
        fsync_dir(os.path.dirname(local))
        return
    if stat.S_ISLNK(mode):
        return  # the plan checked it points to the target
    new = reserved(local, NEW_LINK)
    if os.path.islink(new):
        retry_busy(os.unlink, new)
    os.symlink(target, new)
    if exchange(new, local):
        retry_busy(os.rmdir, new)  # now the emptied directory; rmdir refuses if anything arrived meanwhile
    else:
        retry_busy(os.rmdir, local)
        retry_busy(os.rename, new, local)
    fsync_dir(os.path.dirname(local))
