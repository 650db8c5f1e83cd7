"""Read every [tool.storage-links] table of the workspace into plain tuples, fast.

The CLI must start in little more than Python's own start-up time, so this module
uses only `os` and `marshal` on its hot path: the parsed contracts are cached in
the user's cache directory (like __pycache__), keyed by the size, mtime and inode
of every pyproject.toml and member directory they came from. Any change to those
files, or a new or removed member, re-parses with tomllib. `_contract` wraps these
tuples in the public, Path-based API.
"""

from __future__ import annotations

import marshal
import os

from storage_links._errors import ContractError

LOCAL_SHARE_NAME = "local_fileshare"
ROOT_PACKAGE = ""  # the workspace root's own contract (logs) has no package name
LOCK_NAME = ".storage-links.lock"  # reserved: on the share (see _lock), and in a data dir while a run holds it
_CACHE_FORMAT = 2  # 2: contracts cached by 1 were not checked for nested local paths or the lock name

# One declared link: (package, name, local path, path on the share, subdirs, pyproject it comes from).
Declared = tuple[str, str, str, str, tuple[str, ...], str]


def find_root() -> str:
    """PIPELINE_ROOT if set, else the workspace this package was installed from."""
    env = os.environ.get("PIPELINE_ROOT")
    if env:
        root = os.path.abspath(env)
        check_root(root, f"PIPELINE_ROOT={env}", "set PIPELINE_ROOT to")
        return root
    root = _workspace_above(os.path.dirname(os.path.realpath(__file__)))
    if root is None:
        raise ContractError("cannot find the project root from the installed storage_links; set PIPELINE_ROOT")
    return root


def check_root(root: str, given: str, advice: str) -> None:
    """Refuse a project root that is not a workspace's root, saying what it is and which one to give.

    `given` is how the user named it (`PIPELINE_ROOT=packages/scraping`); `advice` leads to the root
    to give instead (`set PIPELINE_ROOT to`). A member package's directory is the likely slip: it has
    a pyproject.toml too, whose missing workspace table made a confusing error of its own."""
    pyproject = os.path.join(root, "pyproject.toml")
    present = os.path.isfile(pyproject)
    if present and _mentions_workspace(pyproject):  # a byte test: no tomllib on the hot path; parsing checks the rest
        return
    problem = given if present else f"{given}: no pyproject.toml there"
    workspace = _workspace_above(os.path.dirname(root))
    if workspace is None and not present:
        raise ContractError(problem)
    if workspace is None:
        raise ContractError(
            f"{given}: {pyproject} declares no workspace (tool.hatch.envs.default.workspace.members), "
            f"so {root} is not the project root; {advice} the directory whose pyproject.toml does"
        )
    member = present and root in _members(workspace)
    what = f"the member package {os.path.basename(root)} of" if member else "inside"
    separator = ":" if present else ";"
    raise ContractError(
        f"{problem}{separator} {root} is {what} the workspace at {workspace}, not the project root; "
        f"{advice} {workspace}"
    )


def find_share(root: str | None = None) -> str:
    """FILESHARE_ROOT if set (the image sets /mnt/fileshare), else <project>/local_fileshare.

    A relative FILESHARE_ROOT is taken from the project root, not the current directory: a stage
    started from a package's folder must find the same share as one started by make.
    Never a share found lying about: a checkout on a machine where /mnt/fileshare is mounted (the
    production share, for a look) would otherwise move its data onto it."""
    env = os.environ.get("FILESHARE_ROOT")
    if env and os.path.isabs(env):
        return os.path.normpath(env)
    return os.path.abspath(os.path.join(root or find_root(), env or LOCAL_SHARE_NAME))


def declared_links(root: str) -> list[Declared]:
    """Every link declared in the workspace at `root`: the root's own first, then members by directory."""
    cached = _read_cache(root)
    if cached is not None:
        return cached
    result, deps = _parse_workspace(root)
    if deps is not None:
        _write_cache(root, deps, result)
    return result


def _mentions_workspace(pyproject: str) -> bool:
    # A cheap byte test so that walking up past a member's pyproject.toml never loads tomllib.
    try:
        with open(pyproject, "rb") as fh:
            data = fh.read()
    except OSError:
        return False
    return b"workspace" in data and b"members" in data


def _workspace_above(here: str) -> str | None:
    """The nearest workspace root at or above the directory `here`, if any."""
    while True:
        if _mentions_workspace(os.path.join(here, "pyproject.toml")) and _is_workspace(here):
            return here
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent


def _members(root: str) -> set[str]:
    """The member directories of the workspace at `root` (its globs expanded)."""
    import glob

    members = _workspace(_read_toml(os.path.join(root, "pyproject.toml"))).get("members", [])
    found = (glob.glob(os.path.join(glob.escape(root), m)) for m in members if isinstance(m, str))
    return {os.path.normpath(path) for paths in found for path in paths}


def _is_workspace(root: str) -> bool:
    try:
        data = _read_toml(os.path.join(root, "pyproject.toml"))
    except ContractError:
        return False
    return "members" in _workspace(data)


# ---- the cache -------------------------------------------------------------------


def _cache_file(root: str) -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    tag = root.replace("%", "%25").replace("/", "%2F")
    if len(tag) > 200:  # keep within a file name's limit; the cache records its root, so a clash only misses
        tag = tag[-200:]
    return os.path.join(base, "storage-links", f"contracts-{tag}.marshal")


def _signature(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _read_cache(root: str) -> list[Declared] | None:
    try:
        with open(_cache_file(root), "rb") as fh:
            fmt, cached_root, deps, result = marshal.load(fh)
    except (OSError, EOFError, ValueError, TypeError):
        return None
    if fmt != _CACHE_FORMAT or cached_root != root:
        return None
    for path, signature in deps:
        if _signature(path) != signature:
            return None
    return [tuple(item) for item in result]


def _write_cache(root: str, deps: list[str], result: list[Declared]) -> None:
    # Best effort: a read-only home only costs the next run a re-parse.
    path = _cache_file(root)
    payload = marshal.dumps((_CACHE_FORMAT, root, tuple((d, _signature(d)) for d in deps), tuple(result)))
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "wb") as fh:
            fh.write(payload)
        os.replace(tmp, path)
    except OSError:
        import contextlib

        with contextlib.suppress(OSError):
            os.unlink(tmp)


# ---- parsing (the slow path) ---------------------------------------------------------


def _read_toml(path: str) -> dict:
    import tomllib  # costs more than Python's start-up; only when the cache is stale

    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ContractError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ContractError(f"{path}: invalid TOML: {exc}") from None


def _workspace(data: dict) -> dict:
    return data.get("tool", {}).get("hatch", {}).get("envs", {}).get("default", {}).get("workspace", {})


def _parse_workspace(root: str) -> tuple[list[Declared], list[str] | None]:
    """The declared links and the paths whose change invalidates them (None: not cacheable)."""
    import glob

    pyproject = os.path.join(root, "pyproject.toml")
    data = _read_toml(pyproject)
    members = _workspace(data).get("members")
    if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
        raise ContractError(f"{pyproject}: tool.hatch.envs.default.workspace.members must be a list of globs")
    deps: list[str] | None = [pyproject]
    candidates: set[str] = set()
    for pattern in members:
        head, tail = os.path.split(pattern)
        if glob.has_magic(head) or "**" in pattern:
            deps = None  # a deep glob: which files matter cannot be listed cheaply, so never cache
        elif glob.has_magic(tail) and deps is not None:
            deps.append(os.path.join(root, head))  # its mtime changes when a member is added or removed
        for match in glob.glob(os.path.join(glob.escape(root), pattern)):
            if os.path.isdir(match):
                candidates.add(os.path.normpath(match))
    result = _parse_contract(pyproject, data, ROOT_PACKAGE, root)
    for member in sorted(candidates):
        member_py = os.path.join(member, "pyproject.toml")
        if deps is not None:
            deps.append(member_py)
        if os.path.isfile(member_py):
            result.extend(_parse_contract(member_py, _read_toml(member_py), os.path.basename(member), member))
    _check_no_overlap(result)
    return result, deps


def _check_no_overlap(result: list[Declared]) -> None:
    # Two links sharing, or nesting inside, one share directory would mix two packages' data; a local
    # directory holding another's would move that one (and whatever else lies there) with it.
    for i, first in enumerate(result):
        for second in result[i + 1 :]:
            a, b = first[3], second[3]
            if a == b or b.startswith(a + "/") or a.startswith(b + "/"):
                raise ContractError(
                    f"{second[5]}: tool.storage-links.links.{second[1]}: share path {b!r} "
                    f"overlaps {a!r} declared in {first[5]}"
                )
            for outer, inner in ((first, second), (second, first)):
                if inner[2] == outer[2] or inner[2].startswith(outer[2] + os.sep):
                    raise ContractError(
                        f"{outer[5]}: tool.storage-links.links.{outer[1]}: local directory {outer[2]} "
                        f"holds {inner[2]}, declared in {inner[5]} (tool.storage-links.links.{inner[1]})"
                    )


def _parse_contract(pyproject: str, data: dict, package: str, base: str) -> list[Declared]:
    table = data.get("tool", {}).get("storage-links")
    if table is None:
        return []
    where = f"{pyproject}: tool.storage-links"
    if not isinstance(table, dict):
        raise ContractError(f"{where} must be a table")
    declared = table.get("links", {})
    subdirs = table.get("subdirs", {})
    if not isinstance(declared, dict):
        raise ContractError(f"{where}.links must be a table of 'dir in package' = 'dir on share'")
    if not isinstance(subdirs, dict):
        raise ContractError(f"{where}.subdirs must be a table of 'dir in package' = [subdirs]")
    for key in sorted(set(table) - {"links", "subdirs"}):
        raise ContractError(f"{where}.{key}: unknown key (allowed: links, subdirs)")
    for key in sorted(set(subdirs) - set(declared)):
        raise ContractError(f"{where}.subdirs.{key}: not a declared link")
    result: list[Declared] = []
    for name, share_rel in declared.items():
        _check_relative(f"{where}.links.{name}", name, single=True)
        if not isinstance(share_rel, str):
            raise ContractError(f"{where}.links.{name}: share path must be a string")
        _check_relative(f"{where}.links.{name}", share_rel, single=False)
        if os.path.normpath(share_rel) == LOCK_NAME:
            raise ContractError(f"{where}.links.{name}: {share_rel!r} is the name of the share's lock file")
        subs = subdirs.get(name, [])
        if not isinstance(subs, list) or not all(isinstance(s, str) for s in subs):
            raise ContractError(f"{where}.subdirs.{name}: must be a list of directory names")
        for sub in subs:
            _check_relative(f"{where}.subdirs.{name}", sub, single=False)
            if os.path.normpath(sub) == LOCK_NAME:
                raise ContractError(f"{where}.subdirs.{name}: {sub!r} is the name of a run's lock file in a data dir")
        clean_subs = tuple(os.path.normpath(s) for s in subs)
        result.append((package, name, os.path.join(base, name), os.path.normpath(share_rel), clean_subs, pyproject))
    return result


def _check_relative(where: str, value: str, *, single: bool) -> None:
    parts = [p for p in value.split("/") if p not in ("", ".")]
    bad = (
        not parts
        or value.startswith("/")
        or ".." in parts
        or "\\" in value
        or "\0" in value
        or (single and (len(parts) != 1 or value != parts[0]))
    )
    if bad:
        kind = (
            "a single directory name inside its package"
            if single
            else "a relative path without '..' (it must stay inside the share)"
        )
        raise ContractError(f"{where}: {value!r} must be {kind}")
