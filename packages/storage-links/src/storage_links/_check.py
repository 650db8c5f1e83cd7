"""Read-only inspection of the links: what `validate` and `status` report, and what `init` plans from.

Uses only `os` and `stat`, so `storage-links validate` costs little more than starting Python.
"""

from __future__ import annotations

import os
import stat

from storage_links._declared import Declared
from storage_links._errors import ValidationError

# States of one link, as `status` shows them.
LINKED = "linked"  # symlink to the contract's target, which is a writable directory
MISSING = "missing"  # nothing at the local path
DIRECTORY = "directory"  # a plain directory: data not migrated yet
NOT_A_DIRECTORY = "not-a-directory"  # a regular file (or other non-directory) where the directory belongs
WRONG_TARGET = "wrong-target"  # a symlink pointing somewhere else
TARGET_SYMLINK = "target-symlink"  # the target, or a directory above it on the share, is a symlink
TARGET_MISSING = "target-missing"
TARGET_NOT_DIRECTORY = "target-not-directory"
TARGET_READ_ONLY = "target-read-only"
SUBDIR_MISSING = "subdir-missing"


def points_to(local: str, target: str) -> bool:
    """True if the symlink `local` names `target` (literally, or resolving to the same place)."""
    try:
        dest = os.readlink(local)
    except OSError:
        return False
    if dest == target:
        return True
    if not os.path.isabs(dest):
        dest = os.path.join(os.path.dirname(local), dest)
    return os.path.realpath(dest) == os.path.realpath(target)


def inspect(link: Declared, share: str) -> tuple[str, str]:
    """(state, one-line explanation) of one declared link."""
    _, _, local, share_rel, subdirs, _ = link
    target = os.path.join(share, share_rel)
    try:
        st = os.lstat(local)
    except FileNotFoundError:
        return MISSING, f"{local} does not exist (run storage-links init)"
    if stat.S_ISDIR(st.st_mode):
        return DIRECTORY, f"{local} is a plain directory, not a symlink (run storage-links init to migrate it)"
    if not stat.S_ISLNK(st.st_mode):
        return NOT_A_DIRECTORY, f"{local} is a {_kind(st.st_mode)} where the data directory's symlink belongs"
    if not points_to(local, target):
        return WRONG_TARGET, f"{local} points to {os.readlink(local)}, the contract says {target}"
    path = share
    for part in share_rel.split("/"):
        # A symlink on the share would keep the data elsewhere while the link still resolves; init refuses one.
        path = os.path.join(path, part)
        if os.path.islink(path):
            return TARGET_SYMLINK, (
                f"{local} -> {target}: {path} on the share is a symlink to {os.readlink(path)}; "
                f"the share must hold plain directories"
            )
    try:
        target_st = os.stat(target)
    except OSError:
        return TARGET_MISSING, f"{local} -> {target}: the target does not exist"
    if not stat.S_ISDIR(target_st.st_mode):
        return TARGET_NOT_DIRECTORY, f"{local} -> {target}: the target is a {_kind(target_st.st_mode)}"
    if not os.access(target, os.W_OK | os.X_OK):
        return TARGET_READ_ONLY, f"{local} -> {target}: the target is not writable"
    for sub in subdirs:
        if not os.path.isdir(os.path.join(target, sub)):
            return SUBDIR_MISSING, f"{local} -> {target}: declared subdirectory {sub}/ is missing"
    return LINKED, f"{local} -> {target}"


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "regular file"
    if stat.S_ISDIR(mode):
        return "directory"
    return "special file (fifo, socket or device)"


def validate(declared: list[Declared], share: str) -> list[tuple[Declared, str, str]]:
    """Every link with its state; raises ValidationError listing every link that is not LINKED."""
    results = [(link, *inspect(link, share)) for link in declared]
    problems = [f"{link[3]}: {detail}" for link, state, detail in results if state != LINKED]
    if problems:
        raise ValidationError(problems)
    return results
