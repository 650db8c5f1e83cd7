"""Where the project and the share are, and which data directories the packages declare.

The `[tool.storage-links]` table in each package's pyproject.toml is the only
place a data path is written down. Everything else asks this module.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath

from storage_links._errors import ContractError

CONTAINER_SHARE = Path("/mnt/fileshare")
LOCAL_SHARE_NAME = "local_fileshare"
ROOT_PACKAGE = ""  # the workspace root's own contract (logs) has no package name


@dataclass(frozen=True)
class Link:
    """One declared data directory: `local` in the project becomes a symlink to `share_rel` on the share."""

    package: str  # workspace member directory name, or ROOT_PACKAGE
    name: str  # directory name inside the package, e.g. "scraped_data"
    local: Path  # absolute path in the project
    share_rel: str  # path relative to the share root, e.g. "scraping/scraped_data"
    subdirs: tuple[str, ...] = ()

    def target(self, share: Path) -> Path:
        return share / self.share_rel


def project_root() -> Path:
    """PIPELINE_ROOT if set, else the workspace this package was installed from."""
    env = os.environ.get("PIPELINE_ROOT")
    if env:
        root = Path(env).absolute()
        if not (root / "pyproject.toml").is_file():
            raise ContractError(f"PIPELINE_ROOT={env}: no pyproject.toml there")
        return root
    for parent in Path(__file__).resolve().parents:
        if _is_workspace_root(parent):
            return parent
    raise ContractError("cannot find the project root from the installed storage_links; set PIPELINE_ROOT")


def share_root(root: Path | None = None) -> Path:
    """FILESHARE_ROOT if set, else /mnt/fileshare when it exists, else <project>/local_fileshare."""
    env = os.environ.get("FILESHARE_ROOT")
    if env:
        return Path(env).absolute()
    if CONTAINER_SHARE.exists():
        return CONTAINER_SHARE
    return (root or project_root()) / LOCAL_SHARE_NAME


def links(root: Path | None = None) -> list[Link]:
    """Every declared link of the workspace at `root`, root contract first, then members by name."""
    root = (root or project_root()).absolute()
    return list(_links_cached(root))


def data_dir(package: str, name: str, root: Path | None = None) -> Path:
    """The directory `name` that `package` declares, resolved against the project root.

    Stages call this instead of writing paths of their own, so the same code works in a
    checkout, in the container and in a test's temporary root.
    """
    for link in links(root):
        if link.package == package and link.name == name:
            return link.local
    declared = ", ".join(f"{lk.package or '<root>'}:{lk.name}" for lk in links(root))
    raise ContractError(
        f"{package or '<root>'}:{name} is not declared in any [tool.storage-links] (declared: {declared})"
    )


def logs_dir(root: Path | None = None) -> Path:
    return data_dir(ROOT_PACKAGE, "logs", root)


def _read_toml(path: Path) -> dict:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ContractError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ContractError(f"{path}: invalid TOML: {exc}") from None


def _is_workspace_root(path: Path) -> bool:
    pyproject = path / "pyproject.toml"
    if not pyproject.is_file():
        return False
    try:
        data = _read_toml(pyproject)
    except ContractError:
        return False
    return "members" in _workspace(data)


def _workspace(data: dict) -> dict:
    return data.get("tool", {}).get("hatch", {}).get("envs", {}).get("default", {}).get("workspace", {})


@cache
def _links_cached(root: Path) -> tuple[Link, ...]:
    pyproject = root / "pyproject.toml"
    data = _read_toml(pyproject)
    members = _workspace(data).get("members")
    if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
        raise ContractError(f"{pyproject}: tool.hatch.envs.default.workspace.members must be a list of globs")
    result = list(_parse_contract(pyproject, data, ROOT_PACKAGE, root))
    member_dirs = sorted({p for pattern in members for p in root.glob(pattern) if (p / "pyproject.toml").is_file()})
    for member in member_dirs:
        member_py = member / "pyproject.toml"
        result.extend(_parse_contract(member_py, _read_toml(member_py), member.name, member))
    seen: dict[str, Path] = {}
    for link in result:
        if link.share_rel in seen:
            raise ContractError(
                f"{link.local}: share path {link.share_rel!r} is already claimed by {seen[link.share_rel]}"
            )
        seen[link.share_rel] = link.local
    return tuple(result)


def _parse_contract(pyproject: Path, data: dict, package: str, base: Path) -> list[Link]:
    table = data.get("tool", {}).get("storage-links")
    if table is None:
        return []
    where = f"{pyproject}: tool.storage-links"
    declared = table.get("links", {})
    subdirs = table.get("subdirs", {})
    if not isinstance(declared, dict):
        raise ContractError(f"{where}.links must be a table of 'dir in package' = 'dir on share'")
    if not isinstance(subdirs, dict):
        raise ContractError(f"{where}.subdirs must be a table of 'dir in package' = [subdirs]")
    for key in set(table) - {"links", "subdirs"}:
        raise ContractError(f"{where}.{key}: unknown key (allowed: links, subdirs)")
    for key in set(subdirs) - set(declared):
        raise ContractError(f"{where}.subdirs.{key}: not a declared link")
    result = []
    for name, share_rel in declared.items():
        _check_relative(f"{where}.links.{name}", name, single=True)
        if not isinstance(share_rel, str):
            raise ContractError(f"{where}.links.{name}: share path must be a string")
        _check_relative(f"{where}.links.{name}", share_rel, single=False)
        subs = subdirs.get(name, [])
        if not isinstance(subs, list) or not all(isinstance(s, str) for s in subs):
            raise ContractError(f"{where}.subdirs.{name}: must be a list of directory names")
        for sub in subs:
            _check_relative(f"{where}.subdirs.{name}", sub, single=False)
        result.append(Link(package, name, base / name, str(PurePosixPath(share_rel)), tuple(subs)))
    return result


def _check_relative(where: str, value: str, *, single: bool) -> None:
    path = PurePosixPath(value)
    bad = (
        not value
        or path.is_absolute()
        or ".." in path.parts
        or "\\" in value
        or (single and len(path.parts) != 1)
        or value in (".",)
    )
    if bad:
        kind = "a single directory name inside its package" if single else "a relative path without '..'"
        raise ContractError(f"{where}: {value!r} must be {kind}")
