"""The share as a real network file system: Samba on loopback, mounted through FUSE.

First that the mount behaves like the SMB share it stands for (a FUSE mount, data landing on
the server, no symlinks), then `storage-links` run against it through its console script.
"""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from storage_links import Link, links
from storage_links.testing import scaffold_project

from tests import _smb
from tests._smb import SmbShare, SmbUnavailable, fresh_dir, fuse_mounts, session_members

pytestmark = pytest.mark.smb

REPO = Path(__file__).resolve().parents[1]
CLI_TIMEOUT_S = 120


def _tree(root: Path) -> dict[str, tuple[str, int]]:
    """Every entry under `root`: relative path -> (kind, size), without following links."""
    entries = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            kind = "link" if path.is_symlink() else "dir" if path.is_dir() else "file"
            entries[str(path.relative_to(root))] = (kind, path.lstat().st_size if kind == "file" else 0)
    return entries


# ---- the fixture cleans up after itself ----------------------------------------------------

# Starts a share in a child process, reports it, and waits to be killed.
_CHILD = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from tests._smb import SmbShare
share = SmbShare().start()
print(json.dumps({"base": str(share.base), "mount": str(share.mount_point), "sessions": share.sessions}), flush=True)
time.sleep(600)
"""


def _gone(mount: str, sessions: list[int], wait_s: float) -> bool:
    """Whether the mount and every process of `sessions` disappear within `wait_s`."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if mount not in fuse_mounts() and not any(session_members(sid) for sid in sessions):
            return True
        time.sleep(0.1)
    return False


def test_stop_leaves_no_mount_and_no_process(smb_server: SmbShare) -> None:
    # smb_server only to skip where the machine cannot serve a share at all.
    share = SmbShare().start()
    mount, sessions = str(share.mount_point), share.sessions
    assert fuse_mounts().get(mount) == "fuse.smbnetfs"
    assert len(sessions) == 2 and all(session_members(sid) for sid in sessions)

    share.stop()

    assert mount not in fuse_mounts()
    assert not [sid for sid in sessions if session_members(sid)]
    assert not share.base.exists()


def test_a_killed_test_run_leaves_no_mount_and_no_process(smb_server: SmbShare) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(REPO)], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        started = json.loads(child.stdout.readline())
        assert fuse_mounts().get(started["mount"]) == "fuse.smbnetfs"
        os.kill(child.pid, signal.SIGKILL)  # no finalizer runs: only PR_SET_PDEATHSIG can clean up
        child.wait(timeout=10)
        assert _gone(started["mount"], started["sessions"], wait_s=30)
        # What is left is a plain directory tree, which the next start removes.
        _smb.reap_stale()
        assert not Path(started["base"]).exists()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
        child.stdout.close()


def test_a_missing_tool_is_named_in_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    real = _smb._which
    monkeypatch.setattr(_smb, "_which", lambda name: None if name == "smbnetfs" else real(name))
    share = SmbShare()
    with pytest.raises(SmbUnavailable, match=r"not installed: smbnetfs"):
        share.start()
    assert not share.base.exists()


def test_a_refused_mount_is_a_reason_and_stops_the_server(
    smb_server: SmbShare, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = _smb._which
    # A "smbnetfs" that fails at once, as one does where FUSE mounts are not permitted.
    monkeypatch.setattr(_smb, "_which", lambda name: "/bin/false" if name == "smbnetfs" else real(name))
    share = SmbShare()
    with pytest.raises(SmbUnavailable, match=r"smbnetfs could not mount \(exit 1\)"):
        share.start()
    assert share.sessions and not [sid for sid in share.sessions if session_members(sid)]
    assert str(share.mount_point) not in fuse_mounts()
    assert not share.base.exists()


# ---- the share behaves like a network share ---------------------------------------------


def test_share_is_a_fuse_mount(smb_server: SmbShare, smb_share: Path) -> None:
    assert fuse_mounts().get(str(smb_server.mount_point)) == "fuse.smbnetfs"
    assert smb_share.is_relative_to(smb_server.mount_point)
    # Same device as the mount, not as the local disk the mount point sits on.
    assert os.stat(smb_share).st_dev == os.stat(smb_server.mount_point).st_dev
    assert os.stat(smb_share).st_dev != os.stat(smb_server.base).st_dev


def test_data_written_through_the_mount_lands_on_the_server(smb_server: SmbShare, smb_share: Path) -> None:
    payload = random.Random(3).randbytes(3 * 1024 * 1024 + 17)
    written = smb_share / "a" / "b" / "blob.bin"
    written.parent.mkdir(parents=True)
    written.write_bytes(payload)
    assert smb_server.server_path(written).read_bytes() == payload

    # And the other way: what the server holds is what the client reads.
    smb_server.server_path(smb_share / "from-server.txt").write_text("served\n")
    assert (smb_share / "from-server.txt").read_text() == "served\n"


def test_symlinks_cannot_be_created(smb_server: SmbShare, smb_share: Path) -> None:
    (smb_share / "target.txt").write_text("x")
    with pytest.raises(OSError) as raised:
        os.symlink("target.txt", smb_share / "link")
    # Observed: ENOSYS (smbnetfs has no symlink operation; SMB3 without unix extensions has none).
    assert raised.value.errno == errno.ENOSYS
    assert not os.path.lexists(smb_share / "link")
    assert not os.path.lexists(smb_server.server_path(smb_share / "link"))


def test_exclusive_create_and_replace_work_as_the_lock_and_atomic_writes_need(smb_share: Path) -> None:
    lock = smb_share / ".lock"
    os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    with pytest.raises(FileExistsError):
        os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)

    (smb_share / "data.tmp").write_text("new")
    (smb_share / "data").write_text("old")
    os.replace(smb_share / "data.tmp", smb_share / "data")
    assert (smb_share / "data").read_text() == "new"
    assert not (smb_share / "data.tmp").exists()


# ---- storage-links against the share ----------------------------------------------------


def _cli() -> list[str]:
    script = Path(sys.executable).with_name("storage-links")
    return [str(script)] if script.exists() else [sys.executable, "-m", "storage_links"]


def _env(root: Path, share: Path) -> dict[str, str]:
    # storage-links caches parsed contracts under XDG_CACHE_HOME: keep that in the test's own tree.
    cache = root.parent / "xdg-cache"
    cache.mkdir(exist_ok=True)  # made here, not by the first run, so that every run takes the same steps
    return {**os.environ, "PIPELINE_ROOT": str(root), "FILESHARE_ROOT": str(share), "XDG_CACHE_HOME": str(cache)}


def _run(command: str, root: Path, share: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = _env(root, share)
    return subprocess.run(
        [*_cli(), command, *args], env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S, cwd=root
    )


@pytest.fixture
def share_mount_point(smb_share: Path, tmp_path: Path) -> Iterator[Path]:
    """The per-test share dir bind-mounted on a local dir: a mount point, as /mnt/fileshare is."""
    point = tmp_path / "fileshare"
    point.mkdir()
    bound = subprocess.run(["mount", "--bind", str(smb_share), str(point)], capture_output=True, text=True, timeout=15)
    if bound.returncode != 0:
        pytest.skip(f"cannot bind-mount the share: {bound.stderr.strip()}")
    try:
        yield point
    finally:
        # Before the session's FUSE unmount, which a bind mount on top would make busy.
        if subprocess.run(["umount", str(point)], capture_output=True, timeout=15).returncode != 0:
            subprocess.run(["umount", "-l", str(point)], capture_output=True, timeout=15)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    packages = sorted(p for p in (REPO / "packages").iterdir() if (p / "pyproject.toml").is_file())
    return scaffold_project(tmp_path / "project", packages)


def _seed(declared: list[Link]) -> dict[str, bytes]:
    """Put data in every local data dir: nested dirs, text, a binary file, a few MB in all.

    Returns what must arrive on the share: path relative to the share root -> content.
    """
    rng = random.Random(11)
    expected = {}
    for index, link in enumerate(declared):
        files = {
            "top.csv": b"date,value\n2024-01-01,1.5\n",
            "nested/deeper/still/series.json": b'{"id": "GDP", "\xc3\xa9": 1}\n',
            "nested/model.bin": rng.randbytes(1024 * 1024 + index),
            "nested/empty.dat": b"",
        }
        for sub in link.subdirs:
            files[f"{sub}/in-subdir.txt"] = f"{link.share_rel}/{sub}\n".encode()
        for rel, content in files.items():
            path = link.local / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            expected[f"{link.share_rel}/{rel}"] = content
    return expected


def _verified_lines(declared: list[Link], share: Path) -> list[str]:
    return sorted(f"✓ Symlink verified: {link.share_rel} -> {link.target(share)}" for link in declared)


def test_init_migrates_every_byte_over_smb_and_links_the_dirs(
    smb_server: SmbShare, smb_share: Path, project: Path
) -> None:
    declared = links(project)
    assert declared, "the scaffolded project declares no data dirs"
    expected = _seed(declared)
    assert sum(len(content) for content in expected.values()) > 3 * 1024 * 1024

    first = _run("init", project, smb_share)
    assert first.returncode == 0, first.stderr
    assert sorted(first.stdout.splitlines()) == _verified_lines(declared, smb_share)

    for rel, content in expected.items():
        assert (smb_share / rel).read_bytes() == content, rel
        # Read on the server's own disk: the bytes went over SMB, not around it.
        assert smb_server.server_path(smb_share / rel).read_bytes() == content, rel
    for link in declared:
        assert link.local.is_symlink(), link.local
        assert Path(os.readlink(link.local)) == link.target(smb_share)
        assert link.target(smb_share).is_dir()
        for sub in link.subdirs:
            assert smb_server.server_path(link.target(smb_share) / sub).is_dir()
    # Nothing was left behind locally: each data dir is now only the link.
    left = [name for _dir, _subdirs, names in os.walk(project) for name in names if name != "pyproject.toml"]
    assert not left

    server_tree = _tree(smb_server.server_path(smb_share))
    assert not [rel for rel, (kind, _) in server_tree.items() if kind == "link"]
    assert {rel for rel, (kind, _) in server_tree.items() if kind == "file"} == set(expected)

    validate = _run("validate", project, smb_share)
    assert validate.returncode == 0, validate.stdout + validate.stderr


def test_second_init_over_smb_is_a_no_op(smb_server: SmbShare, smb_share: Path, project: Path) -> None:
    declared = links(project)
    _seed(declared)
    first = _run("init", project, smb_share)
    assert first.returncode == 0, first.stderr
    server_dir = smb_server.server_path(smb_share)
    before = {rel: (entry, os.lstat(server_dir / rel).st_mtime_ns) for rel, entry in _tree(server_dir).items()}
    targets = {link.local: os.readlink(link.local) for link in declared}

    second = _run("init", project, smb_share)

    assert second.returncode == 0, second.stderr
    assert sorted(second.stdout.splitlines()) == _verified_lines(declared, smb_share)
    after = {rel: (entry, os.lstat(server_dir / rel).st_mtime_ns) for rel, entry in _tree(server_dir).items()}
    assert after == before
    assert {link.local: os.readlink(link.local) for link in declared} == targets


def test_a_name_on_both_sides_keeps_both_versions_on_the_server(
    smb_server: SmbShare, smb_share: Path, project: Path
) -> None:
    link = links(project)[0]
    (link.target(smb_share) / "nested").mkdir(parents=True)
    (link.target(smb_share) / "nested" / "same.txt").write_text("share version\n")
    (link.local / "nested").mkdir(parents=True)
    (link.local / "nested" / "same.txt").write_text("local version\n")

    result = _run("init", project, smb_share)

    assert result.returncode == 0, result.stderr
    server_dir = smb_server.server_path(link.target(smb_share) / "nested")
    assert (server_dir / "same.txt").read_text() == "share version\n"
    aside = [p for p in server_dir.iterdir() if p.name.startswith("same.txt.local-conflict-")]
    assert [p.read_text() for p in aside] == ["local version\n"]
    assert aside[0].name in result.stdout + result.stderr


def test_unlink_over_smb_copies_every_byte_back(smb_server: SmbShare, smb_share: Path, project: Path) -> None:
    declared = links(project)
    expected = _seed(declared)
    assert _run("init", project, smb_share).returncode == 0

    result = _run("unlink", project, smb_share)

    assert result.returncode == 0, result.stderr
    for link in declared:
        assert link.local.is_dir() and not link.local.is_symlink(), link.local
    for rel, content in expected.items():
        link = next(lk for lk in declared if rel.startswith(f"{lk.share_rel}/"))
        assert (link.local / rel.removeprefix(f"{link.share_rel}/")).read_bytes() == content, rel
        # The share keeps its copy (other containers may use it).
        assert smb_server.server_path(smb_share / rel).read_bytes() == content, rel


def test_require_mount_accepts_the_mounted_share_and_refuses_a_plain_dir(
    smb_server: SmbShare, smb_share: Path, share_mount_point: Path, project: Path
) -> None:
    (share_mount_point / "inside").mkdir()
    refused = _run("init", project, smb_share / "inside", "--require-mount")
    assert refused.returncode == 6
    assert f"{smb_share / 'inside'} is not a mount point" in refused.stdout + refused.stderr
    assert not [link for link in links(project) if link.local.is_symlink()]

    accepted = _run("init", project, share_mount_point, "--require-mount")
    assert accepted.returncode == 0, accepted.stderr
    assert sorted(accepted.stdout.splitlines()) == _verified_lines(links(project), share_mount_point)
    for link in links(project):
        assert smb_server.server_path(link.target(smb_share)).is_dir()


# Runs `storage-links init` and dies with os._exit (as under SIGKILL: no cleanup runs) at its Nth
# file-system step; with N = 0 it dies nowhere and reports how many steps there were. An attempt the
# share refuses as busy is not a step: retry_busy makes it again, and the share does that at random,
# so counting it would shift every later step between the counting run and the crashing ones.
_CRASHING_INIT = """
import os, sys
from storage_links._busy import is_busy
from storage_links._cli import main
kill_at, steps = int(sys.argv[1]), 0
def counted(name):
    real = getattr(os, name)
    def step(*args, **kwargs):
        global steps
        steps += 1
        if steps == kill_at:
            os._exit(137)
        try:
            return real(*args, **kwargs)
        except OSError as exc:
            if is_busy(exc):
                steps -= 1
            raise
    setattr(os, name, step)
for name in ("write", "fsync", "rename", "replace", "unlink", "rmdir", "mkdir", "symlink", "utime", "chmod"):
    counted(name)
code = main(["init"])
print(f"steps={steps}", file=sys.stderr)
sys.exit(code)
"""
LOCK_NAME = ".storage-links.lock"  # documented in `storage-links --help`
CRASH_POINTS = 12


def _crashing_init(kill_at: int, root: Path, share: Path) -> subprocess.CompletedProcess[str]:
    # Every root is new to the contract cache, so the counting run and each crashing run take the same steps.
    return subprocess.run(
        [sys.executable, "-c", _CRASHING_INIT, str(kill_at)],
        env=_env(root, share),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        cwd=root,
    )


@pytest.mark.slow
def test_init_killed_anywhere_over_smb_loses_nothing_and_the_next_init_finishes(
    smb_server: SmbShare, smb_share: Path, tmp_path: Path
) -> None:
    packages = sorted(p for p in (REPO / "packages").iterdir() if (p / "pyproject.toml").is_file())
    counting_root = scaffold_project(tmp_path / "counting", packages)
    _seed(links(counting_root))
    counted = _crashing_init(0, counting_root, fresh_dir(smb_share, "counting"))
    assert counted.returncode == 0, counted.stderr
    total = int(counted.stderr.rsplit("steps=", 1)[1])
    assert total > CRASH_POINTS
    # Spread evenly over the whole migration, first and last step included.
    points = sorted({1 + i * (total - 1) // (CRASH_POINTS - 1) for i in range(CRASH_POINTS)})

    for kill_at in points:
        root = scaffold_project(tmp_path / f"at-{kill_at}", packages)
        share = fresh_dir(smb_share, f"at-{kill_at}")
        declared = links(root)
        expected = _seed(declared)

        crashed = _crashing_init(kill_at, root, share)
        assert crashed.returncode == 137, f"step {kill_at}: {crashed.stderr}"
        for rel, content in expected.items():
            link = next(lk for lk in declared if rel.startswith(f"{lk.share_rel}/"))
            local = link.local / rel.removeprefix(f"{link.share_rel}/")
            on_share = smb_server.server_path(share / rel)
            assert any(p.is_file() and p.read_bytes() == content for p in (local, on_share)), f"step {kill_at}: {rel}"

        lock = share / LOCK_NAME
        if lock.exists() and not lock.read_bytes():
            # Killed between creating the lock and writing its owner: stale after 2 s; age it, don't wait.
            then = time.time() - 10
            os.utime(lock, (then, then))
        finished = _run("init", root, share)
        assert finished.returncode == 0, f"step {kill_at}: {finished.stderr}"
        assert sorted(finished.stdout.splitlines()) == _verified_lines(declared, share)
        for rel, content in expected.items():
            assert smb_server.server_path(share / rel).read_bytes() == content, f"step {kill_at}: {rel}"
        server_tree = _tree(smb_server.server_path(share))
        assert {rel for rel, (kind, _) in server_tree.items() if kind == "file"} == set(expected), f"step {kill_at}"
        assert not [rel for rel, (kind, _) in server_tree.items() if kind == "link"]
        # Nor any of the reserved ".<name>.storage-links-*" names beside the links.
        reserved = [
            n for _d, dirs, names in os.walk(root) for n in dirs + names if n.startswith(".") and "storage-links" in n
        ]
        assert not reserved, f"step {kill_at}"
