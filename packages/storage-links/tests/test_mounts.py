"""A read-only share and --require-mount, with real mounts (a bind mount; needs root, skipped otherwise)."""

from __future__ import annotations

import subprocess

import pytest


@pytest.fixture
def bind_mount():
    mounted = []

    def mount(path, *options: str) -> None:
        proc = subprocess.run(["mount", "--bind", *options, str(path), str(path)], capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot bind-mount here ({proc.stderr.strip() or 'mount failed'})")
        mounted.append(path)

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", str(path)], check=False)


def test_read_only_share(env, cli, bind_mount, snapshot):
    env.local().mkdir()
    (env.local() / "f").write_text("keep")
    bind_mount(env.share, "-o", "ro")
    before = snapshot(env.root, env.share)
    result = cli("init")
    assert result.code == 6
    assert f"share {env.share} is read-only" in result.err
    assert snapshot(env.root, env.share) == before


def test_read_only_target_is_a_conflict_before_anything_changes(env, cli, bind_mount, snapshot):
    env.local().mkdir()
    (env.local() / "f").write_text("keep")
    env.target().mkdir(parents=True)
    bind_mount(env.target(), "-o", "ro")
    before = snapshot(env.root, env.share)
    result = cli("init")
    assert result.code == 3
    assert f"conflict: alpha/data: {env.target()} on the share is on a read-only file system\n" in result.err
    assert snapshot(env.root, env.share) == before


def test_read_only_target_fails_validate(env, cli, bind_mount):
    assert cli("init").code == 0
    bind_mount(env.target(), "-o", "ro")
    result = cli("validate")
    assert result.code == 2
    assert f"{env.target()}: the target is not writable" in result.err


def test_require_mount_accepts_a_mount_point(env, cli, bind_mount):
    # A bind mount within one device: os.path.ismount misses it, /proc/self/mountinfo does not.
    bind_mount(env.share)
    result = cli("init", "--require-mount")
    assert result.code == 0, result.err
    assert f"✓ Symlink verified: alpha/data -> {env.target()}" in result.out


@pytest.mark.parametrize("mounted", ["", "input"], ids=["the data dir", "a subdir"])
def test_a_mount_point_in_the_data_is_a_conflict(env, cli, bind_mount, snapshot, mounted):
    # Its files were moved to the share, then the swap for a link failed with EBUSY on every re-run.
    (env.local() / "input").mkdir(parents=True)
    (env.local() / "input" / "f").write_text("keep")
    bind_mount(env.local() / mounted)
    before = snapshot(env.root, env.share)
    result = cli("init")
    assert result.code == 3
    assert result.err.splitlines()[0] == (
        f"storage-links: conflict: alpha/data: {env.local() / mounted} is a mount point; storage-links cannot "
        f"replace it by a link: unmount it (or mount it on the share instead) and re-run"
    )
    assert snapshot(env.root, env.share) == before


def test_mountinfo_escapes():
    from storage_links._plan import _unescape_mountinfo

    assert _unescape_mountinfo(r"/mnt/my\040share\134x") == "/mnt/my share\\x"
