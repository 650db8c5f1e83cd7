"""Build throw-away project roots for tests: the real contracts, in a temporary place.

A stage's tests call `scaffold_project(tmp_path, [Path(__file__).parents[1]])` and set
PIPELINE_ROOT to the result, so they read and write exactly where the stage would,
without restating any path.
"""

from __future__ import annotations

import shutil
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
