"""init: create, migrate, link, verify; re-runs and dry runs change nothing; conflicts stop everything."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

VERIFIED = [
    "✓ Symlink verified: logs -> {share}/logs",
    "✓ Symlink verified: alpha/data -> {share}/alpha/data",
    "✓ Symlink verified: alpha/cache -> {share}/alpha/cache",
]


def verified(env) -> str:
    return "".join(line.format(share=env.share) + "\n" for line in VERIFIED)


def fill(directory: Path, files: dict[str, bytes]) -> None:
    for rel, content in files.items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def test_fresh_init_creates_the_share_tree_and_links(env, cli):
    result = cli("init")
    assert result.code == 0, result.err
    assert result.out == verified(env)
    for name, rel in (("logs", "logs"), ("data", "alpha/data"), ("cache", "alpha/cache")):
        assert os.readlink(env.local(name)) == str(env.target(rel))
    assert (env.target() / "input").is_dir() and (env.target() / "output").is_dir()
    assert not (env.share / ".storage-links.lock").exists()


def test_init_migrates_local_data_and_keeps_every_byte(any_fs_env, cli):
    env = any_fs_env
    files = {"a.csv": b"1,2\n", "nested/deep/b.bin": os.urandom(300_000), "input/c.txt": b"in", "empty": b""}
    fill(env.local(), files)
    (env.local() / "empty_dir").mkdir()
    os.chmod(env.local() / "a.csv", 0o640)
    result = cli("init")
    assert result.code == 0, result.err
    assert result.out == verified(env)
    assert "moved 4 file(s)" in result.err
    for rel, content in files.items():
        assert (env.target() / rel).read_bytes() == content
    assert (env.target() / "empty_dir").is_dir()
    assert (env.target() / "a.csv").stat().st_mode & 0o777 == 0o640
    assert env.local().is_symlink()
    assert not [p for p in env.share.rglob("*") if "storage-links" in p.name]
    assert not [p for p in env.local().parent.iterdir() if "storage-links" in p.name]


def set_dirs(top: Path, modes: dict[str, int], mtime: int) -> None:
    for rel, mode in modes.items():
        os.chmod(top / rel, mode)
        os.utime(top / rel, (mtime, mtime))


def dir_modes_and_times(top: Path, rels: list[str]) -> dict[str, tuple[int, int]]:
    return {rel: ((top / rel).stat().st_mode & 0o7777, (top / rel).stat().st_mtime_ns) for rel in rels}


def test_init_keeps_directory_modes_and_times_as_it_keeps_files(any_fs_env, cli):
    # Directories were made afresh on the share (umask mode, time of the move): a private 0700 became 0755.
    env = any_fs_env
    fill(env.local(), {"private/deep/f": b"f", "input/g": b"g", "on_share/h": b"h"})
    fill(env.target(), {"on_share/i": b"i"})
    fill(env.local("cache"), {"c": b"c"})  # its target is not on the share yet
    modes = {"private/deep": 0o750, "private": 0o700, "input": 0o2770, "on_share": 0o700}
    set_dirs(env.local(), modes, 1_600_000_000)
    set_dirs(env.local("cache"), {".": 0o710}, 1_600_000_000)
    os.chmod(env.target() / "on_share", 0o755)
    expected = dir_modes_and_times(env.local(), list(modes)) | {"cache": (0o710, 1_600_000_000 * 10**9)}
    result = cli("init")
    assert result.code == 0, result.err
    kept = dir_modes_and_times(env.target(), list(modes)) | dir_modes_and_times(env.target("alpha"), ["cache"])
    assert kept.pop("on_share")[0] == 0o755  # a directory the share had keeps its own, as a file does
    del expected["on_share"]
    assert kept == expected


def test_rerun_is_a_no_op(env, cli, snapshot):
    fill(env.local(), {"x": b"x"})
    assert cli("init").code == 0
    before = snapshot(env.root, env.share)
    result = cli("init")
    assert result.code == 0
    assert result.out == verified(env)
    assert result.err == ""
    assert snapshot(env.root, env.share) == before


def test_dry_run_changes_nothing(env, cli, snapshot):
    fill(env.local(), {"x": b"x", "sub/y": b"y"})
    before = snapshot(env.root, env.share)
    result = cli("init", "--dry-run")
    assert result.code == 0
    assert f"alpha/data: would replace the directory {env.local()} by a symlink to {env.target()}" in result.out
    assert "alpha/data: 2 file(s), 2 bytes, to move or compare" in result.out
    assert result.out.endswith("dry run: nothing changed\n")
    assert snapshot(env.root, env.share) == before


def test_dry_run_lists_each_file_init_would_keep_aside(env, cli, snapshot):
    fill(env.local(), {"same.txt": b"same", "diff.txt": b"local version", "sub/d2": b"local", "only_local": b"L"})
    fill(env.target(), {"same.txt": b"same", "diff.txt": b"share version", "sub/d2": b"share"})
    before = snapshot(env.root, env.share)
    result = cli("init", "--dry-run")
    assert result.code == 0, result.err
    assert snapshot(env.root, env.share) == before
    lines = result.out.splitlines()
    for rel in ("diff.txt", "sub/d2"):
        kept, local = env.target() / rel, env.local() / rel
        assert (
            f"alpha/data: {kept} differs from the local file {local}; would keep the share's and save the "
            f"local one as {kept}.local-conflict-<UTC time>"
        ) in lines
    assert "alpha/data: 1 file(s) already on the share with identical content; would drop the local copy" in lines
    assert sum("local-conflict" in line for line in lines) == 2
    doc = json.loads(cli("--json", "init", "--dry-run").out)
    assert [a for a in doc["actions"] if "local-conflict" in a] == [a for a in lines if "local-conflict" in a]
    kept = json.loads(cli("--json", "init").out)["migrated"]["alpha/data"]["kept_aside"]  # as the dry run said
    assert sorted(k["share"] for k in kept) == [str(env.target() / "diff.txt"), str(env.target() / "sub/d2")]


def test_same_name_on_both_sides(any_fs_env, cli):
    env = any_fs_env
    fill(env.local(), {"same.txt": b"same", "diff.txt": b"local version", "only_local": b"L"})
    fill(env.target(), {"same.txt": b"same", "diff.txt": b"share version", "only_share": b"S"})
    result = cli("--json", "init")
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    (aside,) = doc["migrated"]["alpha/data"]["kept_aside"]
    assert aside["share"] == str(env.target() / "diff.txt")
    assert Path(aside["local_saved_as"]).name.startswith("diff.txt.local-conflict-")
    assert Path(aside["local_saved_as"]).read_bytes() == b"local version"
    assert (env.target() / "diff.txt").read_bytes() == b"share version"
    assert (env.target() / "same.txt").read_bytes() == b"same"
    assert (env.target() / "only_local").read_bytes() == b"L"
    assert (env.target() / "only_share").read_bytes() == b"S"
    assert doc["migrated"]["alpha/data"]["identical_dropped"] == 1
    assert doc["verified"] == verified(env).splitlines()


def test_the_longest_legal_names_are_migrated_and_saved_aside(any_fs_env, cli):
    # A staging name built from the file's name passed NAME_MAX: init stopped halfway, and so did every re-run.
    env = any_fs_env
    long_new, long_both, multibyte = "n" * 255, "b" * 240, "é" * 127  # 254 bytes
    fill(env.local(), {long_new: b"new", f"sub/{long_both}": b"local", multibyte: b"local"})
    fill(env.target(), {f"sub/{long_both}": b"share", multibyte: b"share"})
    result = cli("init")
    assert result.code == 0, result.err
    assert (env.target() / long_new).read_bytes() == b"new"
    for directory, name in ((env.target() / "sub", long_both), (env.target(), multibyte)):
        assert (directory / name).read_bytes() == b"share"
        (aside,) = [p for p in directory.iterdir() if ".local-conflict-" in p.name]
        assert aside.read_bytes() == b"local"
        assert os.fsencode(name).startswith(os.fsencode(aside.name.split(".local-conflict-")[0]))
    assert not [p for p in env.share.rglob("*") if "storage-links" in p.name]
    again = cli("init")  # a re-run finds the saved copies and makes no second one
    assert again.code == 0 and again.err == ""


def test_conflict_copy_is_reported_on_stderr(env, cli):
    fill(env.local(), {"diff.txt": b"local"})
    fill(env.target(), {"diff.txt": b"share"})
    result = cli("init")
    assert result.code == 0
    assert "differs from the local file; kept the share's, saved the local one as" in result.err


def conflict_case(env, case: str, outside: Path) -> str:
    """Set up one bad input; return text its conflict line must contain."""
    if case == "local file where the directory belongs":
        env.local().write_text("not a dir")
        return f"alpha/data: {env.local()} is a regular file where the data directory belongs"
    if case == "local symlink elsewhere":
        env.local().symlink_to(outside)
        return f"{env.local()} is a symlink to {outside}, the contract says {env.target()}"
    if case == "share file where the target belongs":
        env.target().parent.mkdir(parents=True)
        env.target().write_text("file")
        return f"{env.target()} on the share is a file where a directory belongs"
    if case == "share file where a declared subdir belongs":
        env.target().mkdir(parents=True)
        (env.target() / "input").write_text("file")
        return f"{env.target() / 'input'} on the share is a file where a directory belongs"
    if case == "share file where a local directory goes":
        fill(env.local(), {"d/x": b"x"})
        fill(env.target(), {"d": b"file"})
        return f"{env.target() / 'd'} on the share is a file where the directory {env.local() / 'd'} goes"
    if case == "local file where the share has a directory":
        fill(env.local(), {"d": b"file"})
        fill(env.target(), {"d/x": b"x"})
        return f"{env.local() / 'd'} is a file where the share has a directory"
    if case == "symlink inside the data":
        fill(env.local(), {"ok": b"ok"})
        (env.local() / "escape").symlink_to(outside)
        return f"{env.local() / 'escape'} is a symlink; the share cannot hold symlinks"
    if case == "fifo inside the data":
        env.local().mkdir()
        os.mkfifo(env.local() / "pipe")
        return f"{env.local() / 'pipe'} is a special file"
    raise AssertionError(case)


CASES = [
    "local file where the directory belongs",
    "local symlink elsewhere",
    "share file where the target belongs",
    "share file where a declared subdir belongs",
    "share file where a local directory goes",
    "local file where the share has a directory",
    "symlink inside the data",
    "fifo inside the data",
]


@pytest.mark.parametrize("case", CASES)
def test_each_conflict_is_named_and_nothing_changes(env, cli, snapshot, tmp_path, case):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "sentinel").write_text("must survive")
    expected = conflict_case(env, case, outside)
    before = snapshot(env.root, env.share, outside)
    result = cli("init")
    assert result.code == 3
    assert result.out == ""
    assert expected in result.err
    assert result.err.rstrip().endswith("conflict(s); nothing was changed")
    assert snapshot(env.root, env.share, outside) == before


def test_all_conflicts_are_listed_together(env, cli, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    env.local().symlink_to(outside)
    env.local("cache").write_text("file")
    env.local("logs").mkdir()
    (env.local("logs") / "link").symlink_to(outside)
    result = cli("--json", "init")
    assert result.code == 3
    doc = json.loads(result.out)
    assert doc["ok"] is False
    assert doc["error"]["type"] == "ConflictError"
    assert doc["error"]["exit_code"] == 3
    assert len(doc["error"]["problems"]) == 4  # three conflicts and the summary
    assert sum(line.startswith("storage-links: conflict:") for line in result.err.splitlines()) == 3


def test_sentinel_behind_a_symlink_survives_a_full_cycle(env, cli, tmp_path):
    # A link that the contract itself makes: init, unlink and init again must never touch what is outside.
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "sentinel").write_text("must survive")
    fill(env.local(), {"x": b"x"})
    assert cli("init").code == 0
    (env.local("cache").parent / "elsewhere").symlink_to(outside)
    assert cli("unlink").code == 0
    assert cli("init").code == 0
    assert (outside / "sentinel").read_text() == "must survive"
    assert (env.local("cache").parent / "elsewhere").is_symlink()


@pytest.mark.parametrize(
    ("make_share", "message"),
    [
        (lambda share: share.rmdir(), "share {share} does not exist"),
        (lambda share: (share.rmdir(), share.write_text("x")), "share {share} is not a directory"),
    ],
)
def test_bad_share(env, cli, snapshot, make_share, message):
    make_share(env.share)
    fill(env.local(), {"x": b"x"})
    before = snapshot(env.root)
    result = cli("init")
    assert result.code == 6
    assert message.format(share=env.share) in result.err
    assert snapshot(env.root) == before


def test_require_mount_refuses_a_plain_directory(env, cli):
    result = cli("init", "--require-mount")
    assert result.code == 6
    assert f"share {env.share} is not a mount point (--require-mount)" in result.err
    assert not env.local().exists()


def test_read_only_share_detected_before_anything_changes(env, cli, monkeypatch):
    fill(env.local(), {"x": b"x"})
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(env.share) else real_access(p, mode))
    result = cli("init")
    assert result.code == 6
    assert f"share {env.share} is read-only" in result.err
    assert (env.local() / "x").read_bytes() == b"x"


def test_leftovers_of_an_interrupted_run_are_finished(env, cli):
    # A symlink made before the swap, and the emptied directory after it: both are ours to finish.
    fill(env.local(), {"x": b"x"})
    (env.local().parent / ".data.storage-links-link").symlink_to(env.target())
    fill(env.local("cache").parent / ".cache.storage-links-link", {"late": b"late"})
    result = cli("init")
    assert result.code == 0, result.err
    assert (env.target() / "x").read_bytes() == b"x"
    assert (env.target("alpha/cache") / "late").read_bytes() == b"late"
    assert not [p for p in env.local().parent.iterdir() if "storage-links" in p.name]


def test_file_at_a_reserved_name_is_a_conflict(env, cli):
    (env.local().parent / ".data.storage-links-link").write_text("mine")
    result = cli("init")
    assert result.code == 3
    assert "is a file at a name storage-links reserves" in result.err


def test_the_swap_without_renameat2(env, cli, monkeypatch):
    from storage_links import _migrate

    monkeypatch.setattr(_migrate, "exchange", lambda a, b: False)
    fill(env.local(), {"x": b"x"})
    assert cli("init").code == 0
    assert os.readlink(env.local()) == str(env.target())
    assert (env.target() / "x").read_bytes() == b"x"


def test_the_real_contracts(tmp_path, monkeypatch, cli):
    from storage_links import links
    from storage_links.testing import scaffold_project

    packages = Path(__file__).resolve().parents[2]
    root = scaffold_project(tmp_path / "p", [packages / "scraping", packages / "modelling", packages / "forecasting"])
    share = tmp_path / "share"
    share.mkdir()
    monkeypatch.setenv("PIPELINE_ROOT", str(root))
    monkeypatch.setenv("FILESHARE_ROOT", str(share))
    result = cli("init")
    assert result.code == 0, result.err
    assert f"✓ Symlink verified: forecasting/data -> {share}/forecasting/data\n" in result.out
    assert len(result.out.splitlines()) == len(links())
    for link in links():
        assert os.readlink(link.local) == str(link.target(share))
        assert all((link.target(share) / sub).is_dir() for sub in link.subdirs)


def test_a_share_inside_the_data_directory_is_refused(env, cli, monkeypatch, snapshot):
    # Moving files "onto the share" would move them into themselves; dropping "identical" ones would lose them.
    fill(env.local(), {"x": b"x"})
    inner = env.local() / "share"
    inner.mkdir()
    monkeypatch.setenv("FILESHARE_ROOT", str(inner))
    before = snapshot(env.root)
    result = cli("init")
    assert result.code == 3
    assert result.err.splitlines()[0] == (
        f"storage-links: conflict: alpha/data: the share {inner} is inside the data directory {env.local()}; "
        f"data would be moved into itself"
    )
    assert snapshot(env.root) == before


@pytest.mark.parametrize("where", [".", "packages", "packages/alpha"])
def test_a_share_holding_data_directories_is_refused_before_they_exist(env, cli, monkeypatch, snapshot, where):
    # FILESHARE_ROOT=. made logs -> <root>/logs, a symlink to itself, and scattered directories into the checkout.
    monkeypatch.setenv("FILESHARE_ROOT", where)
    share = os.path.normpath(env.root / where)
    before = snapshot(env.root, env.share)
    result = cli("init")
    assert result.code == 3
    names = ["logs", "data", "cache"] if where == "." else ["data", "cache"]
    assert result.err.splitlines() == [
        f"storage-links: conflict: {'logs' if name == 'logs' else 'alpha/' + name}: the share {share} contains "
        f"the data directory {env.local(name)}; the share must lie outside the project's data directories"
        for name in names
    ] + [f"storage-links: {len(names)} conflict(s); nothing was changed"]
    assert snapshot(env.root, env.share) == before


@pytest.mark.parametrize("kind", ["fifo", "socket"])
def test_a_special_file_on_the_share_where_a_local_file_goes_is_a_conflict(env, cli, snapshot, monkeypatch, kind):
    # init could neither compare it nor replace it: it stopped halfway at it, the logs link already made.
    fill(env.local(), {"sub/f": b"local"})
    (env.target() / "sub").mkdir(parents=True)
    special = env.target() / "sub" / "f"
    if kind == "fifo":
        os.mkfifo(special)
    else:
        monkeypatch.chdir(special.parent)  # a relative name: tmp_path may pass AF_UNIX's 108 bytes
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind("f")
    before = snapshot(env.root, env.share)
    for args in (("init", "--dry-run"), ("init",)):
        result = cli(*args)
        assert result.code == 3, result.err
        assert result.err.splitlines() == [
            f"storage-links: conflict: alpha/data: {special} on the share is a special file (fifo, socket or "
            f"device) where the file {env.local() / 'sub' / 'f'} goes; move one of them away and re-run",
            "storage-links: 1 conflict(s); nothing was changed",
        ]
        assert snapshot(env.root, env.share) == before
