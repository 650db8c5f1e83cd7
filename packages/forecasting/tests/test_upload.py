"""`forecasting upload` against Azurite, the Azure Storage emulator (started by the tests)."""

from __future__ import annotations

import base64
import hashlib

import pytest
from forecasting._cli import main
from storage_links import data_dir

FILES = ["forecasts.parquet", "forecasts.csv", "scores.csv", "report.html", "inputs.json"]
CONTENT_TYPES = {
    "forecasts.parquet": "application/vnd.apache.parquet",
    "forecasts.csv": "text/csv; charset=utf-8",
    "scores.csv": "text/csv; charset=utf-8",
    "report.html": "text/html; charset=utf-8",
    "inputs.json": "application/json",
    "_SUCCESS": "application/json",
}


@pytest.fixture
def published(make_predictions, monkeypatch) -> str:
    make_predictions("p1")
    monkeypatch.setenv("PIPELINE_RUN_ID", "r1")
    assert main(["run"]) == 0
    monkeypatch.setenv("PIPELINE_RUN_ID", "upload-1")
    return "r1"


def local_file(run: str, name: str) -> bytes:
    base = data_dir("forecasting", "data")
    path = base / "input" / run / name if name == "inputs.json" else base / "output" / run / name
    return path.read_bytes()


def test_upload_writes_every_file_with_its_content_type_and_the_marker_last(published, blob_target):
    proxy = blob_target.through_proxy()
    assert main(["upload"]) == 0
    blobs = blob_target.blobs()
    assert sorted(blobs) == sorted([*(f"r1/{n}" for n in [*FILES, "_SUCCESS"]), "LATEST"])
    container = blob_target.service.get_container_client(blob_target.container)
    for name in FILES:
        blob = blobs[f"r1/{name}"]
        assert blob.content_settings.content_type == CONTENT_TYPES[name]
        assert bytes(blob.content_settings.content_md5) == hashlib.md5(local_file("r1", name)).digest()
        assert container.download_blob(f"r1/{name}").readall() == local_file("r1", name)
    puts = [path.split("?")[0] for method, path in proxy.requests if method == "PUT" and "/r1/" in path]
    assert len(puts) == len(FILES) + 1
    assert puts[-1].endswith("/r1/_SUCCESS")  # the marker is the last of the run's blobs written
    last_put = [path.split("?")[0] for method, path in proxy.requests if method == "PUT"][-1]
    assert last_put.endswith(f"/{blob_target.container}/LATEST")  # then LATEST points at the complete run
    assert container.download_blob("LATEST").readall() == b"r1\n"
    assert blobs["LATEST"].content_settings.content_type == "text/plain; charset=utf-8"


def test_second_upload_sends_nothing_and_changes_no_blob(published, blob_target):
    assert main(["upload"]) == 0
    before = {n: (b.etag, b.last_modified) for n, b in blob_target.blobs().items()}
    proxy = blob_target.through_proxy()
    assert main(["upload", "--run", "r1"]) == 0
    after = {n: (b.etag, b.last_modified) for n, b in blob_target.blobs().items()}
    assert after == before
    blob_writes = [(m, p) for m, p in proxy.requests if m in ("PUT", "DELETE") and "restype=container" not in p]
    assert blob_writes == []  # (the container is asked for, and found to exist)
    assert sum(m == "HEAD" for m, _ in proxy.requests) == len(FILES) + 2  # it did compare every blob and LATEST


def test_a_changed_file_unmarks_the_run_before_it_is_sent_again(published, blob_target):
    assert main(["upload"]) == 0
    report = data_dir("forecasting", "data") / "output" / "r1" / "report.html"
    report.write_text(report.read_text() + "<!-- edited -->")
    proxy = blob_target.through_proxy()
    assert main(["upload"]) == 0
    writes = [
        (m, p.split("?")[0].rsplit("/", 1)[1]) for m, p in proxy.requests if m in ("PUT", "DELETE") and "/r1/" in p
    ]
    assert writes == [("DELETE", "_SUCCESS"), ("PUT", "report.html"), ("PUT", "_SUCCESS")]


def test_latest_follows_the_newest_local_run_and_an_older_one_uploaded_again_leaves_it(
    published, blob_target, make_predictions, monkeypatch
):
    assert main(["upload"]) == 0
    make_predictions("p2", seed=1)
    monkeypatch.setenv("PIPELINE_RUN_ID", "r2")
    assert main(["run"]) == 0
    assert main(["upload"]) == 0
    container = blob_target.service.get_container_client(blob_target.container)
    assert container.download_blob("LATEST").readall() == b"r2\n"
    (data_dir("forecasting", "data") / "output" / "r1" / "report.html").write_text("<html>r1 again</html>")
    assert main(["upload", "--run", "r1"]) == 0
    assert container.download_blob("r1/report.html").readall() == b"<html>r1 again</html>"
    assert container.download_blob("LATEST").readall() == b"r2\n"


def test_connection_cut_mid_upload_is_retried(published, blob_target):
    proxy = blob_target.through_proxy(cut_after=30_000, cuts=1)
    assert main(["upload"]) == 0
    assert proxy.cut_count == 1
    assert "r1/_SUCCESS" in blob_target.blobs()
    container = blob_target.service.get_container_client(blob_target.container)
    assert container.download_blob("r1/report.html").readall() == local_file("r1", "report.html")


def test_connection_that_keeps_failing_is_reported_and_the_run_is_not_marked(published, blob_target, capsys):
    proxy = blob_target.through_proxy(cut_after=30_000, cuts=1000)
    assert main(["upload"]) == 5
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "failed after retries" in errors[0] and "_SUCCESS not written" in errors[0]
    assert proxy.cut_count >= 4  # the configured 4 attempts
    assert "r1/_SUCCESS" not in blob_target.blobs() and "LATEST" not in blob_target.blobs()


def test_wrong_key_is_one_clear_error_without_the_key(published, blob_target, capsys):
    wrong = base64.b64encode(b"not the account key, but valid base64" * 2).decode()
    blob_target.use_key(wrong)
    assert main(["upload", "--log-level", "DEBUG"]) == 6
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "refused the credentials" in errors[0] and "AZURE_STORAGE_KEY" in errors[0]
    log_text = (data_dir("", "logs") / "upload-1.log").read_text()
    for text in (err, log_text):
        assert wrong not in text and wrong[:16] not in text
    assert blob_target.blobs() == {}


def test_malformed_key_is_a_credentials_error(published, blob_target, capsys):
    blob_target.use_key("abc")  # not valid base64: the SDK cannot even sign a request
    assert main(["upload"]) == 6
    err = capsys.readouterr().err
    assert "the account key is malformed" in err and "abc" not in err


def test_connection_string_credentials_and_a_new_container(published, blob_target, monkeypatch, capsys):
    for var in ("AZURE_STORAGE_ACCOUNT", "AZURE_STORAGE_KEY", "AZURE_STORAGE_BLOB_ENDPOINT"):
        monkeypatch.delenv(var)
    conn = (
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={'A' * 86}==;"
        f"BlobEndpoint={blob_target.endpoint};"
    )
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", conn)
    assert main(["upload"]) == 6  # a wrong key in the string: refused, and the string is not echoed
    assert "A" * 20 not in capsys.readouterr().err
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", conn.replace("A" * 86 + "==", blob_target.key))
    assert main(["upload"]) == 0
    assert "r1/_SUCCESS" in blob_target.blobs()


def test_dry_run_sends_nothing(published, blob_target):
    proxy = blob_target.through_proxy()
    assert main(["upload", "--dry-run"]) == 0
    assert [m for m, _ in proxy.requests if m in ("PUT", "DELETE")] == []  # not even the container
    assert blob_target.blobs() == {}


def test_without_credentials_local_skips_and_prod_fails(published, monkeypatch, capsys):
    assert main(["upload"]) == 0
    err = capsys.readouterr().err
    assert "upload skipped: no Blob Storage credentials" in err and len(err.strip().splitlines()) == 1
    monkeypatch.setenv("PIPELINE_PROFILE", "prod")
    assert main(["upload"]) == 6
    assert "no Blob Storage credentials in the environment" in capsys.readouterr().err


def test_nothing_to_upload_before_the_first_run(project, monkeypatch, capsys):
    assert main(["upload"]) == 0  # local profile without credentials: skipped before anything else
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", "AccountName=x;AccountKey=eA==")
    assert main(["upload"]) == 1
    assert "nothing to upload" in capsys.readouterr().err


def test_bad_container_name_names_the_variable(published, monkeypatch, capsys):
    monkeypatch.setenv("AZURE_STORAGE_CONTAINER", "Bad_Name")
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", "AccountName=x;AccountKey=eA==")
    assert main(["upload"]) == 3
    assert "AZURE_STORAGE_CONTAINER='Bad_Name'" in capsys.readouterr().err


def test_unknown_run_and_malformed_connection_string(published, monkeypatch, capsys):
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", "AccountName=devstoreaccount1;AccountKey=eA==")
    assert main(["upload", "--run", "r9"]) == 1
    assert "no output run r9" in capsys.readouterr().err
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", "AccountName=devstoreaccount1;secretvalue")
    assert main(["upload"]) == 6
    err = capsys.readouterr().err
    assert "item 2 is not Name=Value" in err and "secretvalue" not in err
