"""Build throw-away project roots for tests: the real contracts, in a temporary place.

A stage's tests call `scaffold_project(tmp_path, [Path(__file__).parents[1]])` and set
PIPELINE_ROOT to the result, so they read and write exactly where the stage would,
without restating any path.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT_PYPROJECT = """\
[project]
name = "scaffolded-workspace"
version = "0"

[tool.hatch.envs.default]
workspace.members = ["packages/*"]

[tool.storage-links]
links = { "logs" = "logs" }
"""


def scaffold_project(root: Path, package_dirs: list[Path]) -> Path:
    """Create `root` as a workspace holding a copy of each package's pyproject.toml."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(ROOT_PYPROJECT)
    for package_dir in package_dirs:
        dest = root / "packages" / package_dir.name
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(package_dir / "pyproject.toml", dest / "pyproject.toml")
    return root


# The lists of the opened_paths blocks under way. An audit hook cannot be removed, so one is added
# the first time and records only while a block is open.
_recordings: list[list[str]] = []
_hooked = False


def _record_open(event: str, args: tuple) -> None:
    if event == "open" and _recordings and isinstance(args[0], str | bytes | os.PathLike):
        for paths in _recordings:
            paths.append(os.fsdecode(args[0]))


@contextlib.contextmanager
def opened_paths() -> Iterator[list[str]]:
    """Every path that this process opens inside the block (open(), os.open, from any thread), in
    order, as Python's "open" audit event reports it: what a write touched, with nothing patched."""
    global _hooked
    if not _hooked:
        sys.addaudithook(_record_open)
        _hooked = True
    paths: list[str] = []
    _recordings.append(paths)
    try:
        yield paths
    finally:
        _recordings.remove(paths)
