"""Where the project and the share are, and which data directories the packages declare.

The `[tool.storage-links]` table in each package's pyproject.toml is the only
place a data path is written down. Everything else asks this module (the CLI
asks `_declared`, its cheaper core, directly).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from storage_links._declared import ROOT_PACKAGE, declared_links, find_root, find_share
from storage_links._errors import ContractError

__all__ = ["ROOT_PACKAGE", "Link", "data_dir", "links", "logs_dir", "project_root", "share_root"]


@dataclass(frozen=True)
class Link:
    """One declared data directory: `local` in the project becomes a symlink to `share_rel` on the share."""

    package: str  # workspace member directory name, or ROOT_PACKAGE
    name: str  # directory name inside the package, e.g. "scraped_data"
    local: Path  # absolute path in the project
    share_rel: str  # path relative to the share root, e.g. "scraping/scraped_data"
    subdirs: tuple[str, ...] = ()

    def target(self, share: Path) -> Path:
        return Path(share) / self.share_rel


def project_root() -> Path:
    """PIPELINE_ROOT if set, else the workspace this package was installed from."""
    return Path(find_root())


def share_root(root: Path | None = None) -> Path:
    """FILESHARE_ROOT if set (the image sets /mnt/fileshare; a relative one is from the project root),
    else <project>/local_fileshare."""
    return Path(find_share(str(root) if root else None))


def links(root: Path | None = None) -> list[Link]:
    """Every declared link of the workspace at `root`, root contract first, then members by name."""
    root_str = str(Path(root).absolute()) if root else find_root()
    return [Link(pkg, name, Path(local), rel, subs) for pkg, name, local, rel, subs, _ in declared_links(root_str)]


def data_dir(package: str, name: str, root: Path | None = None) -> Path:
    """The directory `name` that `package` declares, resolved against the project root.

    Stages call this instead of writing paths of their own, so the same code works in a
    checkout, in the container and in a test's temporary root.
    """
    declared = links(root)
    for link in declared:
        if link.package == package and link.name == name:
            return link.local
    names = ", ".join(f"{lk.package or '<root>'}:{lk.name}" for lk in declared)
    raise ContractError(f"{package or '<root>'}:{name} is not declared in any [tool.storage-links] (declared: {names})")


def logs_dir(root: Path | None = None) -> Path:
    return data_dir(ROOT_PACKAGE, "logs", root)
