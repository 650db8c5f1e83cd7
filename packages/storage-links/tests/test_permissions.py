"""Directories this user cannot write are conflicts found while planning, never a failure halfway.

Mode bits do not stop root, so these run the CLI as user nobody (see conftest's `nobody_env`).
A read-only mount is in test_mounts.py.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

NOBODY = 65534


def fill(env) -> None:
    (env.local() / "sub").mkdir(parents=True)
    (env.local() / "f.csv").write_text("1,2\n")
    (env.local() / "sub" / "g").write_text("g")


@pytest.mark.parametrize("unwritable", ["alpha", "alpha/data", "alpha/data/sub"])
def test_an_unwritable_share_directory_is_a_conflict(nobody_env, run_as_nobody, snapshot, unwritable):
    env = nobody_env
    fill(env)
    (env.share / unwritable).mkdir(parents=True)
    before = snapshot(env.root, env.share)
    proc = run_as_nobody(env, "init", keep_root=(env.share / unwritable,))
    assert proc.returncode == 3, proc.stderr
    expected = f"alpha/data: {env.share / unwritable} on the share is not writable by this user (uid {NOBODY})"
    assert proc.stderr.splitlines()[0] == f"storage-links: conflict: {expected}"
    assert sum("not writable" in line for line in proc.stderr.splitlines()) == 1
    assert snapshot(env.root, env.share) == before
    assert not env.local("logs").exists()  # no other link was made either


def test_an_unwritable_local_directory_is_a_conflict(nobody_env, run_as_nobody, snapshot):
    # Its files could be copied to the share but not removed here.
    env = nobody_env
    fill(env)
    before = snapshot(env.root, env.share)
    proc = run_as_nobody(env, "init", keep_root=(env.local() / "sub",))
    assert proc.returncode == 3, proc.stderr
    assert f"conflict: alpha/data: {env.local() / 'sub'} is not writable by this user (uid {NOBODY})" in proc.stderr
    assert snapshot(env.root, env.share) == before


def test_the_same_tree_owned_by_the_user_is_migrated(nobody_env, run_as_nobody):
    env = nobody_env
    fill(env)
    proc = run_as_nobody(env, "init")
    assert proc.returncode == 0, proc.stderr
    assert (env.target() / "sub" / "g").read_text() == "g"
    assert os.readlink(env.local()) == str(env.target())


def refuses(env, run_as_nobody, snapshot, command: str, keep_root: tuple, expected: str) -> None:
    """`command` and `command --dry-run` as nobody: the one conflict `expected`, exit 3, nothing changed."""
    before = snapshot(env.root, env.share)
    for args in ((command, "--dry-run"), (command,)):
        proc = run_as_nobody(env, *args, keep_root=keep_root)
        assert proc.returncode == 3, proc.stderr
        assert proc.stderr.splitlines() == [
            f"storage-links: conflict: alpha/data: {expected}",
            "storage-links: 1 conflict(s); nothing was changed",
        ]
        assert snapshot(env.root, env.share) == before


def test_unlink_checks_that_it_can_write_the_local_side_before_it_changes_anything(nobody_env, run_as_nobody, snapshot):
    # logs (the root's link) comes first: it was turned back into a directory, then the data's link failed.
    env = nobody_env
    fill(env)
    (env.local("logs")).mkdir()
    (env.local("logs") / "run.log").write_text("log")
    assert run_as_nobody(env, "init").returncode == 0
    refuses(
        env, run_as_nobody, snapshot, "unlink", (env.local().parent,),
        f"{env.local().parent} is not writable by this user (uid {NOBODY}); unlink puts the plain directory there",
    )  # fmt: skip
    assert env.local("logs").is_symlink()


@pytest.mark.parametrize(
    ("unreadable", "mode"),
    [("f.csv", 0o600), ("sub", 0o700), ("sub", 0o744), ("sub", 0o711)],
    ids=["file", "directory", "directory without x", "directory without r"],
)
def test_unlink_checks_that_it_can_read_the_share_before_it_changes_anything(
    nobody_env, run_as_nobody, snapshot, unreadable, mode
):
    # The logs link was turned back into a directory, then the copy of alpha/data stopped on EACCES.
    env = nobody_env
    fill(env)
    assert run_as_nobody(env, "init").returncode == 0
    os.chmod(env.target() / unreadable, mode)
    refuses(
        env, run_as_nobody, snapshot, "unlink", (env.target() / unreadable,),
        f"{env.target() / unreadable} on the share is not readable by this user (uid {NOBODY}); unlink copies it back",
    )  # fmt: skip
    assert env.local("logs").is_symlink()


def test_unlink_removes_a_leftover_copy_whose_directories_have_no_write_bit(nobody_env, run_as_nobody):
    # unlink copies the share's directory modes, so a killed run can leave a copy of a 555 directory, which
    # a plain rmtree cannot empty as its owner (it failed with EACCES on every re-run).
    env = nobody_env
    fill(env)
    assert run_as_nobody(env, "init").returncode == 0
    outside = env.root.parent / "outside"  # behind a symlink in the leftover: never made writable, never emptied
    outside.mkdir()
    (outside / "sentinel").write_text("must survive")
    leftover = env.local().parent / ".data.storage-links-unlink"
    (leftover / "sub" / "deep").mkdir(parents=True)
    (leftover / "sub" / "g").write_text("half")
    (leftover / "sub" / "deep" / "h").write_text("half")
    (leftover / "sub" / "escape").symlink_to(outside)
    for directory, mode in ((outside, 0o555), (leftover / "sub" / "deep", 0o500), (leftover / "sub", 0o555)):
        os.chmod(directory, mode)
    proc = run_as_nobody(env, "unlink")
    assert proc.returncode == 0, proc.stderr
    assert not leftover.exists()
    assert (env.local() / "sub" / "g").read_text() == "g"
    assert not env.local().is_symlink()
    assert (outside.stat().st_mode & 0o777, (outside / "sentinel").read_text()) == (0o555, "must survive")


@pytest.mark.parametrize("unreadable", ["local", "share"])
def test_init_checks_that_it_can_read_both_files_it_compares(nobody_env, run_as_nobody, snapshot, unreadable):
    # The name is on both sides, so init reads both files to compare them: it stopped on EACCES halfway.
    env = nobody_env
    fill(env)
    env.target().mkdir(parents=True)
    (env.target() / "f.csv").write_text("3,4\n")
    local, share = env.local() / "f.csv", env.target() / "f.csv"
    closed = local if unreadable == "local" else share
    os.chmod(closed, 0o600)
    expected = {
        "local": f"{local} is not readable by this user (uid {NOBODY}); init compares it with {share} on the share",
        "share": f"{share} on the share is not readable by this user (uid {NOBODY}); init compares it with {local}",
    }[unreadable]
    refuses(env, run_as_nobody, snapshot, "init", (closed,), expected)


def test_init_renames_a_local_file_it_cannot_read_onto_a_share_on_the_same_file_system(nobody_env, run_as_nobody):
    # A rename reads nothing: refusing it would stop a migration that works.
    env = nobody_env
    fill(env)
    os.chmod(env.local() / "f.csv", 0o600)
    inode = (env.local() / "f.csv").stat().st_ino
    proc = run_as_nobody(env, "init", keep_root=(env.local() / "f.csv",))
    assert proc.returncode == 0, proc.stderr
    assert (env.target() / "f.csv").stat().st_ino == inode


@pytest.mark.parametrize("mode", [0o700, 0o744, 0o711], ids=["directory", "without x", "without r"])
def test_init_checks_that_it_can_read_a_local_directory(nobody_env, run_as_nobody, snapshot, mode):
    # Without x, the plan itself stopped on EACCES as it looked at the files inside.
    env = nobody_env
    fill(env)
    os.chmod(env.local() / "sub", mode)
    refuses(
        env,
        run_as_nobody,
        snapshot,
        "init",
        (env.local() / "sub",),
        f"{env.local() / 'sub'} is not readable by this user (uid {NOBODY}); init moves what it holds",
    )


def test_init_checks_that_it_can_read_a_local_file_it_copies_to_another_file_system(
    nobody_env, run_as_nobody, snapshot
):
    env = nobody_env
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == env.root.stat().st_dev:
        pytest.skip("no /dev/shm on another file system to hold the share")
    share = Path(tempfile.mkdtemp(prefix="storage-links-share-", dir=shm))
    try:
        os.chown(share, NOBODY, NOBODY)
        os.chmod(share, 0o755)
        shutil.rmtree(env.share)
        env.share.symlink_to(share)  # FILESHARE_ROOT stays inside the tree run_as_nobody hands to nobody
        fill(env)
        os.chmod(env.local() / "f.csv", 0o600)
        refuses(
            env,
            run_as_nobody,
            snapshot,
            "init",
            (env.local() / "f.csv",),
            f"{env.local() / 'f.csv'} is not readable by this user (uid {NOBODY}); init copies it to the share",
        )
    finally:
        shutil.rmtree(share, ignore_errors=True)
