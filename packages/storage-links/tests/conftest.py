"""Fixtures: a throw-away workspace with small contracts of its own, a share beside it, and CLI runners."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import storage_links
from storage_links._cli import main
from storage_links.testing import ROOT_PYPROJECT

ALPHA = """\
[project]
name = "alpha"
version = "0"

[tool.storage-links]
links = { "data" = "alpha/data", "cache" = "alpha/cache" }
subdirs = { "data" = ["input", "output"] }
"""


@dataclass
class Env:
    root: Path
    share: Path

    def local(self, name: str = "data") -> Path:
        return self.root / "logs" if name == "logs" else self.root / "packages" / "alpha" / name

    def target(self, share_rel: str = "alpha/data") -> Path:
        return self.share / share_rel


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    # The contract cache must not leak between tests or into the user's home.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
    monkeypatch.delenv("PIPELINE_ROOT", raising=False)
    monkeypatch.delenv("FILESHARE_ROOT", raising=False)


@pytest.fixture
def env(tmp_path, monkeypatch) -> Env:
    root = tmp_path / "project"
    (root / "packages" / "alpha").mkdir(parents=True)
    (root / "pyproject.toml").write_text(ROOT_PYPROJECT)
    (root / "packages" / "alpha" / "pyproject.toml").write_text(ALPHA)
    share = tmp_path / "share"
    share.mkdir()
    monkeypatch.setenv("PIPELINE_ROOT", str(root))
    monkeypatch.setenv("FILESHARE_ROOT", str(share))
    return Env(root, share)


@pytest.fixture(params=["same file system", "other file system"])
def any_fs_env(request, env, monkeypatch, tmp_path):
    """`env`, with the share on the project's file system (files are renamed) or on another (files are copied)."""
    if request.param == "other file system":
        shm = Path("/dev/shm")
        if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev or not os.access(shm, os.W_OK):
            pytest.skip("no writable /dev/shm on another file system to hold the share")
        share = Path(tempfile.mkdtemp(prefix="storage-links-share-", dir=shm))
        request.addfinalizer(lambda: shutil.rmtree(share, ignore_errors=True))
        monkeypatch.setenv("FILESHARE_ROOT", str(share))
        env.share = share
    return env


NOBODY = 65534
SYSTEM_PYTHON = Path("/usr/bin/python3")  # one any user may run, unlike a venv's Python under /root
PACKAGE = Path(storage_links.__file__).parent  # stdlib only: its source is all the system Python needs


@pytest.fixture
def nobody_env() -> Iterator[Env]:
    """`env`'s tree owned by user nobody, somewhere nobody can reach (pytest's tmp_path is 0700).

    Mode bits do not stop root, so tests of what another user may not write run the CLI as nobody
    (`run_as_nobody`); arranging that needs root, so it is skipped otherwise."""
    if os.geteuid() != 0 or not SYSTEM_PYTHON.exists():
        pytest.skip("needs root, to run the CLI as another user, and /usr/bin/python3")
    top = Path(tempfile.mkdtemp(prefix="storage-links-nobody-"))
    try:
        os.chmod(top, 0o755)
        root, share = top / "project", top / "share"
        (root / "packages" / "alpha").mkdir(parents=True)
        (root / "pyproject.toml").write_text(ROOT_PYPROJECT)
        (root / "packages" / "alpha" / "pyproject.toml").write_text(ALPHA)
        share.mkdir()
        (top / "cache").mkdir()
        # A copy nobody can read: where this one is installed (tox's .tox is 0700), nobody may not reach.
        shutil.copytree(PACKAGE, top / "lib" / "storage_links", ignore=shutil.ignore_patterns("__pycache__"))
        yield Env(root, share)
    finally:
        shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def run_as_nobody() -> Callable[..., subprocess.CompletedProcess]:
    """Give the whole tree to nobody, then run the CLI as nobody against it."""

    def run(env: Env, *args: str, keep_root: tuple[Path, ...] = ()) -> subprocess.CompletedProcess:
        top = env.root.parent
        for dirpath, dirnames, filenames in os.walk(top):
            for name in [".", *dirnames, *filenames]:
                path = os.path.join(dirpath, name)
                owner = 0 if os.path.normpath(path) in {str(p) for p in keep_root} else NOBODY
                os.chown(path, owner, owner, follow_symlinks=False)
        variables = {
            "PIPELINE_ROOT": str(env.root),
            "FILESHARE_ROOT": str(env.share),
            "XDG_CACHE_HOME": str(top / "cache"),
            "HOME": str(top),
            "PYTHONPATH": str(top / "lib"),
        }
        return subprocess.run(
            [str(SYSTEM_PYTHON), "-m", "storage_links", *args],
            capture_output=True,
            text=True,
            env={**os.environ, **variables},
            user=NOBODY,
            group=NOBODY,
            extra_groups=[],
        )

    return run


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys):
    """Run the CLI in this process (fast); returns exit code, stdout, stderr."""

    def run(*args: str) -> Result:
        capsys.readouterr()
        code = main(list(args))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def run_subprocess(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "storage_links", *args], capture_output=True, text=True, env=os.environ.copy(), **kwargs
    )


@pytest.fixture
def snapshot():
    return take_snapshot


def take_snapshot(*roots: Path) -> dict[str, tuple]:
    """Everything about a tree that a change would alter: type, content, link target, inode, mtime."""
    state = {}
    for top in roots:
        for dirpath, dirnames, filenames in os.walk(top):
            for name in dirnames + filenames:
                path = Path(dirpath) / name
                st = path.lstat()
                if path.is_symlink():
                    state[str(path)] = ("link", os.readlink(path), st.st_ino)
                elif path.is_file():
                    state[str(path)] = ("file", path.read_bytes(), st.st_ino, st.st_mtime_ns)
                else:
                    state[str(path)] = ("dir", st.st_ino, st.st_mtime_ns)
    return state
