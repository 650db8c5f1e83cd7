"""Run-time helpers the stages share: run ids, atomic writes, logging, progress, stopping on signals."""

from __future__ import annotations

import io
import logging
import os
import signal
import socket
import subprocess
import sys
import threading

import pytest
from storage_links import (
    LOG_LEVELS,
    Interrupted,
    Progress,
    atomic_path,
    atomic_write,
    configure_logging,
    fsync_directory,
    run_id,
    stop_on_signals,
)
from storage_links.testing import opened_paths


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "deep" / "file.txt"
    atomic_write(target, "one")
    atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["file.txt"]


def test_writes_that_leave_their_directory_unsynced_share_one_fsync_directory(tmp_path):
    """A directory is opened only to be synced: once for a batch of writes, once a write by default."""
    with opened_paths() as opened:
        for name in "abc":
            atomic_write(tmp_path / name, name, sync_directory=False)
        batch = opened.count(str(tmp_path))
        fsync_directory(tmp_path)
        synced = opened.count(str(tmp_path))
        atomic_write(tmp_path / "d", "d")
    assert (batch, synced, opened.count(str(tmp_path))) == (0, 1, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c", "d"]


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer crashed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def test_replace_retries_while_the_share_reports_busy(tmp_path, monkeypatch):
    from storage_links import _busy, _runtime

    real_replace = os.replace
    calls = []

    def busy_twice(src, dst):
        calls.append(dst)
        if len(calls) <= 2:
            raise PermissionError("busy")
        real_replace(src, dst)

    monkeypatch.setattr(_runtime.os, "replace", busy_twice)
    monkeypatch.setattr(_busy, "_DELAYS", (0, 0, 0))
    atomic_write(tmp_path / "f", "data")
    assert len(calls) == 3
    assert (tmp_path / "f").read_text() == "data"


def test_run_id_from_environment_or_new(monkeypatch):
    monkeypatch.setenv("PIPELINE_RUN_ID", "20240101T000000Z-abcd")
    assert run_id() == "20240101T000000Z-abcd"
    for bad in ("../etc", ".", ".hidden", "a b"):
        monkeypatch.setenv("PIPELINE_RUN_ID", bad)
        with pytest.raises(ValueError) as refused:
            run_id()
        assert str(refused.value) == (
            f"PIPELINE_RUN_ID={bad!r}: a run id is letters, digits, '-', '_' and '.', and does not start with '.'"
        )
    monkeypatch.delenv("PIPELINE_RUN_ID")
    first, second = run_id(), run_id()
    assert first != second and first[:8].isdigit()


def test_configure_logging_writes_the_run_log(env):
    log_file = configure_logging("alpha", "INFO", "run-1")
    logging.getLogger("alpha").info("hello from the test")
    for handler in logging.getLogger().handlers:
        handler.flush()
    assert log_file == env.root / "logs" / "run-1.log"
    assert "alpha INFO hello from the test" in log_file.read_text()
    with pytest.raises(ValueError, match="log level 'LOUD'"):
        configure_logging("alpha", "loud", "run-1")
    assert "DEBUG" in LOG_LEVELS


def test_a_file_name_that_is_not_utf8_is_logged_escaped_not_as_a_logging_error(env):
    # In a process of its own: its stderr is the real one (backslashreplace), not pytest's capture.
    script = (
        "import logging; from storage_links import configure_logging; "
        "configure_logging('alpha', 'INFO', 'run-1'); "
        "name = b'/tmp/no\\xff.toml'.decode('utf-8', 'surrogateescape'); "  # what os gives for such a name
        "logging.getLogger('alpha').error('%s: config file not found', name)"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "Logging error" not in result.stderr, result.stderr
    assert "alpha ERROR /tmp/no\\udcff.toml: config file not found" in (env.root / "logs" / "run-1.log").read_text()


def test_progress_writes_only_to_a_terminal():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, pipe = Tty(), io.StringIO()
    for stream in (tty, pipe):
        progress = Progress(2, "fit", stream=stream)
        progress.step("a", "ok")
        progress.step("b", "ok")
    assert "[2/2] fit b: ok" in tty.getvalue()
    assert pipe.getvalue() == ""


def test_progress_stopped_halfway_ends_its_line():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    with pytest.raises(KeyboardInterrupt), Progress(3, "fit", stream=tty) as progress:
        progress.step("a", "ok")
        raise KeyboardInterrupt
    assert tty.getvalue().endswith("[1/3] fit a: ok\n")  # the stop's message starts a line of its own


def test_a_write_through_a_link_to_a_vanished_share_names_the_missing_share(tmp_path):
    share = tmp_path / "share"
    (share / "data").mkdir(parents=True)
    link = tmp_path / "data"
    link.symlink_to(share / "data")
    share.rename(tmp_path / "share-gone")

    with pytest.raises(FileNotFoundError) as caught:
        atomic_write(link / "sub" / "f.json", "{}")

    assert caught.value.strerror == f"the link data -> {share / 'data'} leads nowhere (is the share mounted?)"
    assert not share.exists()  # nothing was created in place of the share


def test_temporaries_of_a_killed_writer_on_this_host_are_removed_on_the_next_write(tmp_path):
    import subprocess
    import sys

    from storage_links import _runtime

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".entry.json.tmp-{_runtime._HOST}-{dead_pid}-abc123.tmp"
    live = tmp_path / f".other.json.tmp-{_runtime._HOST}-{os.getpid()}-def456.tmp"
    foreign = tmp_path / f".entry.json.tmp-otherhost-{dead_pid}-ghi789.tmp"
    for path in (stale, live, foreign):
        path.write_text("partial")

    atomic_write(tmp_path / "entry.json", "{}")

    assert not stale.exists()
    assert live.exists() and foreign.exists()  # a writer still at work, and one we cannot judge
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["entry.json", live.name, foreign.name])


def test_atomic_writes_get_the_mode_a_plain_open_would_give(tmp_path):
    atomic_write(tmp_path / "report.html", "<html></html>")
    plain = tmp_path / "plain"
    plain.write_text("x")
    assert (tmp_path / "report.html").stat().st_mode & 0o777 == plain.stat().st_mode & 0o777


@pytest.mark.parametrize(("signum", "exit_code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_in_the_block_raises_interrupted_and_the_handlers_come_back(signum, exit_code):
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    cleaned_up = False
    with pytest.raises(Interrupted) as caught, stop_on_signals():
        try:
            signal.raise_signal(signum)
        finally:
            cleaned_up = True
    assert cleaned_up
    assert caught.value.signum == signum and caught.value.exit_code == exit_code
    assert str(caught.value) == signal.Signals(signum).name
    assert {s: signal.getsignal(s) for s in before} == before


_SECOND_SIGNAL = """
import signal, sys, time
from storage_links import Interrupted, stop_on_signals
from storage_links._runtime import RELAY_WINDOW_S
first, second, pause = signal.{first}, signal.{second}, {pause}
with stop_on_signals():
    try:
        signal.raise_signal(first)
    except Interrupted:
        print("first: clean-up runs", flush=True)
        time.sleep(pause * RELAY_WINDOW_S)
        signal.raise_signal(second)
        print("second: clean-up goes on", flush=True)
"""


def test_a_signal_ignored_at_start_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with stop_on_signals():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize(
    ("first", "second", "pause", "outcome"),
    [
        ("SIGTERM", "SIGTERM", 1.5, -signal.SIGTERM),  # a second stop, after the relay window: at once
        ("SIGINT", "SIGINT", 0, -signal.SIGINT),  # Ctrl-C twice: at once
        ("SIGINT", "SIGTERM", 1.5, -signal.SIGTERM),
        ("SIGTERM", "SIGTERM", 0, 0),  # make relaying the stop its process group got: the same stop
    ],
)
def test_a_second_signal_ends_the_process_at_once_unless_it_is_a_relayed_sigterm(first, second, pause, outcome):
    # In a child process: the second signal may kill it, which the test process cannot survive.
    script = _SECOND_SIGNAL.format(first=first, second=second, pause=pause)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == outcome, done.stderr
    if outcome:
        assert done.stdout == "first: clean-up runs\n", done.stderr
    else:
        assert done.stdout == "first: clean-up runs\nsecond: clean-up goes on\n", done.stderr


def test_read_settings_takes_the_option_then_the_variable_then_the_packaged_file(tmp_path):
    from storage_links import SettingsError, read_settings

    packaged, named, option = (tmp_path / f"{n}.toml" for n in ("packaged", "named", "option"))
    for path in (packaged, named, option):
        path.write_text(f'which = "{path.stem}"\n')
    env = {"STAGE_CONFIG": str(named)}
    assert read_settings(option, "STAGE_CONFIG", lambda: packaged, env) == (option, {"which": "option"})
    assert read_settings(None, "STAGE_CONFIG", lambda: packaged, env) == (named, {"which": "named"})
    assert read_settings(None, "STAGE_CONFIG", lambda: packaged, {"STAGE_CONFIG": " \r"})[0] == packaged
    with pytest.raises(SettingsError, match=rf"^{tmp_path} \(from STAGE_CONFIG\): cannot read: Is a directory$"):
        read_settings(None, "STAGE_CONFIG", lambda: packaged, {"STAGE_CONFIG": str(tmp_path)})
    with pytest.raises(SettingsError, match=rf"^{option}: invalid TOML"):
        option.write_text("[stage\n")
        read_settings(option, "STAGE_CONFIG", lambda: packaged, env)


def _settings_error_in_time(pipe, *args) -> str:
    """The SettingsError read_settings(*args) raises, read in a thread so that a read waiting for a
    writer on `pipe` fails the test rather than hanging the suite; the pipe is then given a writer,
    which ends that read."""
    from storage_links import SettingsError, read_settings

    raised = []

    def read():
        try:
            read_settings(*args)
        except SettingsError as exc:
            raised.append(str(exc))

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(5)
    if thread.is_alive():
        os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))  # the blocked reader counts as one, so this opens
        thread.join(5)
        pytest.fail(f"read_settings waited for a writer on {pipe}")
    assert raised, "read_settings raised no SettingsError"
    return raised[0]


@pytest.mark.parametrize("by_variable", [False, True])
def test_read_settings_refuses_a_named_pipe_at_once(tmp_path, by_variable):
    pipe = tmp_path / "settings.toml"
    os.mkfifo(pipe)
    packaged = tmp_path / "packaged.toml"
    args = (
        (None, "STAGE_CONFIG", lambda: packaged, {"STAGE_CONFIG": str(pipe)})
        if by_variable
        else (pipe, "STAGE_CONFIG", lambda: packaged, {})
    )
    where = " (from STAGE_CONFIG)" if by_variable else ""
    assert _settings_error_in_time(pipe, *args) == f"{pipe}{where}: is a named pipe, not a regular file"


def test_read_settings_refuses_a_device_and_a_socket(tmp_path):
    from storage_links import SettingsError, read_settings

    with pytest.raises(
        SettingsError, match=r"^/dev/null \(from STAGE_CONFIG\): is a character device, not a regular file$"
    ):
        read_settings(None, "STAGE_CONFIG", lambda: tmp_path / "packaged.toml", {"STAGE_CONFIG": "/dev/null"})
    path = tmp_path / "settings.sock"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        with pytest.raises(SettingsError, match=rf"^{path}: is a socket, not a regular file$"):
            read_settings(path, "STAGE_CONFIG", lambda: tmp_path / "packaged.toml", {})
