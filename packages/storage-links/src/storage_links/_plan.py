"""Plan and check, before anything is touched (GNU Stow style).

`plan_init` and `plan_unlink` look at both sides of every link and return a Plan:
what each link needs, and every conflict and share problem found. The callers
refuse the whole run on any of them, listing them all, so a run either has a
clear road or changes nothing. Only `os` and `stat` are used: a warm `init`
is just this plan finding nothing to do.
"""

from __future__ import annotations

import os
import stat

from storage_links._check import points_to
from storage_links._declared import Declared

PARTIAL_SUFFIX = ".storage-links-partial"  # kept equal to _fileops.PARTIAL_SUFFIX (which imports hashlib)
# Reserved names beside a link (".<name>.storage-links-link"): the new symlink before it is swapped in
# (afterwards: the emptied directory), and unlink's copy before it is swapped in (afterwards: the old symlink).
NEW_LINK = "link"
UNLINK_COPY = "unlink"


def reserved(local: str, kind: str) -> str:
    head, name = os.path.split(local)
    return os.path.join(head, f".{name}.storage-links-{kind}")


class LinkPlan:
    """What one link needs. `sources`: local directories whose content moves to `target`."""

    __slots__ = (
        "both_sides",
        "bytes",
        "files",
        "label",
        "leftovers",
        "link",
        "local",
        "make_dirs",
        "sources",
        "state",
        "target",
    )

    def __init__(self, link: Declared, share: str) -> None:
        self.link = link
        self.label = link[3]
        self.local = link[2]
        self.target = os.path.join(share, link[3])
        self.state = ""
        self.sources: list[str] = []
        self.leftovers: list[str] = []  # reserved names that hold a symlink or a copy of ours, to remove
        self.make_dirs: list[str] = []
        # (local file, share file) at one name: dropped if identical, else the local one is saved aside.
        # Compared only when acting or for a dry run: a plan that read every byte would double a cold init.
        self.both_sides: list[tuple[str, str]] = []
        self.files = 0
        self.bytes = 0

    @property
    def changes(self) -> bool:
        return bool(self.sources or self.leftovers or self.make_dirs or self.state != "linked")


class Plan:
    __slots__ = ("conflicts", "links", "share_problems")

    def __init__(self) -> None:
        self.links: list[LinkPlan] = []
        self.conflicts: list[str] = []
        self.share_problems: list[str] = []

    @property
    def changes(self) -> bool:
        return any(lp.changes for lp in self.links)


def check_share(share: str, *, require_mount: bool) -> list[str]:
    if not os.path.lexists(share):
        return [f"share {share} does not exist (mount it, or set FILESHARE_ROOT)"]
    if not os.path.isdir(share):
        return [f"share {share} is not a directory"]
    problems = []
    if require_mount and not is_mount_point(share):
        problems.append(f"share {share} is not a mount point (--require-mount)")
    if not os.access(share, os.W_OK | os.X_OK):
        problems.append(f"share {share} is read-only")
    return problems


def is_mount_point(path: str) -> bool:
    """os.path.ismount, or listed in /proc/self/mountinfo (which also knows bind mounts within one device)."""
    return os.path.ismount(path) or os.path.realpath(path) in _mount_points()


def _mount_points() -> set[str]:
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
            return {_unescape_mountinfo(line.split()[4]) for line in fh if len(line.split()) > 4}
    except OSError:
        return set()


def _unescape_mountinfo(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash as octal escapes.
    for escaped, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(escaped, char)
    return field


def plan_init(declared: list[Declared], share: str, *, require_mount: bool = False) -> Plan:
    plan = Plan()
    plan.share_problems = check_share(share, require_mount=require_mount)
    plan.conflicts = _share_overlaps(declared, share)
    if plan.conflicts:
        return plan  # every other finding would follow from the misplaced share
    checked: set[str] = set()  # a directory two links write into is reported once
    mounts: set[str] | None = None  # read once, and only when there is local data to move
    for link in declared:
        lp = LinkPlan(link, share)
        plan.links.append(lp)
        writes: dict[str, str] = {}  # existing directories acting writes into (or removes from) -> where
        _plan_local_side(lp, plan.conflicts)
        _plan_share_dirs(lp, share, plan.conflicts, writes)
        for source in lp.sources:
            mounts = _mount_points() if mounts is None else mounts
            _check_no_mounts(lp, source, mounts, plan.conflicts)
            renames = _renames(source, lp.target, mounts)
            _walk_source(lp, source, lp.target, plan.conflicts, writes, ours=source != lp.local, renames=renames)
        if lp.changes and os.path.isdir(lp.target) and not os.path.islink(lp.target):
            writes[lp.target] = " on the share"  # data moves in, and the new link must validate
        for path in sorted(writes.keys() - checked):
            checked.add(path)
            why = _not_writable(path)
            if why:
                plan.conflicts.append(f"{lp.label}: {path}{writes[path]} {why}")
    return plan


def _check_no_mounts(lp: LinkPlan, source: str, mounts: set[str], conflicts: list[str]) -> None:
    """A mount point at or in a local data dir: its files would move, then removing the directory fails (EBUSY)."""
    real = os.path.realpath(source)
    inside = sorted(m for m in mounts if m == real or m.startswith(real + os.sep))
    if not inside and os.path.ismount(source):  # no /proc/self/mountinfo: at least the directory itself
        inside = [real]
    for mount in inside:
        conflicts.append(
            f"{lp.label}: {source + mount[len(real) :]} is a mount point; storage-links cannot replace it by a "
            f"link: unmount it (or mount it on the share instead) and re-run"
        )


def _renames(source: str, target: str, mounts: set[str]) -> bool:
    """Whether init moves `source`'s new files to `target` by rename, which reads nothing, rather than by copy.

    As _move_tree decides: one device; and one mount, as a bind mount between them answers EXDEV and is copied."""
    existing = target
    while not os.path.lexists(existing):  # the directories still to be made go on their parent's device
        existing = os.path.dirname(existing)
    try:
        if os.lstat(source).st_dev != os.stat(existing).st_dev:  # stat: makedirs follows a linked share root
            return False
    except OSError:
        return False
    return _mount_of(os.path.realpath(source), mounts) == _mount_of(os.path.realpath(existing), mounts)


def _mount_of(real: str, mounts: set[str]) -> str:
    """The mount point `real` lies on ('' where /proc/self/mountinfo could not be read)."""
    return max((m for m in mounts if real == m or real.startswith(m.rstrip(os.sep) + os.sep)), key=len, default="")


def _not_writable(path: str) -> str:
    """Why this user cannot create or remove entries in the directory `path` ('' if it can).

    access(2) answers for this user's uid and groups, and says no on a read-only mount even to root."""
    if os.access(path, os.W_OK | os.X_OK):
        return ""
    try:
        read_only = bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    return "is on a read-only file system" if read_only else f"is not writable by this user (uid {os.getuid()})"


def _plan_local_side(lp: LinkPlan, conflicts: list[str]) -> None:
    try:
        st = os.lstat(lp.local)
    except FileNotFoundError:
        lp.state = "missing"
    else:
        if stat.S_ISLNK(st.st_mode):
            if points_to(lp.local, lp.target):
                lp.state = "linked"
            else:
                lp.state = "wrong-target"
                conflicts.append(
                    f"{lp.label}: {lp.local} is a symlink to {os.readlink(lp.local)}, the contract says "
                    f"{lp.target}; remove that symlink and re-run"
                )
        elif stat.S_ISDIR(st.st_mode):
            lp.state = "directory"
            lp.sources.append(lp.local)
        else:
            lp.state = "not-a-directory"
            conflicts.append(
                f"{lp.label}: {lp.local} is a regular file where the data directory belongs; move it away and re-run"
            )
    parent = os.path.dirname(lp.local)
    if lp.state != "linked" and os.path.isdir(parent) and not os.access(parent, os.W_OK | os.X_OK):
        # Found now, not after the share's side is made: the link goes in `parent`.
        conflicts.append(f"{lp.label}: {parent} is not writable by this user (uid {os.getuid()}); the link goes there")
    for kind in (NEW_LINK, UNLINK_COPY):
        path = reserved(lp.local, kind)
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(mode):
            lp.leftovers.append(path)
        elif stat.S_ISDIR(mode):
            lp.sources.append(path)  # an interrupted run's directory: its content is migrated like the rest
        else:
            conflicts.append(f"{lp.label}: {path} is a file at a name storage-links reserves; move it away")


def _share_overlaps(declared: list[Declared], share: str) -> list[str]:
    """A share that is, lies in, or holds a data directory (FILESHARE_ROOT=. for one), whether that exists or not."""
    real_share = os.path.realpath(share)
    overlaps = []
    for link in declared:
        # The local path's parent resolved, not the path: a link already made resolves onto the share.
        local = os.path.join(os.path.realpath(os.path.dirname(link[2])), os.path.basename(link[2]))
        if real_share == local:
            overlaps.append(f"{link[3]}: the share {share} is the data directory {link[2]} itself")
        elif real_share.startswith(local + os.sep):
            overlaps.append(
                f"{link[3]}: the share {share} is inside the data directory {link[2]}; data would be moved into itself"
            )
        elif local.startswith(real_share + os.sep) or real_share == os.sep:
            overlaps.append(
                f"{link[3]}: the share {share} contains the data directory {link[2]}; "
                f"the share must lie outside the project's data directories"
            )
    return overlaps


def _plan_share_dirs(lp: LinkPlan, share: str, conflicts: list[str], writes: dict[str, str]) -> None:
    """Every directory the share must hold for this link: the target's chain and the declared subdirs."""
    wanted = []
    path = share
    for part in lp.label.split("/"):
        path = os.path.join(path, part)
        wanted.append(path)
    wanted.extend(os.path.join(lp.target, sub) for sub in lp.link[4])
    missing: list[str] = []
    for path in wanted:
        if any(path.startswith(m + os.sep) for m in missing):
            # Nothing can be below a missing directory; on a network share each look is a round trip.
            lp.make_dirs.append(path)
            continue
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            missing.append(path)
            lp.make_dirs.append(path)
            if os.path.dirname(path) != share:  # the share root itself is check_share's
                writes[os.path.dirname(path)] = " on the share"
            continue
        except NotADirectoryError:
            continue  # a parent is a file: reported for that parent
        if stat.S_ISLNK(mode):
            conflicts.append(f"{lp.label}: {path} on the share is a symlink; the share must hold plain directories")
        elif not stat.S_ISDIR(mode):
            conflicts.append(f"{lp.label}: {path} on the share is a file where a directory belongs")
    for sub in lp.link[4]:
        for source in lp.sources:
            local_sub = os.path.join(source, sub)
            if os.path.lexists(local_sub) and not os.path.islink(local_sub) and not os.path.isdir(local_sub):
                conflicts.append(f"{lp.label}: {local_sub} is not a directory, but the contract declares {sub}/")


def _walk_source(
    lp: LinkPlan,
    src_dir: str,
    dst_dir: str,
    conflicts: list[str],
    writes: dict[str, str],
    *,
    ours: bool,
    renames: bool,
) -> None:
    """Check every entry of a local tree against the share, and that init can read what it will; count what moves."""
    unreadable = f"{lp.label}: {src_dir} is not readable by this user (uid {os.getuid()}); init moves what it holds"
    entries = _entries(src_dir, conflicts, unreadable, f"{lp.label}: cannot read {src_dir}")
    if entries is None:
        return
    if entries:
        writes[src_dir] = ""  # each entry is removed here once it is on the share
        if os.path.isdir(dst_dir) and not os.path.islink(dst_dir):
            writes[dst_dir] = " on the share"
    for entry in entries:
        dst = os.path.join(dst_dir, entry.name)
        if entry.is_symlink():
            conflicts.append(
                f"{lp.label}: {entry.path} is a symlink; the share cannot hold symlinks and storage-links never "
                f"follows one out of the tree: replace it by what it points to, or remove it"
            )
        elif entry.is_dir(follow_symlinks=False):
            if os.path.lexists(dst) and (os.path.islink(dst) or not os.path.isdir(dst)):
                conflicts.append(f"{lp.label}: {dst} on the share is a file where the directory {entry.path} goes")
            else:
                _walk_source(lp, entry.path, dst, conflicts, writes, ours=ours, renames=renames)
        elif entry.is_file(follow_symlinks=False):
            if ours and entry.name.endswith(PARTIAL_SUFFIX):
                continue  # an interrupted copy of ours: removed, not migrated
            try:
                dst_mode = os.lstat(dst).st_mode
            except OSError:
                dst_mode = 0
            if stat.S_ISDIR(dst_mode) or stat.S_ISLNK(dst_mode):
                conflicts.append(f"{lp.label}: {entry.path} is a file where the share has a directory ({dst})")
            elif dst_mode and not stat.S_ISREG(dst_mode):
                # Neither comparable nor replaceable: acting would stop at it with half the links made.
                conflicts.append(
                    f"{lp.label}: {dst} on the share is a special file (fifo, socket or device) where the file "
                    f"{entry.path} goes; move one of them away and re-run"
                )
            else:
                # A rename reads nothing; a compare with the share's file (a name on both sides) or a copy does.
                if (stat.S_ISREG(dst_mode) or not renames) and not os.access(entry.path, os.R_OK):
                    act = f"compares it with {dst} on the share" if dst_mode else "copies it to the share"
                    conflicts.append(
                        f"{lp.label}: {entry.path} is not readable by this user (uid {os.getuid()}); init {act}"
                    )
                if stat.S_ISREG(dst_mode) and not os.access(dst, os.R_OK):
                    conflicts.append(
                        f"{lp.label}: {dst} on the share is not readable by this user (uid {os.getuid()}); "
                        f"init compares it with {entry.path}"
                    )
                lp.files += 1
                lp.bytes += entry.stat(follow_symlinks=False).st_size
                if stat.S_ISREG(dst_mode):
                    lp.both_sides.append((entry.path, dst))
        else:
            conflicts.append(f"{lp.label}: {entry.path} is a special file (fifo, socket or device); cannot migrate it")


def plan_unlink(declared: list[Declared], share: str) -> Plan:
    plan = Plan()
    checked: set[str] = set()  # a directory two links are unlinked in is reported once
    for link in declared:
        lp = LinkPlan(link, share)
        plan.links.append(lp)
        if os.path.lexists(reserved(lp.local, NEW_LINK)):
            plan.conflicts.append(f"{lp.label}: an init was interrupted here; run storage-links init first")
        leftover = reserved(lp.local, UNLINK_COPY)
        if os.path.lexists(leftover):
            lp.leftovers.append(leftover)
        try:
            mode = os.lstat(lp.local).st_mode
        except FileNotFoundError:
            lp.state = "missing"
        else:
            if stat.S_ISLNK(mode):
                lp.state = "linked" if points_to(lp.local, lp.target) else "wrong-target"
                if lp.state == "wrong-target":
                    plan.conflicts.append(
                        f"{lp.label}: {lp.local} is a symlink to {os.readlink(lp.local)}, not to {lp.target}; "
                        f"storage-links leaves it alone"
                    )
            elif stat.S_ISDIR(mode):
                lp.state = "directory"  # already a plain directory: at most leftovers to remove
            else:
                lp.state = "not-a-directory"
                plan.conflicts.append(f"{lp.label}: {lp.local} is a regular file where the data directory belongs")
                continue
        parent = os.path.dirname(lp.local)
        if (lp.state in ("linked", "missing") or lp.leftovers) and parent not in checked and os.path.isdir(parent):
            # The copy is made and swapped for the link in `parent`: found now, not after other links are done.
            checked.add(parent)
            why = _not_writable(parent)
            if why:
                plan.conflicts.append(f"{lp.label}: {parent} {why}; unlink puts the plain directory there")
        if lp.state != "directory" and os.path.isdir(lp.target) and not os.path.islink(lp.target):
            lp.sources.append(lp.target)
            _walk_share(lp, lp.target, plan.conflicts)
    return plan


def _entries(directory: str, conflicts: list[str], unreadable: str, cannot_read: str) -> list[os.DirEntry] | None:
    """The entries of `directory` by name; None, with a conflict, where this user cannot list it."""
    # Listing needs r, and looking at (or moving) the entries x: access(2) asks for both, for this
    # user's uid and groups.
    if not os.access(directory, os.R_OK | os.X_OK):
        conflicts.append(unreadable)
        return None
    try:
        return sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError as exc:
        conflicts.append(f"{cannot_read}: {exc.strerror}")
        return None


def _walk_share(lp: LinkPlan, directory: str, conflicts: list[str]) -> None:
    """Check every entry unlink copies back, so that a copy never stops halfway on one it cannot read."""
    cannot_read = f"{lp.label}: cannot read {directory} on the share"
    entries = _entries(directory, conflicts, _unreadable(lp, directory), cannot_read)
    if entries is None:
        return
    for entry in entries:
        if entry.is_symlink():
            conflicts.append(f"{lp.label}: {entry.path} on the share is a symlink; storage-links never follows one")
        elif entry.is_dir(follow_symlinks=False):
            _walk_share(lp, entry.path, conflicts)
        elif entry.is_file(follow_symlinks=False):
            if not os.access(entry.path, os.R_OK):
                conflicts.append(_unreadable(lp, entry.path))
            lp.files += 1
            lp.bytes += entry.stat(follow_symlinks=False).st_size
        else:
            conflicts.append(f"{lp.label}: {entry.path} on the share is a special file; cannot copy it")


def _unreadable(lp: LinkPlan, path: str) -> str:
    return f"{lp.label}: {path} on the share is not readable by this user (uid {os.getuid()}); unlink copies it back"
