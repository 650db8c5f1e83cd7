"""`forecasting upload` against Azurite, the Azure Storage emulator (started by the tests)."""

from __future__ import annotations

import base64
import hashlib
import http.server
import os
import re
import threading

import pytest
from forecasting._cli import main
from forecasting._errors import StorageError
from storage_links import data_dir

from packages.forecasting.tests.azurite import AZURITE_ACCOUNT, AZURITE_KEY
from packages.forecasting.tests.conftest import replace_with_eio, unreadable

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
    assert blobs["LATEST"].content_settings.cache_control == "no-cache"  # a cache in front asks again
    assert blobs["r1/report.html"].content_settings.cache_control is None


def test_second_upload_sends_nothing_and_changes_no_blob(published, blob_target):
    assert main(["upload"]) == 0
    before = {n: (b.etag, b.last_modified) for n, b in blob_target.blobs().items()}
    proxy = blob_target.through_proxy()
    assert main(["upload", "--run", "r1"]) == 0
    after = {n: (b.etag, b.last_modified) for n, b in blob_target.blobs().items()}
    assert after == before
    blob_writes = [(m, p) for m, p in proxy.requests if m in ("PUT", "DELETE") and "restype=container" not in p]
    assert blob_writes == []  # (the container is asked for, and found to exist)
    assert sum(m == "HEAD" for m, _ in proxy.requests) == len(FILES) + 1  # it did compare every blob (and _SUCCESS)
    assert [p.split("?")[0].rsplit("/", 1)[1] for m, p in proxy.requests if m == "GET"] == ["LATEST"]  # and read it


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
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "failed after retries" in errors[0] and "_SUCCESS not written" in errors[0]
    assert proxy.cut_count >= 4  # the configured 4 attempts
    # Each retry is said as it happens: a stalled endpoint is not minutes of silence.
    retries = [line for line in err.splitlines() if line.endswith("; retrying")]
    assert [re.search(r"attempt (\d) failed", line).group(1) for line in retries] == ["1", "2", "3"], err
    assert all(" /devstoreaccount1/" in line and "?" not in line for line in retries), retries
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


# ---- the run given, and what a run must hold --------------------------------------------------------


def test_run_with_tab_completions_trailing_slash_is_that_run(published, blob_target):
    assert main(["upload", "--run", "r1/"]) == 0
    assert sorted(blob_target.blobs()) == sorted([*(f"r1/{n}" for n in [*FILES, "_SUCCESS"]), "LATEST"])
    container = blob_target.service.get_container_client(blob_target.container)
    assert container.download_blob("LATEST").readall() == b"r1\n"


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("../output/r1", "'../output/r1' is a path, not a run id: give the run's name alone, r1"),
        ("ABSOLUTE", "is a path, not a run id: give the run's name alone, r1"),
        ("/", "'/' is not a run id"),
        ("", "'' is not a run id"),
        ("..", "'..' is not a run id"),
        ("r1/../r1", "is a path, not a run id"),
        ("r 1", "'r 1' is not a run id"),
    ],
)
def test_run_that_is_not_a_run_id_is_a_usage_error_before_anything_is_sent(published, blob_target, capsys, value, says):
    value = str(data_dir("forecasting", "data") / "output" / "r1") if value == "ABSOLUTE" else value
    proxy = blob_target.through_proxy()
    with pytest.raises(SystemExit) as stop:
        main(["upload", "--run", value])
    assert stop.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "argument --run:" in errors[0] and says in errors[0]
    assert proxy.requests == [] and blob_target.blobs() == {}


def test_upload_called_with_a_path_for_run_is_a_config_error(published, blob_target):
    from forecasting._config import load_settings
    from forecasting._errors import ConfigError
    from forecasting._upload import upload

    with pytest.raises(ConfigError, match=r"^run: '\.\./output/r1' is a path, not a run id"):
        upload(load_settings(), "../output/r1")
    assert blob_target.blobs() == {}


@pytest.mark.parametrize("dry_run", [False, True])
def test_run_without_its_inputs_json_is_incomplete_and_not_sent(published, blob_target, capsys, dry_run):
    inputs = data_dir("forecasting", "data") / "input" / "r1" / "inputs.json"
    inputs.unlink()  # as a crash between renaming the run into place and writing inputs.json leaves it
    proxy = blob_target.through_proxy()
    assert main(["upload", *(["--dry-run"] if dry_run else [])]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "incomplete run, missing" in errors[0] and str(inputs) in errors[0]
    assert proxy.requests == [] and blob_target.blobs() == {}


# ---- LATEST only moves forward ----------------------------------------------------------------------


def remote_latest(blob_target) -> bytes:
    return blob_target.service.get_container_client(blob_target.container).download_blob("LATEST").readall()


def set_remote_latest(blob_target, run: str) -> None:
    container = blob_target.service.get_container_client(blob_target.container)
    if not container.exists():
        container.create_container()
    container.upload_blob("LATEST", f"{run}\n".encode(), overwrite=True)


def test_latest_naming_a_newer_run_is_left_alone(published, blob_target, capsys):
    set_remote_latest(blob_target, "r2")  # another machine uploaded a newer run
    assert main(["upload"]) == 0
    assert "r1/_SUCCESS" in blob_target.blobs()
    assert remote_latest(blob_target) == b"r2\n"
    assert "the container's LATEST names run r2, newer than r1: left as it is" in capsys.readouterr().err
    set_remote_latest(blob_target, "r0")  # an older one is moved forward
    assert main(["upload"]) == 0
    assert remote_latest(blob_target) == b"r1\n"


def test_latest_written_by_a_concurrent_upload_is_compared_not_overwritten(published, blob_target):
    def newer_run_lands_first(method: str, path: str) -> None:
        if method == "PUT" and path.split("?")[0].endswith("/LATEST"):
            set_remote_latest(blob_target, "r2")

    # There is no LATEST when it is read; one appears just before this upload's write of it.
    blob_target.through_proxy(before=newer_run_lands_first)
    assert main(["upload"]) == 0
    assert remote_latest(blob_target) == b"r2\n"


def test_latest_that_keeps_changing_is_one_clear_error(published, blob_target, capsys):
    set_remote_latest(blob_target, "r0")

    def older_run_rewrites_it(method: str, path: str) -> None:
        if method == "PUT" and path.split("?")[0].endswith("/LATEST"):
            set_remote_latest(blob_target, "r0")  # a new ETag each time: this upload's conditional write fails

    blob_target.through_proxy(before=older_run_rewrites_it)
    assert main(["upload"]) == 5
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "LATEST was changed by another writer each of 3 times" in errors[0]
    assert "(run r1 is uploaded and complete)" in errors[0] and "Traceback" not in errors[0]
    assert "r1/_SUCCESS" in blob_target.blobs() and remote_latest(blob_target) == b"r0\n"


# ---- what is said ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["forécasts", "ab²", "ab", "-abc", "abc-", "a--b", "Abc", "a_b", "a" * 64, "abc\n"])
def test_container_name_outside_azures_ascii_rule_is_a_config_error_before_connecting(
    published, blob_target, monkeypatch, capsys, name
):
    monkeypatch.setenv("AZURE_STORAGE_CONTAINER", name)
    proxy = blob_target.through_proxy()
    assert main(["upload"]) == 3
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and f"AZURE_STORAGE_CONTAINER={name!r}: a container name is 3-63 ASCII" in errors[0]
    assert proxy.requests == []


@pytest.mark.parametrize("name", ["abc", "a-b-c", "0ab", "a" * 63])
def test_container_names_azure_accepts(name, monkeypatch):
    from forecasting._config import UploadSettings, container_name

    monkeypatch.setenv("AZURE_STORAGE_CONTAINER", name)
    assert container_name(UploadSettings()) == name


def test_azure_error_codes_are_shown_as_azure_spells_them(published, blob_target, capsys):
    blob_target.use_key(base64.b64encode(b"a valid base64 key, but not the account's" * 2).decode())
    assert main(["upload"]) == 6
    err = capsys.readouterr().err
    assert "(AuthorizationFailure)" in err and "StorageErrorCode" not in err


def test_an_endpoint_that_is_not_a_blob_service_is_one_error_line(published, monkeypatch, capsys):
    class NotBlobStorage(http.server.BaseHTTPRequestHandler):
        def refuse(self) -> None:  # plain text and no x-ms-error-code, as a web server would answer
            body = b"Method Not Allowed"
            self.send_response(405)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_PUT = do_GET = do_HEAD = do_DELETE = refuse

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotBlobStorage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("AZURE_STORAGE_ACCOUNT", AZURITE_ACCOUNT)
        monkeypatch.setenv("AZURE_STORAGE_KEY", AZURITE_KEY)
        monkeypatch.setenv("AZURE_STORAGE_BLOB_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}/x")
        assert main(["upload"]) == 5
    finally:
        server.shutdown()
        server.server_close()
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0] and "answered HTTP 405" in lines[0]


def dry_run_and_real_counts(capsys) -> tuple[tuple[int, int], tuple[int, int]]:
    capsys.readouterr()
    assert main(["upload", "--dry-run"]) == 0
    dry = re.search(r"would upload (.*) to .*; (\d+) unchanged", capsys.readouterr().err)
    assert main(["upload"]) == 0
    real = re.search(r": (\d+) sent, (\d+) unchanged", capsys.readouterr().err)
    would = 0 if dry[1] == "nothing" else len(dry[1].split(", "))
    return (would, int(dry[2])), (int(real[1]), int(real[2]))


def test_dry_run_counts_what_the_upload_then_does(published, blob_target, capsys):
    dry, real = dry_run_and_real_counts(capsys)  # first: everything to send, the marker and LATEST too
    assert dry == real == (len(FILES) + 2, 0)
    dry, real = dry_run_and_real_counts(capsys)  # then: everything up to date
    assert dry == real == (0, len(FILES) + 2)
    set_remote_latest(blob_target, "r2")  # a newer run's LATEST is left alone: unchanged in both
    dry, real = dry_run_and_real_counts(capsys)
    assert dry == real == (0, len(FILES) + 2)


def test_local_latest_naming_a_path_is_refused(published, blob_target, capsys):
    (data_dir("forecasting", "data") / "output" / "LATEST").write_text("r1/\n")  # hand-edited
    assert main(["upload"]) == 1
    assert "LATEST: names 'r1/', which is not a run id" in capsys.readouterr().err
    assert blob_target.blobs() == {}


# ---- local files that cannot be read --------------------------------------------------------------


@pytest.mark.parametrize(
    ("what", "named"),
    [
        ("output/r1/report.html", "output/r1/report.html"),
        ("output/r1", "output/r1/forecasts.parquet"),  # a directory that cannot be searched
        ("input/r1/inputs.json", "input/r1/inputs.json"),
    ],
    ids=["file", "run-dir", "inputs"],
)
def test_a_run_file_that_cannot_be_read_is_one_storage_error_and_nothing_is_sent(
    published, blob_target, run_unprivileged, what, named
):
    proxy = blob_target.through_proxy()
    with unreadable(data_dir("forecasting", "data") / what):
        done = run_unprivileged("upload-1", "upload")

    assert (done.returncode, done.stderr) == (
        StorageError.exit_code,
        f"forecasting: error: {data_dir('forecasting', 'data') / named}: cannot be read (Permission denied)\n",
    )
    assert proxy.requests == [] and blob_target.blobs() == {}


def test_an_io_error_reading_a_run_file_leaves_the_uploaded_run_marked_as_it_was(published, blob_target, capsys):
    assert main(["upload"]) == 0
    before = {name: blob.etag for name, blob in blob_target.blobs().items()}
    path = data_dir("forecasting", "data") / "output" / "r1" / "scores.csv"
    replace_with_eio(path)
    capsys.readouterr()

    assert main(["upload"]) == StorageError.exit_code

    assert capsys.readouterr().err == f"forecasting: error: {path}: cannot be read (Input/output error)\n"
    assert {name: blob.etag for name, blob in blob_target.blobs().items()} == before


def test_a_named_pipe_in_place_of_a_run_file_is_one_storage_error_and_nothing_is_sent(
    published, blob_target, capsys, no_hang
):
    proxy = blob_target.through_proxy()
    path = data_dir("forecasting", "data") / "output" / "r1" / "report.html"
    path.unlink()
    os.mkfifo(path)

    assert main(["upload"]) == StorageError.exit_code

    assert capsys.readouterr().err == f"forecasting: error: {path}: is a named pipe, not a regular file\n"
    assert proxy.requests == [] and blob_target.blobs() == {}
