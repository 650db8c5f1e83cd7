"""`make run` end to end on the embedded offline default: what a fresh machine does first."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pytest
import storage_links

from tests._pipeline import make_project, make_run, run_id_of, tree

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def offline_runs(tmp_path_factory: pytest.TempPathFactory):
    """Two `make run`s in a row on the same share, with no keys and no network."""
    base = tmp_path_factory.mktemp("offline")
    root, share = make_project(base / "root"), base / "share"
    share.mkdir()
    first = make_run(root, share)
    snapshot = tree(share)
    second = make_run(root, share)
    return root, share, first, snapshot, second


def on_share(root: Path, share: Path, package: str, name: str) -> Path:
    """Where the contract puts a package's data dir on the share."""
    (link,) = [lk for lk in storage_links.links(root) if (lk.package, lk.name) == (package, name)]
    return link.target(share)


def test_first_run_publishes_a_forecast_on_the_share(offline_runs):
    root, share, first, _, _ = offline_runs
    assert first.returncode == 0, first.stderr[-3000:]
    run = run_id_of(first)
    output = on_share(root, share, "forecasting", "data") / "output"
    assert (output / "LATEST").read_text().strip() == run
    report = (output / run / "report.html").read_text()
    assert "data:image/png;base64," in report
    # Each series is shown under the title and units its source gave it.
    manifest = json.loads((on_share(root, share, "scraping", "scraped_data") / "manifest.json").read_text())
    for entry in manifest["series"].values():
        assert f"<p>{html.escape(entry['title'])} ({html.escape(entry['units'])})</p>" in report
    n = len(manifest["series"])
    assert f"{n} of {n} series come from the offline dataset bundled with statsmodels" in report
    for name in ("forecasts.parquet", "forecasts.csv", "scores.csv"):
        assert (output / run / name).stat().st_size > 0
    # One run id ties the stages' outputs and the log file together.
    assert (on_share(root, share, "modelling", "predictions") / run / "run.json").is_file()
    assert (on_share(root, share, "forecasting", "data") / "input" / run / "inputs.json").is_file()
    log = (on_share(root, share, "", "logs") / f"{run}.log").read_text()
    for stage in ("scraping", "modelling", "forecasting"):
        assert f" {stage} " in log
    # The data were reached through the links, not written beside them.
    for link in storage_links.links(root):
        assert link.local.is_symlink() and link.local.resolve() == link.target(share)
    assert '"bundled"' in (on_share(root, share, "scraping", "scraped_data") / "manifest.json").read_text()


def test_upload_is_skipped_with_one_line_without_credentials(offline_runs):
    _, _, first, _, _ = offline_runs
    skip_lines = [line for line in first.stderr.splitlines() if "upload" in line.lower() and "skip" in line.lower()]
    assert len(skip_lines) == 1, first.stderr[-2000:]


def test_second_run_with_nothing_new_downloads_and_fits_nothing(offline_runs):
    root, share, first, snapshot, second = offline_runs
    assert second.returncode == 0, second.stderr[-3000:]
    assert run_id_of(second) != run_id_of(first)
    assert "nothing new" in second.stderr.lower()
    changed = {
        name
        for name, stat in tree(share).items()
        if snapshot.get(name) != stat and not name.startswith(f"{on_share(root, share, '', 'logs').name}/")
    }
    assert not changed, f"second run rewrote {sorted(changed)}"
    assert (on_share(root, share, "", "logs") / f"{run_id_of(second)}.log").is_file()


def test_a_failing_stage_stops_the_run_and_keeps_what_was_stored(tmp_path: Path):
    root, share = make_project(tmp_path / "root"), tmp_path / "share"
    share.mkdir()
    result = make_run(root, share, "PROFILE=prod")
    assert result.returncode != 0
    assert "FRED_API_KEY" in result.stderr
    assert not any(on_share(root, share, "modelling", "predictions").iterdir()), "modelling ran after scraping failed"
