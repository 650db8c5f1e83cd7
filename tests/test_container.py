"""The container's behaviour without a Docker engine: its entrypoint run against a temporary
app root laid out like the image (from the Dockerfile's COPY lines) and a temporary share."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from tests._image import REPO, app_owned, build_app_root, image_entrypoint, image_env, image_user
from tests._services import modelling_settings

ENTRYPOINT = "docker/entrypoint.sh"
ALL_SKIPS = ["--skip-scraping", "--skip-modeling", "--skip-forecasting", "--skip-upload"]
SHARE_DIRS = ["forecasting/data", "logs", "modelling/cache", "modelling/predictions", "scraping/scraped_data"]


@pytest.fixture
def app(tmp_path: Path):
    app_root = build_app_root(tmp_path / "app")
    share = tmp_path / "share"
    share.mkdir()
    return app_root, share


def start(app_root: Path, share: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """One container start: the entrypoint, from the image's working directory."""
    return subprocess.run(
        [str(app_root / ENTRYPOINT), *args],
        cwd=app_root / "packages",
        env=image_env(app_root, share, **env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_image_layout_has_contracts_but_no_data_dirs(app):
    app_root, _ = app
    for package in ("storage-links", "scraping", "modelling", "forecasting"):
        assert (app_root / "packages" / package / "pyproject.toml").is_file()
    assert (app_root / "Makefile").is_file()
    for data_dir in ("scraped_data", "cache", "predictions", "data"):
        assert not list(app_root.glob(f"packages/*/{data_dir}")), f"{data_dir} baked into the image"


def test_help_lists_the_documented_flags(app):
    result = start(*app, "--help")
    assert result.returncode == 0, result.stderr
    for flag in ["--help", "--log-level", *ALL_SKIPS]:
        assert flag in result.stdout


def test_all_skips_only_links_and_prints_every_verified_line(app):
    app_root, share = app
    result = start(app_root, share, *ALL_SKIPS)
    assert result.returncode == 0, result.stderr
    verified = sorted(line for line in result.stdout.splitlines() if line.startswith("✓ Symlink verified: "))
    assert verified == [f"✓ Symlink verified: {rel} -> {share / rel}" for rel in SHARE_DIRS]
    assert (app_root / "packages" / "forecasting" / "data").resolve() == share / "forecasting" / "data"
    assert (share / "forecasting" / "data" / "output").is_dir()
    assert (share / "modelling" / "cache" / "sarima_params").is_dir()


def test_first_start_migrates_data_already_in_the_container(app):
    app_root, share = app
    local = app_root / "packages" / "scraping" / "scraped_data"
    (local / "fred").mkdir(parents=True)
    payload = os.urandom(200_000)
    (local / "fred" / "GDP.parquet").write_bytes(payload)

    result = start(app_root, share, *ALL_SKIPS)

    assert result.returncode == 0, result.stderr
    assert local.is_symlink()
    assert (share / "scraping" / "scraped_data" / "fred" / "GDP.parquet").read_bytes() == payload


def test_restart_on_the_same_share_finds_what_the_last_run_wrote(app, tmp_path):
    app_root, share = app
    script = "echo forecast-1 > forecasting/data/output/LATEST && ls -la forecasting/"
    write = start(app_root, share, "sh", "-c", script)
    assert write.returncode == 0, write.stderr
    assert "data -> " in write.stdout  # troubleshooting commands see the links

    fresh = build_app_root(tmp_path / "app-after-restart")
    read = start(fresh, share, "cat", "forecasting/data/output/LATEST")
    assert read.returncode == 0, read.stderr
    assert read.stdout.strip() == "forecast-1"
    assert (fresh / "packages" / "forecasting" / "data").is_symlink()


SYSTEM_PYTHON = Path("/usr/bin/python3")  # readable by any user, unlike a venv under /root


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv") or not SYSTEM_PYTHON.exists(),
    reason="needs root (to hand files to the image's user), setpriv and /usr/bin/python3",
)
@pytest.mark.parametrize("owned", [True, False], ids=["as-the-dockerfile-owns", "app-root-not-owned"])
def test_the_image_user_links_with_the_ownership_the_dockerfile_gives(owned):
    """The image runs as its USER, not root: it can make its links only where the Dockerfile's chown
    lets it. Without that, init refuses before it creates anything on the share."""
    base = Path(tempfile.mkdtemp(dir="/tmp"))  # not pytest's tmp_path, which other users cannot enter
    try:
        base.chmod(0o755)
        app_root = build_app_root(base / "app")
        share = base / "share"
        share.mkdir()
        uid, gid = image_user()
        for path in [share, *(app_owned(app_root) if owned else [])]:
            os.chown(path, uid, gid)
        # storage-links is stdlib only: the image user runs it with the system Python.
        shutil.copytree(REPO / "packages" / "storage-links" / "src", base / "src")
        (base / "bin").mkdir()
        (base / "bin" / "storage-links").write_text(f'#!/bin/sh\nexec {SYSTEM_PYTHON} -m storage_links "$@"\n')
        (base / "bin" / "storage-links").chmod(0o755)
        env = image_env(app_root, share, PYTHONPATH=str(base / "src"), HOME=str(base))
        env["PATH"] = f"{base / 'bin'}{os.pathsep}{env['PATH']}"

        user = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
        result = subprocess.run(
            [*user, str(app_root / ENTRYPOINT), *ALL_SKIPS],
            cwd=app_root / "packages",
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

        if owned:
            assert result.returncode == 0, result.stderr
            assert (app_root / "logs").resolve() == share / "logs"
            assert (app_root / "packages" / "forecasting" / "data").resolve() == share / "forecasting" / "data"
        else:
            assert result.returncode != 0
            assert f"logs: {app_root} is not writable by this user (uid {uid})" in result.stderr
            assert list(share.iterdir()) == []  # refused before anything was made
    finally:
        shutil.rmtree(base)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--skip-everything"], "unknown option '--skip-everything'"),
        (["--log-level", "LOUD"], "unknown level 'LOUD'"),
        (["--log-level"], "--log-level needs a value"),
    ],
)
def test_bad_options_fail_with_one_clear_line(app, args, message):
    result = start(*app, *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_unknown_profile_fails_before_the_links_are_made(app):
    app_root, share = app
    result = start(app_root, share, *ALL_SKIPS, PIPELINE_PROFILE="production")
    assert result.returncode == 2
    assert result.stderr == "entrypoint: PIPELINE_PROFILE: unknown profile 'production'; allowed: local prod\n"
    assert list(share.iterdir()) == []  # init did not run


def test_missing_share_fails_before_any_stage_runs(app, tmp_path):
    app_root, _ = app
    result = start(app_root, tmp_path / "no-such-share", *ALL_SKIPS)
    assert result.returncode != 0
    assert "no-such-share" in result.stderr
    assert not (app_root / "packages" / "forecasting" / "data").exists()


def test_read_only_share_fails_clearly(app, tmp_path):
    app_root, share = app
    if os.geteuid() == 0:
        # Root ignores permission bits: only a read-only mount makes the share read-only for it.
        ro = tmp_path / "ro-share"
        ro.mkdir()
        mounted = subprocess.run(["mount", "--bind", "-o", "ro", str(share), str(ro)], capture_output=True, timeout=30)
        if mounted.returncode != 0:
            pytest.skip(f"cannot make a read-only bind mount here: {mounted.stderr.decode().strip()}")
        try:
            result = start(app_root, ro, *ALL_SKIPS)
        finally:
            subprocess.run(["umount", str(ro)], timeout=30, check=True)
    else:
        share.chmod(0o555)
        result = start(app_root, share, *ALL_SKIPS)
    assert result.returncode != 0
    assert "read-only" in result.stderr or "not writable" in result.stderr
    assert not (app_root / "packages" / "forecasting" / "data").is_symlink()


def test_entrypoint_passes_skips_and_level_to_the_stage_sequence(app):
    # With one stage left, make runs it: prove the flags reach make by skipping all but upload
    # and checking the run header make prints.
    app_root, share = app
    result = start(app_root, share, *ALL_SKIPS[:3], "--log-level", "warning")  # any case, as the stages take it
    assert "log level WARNING" in result.stderr
    assert "skipping: scraping modelling forecasting" in result.stderr


def test_the_containers_profile_reaches_the_stages(app):
    """compose and ACI set PIPELINE_PROFILE=prod: without a FRED key the scraping stage must refuse,
    never fall back to the bundled dataset."""
    app_root, share = app
    result = start(app_root, share, *ALL_SKIPS[1:], PIPELINE_PROFILE="prod")
    assert "profile prod" in result.stderr
    assert "the prod profile never falls back to the bundled dataset" in result.stderr
    assert result.returncode != 0


def test_a_settings_file_on_the_share_replaces_the_stages_packaged_one(app):
    """What compose and ACI pass on: MODELLING_CONFIG naming a file on the share (the image's
    /mnt/fileshare/config/modelling.toml); the stage runs with it, not with the packaged file."""
    app_root, share = app
    (share / "config").mkdir()
    settings = modelling_settings(share / "config" / "modelling.toml", ["seasonal_naive"])
    result = start(app_root, share, "--skip-forecasting", "--skip-upload", MODELLING_CONFIG=str(settings))
    assert result.returncode == 0, result.stderr[-3000:]
    predictions = share / "modelling" / "predictions"
    run = (predictions / "LATEST").read_text().strip()
    assert set(pd.read_parquet(predictions / run / "forecasts.parquet")["model"]) == {"seasonal_naive"}


def test_dockerfile_is_lint_clean():
    result = subprocess.run(
        [str(REPO / ".venv" / "bin" / "hadolint"), str(REPO / "docker" / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _pid_namespace_or_skip() -> str:
    unshare = shutil.which("unshare")
    probe = unshare and subprocess.run([unshare, "--pid", "--fork", "true"], capture_output=True, check=False)
    if not probe or probe.returncode != 0:
        pytest.skip("cannot make a PID namespace here (unshare --pid needs root), so no PID 1 to stop")
    return unshare


def test_docker_stop_reaches_the_running_stage_which_stops_cleanly(app):
    """`docker stop` sends SIGTERM to the container's PID 1: here the image's ENTRYPOINT, as PID 1 of
    a PID namespace of its own, stopped while modelling runs on the bundled offline data."""
    app_root, share = app
    unshare = _pid_namespace_or_skip()
    command = image_entrypoint(app_root)
    if not shutil.which(command[0]):
        pytest.skip(f"{command[0]} is not installed here (scripts/install-test-services.sh installs tini)")
    container = subprocess.Popen(
        [unshare, "--pid", "--fork", "--kill-child", *command, "--skip-forecasting", "--skip-upload"],
        cwd=app_root / "packages",
        env=image_env(app_root, share),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    cache = share / "modelling" / "cache" / "sarima_params"
    try:
        deadline = time.monotonic() + 300
        while not (cache.is_dir() and list(cache.glob("*.json"))):
            assert container.poll() is None, container.communicate()
            assert time.monotonic() < deadline, "modelling cached no fit within 300 s"
            time.sleep(0.05)
        (pid_1,) = Path(f"/proc/{container.pid}/task/{container.pid}/children").read_text().split()
        os.kill(int(pid_1), signal.SIGTERM)
        _, err = container.communicate(timeout=60)  # modelling would run on for longer, and the stages after it
    finally:
        container.kill()

    assert container.returncode == 143, err
    assert "modelling: stopped by SIGTERM: the fits finished so far are cached for the next run" in err
    assert "Traceback" not in err
    assert list(cache.glob("*.json"))
    assert not (share / "modelling" / "predictions" / "LATEST").exists()


# The stages, or a command given to the container: either way a stop during init stops the container.
@pytest.mark.parametrize("command", [ALL_SKIPS, ["sleep", "60"]], ids=["stages", "command"])
def test_docker_stop_during_a_first_start_migration_releases_the_share_lock(app, smb_share, command):
    """SIGTERM (from tini, from `docker stop`) while init migrates data onto the real SMB share: the
    entrypoint passes it to storage-links, which stops between safe steps and removes its lock, so a
    container started next (on another host) need not wait ten minutes for the lock to go stale.
    The command is not started."""
    app_root, _ = app
    local = app_root / "packages" / "scraping" / "scraped_data" / "fred"
    local.mkdir(parents=True)
    files = {f"S{i:03d}.parquet": os.urandom(64 * 1024) for i in range(200)}  # some seconds over SMB
    for name, content in files.items():
        (local / name).write_bytes(content)
    container = subprocess.Popen(
        [str(app_root / ENTRYPOINT), *command],
        cwd=app_root / "packages",
        env=image_env(app_root, smb_share),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lock = smb_share / ".storage-links.lock"
    try:
        deadline = time.monotonic() + 120
        while not lock.exists():
            assert container.poll() is None, container.communicate()
            assert time.monotonic() < deadline, "init took no lock within 120 s"
            time.sleep(0.01)
        container.send_signal(signal.SIGTERM)
        _, err = container.communicate(timeout=50)  # within the command's 60 s, had it started
    finally:
        container.kill()

    assert container.returncode == 143, err
    assert "storage-links: stopped by SIGTERM; nothing is lost, and the next init finishes the job" in err
    assert not lock.exists()
    for name, content in files.items():  # each file is in one place or the other
        places = (local / name, smb_share / "scraping" / "scraped_data" / "fred" / name)
        assert any(p.is_file() and p.read_bytes() == content for p in places), name

    restart = start(app_root, smb_share, *ALL_SKIPS)

    assert restart.returncode == 0, restart.stderr
    for name, content in files.items():
        assert (smb_share / "scraping" / "scraped_data" / "fred" / name).read_bytes() == content, name
