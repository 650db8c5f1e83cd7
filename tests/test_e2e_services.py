"""The whole `make run` against the real parts a deployment talks to: the fake FRED/Treasury server on
loopback, Azurite for Blob Storage, and the share on a real SMB mount (Samba through FUSE).

One run per module (it is the slow part); each test checks one promise about what it left behind.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import storage_links

from packages.forecasting.tests.azurite import AZURITE_KEY
from packages.scraping.tests.fake_servers import TEXTVIEW, VALID_KEY
from tests._pipeline import make_project, make_run, run_id_of
from tests._services import (
    azure_env,
    azurite,  # noqa: F401  (a fixture)
    blob_names,
    fake_fred,
    fred_ids,
    needs_modelling,
    quick_modelling,
    quick_scraping,
    scraping_env,
)
from tests._smb import SmbShare, fresh_dir

pytestmark = [pytest.mark.slow, pytest.mark.smb, needs_modelling]

CONTAINER = "e2e-forecasts"
OUTPUTS = ("report.html", "forecasts.parquet", "forecasts.csv", "scores.csv")


@dataclass
class Pipeline:
    root: Path
    share: Path  # through the mount
    server_share: Path  # the same directory on the Samba server's disk
    stdout: str
    stderr: str
    returncode: int
    run_id: str
    requested_ids: set[str]
    treasury_pages: int
    blobs: dict[str, bytes]

    def on_share(self, package: str, name: str, *, server: bool = False) -> Path:
        (link,) = [lk for lk in storage_links.links(self.root) if (lk.package, lk.name) == (package, name)]
        return link.target(self.server_share if server else self.share)


@pytest.fixture(scope="module")
def pipeline(smb_server: SmbShare, azurite: str, tmp_path_factory: pytest.TempPathFactory) -> Pipeline:  # noqa: F811
    share = fresh_dir(smb_server.root, "e2e-services")
    root = make_project(tmp_path_factory.mktemp("e2e") / "root")
    # Neither the models nor politeness are what this run is about (tests/test_pipeline.py runs the
    # packaged modelling settings; packages/scraping tests the rate limiter and the backfill).
    settings = tmp_path_factory.mktemp("settings")
    quick = quick_modelling(settings) | quick_scraping(settings)
    with fake_fred() as server:
        result = make_run(root, share, **scraping_env(server.url), **azure_env(azurite, CONTAINER), **quick)
        requested = {r.params.get("series_id", "") for r in server.requests_to("/fred/series")}
        pages = len(server.requests_to(TEXTVIEW))
    run = run_id_of(result)
    return Pipeline(
        root=root,
        share=share,
        server_share=smb_server.server_path(share),
        stdout=result.stdout,
        stderr=result.stderr,
        returncode=result.returncode,
        run_id=run,
        requested_ids=requested,
        treasury_pages=pages,
        blobs=blob_names(azurite, CONTAINER),
    )


def test_the_run_succeeds_and_says_so(pipeline: Pipeline) -> None:
    assert pipeline.returncode == 0, pipeline.stderr[-4000:]
    assert "skipping: nothing" in pipeline.stderr
    assert "upload skipped" not in pipeline.stderr and "offline" not in pipeline.stderr, pipeline.stderr[-3000:]


def test_every_configured_series_was_fetched_from_the_server_and_stored_on_the_share(pipeline: Pipeline) -> None:
    ids = fred_ids()
    assert pipeline.requested_ids >= set(ids)
    assert pipeline.treasury_pages > 0
    # Read on the server's own disk: the bytes really crossed the SMB mount.
    scraped = pipeline.on_share("scraping", "scraped_data", server=True)
    manifest = json.loads((scraped / "manifest.json").read_text())["series"]
    for sid in ids:
        entry = manifest[f"fred/{sid}"]
        assert entry["origin"] == "network", sid
        assert len(pd.read_parquet(scraped / entry["file"])) == entry["rows"] > 0, sid
    assert manifest["treasury/par_yield_curve"]["rows"] > 0
    assert not any(e["origin"] == "bundled" for e in manifest.values())


def test_the_published_run_is_on_the_share_through_the_links(pipeline: Pipeline) -> None:
    output = pipeline.on_share("forecasting", "data") / "output"
    server_output = pipeline.on_share("forecasting", "data", server=True) / "output"
    assert (server_output / "LATEST").read_text().strip() == pipeline.run_id
    (data_link,) = [lk for lk in storage_links.links(pipeline.root) if (lk.package, lk.name) == ("forecasting", "data")]
    for name in OUTPUTS:
        via_link = (data_link.local / "output" / pipeline.run_id / name).read_bytes()
        assert via_link, name
        assert via_link == (output / pipeline.run_id / name).read_bytes()
        assert via_link == (server_output / pipeline.run_id / name).read_bytes()
    names = set(pd.read_parquet(server_output / pipeline.run_id / "forecasts.parquet")["series"].astype(str))
    for sid in fred_ids():
        assert any(n == sid or n.endswith(f"/{sid}") for n in names), (sid, sorted(names))
    report = (server_output / pipeline.run_id / "report.html").read_text()
    assert "data:image/png;base64," in report
    assert "Source: FRED series " in report and 'class="warn"' not in report  # network data: no offline warning
    predictions = pipeline.on_share("modelling", "predictions", server=True)
    assert (predictions / pipeline.run_id / "run.json").is_file()
    for link in storage_links.links(pipeline.root):
        assert link.local.is_symlink() and link.local.resolve() == link.target(pipeline.share).resolve()


def test_the_run_is_in_the_blob_container_with_its_marker_last(pipeline: Pipeline) -> None:
    run = pipeline.run_id
    output = pipeline.on_share("forecasting", "data", server=True) / "output" / run
    for name in OUTPUTS:
        assert pipeline.blobs[f"{run}/{name}"] == (output / name).read_bytes(), name
    marker = json.loads(pipeline.blobs[f"{run}/_SUCCESS"])
    assert marker["run_id"] == run
    assert set(OUTPUTS) <= set(marker["files"])
    assert {name.split("/")[0] for name in pipeline.blobs} == {run, "LATEST"}
    assert pipeline.blobs["LATEST"] == f"{run}\n".encode()  # readers find the newest complete run


def test_one_run_id_ties_the_log_to_every_stage(pipeline: Pipeline) -> None:
    log = (pipeline.on_share("", "logs", server=True) / f"{pipeline.run_id}.log").read_text()
    for stage in ("scraping", "modelling", "forecasting"):
        assert f" {stage} " in log, stage
    assert "uploaded run" in log or "upload" in log


def test_no_key_appears_in_the_log_the_outputs_or_the_blobs(pipeline: Pipeline) -> None:
    secrets = (VALID_KEY, AZURITE_KEY)
    for secret in secrets:
        assert secret not in pipeline.stdout and secret not in pipeline.stderr
        for path in pipeline.server_share.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path
        for name, data in pipeline.blobs.items():
            assert secret.encode() not in data, name
    # The check above reads every file: make sure there were files to read.
    assert any(pipeline.on_share("", "logs", server=True).iterdir())
