"""validate, status, unlink and the command line itself: usage errors, --json, exit codes."""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest


def test_validate_passes_after_init(env, cli):
    assert cli("init").code == 0
    result = cli("validate")
    assert result.code == 0
    assert result.out.splitlines()[1] == f"✓ Symlink verified: alpha/data -> {env.target()}"


@pytest.mark.parametrize(
    ("breakage", "state", "message"),
    [
        ("missing", "missing", "{local} does not exist"),
        ("plain directory", "directory", "{local} is a plain directory, not a symlink"),
        ("regular file", "not-a-directory", "{local} is a regular file where the data directory's symlink belongs"),
        ("elsewhere", "wrong-target", "{local} points to {elsewhere}, the contract says {target}"),
        ("target gone", "target-missing", "{local} -> {target}: the target does not exist"),
        ("target a file", "target-not-directory", "{local} -> {target}: the target is a regular file"),
        (
            "target a symlink off the share",
            "target-symlink",
            "{local} -> {target}: {target} on the share is a symlink to {elsewhere}; the share must hold plain "
            "directories",
        ),
        ("subdir gone", "subdir-missing", "{local} -> {target}: declared subdirectory input/ is missing"),
    ],
)
def test_validate_names_each_problem_and_changes_nothing(env, cli, snapshot, tmp_path, breakage, state, message):
    assert cli("init").code == 0
    local, target, elsewhere = env.local(), env.target(), tmp_path / "elsewhere"
    elsewhere.mkdir()
    if breakage == "target a symlink off the share":
        # The data lives outside the share while the link still resolves: a state init refuses.
        elsewhere.rmdir()
        target.rename(elsewhere)
        target.symlink_to(elsewhere)
    elif breakage not in ("target gone", "target a file", "subdir gone"):
        local.unlink()
    if breakage == "plain directory":
        local.mkdir()
    elif breakage == "regular file":
        local.write_text("x")
    elif breakage == "elsewhere":
        local.symlink_to(elsewhere)
    elif breakage in ("target gone", "target a file"):
        shutil.rmtree(target)
        if breakage == "target a file":
            target.write_text("x")
    elif breakage == "subdir gone":
        (target / "input").rmdir()
    before = snapshot(env.root, env.share)
    result = cli("validate")
    assert result.code == 2
    expected = message.format(local=local, target=target, elsewhere=elsewhere)
    assert result.err.startswith(f"storage-links: alpha/data: {expected}")
    assert len(result.err.splitlines()) == 1  # one line, for the one broken link
    assert snapshot(env.root, env.share) == before
    doc = json.loads(cli("--json", "validate").out)
    assert doc["ok"] is False and doc["error"]["type"] == "ValidationError" and doc["error"]["exit_code"] == 2
    assert {row["link"]: row["state"] for row in doc["links"]}["alpha/data"] == state
    assert json.loads(cli("--json", "status").out)["links"][1]["state"] == state


def test_validate_refuses_a_symlink_anywhere_between_the_share_and_the_target(env, cli, tmp_path):
    assert cli("init").code == 0
    elsewhere = tmp_path / "elsewhere"
    (env.share / "alpha").rename(elsewhere)
    (env.share / "alpha").symlink_to(elsewhere)
    result = cli("validate")
    assert result.code == 2
    assert result.err.splitlines() == [
        f"storage-links: alpha/{name}: {env.local(name)} -> {env.target('alpha/' + name)}: {env.share / 'alpha'} "
        f"on the share is a symlink to {elsewhere}; the share must hold plain directories"
        for name in ("data", "cache")
    ]
    assert "target-symlink" in cli("status").out


def test_validate_read_only_target(env, cli, monkeypatch):
    assert cli("init").code == 0
    real_access = os.access
    target = str(env.target())
    monkeypatch.setattr(os, "access", lambda p, m: False if str(p) == target else real_access(p, m))
    result = cli("validate")
    assert result.code == 2
    assert f"storage-links: alpha/data: {env.local()} -> {target}: the target is not writable\n" == result.err


def test_validate_lists_every_problem(env, cli):
    result = cli("validate")
    assert result.code == 2
    assert [line.split(":")[1].strip() for line in result.err.splitlines()] == ["logs", "alpha/data", "alpha/cache"]


def test_status_table_and_json(env, cli):
    env.local().mkdir()
    result = cli("status")
    assert result.code == 0
    header, *rows = result.out.splitlines()
    assert header.split() == ["LINK", "LOCAL", "TARGET", "STATE"]
    assert rows[1].split() == ["alpha/data", str(env.local()), str(env.target()), "directory"]
    assert rows[0].split()[-1] == "missing"
    cli("init")
    doc = json.loads(cli("--json", "status").out)
    assert doc["ok"] is True and doc["command"] == "status" and doc["share"] == str(env.share)
    assert [(r["link"], r["state"]) for r in doc["links"]] == [
        ("logs", "linked"),
        ("alpha/data", "linked"),
        ("alpha/cache", "linked"),
    ]


def test_unlink_copies_the_data_back_and_the_share_keeps_it(env, cli, snapshot):
    (env.local() / "sub").mkdir(parents=True)
    (env.local() / "sub" / "f").write_bytes(b"payload")
    assert cli("init").code == 0
    before = snapshot(env.root, env.share)
    dry = cli("unlink", "--dry-run")
    assert dry.code == 0
    assert f"alpha/data: would copy 1 file(s), 7 bytes, from {env.target()}" in dry.out
    assert snapshot(env.root, env.share) == before
    result = cli("unlink")
    assert result.code == 0, result.err
    assert f"✓ Unlinked: alpha/data -> {env.local()} (1 file(s) copied back; the share keeps its copy)" in result.out
    assert not env.local().is_symlink()
    assert (env.local() / "sub" / "f").read_bytes() == b"payload"
    assert (env.local() / "input").is_dir()
    assert (env.target() / "sub" / "f").read_bytes() == b"payload"
    assert not [p for p in env.local().parent.iterdir() if "storage-links" in p.name]
    again = cli("unlink")
    assert again.code == 0 and "Unlinked" not in again.out
    assert cli("init").code == 0  # and back: identical files on both sides are simply dropped locally
    assert (env.target() / "sub" / "f").read_bytes() == b"payload"
    assert not [p for p in env.target().rglob("*local-conflict*")]


def test_unlink_keeps_the_share_directories_modes_and_times(env, cli):
    (env.local() / "private" / "deep").mkdir(parents=True)
    (env.local() / "private" / "deep" / "f").write_bytes(b"f")
    assert cli("init").code == 0
    modes = {"private/deep": 0o750, "private": 0o700, "input": 0o2770, ".": 0o710}
    for rel, mode in modes.items():
        os.chmod(env.target() / rel, mode)
        os.utime(env.target() / rel, (1_600_000_000, 1_600_000_000))
    result = cli("unlink")
    assert result.code == 0, result.err
    for rel, mode in modes.items():
        st = (env.local() / rel).stat()
        assert (rel, st.st_mode & 0o7777, st.st_mtime_ns) == (rel, mode, 1_600_000_000 * 10**9)


def test_unlink_refuses_a_link_pointing_elsewhere(env, cli, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "sentinel").write_text("keep")
    env.local().symlink_to(elsewhere)
    result = cli("unlink")
    assert result.code == 3
    assert f"{env.local()} is a symlink to {elsewhere}, not to {env.target()}" in result.err
    assert env.local().is_symlink() and (elsewhere / "sentinel").read_text() == "keep"


def test_unlink_after_an_interrupted_unlink(env, cli):
    (env.local()).mkdir()
    (env.local() / "f").write_bytes(b"1")
    assert cli("init").code == 0
    partial = env.local().parent / ".data.storage-links-unlink"
    partial.mkdir()
    (partial / ".f.storage-links-partial").write_bytes(b"half")
    result = cli("unlink")
    assert result.code == 0, result.err
    assert sorted(p.name for p in env.local().iterdir()) == ["f", "input", "output"]
    assert not partial.exists()


def test_init_after_an_interrupted_unlink_keeps_no_partial_copy(env, cli):
    (env.local()).mkdir()
    (env.local() / "f").write_bytes(b"1")
    assert cli("init").code == 0
    partial = env.local().parent / ".data.storage-links-unlink"
    partial.mkdir()
    (partial / "f").write_bytes(b"1")
    (partial / ".g.storage-links-partial").write_bytes(b"half")
    result = cli("init")
    assert result.code == 0, result.err
    assert not partial.exists()
    assert sorted(p.name for p in env.target().iterdir()) == ["f", "input", "output"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "no command given"),
        (["frobnicate"], "unknown command 'frobnicate'"),
        (["validate", "--dry-run"], "unknown option --dry-run for validate"),
        (["--bogus", "init"], "unknown option --bogus (before the command)"),
        (["init", "extra"], "unexpected argument 'extra'"),
        (["--root"], "--root needs a path"),
        (["--share=", "init"], "--share needs a path"),
        (["--share", "", "init"], "--share needs a path"),
        (["--root=", "validate"], "--root needs a path"),
    ],
)
def test_usage_errors(env, cli, args, message):
    result = cli(*args)
    assert result.code == 64
    assert result.err.startswith(f"storage-links: {message}")


def test_usage_error_with_json(env, cli):
    result = cli("--json", "frobnicate")
    doc = json.loads(result.out)
    assert result.code == 64 and doc["error"]["type"] == "UsageError" and doc["ok"] is False


def test_help(cli):
    result = cli("--help")
    assert result.code == 0
    assert "usage: storage-links" in result.out and "--break-lock" in result.out and "stale" in result.out


def test_root_and_share_options(env, cli, monkeypatch, tmp_path):
    monkeypatch.delenv("PIPELINE_ROOT")
    monkeypatch.delenv("FILESHARE_ROOT")
    other = tmp_path / "other-share"
    other.mkdir()
    result = cli("--root", str(env.root), f"--share={other}", "init")
    assert result.code == 0, result.err
    assert os.readlink(env.local()) == str(other / "alpha" / "data")
    bad = cli("--root", str(tmp_path / "nowhere"), "validate")
    assert bad.code == 5 and "no pyproject.toml there" in bad.err


def test_contract_error_exit_code(env, cli):
    (env.root / "packages" / "alpha" / "pyproject.toml").write_text('[tool.storage-links]\nlinks = { "x" = "../up" }\n')
    result = cli("--json", "init")
    assert result.code == 5
    assert "tool.storage-links.links.x: '../up' must be a relative path" in json.loads(result.out)["error"]["message"]


def test_file_system_error_is_one_line_and_exit_1(env, cli, monkeypatch):
    from storage_links import _migrate

    (env.local()).mkdir()
    (env.local() / "f").write_bytes(b"1")

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_migrate, "stage", broken)  # the copy to another file system
    monkeypatch.setattr(_migrate, "_rename_file", broken)  # the move within one
    result = cli("init")
    assert result.code == 1
    assert len(result.err.splitlines()) == 1 and "No space left on device" in result.err
    assert (env.local() / "f").read_bytes() == b"1"


def test_ctrl_c_while_planning_names_sigint(env, cli, monkeypatch):
    from storage_links import _plan

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # what Python's own SIGINT handler raises, before init sets its own

    monkeypatch.setattr(_plan, "plan_init", interrupted)
    result = cli("init")
    assert result.code == 130
    assert result.err == "storage-links: stopped by SIGINT; nothing is lost, and the next init finishes the job\n"
    doc = json.loads(cli("--json", "init").out)
    assert doc["error"]["message"].startswith("stopped by SIGINT;") and doc["error"]["exit_code"] == 130


def test_console_script_and_module_entry_points(env):
    import subprocess

    script = os.path.join(os.path.dirname(sys.executable), "storage-links")
    for command in ([script], [sys.executable, "-m", "storage_links"]):
        if command == [script] and not os.path.exists(script):
            continue
        proc = subprocess.run([*command, "--json", "status"], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["command"] == "status"
        proc = subprocess.run([*command, "validate"], capture_output=True, text=True)
        assert proc.returncode == 2 and proc.stderr.startswith("storage-links: logs:")


@pytest.mark.parametrize(("command", "kind"), [("init", "link"), ("unlink", "unlink")])
def test_a_symlink_at_a_reserved_name_is_removed_never_followed(env, cli, tmp_path, command, kind):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "sentinel").write_text("must survive")
    if command == "unlink":
        assert cli("init").code == 0
    leftover = env.local().parent / f".data.storage-links-{kind}"
    leftover.symlink_to(outside)
    result = cli(command)
    assert result.code == 0, result.err
    assert not os.path.lexists(leftover)
    assert (outside / "sentinel").read_text() == "must survive"


def test_dry_run_json_lists_the_actions(env, cli, snapshot):
    env.local().mkdir()
    before = snapshot(env.root, env.share)
    doc = json.loads(cli("--json", "init", "--dry-run").out)
    assert doc["ok"] is True and doc["dry_run"] is True
    assert f"alpha/data: would replace the directory {env.local()} by a symlink to {env.target()}" in doc["actions"]
    assert snapshot(env.root, env.share) == before


def test_unlink_refuses_a_special_file_on_the_share_before_it_changes_anything(env, cli, snapshot):
    assert cli("init").code == 0
    os.mkfifo(env.target() / "input" / "pipe")
    before = snapshot(env.root, env.share)
    for args in (("unlink", "--dry-run"), ("unlink",)):
        result = cli(*args)
        assert result.code == 3, result.err
        assert result.err.splitlines() == [
            f"storage-links: conflict: alpha/data: {env.target() / 'input' / 'pipe'} on the share is a special file; "
            f"cannot copy it",
            "storage-links: 1 conflict(s); nothing was changed",
        ]
        assert snapshot(env.root, env.share) == before
