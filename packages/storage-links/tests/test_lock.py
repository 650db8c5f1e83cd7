"""The share lock: a live holder stops a second init; a stale one is broken and reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from storage_links import LockHeldError, ShareError, run_lock
from storage_links._lock import LOCK_NAME, STALE_AFTER, ShareLock, _process_start


def write_lock(env, *, pid: int, host: str | None = None, start: str | None = None, age: float = 0) -> None:
    path = env.share / LOCK_NAME
    host = host or os.uname().nodename
    start = start or _process_start(pid) or "unknown"
    path.write_text(f"host={host}\npid={pid}\nstart={start}\nsince=0\ncommand=init\n")
    if age:
        then = time.time() - age
        os.utime(path, (then, then))


@pytest.fixture
def live_pid():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc.pid
    proc.kill()
    proc.wait()


@pytest.fixture
def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_live_lock_stops_init_and_names_its_owner(env, cli, live_pid, snapshot):
    (env.local()).mkdir()
    (env.local() / "f").write_text("x")
    write_lock(env, pid=live_pid, age=75)
    before = snapshot(env.root, env.share)
    result = cli("init")
    assert result.code == 4
    assert f"held by pid {live_pid} on {os.uname().nodename} (init), last touched 1m15s ago" in result.err
    assert "--break-lock" in result.err
    assert snapshot(env.root, env.share) == before


def test_json_reports_the_held_lock(env, cli, live_pid):
    (env.local()).mkdir()
    write_lock(env, pid=live_pid)
    doc = json.loads(cli("--json", "init").out)
    assert doc["error"]["type"] == "LockHeldError" and str(live_pid) in doc["error"]["message"]


def test_a_lock_from_another_host_is_respected_until_its_heartbeat_is_old(env, cli):
    (env.local()).mkdir()
    write_lock(env, pid=1, host="some-other-container", age=STALE_AFTER - 60)
    assert cli("init").code == 4
    write_lock(env, pid=1, host="some-other-container", age=STALE_AFTER + 60)
    result = cli("init")
    assert result.code == 0, result.err
    assert "warning: broke stale lock" in result.err and "pid 1 on some-other-container" in result.err
    assert "not touched for 11m00s" in result.err


def test_a_dead_owner_on_this_host_is_stale(env, cli, dead_pid):
    (env.local()).mkdir()
    write_lock(env, pid=dead_pid, start="12345")
    result = cli("init")
    assert result.code == 0, result.err
    assert f"broke stale lock {env.share / LOCK_NAME} held by pid {dead_pid}" in result.err
    assert "its process is gone" in result.err
    assert not (env.share / LOCK_NAME).exists()


def test_a_reused_pid_is_told_apart_by_its_start_time(env, cli, live_pid):
    (env.local()).mkdir()
    write_lock(env, pid=live_pid, start="1")  # same pid, but not the process that took the lock
    result = cli("init")
    assert result.code == 0, result.err
    assert "its process is gone" in result.err


def test_an_empty_lock_is_stale_only_after_a_grace_period(env, cli):
    (env.local()).mkdir()
    (env.share / LOCK_NAME).write_text("")
    held = cli("init")
    assert held.code == 4 and "an unknown owner (empty lock file)" in held.err
    then = time.time() - 5
    os.utime(env.share / LOCK_NAME, (then, then))
    result = cli("init")
    assert result.code == 0, result.err
    assert "it records no owner" in result.err


def test_a_lock_holding_garbage_is_called_unreadable_not_empty(env, cli):
    env.local().mkdir()
    (env.share / LOCK_NAME).write_bytes(b"\x00\xff not a lock \n")
    held = cli("init")
    assert held.code == 4
    assert (
        f"{env.share / LOCK_NAME}: held by an unknown owner (unreadable lock file, 15 bytes), last touched" in held.err
    )
    then = time.time() - 5
    os.utime(env.share / LOCK_NAME, (then, then))
    result = cli("init")
    assert result.code == 0, result.err
    assert (
        "held by an unknown owner (unreadable lock file, 15 bytes)" in result.err and "records no owner" in result.err
    )


def test_break_lock_overrides_a_live_holder(env, cli, live_pid):
    (env.local()).mkdir()
    write_lock(env, pid=live_pid)
    result = cli("init", "--break-lock")
    assert result.code == 0, result.err
    assert "--break-lock was given" in result.err


def test_warm_init_and_dry_run_need_no_lock(env, cli, live_pid):
    assert cli("init").code == 0
    write_lock(env, pid=live_pid)
    assert cli("init").code == 0
    (env.local("cache")).unlink()
    (env.local("cache")).mkdir()
    assert cli("init", "--dry-run").code == 0
    assert cli("init").code == 4


def test_a_second_concurrent_init_fails_naming_the_first(env):
    # The first init is paused inside its migration (holding the lock) by a wrapper that waits for a signal file.
    (env.local()).mkdir()
    (env.local() / "f").write_text("x")
    gate = env.share.parent / "gate"
    code = (
        "import os, sys, time\n"
        "from storage_links import _migrate\n"
        "real = _migrate.migrate_link\n"
        "def slow(*a, **k):\n"
        f"    open({str(gate)!r} + '.held', 'w').close()\n"
        f"    while not os.path.exists({str(gate)!r}): time.sleep(0.01)\n"
        "    return real(*a, **k)\n"
        "_migrate.migrate_link = slow\n"
        "from storage_links._cli import main\n"
        "sys.exit(main(['init']))\n"
    )
    first = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while not os.path.exists(f"{gate}.held"):
            assert first.poll() is None, first.communicate()
            time.sleep(0.01)
        second = subprocess.run([sys.executable, "-m", "storage_links", "init"], capture_output=True, text=True)
        assert second.returncode == 4
        assert f"held by pid {first.pid} on {os.uname().nodename} (init)" in second.stderr
    finally:
        gate.touch()
        _out, err = first.communicate(timeout=30)
    assert first.returncode == 0, err
    assert (env.target() / "f").read_text() == "x"


def test_release_leaves_a_lock_that_someone_else_took(env):
    lock = ShareLock(str(env.share), "init")
    lock.acquire()
    (env.share / LOCK_NAME).write_text("host=x\npid=1\n")
    lock.release()
    assert (env.share / LOCK_NAME).exists()
    assert "taken over by another process" in lock.warnings[0]


def test_release_retries_while_the_share_reports_the_lock_busy(env, monkeypatch):
    lock = ShareLock(str(env.share), "init")
    lock.acquire()
    real_unlink, calls = os.unlink, []

    def busy_once(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 1:
            raise PermissionError(13, "busy")
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", busy_once)
    lock.release()
    assert len(calls) == 2 and not (env.share / LOCK_NAME).exists() and lock.warnings == []


# ---- run_lock: a stage's run holds its data dir --------------------------------------------------


def test_a_run_lock_is_held_for_the_block_and_gone_after(tmp_path):
    data = tmp_path / "scraped_data"  # made if missing

    with run_lock(data, "scraping run"):
        content = (data / LOCK_NAME).read_text()
        assert f"pid={os.getpid()}\n" in content
        assert "command=scraping run\n" in content

    assert not (data / LOCK_NAME).exists()


def test_a_second_run_fails_at_once_naming_the_first(tmp_path, live_pid):
    (tmp_path / LOCK_NAME).write_text(
        f"host={os.uname().nodename}\npid={live_pid}\nstart={_process_start(live_pid)}\nsince=0\ncommand=scraping run\n"
    )

    with pytest.raises(LockHeldError) as held, run_lock(tmp_path, "scraping run"):
        pytest.fail("the block ran beside a live holder")

    assert str(held.value).startswith(f"{tmp_path / LOCK_NAME}: held by pid {live_pid} on ")
    assert "(scraping run)" in str(held.value)
    assert str(held.value).endswith("wait for it to finish (a lock whose process is gone is broken by the next run)")
    assert (tmp_path / LOCK_NAME).exists()  # the holder's lock is left alone


def test_a_run_lock_left_by_a_dead_run_is_broken_with_a_warning(tmp_path, dead_pid, caplog):
    (tmp_path / LOCK_NAME).write_text(f"host={os.uname().nodename}\npid={dead_pid}\nstart=1\nsince=0\ncommand=x\n")

    with run_lock(tmp_path, "scraping run"):
        assert f"pid={os.getpid()}\n" in (tmp_path / LOCK_NAME).read_text()

    assert f"broke stale lock {tmp_path / LOCK_NAME} held by pid {dead_pid}" in caplog.text


def test_a_run_lock_held_by_a_killed_process_not_yet_reaped_is_broken(tmp_path, caplog):
    # A stage killed with its process group (make and all) stays a zombie until something reaps it.
    killed = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        start = _process_start(killed.pid)
        (tmp_path / LOCK_NAME).write_text(
            f"host={os.uname().nodename}\npid={killed.pid}\nstart={start}\nsince=0\ncommand=modelling run\n"
        )
        killed.kill()
        stat = Path(f"/proc/{killed.pid}/stat")
        while stat.read_bytes().rsplit(b")", 1)[1].split()[0] != b"Z":  # not waited for: a zombie
            time.sleep(0.01)

        with run_lock(tmp_path, "modelling run"):
            assert f"pid={os.getpid()}\n" in (tmp_path / LOCK_NAME).read_text()
    finally:
        killed.wait()

    assert f"held by pid {killed.pid} on {os.uname().nodename} (modelling run)" in caplog.text
    assert "its process is gone" in caplog.text


def test_the_run_lock_is_released_when_the_block_raises(tmp_path):
    with pytest.raises(KeyboardInterrupt), run_lock(tmp_path, "scraping run"):
        raise KeyboardInterrupt

    assert not (tmp_path / LOCK_NAME).exists()


def test_a_run_lock_through_a_link_that_leads_nowhere_says_so(tmp_path):
    (tmp_path / "scraped_data").symlink_to(tmp_path / "share" / "gone")

    leads_nowhere = r"scraped_data: cannot create the directory: the link scraped_data -> "
    with pytest.raises(ShareError, match=leads_nowhere), run_lock(tmp_path / "scraped_data", "scraping run"):
        pytest.fail("the block ran without its lock")

    assert not (tmp_path / "share").exists()  # nothing made behind the link


def test_the_run_lock_is_touched_while_held(tmp_path, monkeypatch):
    monkeypatch.setattr("storage_links._lock.HEARTBEAT", 0.05)
    with run_lock(tmp_path, "modelling run"):
        first = (tmp_path / LOCK_NAME).stat().st_mtime_ns
        deadline = time.monotonic() + 5
        while (tmp_path / LOCK_NAME).stat().st_mtime_ns == first and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (tmp_path / LOCK_NAME).stat().st_mtime_ns != first
