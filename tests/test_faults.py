"""Faults across the pipeline, each ending with a non-zero exit, one clear line, and nothing lost.

Real parts only: the fake FRED server in a process of its own (so it can die), Azurite, the SMB
share, a read-only bind mount, and the stage CLIs or `make run` as a user runs them. Where `make
run` would spend minutes in retries, the stage CLI runs with a small config instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import storage_links

from packages.forecasting.tests.azurite import AZURITE_KEY, free_port
from packages.scraping.tests.fake_servers import VALID_KEY
from tests._pipeline import REPO, make_project, make_run, run_id_of
from tests._services import (
    MONTHS,
    FredProcess,
    azure_env,
    azurite,  # noqa: F401  (a fixture)
    blob_names,
    cli,
    fred_ids,
    hashes,
    leftovers,
    make_env,
    modelling_settings,
    needs_modelling,
    one_line_error,
    quick_modelling,
    scraping_env,
    small_config,
    stage_env,
)
from tests._smb import SmbShare

pytestmark = pytest.mark.slow

OLD_RELEASE = "2024-10-30 07:52:02-05"
NEW_RELEASE = "2024-11-29 07:52:02-05"


def on_share(root: Path, share: Path, package: str, name: str) -> Path:
    (link,) = [lk for lk in storage_links.links(root) if (lk.package, lk.name) == (package, name)]
    return link.target(share)


def linked_project(base: Path, share: Path | None = None) -> tuple[Path, Path]:
    """A scaffolded root whose data dirs are linked onto `share` (default: a new local dir)."""
    root = make_project(base / "root")
    if share is None:
        share = base / "share"
        share.mkdir()
    init = cli(root, share, "storage_links", "init")
    assert init.returncode == 0, init.stderr
    return root, share


def check_scraped_data(scraped: Path) -> dict:
    """Every file the manifest names is there, readable, and has the hash the manifest says."""
    manifest = json.loads((scraped / "manifest.json").read_text())
    for key, entry in manifest["series"].items():
        path = scraped / entry["file"]
        data = path.read_bytes()
        assert entry["content_hash"] == "sha256:" + hashlib.sha256(data).hexdigest(), key
        assert len(pd.read_parquet(path)) == entry["rows"], key
    assert not leftovers(scraped), leftovers(scraped)
    return manifest


# ---- the FRED server dies halfway through scraping -----------------------------------------------


def test_fred_dying_halfway_keeps_stored_series_and_reports_the_failed_ones(tmp_path: Path) -> None:
    ids = fred_ids()[:6]
    root, share = linked_project(tmp_path)
    config = small_config(tmp_path / "series.toml", ids)
    scraped = on_share(root, share, "scraping", "scraped_data")
    with FredProcess(tmp_path, ids, updated=OLD_RELEASE) as server:
        first = cli(root, share, "scraping", "run", "--config", str(config), **scraping_env(server.url))
    assert first.returncode == 0, first.stderr
    before = hashes(scraped)
    old_manifest = json.loads((scraped / "manifest.json").read_text())

    # A newer release of every series; the server dies (SIGKILL) on its 5th request: the first two
    # series get their `series` and `observations` answers, the third gets nothing.
    with FredProcess(tmp_path, ids, months=MONTHS + 2, updated=NEW_RELEASE, die_after=5) as server:
        second = cli(root, share, "scraping", "run", "--config", str(config), **scraping_env(server.url))
        assert server.proc.wait(10) == -signal.SIGKILL

    assert second.returncode == 3, second.stderr  # scraping's README: 3 = some series failed
    failed = [sid for sid in ids if f"fred/{sid}: failed" in second.stderr]
    updated = [sid for sid in ids if f"fred/{sid}: updated" in second.stderr]
    assert updated == ids[:2], second.stderr
    assert failed == ids[2:], second.stderr
    for sid in failed:
        line = one_line_error(second.stderr, f"fred/{sid}: failed")
        assert "request failed" in line and len(line) < 300, line
    assert one_line_error(second.stderr, "4 failed", "2 updated")
    assert VALID_KEY not in second.stderr
    # Nothing lost: the failed series keep their files and entries byte for byte; the updated ones
    # grew by the two new months; everything on disk matches the manifest.
    after = hashes(scraped)
    manifest = check_scraped_data(scraped)
    for sid in ids[2:]:
        entry = old_manifest["series"][f"fred/{sid}"]
        assert after[entry["file"]] == before[entry["file"]], sid
        assert manifest["series"][f"fred/{sid}"] == entry, sid
    for sid in ids[:2]:
        assert manifest["series"][f"fred/{sid}"]["rows"] == MONTHS + 2, sid
    assert set(after) >= set(before)


def test_fred_unreachable_from_the_start_changes_nothing(tmp_path: Path) -> None:
    """The same, with the server gone before the run: every series fails, nothing is touched."""
    ids = fred_ids()[:3]
    root, share = linked_project(tmp_path)
    config = small_config(tmp_path / "series.toml", ids)
    scraped = on_share(root, share, "scraping", "scraped_data")
    with FredProcess(tmp_path, ids, updated=OLD_RELEASE) as server:
        assert cli(root, share, "scraping", "run", "--config", str(config), **scraping_env(server.url)).returncode == 0
    before = hashes(scraped)
    result = cli(root, share, "scraping", "run", "--config", str(config), **scraping_env(server.url))
    assert result.returncode == 3, result.stderr
    for sid in ids:
        one_line_error(result.stderr, f"fred/{sid}: failed")
    assert hashes(scraped) == before


# ---- the share turns read-only ---------------------------------------------------------------------


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make `path` read-only for everyone, root included: a read-only bind mount over itself."""
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root (root ignores permission bits, so chmod proves nothing)")
    bind = subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True, text=True, timeout=30)
    if bind.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {bind.stderr.strip()}")
    try:
        ro = subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], capture_output=True, text=True, timeout=30)
        if ro.returncode != 0:
            pytest.skip(f"cannot remount read-only here: {ro.stderr.strip()}")
        yield
    finally:
        subprocess.run(["umount", str(path)], capture_output=True, timeout=30, check=True)


def test_share_turned_read_only_fails_clearly_and_changes_nothing(tmp_path: Path) -> None:
    ids = fred_ids()[:3]
    root, share = linked_project(tmp_path)
    config = small_config(tmp_path / "series.toml", ids)
    with FredProcess(tmp_path, ids, updated=OLD_RELEASE) as server:
        assert cli(root, share, "scraping", "run", "--config", str(config), **scraping_env(server.url)).returncode == 0
    before = hashes(share, skip=())
    with FredProcess(tmp_path, ids, months=MONTHS + 1, updated=NEW_RELEASE) as server, read_only(share):
        # make run: storage-links init checks the share first and stops the run.
        result = make_run(root, share, "SKIP=modelling forecasting upload", **scraping_env(server.url))
        assert result.returncode != 0
        line = one_line_error(result.stderr, "read-only")
        assert str(share) in line, line
        assert "skip scraping" not in result.stderr and "fred/" not in result.stderr
        # The stage on its own (as after a share that turned read-only mid-run): exit 4, one line.
        stage = cli(root, share, "scraping", "run", "--config", str(config), **scraping_env(server.url))
        assert stage.returncode == 4, stage.stderr
        one_line_error(stage.stderr, "read-only")
    assert hashes(share, skip=()) == before
    check_scraped_data(on_share(root, share, "scraping", "scraped_data"))


# ---- the share disappears mid-run --------------------------------------------------------------


@pytest.mark.smb
def test_share_vanishing_mid_run_loses_nothing_and_the_next_run_recovers(
    tmp_path: Path, smb_server: SmbShare, smb_share: Path
) -> None:
    ids = fred_ids()[:6]
    root, share = linked_project(tmp_path, smb_share)
    config = small_config(tmp_path / "series.toml", ids)
    scraped = on_share(root, share, "scraping", "scraped_data")
    with FredProcess(tmp_path, ids, updated=OLD_RELEASE) as server:
        first = cli(root, share, "scraping", "run", "--config", str(config), **scraping_env(server.url))
    assert first.returncode == 0, first.stderr
    old = json.loads((scraped / "manifest.json").read_text())["series"]
    frames = {key: pd.read_parquet(scraped / entry["file"]) for key, entry in old.items()}

    # The server side of the share: the admin (or a lost mount) takes the directory away once the
    # second run has stored its first update, and brings it back after the run has failed.
    backing = smb_server.server_path(share)
    away = backing.with_name(backing.name + "-away")
    first_file = smb_server.server_path(scraped / old[f"fred/{ids[0]}"]["file"])

    def first_file_hash() -> str | None:
        """Its hash, or None while it is being replaced: through smbnetfs a rename over a file is an
        unlink, then a rename (tests/_smb.py), so for a moment the server has no file by that name."""
        try:
            return hashlib.sha256(first_file.read_bytes()).hexdigest()
        except FileNotFoundError:
            return None

    first_hash = first_file_hash()
    assert first_hash is not None
    with FredProcess(tmp_path, ids, months=MONTHS + 2, updated=NEW_RELEASE, latency=0.3) as server:
        proc = subprocess.Popen(
            [str(REPO / ".venv" / "bin" / "python"), "-m", "scraping", "run", "--config", str(config)],
            env=stage_env(root, share, **scraping_env(server.url)),
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 120
        while first_file_hash() in (first_hash, None) and proc.poll() is None:
            assert time.monotonic() < deadline, "the second run never stored its first update"
            time.sleep(0.05)
        backing.rename(away)
        try:
            _, stderr = proc.communicate(timeout=120)
        finally:
            away.rename(backing)
    assert proc.returncode == 4, stderr  # scraping's README: 4 = scraped_data/ could not be written
    assert "updated" in stderr and "Traceback" not in stderr, stderr
    line = one_line_error(stderr, "scraped_data", "cannot")
    # Nothing lost: every series stored before is there and readable, and holds at least its old rows.
    for key, entry in old.items():
        now = pd.read_parquet(scraped / entry["file"])
        merged = now.merge(frames[key], on="date", how="inner")
        assert len(merged) == len(frames[key]), key
    # With the share back, the next run finishes the job and leaves everything consistent.
    with FredProcess(tmp_path, ids, months=MONTHS + 2, updated=NEW_RELEASE) as server:
        third = cli(root, share, "scraping", "run", "--config", str(config), **scraping_env(server.url))
    assert third.returncode == 0, third.stderr
    manifest = check_scraped_data(scraped)
    assert all(manifest["series"][f"fred/{sid}"]["rows"] == MONTHS + 2 for sid in ids)
    # The line names the cause: the link's target (the share) is gone, not "File exists" from a mkdir.
    assert "leads nowhere (is the share mounted?)" in line, line


# ---- the blob service is down ---------------------------------------------------------------------


@needs_modelling
def test_blob_service_down_fails_the_upload_clearly_and_keeps_the_local_run(tmp_path: Path, azurite: str) -> None:  # noqa: F811
    root, share = linked_project(tmp_path)
    dead = f"http://127.0.0.1:{free_port()}/devstoreaccount1"  # nothing listens there
    # The two quickest models: the upload is what this run is about.
    models = modelling_settings(tmp_path / "modelling.toml", ["theta", "seasonal_naive"])
    result = make_run(root, share, **azure_env(dead, "down"), MODELLING_CONFIG=str(models))
    assert result.returncode != 0, result.stderr[-3000:]
    line = one_line_error(result.stderr, "_SUCCESS not written")
    assert "127.0.0.1" in line and AZURITE_KEY not in result.stderr, line
    run = run_id_of(result)
    output = on_share(root, share, "forecasting", "data") / "output"
    assert (output / "LATEST").read_text().strip() == run
    before = hashes(share)
    for name in ("report.html", "forecasts.parquet", "forecasts.csv", "scores.csv"):
        assert (output / run / name).stat().st_size > 0, name
    assert not leftovers(share), leftovers(share)
    # With the service back, the same run uploads in full, marker last, and nothing local changes.
    container = "back-up"
    assert blob_names(azurite, container) == {}
    upload = cli(root, share, "forecasting", "upload", **azure_env(azurite, container))
    assert upload.returncode == 0, upload.stderr
    blobs = blob_names(azurite, container)
    assert f"{run}/_SUCCESS" in blobs
    assert blobs[f"{run}/report.html"] == (output / run / "report.html").read_bytes()
    assert hashes(share) == before


# ---- the process is killed during modelling, then restarted ------------------------------------------


def readable(path: Path) -> None:
    """Every data file under `path` parses: no torn Parquet or JSON."""
    for p in path.rglob("*"):
        if p.suffix == ".parquet":
            pd.read_parquet(p)
        elif p.suffix == ".json":
            json.loads(p.read_text())


def _files_in_place(path: Path) -> set[str]:
    """Files under `path` that are not temporaries of a write under way."""
    return {str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()} - set(leftovers(path))


@needs_modelling
def test_killed_during_modelling_the_rerun_resumes_from_the_cache(tmp_path: Path) -> None:
    root, share = linked_project(tmp_path)
    cache = on_share(root, share, "modelling", "cache")
    predictions = on_share(root, share, "modelling", "predictions")
    scraped = on_share(root, share, "scraping", "scraped_data")
    proc = subprocess.Popen(
        ["make", "-s", "-C", str(REPO), "run"],
        env=make_env(root, share, **quick_modelling(tmp_path)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        # Kill the whole process group (make, the stage, its worker processes) once modelling has
        # cached its first fit (a file in place, not just the temporary it is written through) and
        # before it has published anything.
        deadline = time.monotonic() + 300
        while proc.poll() is None and not _files_in_place(cache):
            assert time.monotonic() < deadline, "modelling cached nothing within 300 s"
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before modelling could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        _, killed_stderr = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert "modelling" in killed_stderr or "scraping" in killed_stderr
    scraped_before = hashes(scraped)
    interrupted = set(leftovers(cache))  # a write the kill cut short is not a cached model
    cached = {name: digest for name, digest in hashes(cache).items() if name not in interrupted}
    assert cached, "nothing was cached before the kill"
    readable(cache)
    assert (
        not (predictions / "LATEST").exists()
        or (predictions / (predictions / "LATEST").read_text().strip() / "run.json").is_file()
    )

    rerun = make_run(root, share, **quick_modelling(tmp_path))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    run = run_id_of(rerun)
    # Resumed: every model cached before the kill is still there, as it was: the re-run started from
    # it (modelling's cache lookup skips the search for unchanged values) instead of replacing it.
    after = hashes(cache)
    changed = sorted(name for name, digest in cached.items() if after.get(name) != digest)
    assert not changed, f"cached fits lost or changed by the re-run: {changed}"
    assert len(after) > len(cached), "the re-run cached nothing more than the killed run had"
    # Published: predictions/LATEST names a complete run; nothing torn, no temporary files left.
    latest = (predictions / "LATEST").read_text().strip()
    assert latest == run
    assert (predictions / latest / "run.json").is_file()
    readable(share)
    assert hashes(scraped) == scraped_before
    output = on_share(root, share, "forecasting", "data") / "output"
    assert (output / "LATEST").read_text().strip() == run
    # A temporary the kill left behind is removed by the next write into its directory.
    assert not leftovers(share), leftovers(share)


def test_share_gone_between_runs_stops_make_run_before_any_stage(tmp_path: Path) -> None:
    root, share = linked_project(tmp_path)
    first = make_run(root, share, "SKIP=modelling forecasting upload")  # the offline default: quick
    assert first.returncode == 0, first.stderr
    before = hashes(share, skip=())
    away = share.with_name("share-away")
    share.rename(away)
    try:
        result = make_run(root, share, "SKIP=modelling forecasting upload")
        assert not share.exists(), "the run recreated the missing share as a plain directory"
    finally:
        away.rename(share)
    assert result.returncode != 0
    line = one_line_error(result.stderr, str(share))
    assert "does not exist" in line or "missing" in line, line
    assert "scraping:" not in result.stderr, result.stderr
    assert len(line) < 300, line
    assert hashes(share, skip=()) == before
