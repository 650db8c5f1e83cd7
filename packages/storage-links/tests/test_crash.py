"""A process killed at any moment of init leaves a state that the next init completes, losing nothing.

`crash_at(n)` runs init in a forked child process that dies (os._exit(137), as
abrupt as SIGKILL) at its Nth file-system step, for every N up to the total.
Steps are the calls that change the file system or make it durable, and each
1 MiB chunk written, so a death can also land in the middle of a file's copy.
After each death the data must all still be somewhere, and a normal init must
finish the job with every byte on the share. The same for unlink. Then a few
real SIGKILLs at random moments of a bigger migration.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from storage_links._lock import LOCK_NAME

STEPS = ("write", "fsync", "rename", "replace", "unlink", "rmdir", "mkdir", "symlink", "utime", "chmod")
BIG = os.urandom(1024 * 1024 + 12345)  # spans two 1 MiB chunks


def local_files() -> dict[str, dict[str, bytes]]:
    return {
        "data": {
            "a.txt": b"alpha",
            "sub/deeper/big.bin": BIG,
            "same.txt": b"identical on both sides",
            "diff.txt": b"the local version",
            "input/in.csv": b"1,2,3\n",
            "zero": b"",
            "l" * 250: b"a name as long as a name may be, less a few",
        },
        "cache": {"c.txt": b"cache"},
    }


SHARE_FILES = {"same.txt": b"identical on both sides", "diff.txt": b"the share's version", "only_share": b"S"}


def setup(env) -> None:
    for name, files in local_files().items():
        for rel, content in files.items():
            path = env.local(name) / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
    (env.local() / "emptydir").mkdir()
    env.target().mkdir(parents=True)
    for rel, content in SHARE_FILES.items():
        (env.target() / rel).write_bytes(content)


def asides(env) -> list[Path]:
    return sorted(env.target().glob("diff.txt.local-conflict-*"))


def assert_nothing_lost(env) -> None:
    """Right after a crash: each original file is readable at its local path, on the share, or set aside."""
    for name, files in local_files().items():
        share_dir = env.target(f"alpha/{name}")
        for rel, content in files.items():
            places = [env.local(name) / rel, share_dir / rel]
            places += [p for p in asides(env) if rel == "diff.txt"]
            assert any(p.is_file() and p.read_bytes() == content for p in places), f"{name}/{rel} lost"
    for rel, content in SHARE_FILES.items():
        assert (env.target() / rel).read_bytes() == content


def assert_complete(env) -> None:
    for name, rel in (("logs", "logs"), ("data", "alpha/data"), ("cache", "alpha/cache")):
        assert os.readlink(env.local(name)) == str(env.target(rel))
    for name, files in local_files().items():
        for rel, content in files.items():
            if rel == "diff.txt":
                continue
            assert (env.target(f"alpha/{name}") / rel).read_bytes() == content, rel
    assert (env.target() / "diff.txt").read_bytes() == b"the share's version"
    assert [p.read_bytes() for p in asides(env)] == [b"the local version"]  # exactly one conflict copy
    assert (env.target() / "only_share").read_bytes() == b"S"
    assert (env.target() / "emptydir").is_dir() and (env.target() / "output").is_dir()
    leftovers = [p for p in env.share.rglob("*") if "storage-links" in p.name]
    leftovers += [p for top in (env.root, env.local().parent) for p in top.iterdir() if "storage-links" in p.name]
    assert leftovers == []


def age_empty_lock(env) -> bool:
    """Killed between creating the lock and writing its owner: the lock is stale once WRITE_GRACE passes."""
    lock = env.share / LOCK_NAME
    if not lock.exists() or lock.read_bytes():
        return False
    then = time.time() - 10
    os.utime(lock, (then, then))
    return True


def finish(env, cli) -> None:
    result = cli("init")
    if result.code == 4 and "an unknown owner (empty lock file)" in result.err and age_empty_lock(env):
        result = cli("init")
    assert result.code == 0, result.err
    assert "Symlink verified: alpha/data" in result.out
    if age_empty_lock(env):  # the kill came after the work: a warm init tidies the lock up
        result = cli("init")
        assert result.code == 0 and "it records no owner" in result.err


def crash_at(n: int, command: str = "init", *, sigterm: bool = False) -> tuple[int, int]:
    """Run `command` in a child that dies at its Nth step (n=0: never), or with `sigterm` is sent
    SIGTERM there instead (as `docker stop` does); return (exit code, steps taken)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: count steps, die at the Nth, never return into pytest
        code = 70
        try:
            os.close(read_end)
            code = _run_counting(n, command, write_end, sigterm)
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        steps = pipe.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), int(steps or 0)


def _run_counting(kill_at: int, command: str, report_fd: int, sigterm: bool = False) -> int:
    from storage_links import _migrate, _unlink
    from storage_links._cli import main

    real_write = os.write
    steps = 0

    def counted(owner: object, name: str) -> None:
        real = getattr(owner, name)

        def step(*args, **kwargs):
            nonlocal steps
            steps += 1
            if steps == kill_at:
                if not sigterm:
                    os._exit(137)
                signal.raise_signal(signal.SIGTERM)
            return real(*args, **kwargs)

        setattr(owner, name, step)

    for name in STEPS:
        counted(os, name)
    counted(_migrate, "exchange")
    counted(_unlink, "exchange")
    code = main([command])
    real_write(report_fd, str(steps).encode())
    return code


@pytest.fixture
def fresh(env, cli, tmp_path):
    """Reset the workspace and share to the initial state (the contract cache stays warm, keeping steps equal)."""

    def reset() -> None:
        import shutil

        for name in ("data", "cache", "logs"):
            path = env.local(name)
            if path.is_symlink():
                path.unlink()
            elif path.exists():
                shutil.rmtree(path)
        for leftover in env.local().parent.glob(".*storage-links*"):
            leftover.unlink() if leftover.is_symlink() or leftover.is_file() else shutil.rmtree(leftover)
        shutil.rmtree(env.share)
        env.share.mkdir()
        setup(env)

    cli("status")  # warm the contract cache
    return reset


def test_kill_at_every_step_of_a_migration(any_fs_env, cli, fresh, tmp_path):
    env = any_fs_env
    fresh()
    code, total = crash_at(0)
    assert code == 0
    assert_complete(env)
    assert total > 40  # lock, directories, every file's chunks, fsyncs, renames, removals, the swap
    rng = random.Random(1234)
    for n in range(1, total + 1):
        fresh()
        assert crash_at(n)[0] == 137, n
        assert_nothing_lost(env)
        if n % 7 == 0:  # and a second death, during the recovery itself
            assert crash_at(rng.randint(1, total))[0] in (0, 137, 4), n
            assert_nothing_lost(env)
        finish(env, cli)
        assert_complete(env)


def test_sigterm_during_a_migration_stops_it_cleanly_and_releases_the_lock(any_fs_env, cli, fresh):
    env = any_fs_env
    fresh()
    total = crash_at(0)[1]
    stopped = 0
    for n in range(1, total + 1, 3):
        fresh()
        code, _ = crash_at(n, sigterm=True)
        # Before init takes the lock it has changed nothing and SIGTERM ends it as it always did.
        assert code in (143, -signal.SIGTERM), n
        if code == 143:
            stopped += 1
            assert not (env.share / LOCK_NAME).exists(), n  # the next start need not wait for it to go stale
        assert_nothing_lost(env)
        result = cli("init")
        assert result.code == 0, (n, result.err)
        assert_complete(env)
    assert stopped >= total // 3 - 2  # all but the first step or two ran under the lock


@pytest.mark.slow
def test_real_sigkill_at_random_moments(any_fs_env, cli, fresh):
    env = any_fs_env
    rng = random.Random(99)
    extra = env.local() / "many"
    for round_no in range(6):
        fresh()
        files = {f"many/f{i:03d}.dat": os.urandom(rng.randint(1, 40_000)) for i in range(200)}
        for rel, content in files.items():
            (env.local() / rel).parent.mkdir(parents=True, exist_ok=True)
            (env.local() / rel).write_bytes(content)
        proc = subprocess.Popen(
            [sys.executable, "-m", "storage_links", "init"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        time.sleep(rng.uniform(0.02, 0.4))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert_nothing_lost(env)
        for rel in files:
            assert (env.local() / rel).is_file() or (env.target() / rel).is_file(), (round_no, rel)
        finish(env, cli)
        assert_complete(env)
        for rel, content in files.items():
            assert (env.target() / rel).read_bytes() == content
        assert not extra.is_symlink()


def test_kill_unlink_at_every_step(env, cli, fresh):
    # unlink always copies (the share keeps its data), so one file-system layout covers it.

    def linked_state() -> None:
        fresh()
        assert cli("init").code == 0

    def assert_share_intact() -> None:
        for name, files in local_files().items():
            for rel, content in files.items():
                if rel != "diff.txt":
                    assert (env.target(f"alpha/{name}") / rel).read_bytes() == content

    def assert_unlinked() -> None:
        for name, files in local_files().items():
            assert not env.local(name).is_symlink() and env.local(name).is_dir()
            for rel, content in files.items():
                if rel != "diff.txt":
                    assert (env.local(name) / rel).read_bytes() == content
        assert (env.local() / "diff.txt").read_bytes() == b"the share's version"
        assert (env.local() / "output").is_dir()
        assert not [p for p in env.local().parent.iterdir() if "storage-links" in p.name]

    linked_state()
    code, total = crash_at(0, command="unlink")
    assert code == 0
    assert_unlinked()
    assert total > 20
    for n in range(1, total + 1):
        linked_state()
        assert crash_at(n, command="unlink")[0] == 137, n
        assert_share_intact()
        if n % 2:  # finish the unlink
            finish_cmd = cli("unlink")
            if finish_cmd.code == 4 and age_empty_lock(env):
                finish_cmd = cli("unlink")
            assert finish_cmd.code == 0, (n, finish_cmd.err)
            assert_unlinked()
        else:  # or change one's mind and init again: the copies are identical, so nothing is set aside
            finish(env, cli)
            assert_complete(env)
        assert_share_intact()
