"""Running `make run` against a throw-away project root and share, as a user would run it."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from storage_links.testing import scaffold_project

REPO = Path(__file__).resolve().parents[1]
PACKAGES = sorted(p for p in (REPO / "packages").iterdir() if (p / "pyproject.toml").is_file())
RUN_HEADER = re.compile(r"^run (\S+): profile", re.MULTILINE)


def make_project(base: Path) -> Path:
    return scaffold_project(base, PACKAGES)


# What a developer's shell may hold for the pipeline (keys, endpoints, profile, settings files), which
# must not reach a test's stages unless the test passes it.
_CALLERS_PREFIXES = ("PIPELINE_", "FRED_", "AZURE_", "TREASURY_")
_CALLERS_NAMES = ("RUN_ID", "SCRAPING_CONFIG", "MODELLING_CONFIG", "FORECASTING_CONFIG")


def clean_env(root: Path, share: Path, **env: str) -> dict[str, str]:
    """This process's environment without the caller's pipeline settings, pointed at `root` and `share`, plus `env`."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(_CALLERS_PREFIXES) and k not in _CALLERS_NAMES}
    return {**clean, "PIPELINE_ROOT": str(root), "FILESHARE_ROOT": str(share), **env}


def make_run(root: Path, share: Path, *args: str, timeout: float = 900, **env: str) -> subprocess.CompletedProcess[str]:
    """`make run ARGS` with the data dirs under `root` and the share at `share`; keys only from `env`."""
    return subprocess.run(
        ["make", "-s", "-C", str(REPO), "run", *args],
        env=clean_env(root, share, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_id_of(result: subprocess.CompletedProcess[str]) -> str:
    match = RUN_HEADER.search(result.stderr)
    assert match, f"no run header in:\n{result.stderr[-2000:]}"
    return match.group(1)


def tree(path: Path) -> dict[str, tuple[int, int]]:
    """Every file under `path` with its size and modification time (to prove nothing was rewritten)."""
    return {
        str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }
