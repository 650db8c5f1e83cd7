"""The series list, the environment and the command line: clear one-line errors, distinct exit codes."""

from __future__ import annotations

import hashlib
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fake_servers import VALID_KEY, Fault
from scraping import ConfigError, default_config_path, load_config
from scraping._cli import EXIT_CONFIG, EXIT_SERIES_FAILED, EXIT_STORAGE, EXIT_USAGE, main
from support import manifest, snapshot, write_config


def test_packaged_default_config_lists_the_macro_financial_set(project):
    config = load_config()

    assert config.path == default_config_path() and config.path.is_file()
    assert {"GDP", "CPIAUCSL", "UNRATE", "PAYEMS", "FEDFUNDS", "DGS10", "DGS2", "T10Y2Y", "SP500", "VIXCLS"} <= set(
        config.fred.series
    )
    assert config.http.requests_per_second == 2.0 and config.profile == "local" and config.offline


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[http\n", "invalid TOML"),
        ("[http]\ntimeout_sec = 3\n", "http.timeout_sec: unknown key"),
        ("[http]\ntimeout_s = 'soon'\n", "http.timeout_s must be a number from 0 to 600, not 'soon'"),
        ("[http]\ntimeout_s = nan\n", "http.timeout_s must be a number from 0 to 600, not nan"),
        ("[http]\nmax_backoff_s = inf\n", "http.max_backoff_s must be a number from 0 to 3600, not inf"),
        ("[http]\nmax_retries = -1\n", "http.max_retries must be a whole number from 0 to 20"),
        ("[fred]\nrevision_lookback_days = 100000000\n", "fred.revision_lookback_days must be a whole number from 0"),
        ("[treasury]\nbackfill_months = 100000\n", "treasury.backfill_months must be a whole number from 1 to 1200"),
        ("[fred]\nseries = 'GDP'\n", "fred.series must be a list of FRED series ids"),
        ("[fred]\nseries = ['GDP', '../etc']\n", "fred.series: '../ETC' is not a FRED series id"),
        ("[fred]\nseries = ['GDP', 'gdp']\n", "fred.series lists GDP more than once"),
        ("[fred]\nformat = 'csv'\n", "fred.format must be one of xml, json, not 'csv'"),
        ("[treasury]\nenabled = 'yes'\n", "treasury.enabled must be true or false"),
        ("[sources]\n", "sources: unknown key"),
    ],
)
def test_malformed_config_names_the_file_and_the_key(tmp_path, project, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value)


def test_a_config_file_that_is_not_utf8_is_named(tmp_path, project):
    path = tmp_path / "utf16.toml"
    path.write_text("[fred]\nseries = ['GDP']\n", encoding="utf-16")  # what some editors save

    with pytest.raises(ConfigError, match=re.escape(f"{path}: not UTF-8 text")):
        load_config(path)


def test_scraping_config_replaces_the_packaged_list_and_the_option_replaces_both(
    tmp_path, project, server, monkeypatch, capsys
):
    (tmp_path / "env").mkdir()
    (tmp_path / "option").mkdir()
    monkeypatch.setenv("SCRAPING_CONFIG", str(write_config(tmp_path / "env", series=("GDP",))))
    assert load_config().fred.series == ("GDP",)

    assert main(["run"]) == 0
    assert {r.params["series_id"] for r in server.requests_to("/fred/series")} == {"GDP"}
    option = write_config(tmp_path / "option", series=("UNRATE",))
    assert main(["run", "--config", str(option)]) == 0
    assert "scraping: fred/UNRATE: updated" in capsys.readouterr().err

    missing = tmp_path / "nowhere.toml"
    monkeypatch.setenv("SCRAPING_CONFIG", str(missing))
    assert main(["run"]) == EXIT_CONFIG
    assert capsys.readouterr().err == f"scraping: {missing} (from SCRAPING_CONFIG): config file not found\n"
    bad = tmp_path / "bad.toml"
    bad.write_text("[fred\n")
    monkeypatch.setenv("SCRAPING_CONFIG", str(bad))
    with pytest.raises(ConfigError, match=re.escape(f"{bad} (from SCRAPING_CONFIG): invalid TOML")):
        load_config()
    monkeypatch.setenv("SCRAPING_CONFIG", "  \r")  # blank, as a CRLF .env leaves it: unset
    assert load_config().path == default_config_path()


def test_malformed_config_on_the_command_line_exits_1_and_loses_nothing(tmp_path, project, server, capsys):
    assert main(["run", "--config", str(write_config(tmp_path))]) == 0
    before = snapshot(project)
    bad = tmp_path / "bad.toml"
    bad.write_text("[fred]\nseries = ['GDP']\nrate = 3\n")

    assert main(["run", "--config", str(bad)]) == EXIT_CONFIG

    assert f"scraping: {bad}: fred.rate: unknown key" in capsys.readouterr().err
    assert snapshot(project) == before


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PIPELINE_PROFILE": "staging"}, "PIPELINE_PROFILE='staging': choose one of local, prod"),
        ({"PIPELINE_PROFILE": "prod"}, "the prod profile never falls back to the bundled dataset"),
        ({"FRED_API_KEY_FILE": "/nonexistent/key"}, "FRED_API_KEY_FILE=/nonexistent/key: cannot read the key file"),
        ({"FRED_API_KEY": "a b"}, "FRED_API_KEY: the key has characters other than letters and digits"),
        # URL-encoded (SeCrEt%2FKey...) it would pass a redaction that looks for the key as written
        ({"FRED_API_KEY": "SeCrEt/Key+1=%&x"}, "FRED_API_KEY: the key has characters other than letters and digits"),
        ({"FRED_API_BASE_URL": "ftp://x"}, "FRED_API_BASE_URL='ftp://x': must be an http:// or https:// URL"),
        ({"FRED_API_BASE_URL": "http://[::1"}, "FRED_API_BASE_URL='http://[::1': not a valid URL (Invalid IPv6 URL)"),
        ({"TREASURY_BASE_URL": "http://h:99999"}, "TREASURY_BASE_URL='http://h:99999': not a valid URL (Port out of"),
    ],
)
def test_bad_environment_is_named(project, monkeypatch, env, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config()


def test_a_key_file_that_is_not_utf8_is_named(tmp_path, project, monkeypatch):
    key_file = tmp_path / "key"
    key_file.write_text(VALID_KEY, encoding="utf-16")  # PowerShell's `echo key > file`
    monkeypatch.setenv("FRED_API_KEY_FILE", str(key_file))

    with pytest.raises(ConfigError, match=re.escape(f"FRED_API_KEY_FILE={key_file}: the key file is not UTF-8 text")):
        load_config()


def test_key_file_is_read_from_its_first_line(tmp_path, project, monkeypatch):
    key_file = tmp_path / "key"
    key_file.write_text(f"{VALID_KEY}\n# a comment\n")
    monkeypatch.setenv("FRED_API_KEY_FILE", str(key_file))
    monkeypatch.setenv("PIPELINE_PROFILE", "prod")

    config = load_config()

    assert config.fred.api_key == VALID_KEY and not config.offline
    assert VALID_KEY not in repr(config)


def test_some_series_failing_exits_3_with_a_summary(tmp_path, project, server, capsys):
    code = main(["run", "--config", str(write_config(tmp_path, series=("GDP", "NOSUCH", "UNRATE")))])

    err = capsys.readouterr().err
    assert code == EXIT_SERIES_FAILED
    assert "scraping: fred/GDP: updated (+12 rows)\n" in err
    assert (
        "scraping: fred/NOSUCH: failed: FRED series NOSUCH: HTTP 404: Bad Request.  The series does not exist.\n" in err
    )
    assert "scraping: 3 series: 2 updated, 1 failed; 5 requests; failed: fred/NOSUCH\n" in err


def test_rerun_says_unchanged_per_series(tmp_path, project, server, capsys):
    config = str(write_config(tmp_path, series=("GDP",)))
    assert main(["run", "--config", config]) == 0
    capsys.readouterr()

    assert main(["run", "--config", config]) == 0

    err = capsys.readouterr().err
    assert "scraping: fred/GDP: unchanged\n" in err and "1 series: 1 unchanged; 1 request; 0 files written" in err


@pytest.mark.parametrize(
    "holdup",
    [Fault(status=503, headers={"Retry-After": "60"}), Fault(delay=60)],
    ids=["while a retry waits", "while an answer is under way"],
)
def test_sigterm_stops_at_once_and_keeps_what_landed(tmp_path, project, server, holdup):
    server.script("UNRATE", holdup)
    config = write_config(tmp_path, series=("GDP", "UNRATE", "CPIAUCSL"), max_backoff=120, timeout=120)
    stage = subprocess.Popen(
        [sys.executable, "-m", "scraping", "run", "--config", str(config)], stderr=subprocess.PIPE, text=True
    )
    try:
        # Stop it (as `docker stop` does) once GDP's file has landed and UNRATE's request was made.
        for _ in range(3000):
            if (project / "fred/GDP.parquet").exists() and server.requests_to("/fred/series")[1:]:
                break
            assert stage.poll() is None, stage.communicate()[1]
            time.sleep(0.01)
        stage.send_signal(signal.SIGTERM)
        err = stage.communicate(timeout=30)[1]  # well under the 60 s the retry or the answer would take
    finally:
        stage.kill()

    assert stage.returncode == 143, err
    assert err.endswith(
        "scraping: stopped by SIGTERM: the series stored so far are kept; the next run fetches the rest\n"
    )
    assert "scraping: fred/GDP: updated (+12 rows)\n" in err and "Traceback" not in err
    entries = manifest(project)["series"]
    assert list(entries) == ["fred/GDP"]
    digest = hashlib.sha256((project / "fred/GDP.parquet").read_bytes()).hexdigest()
    assert entries["fred/GDP"]["content_hash"] == f"sha256:{digest}"
    assert [r.params["series_id"] for r in server.requests_to("/fred/series")] == ["GDP", "UNRATE"]  # no retry


def test_series_option_is_validated_as_a_usage_error(project, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["run", "--series", "GDP,../x"])
    assert stopped.value.code == EXIT_USAGE
    assert "argument --series: '../X' is not a FRED series id" in capsys.readouterr().err


def test_usage_errors_exit_2(project, capsys):
    with pytest.raises(SystemExit) as caught:
        main(["run", "--log-level", "LOUD"])
    assert caught.value.code == EXIT_USAGE
    assert "invalid choice: 'LOUD'" in capsys.readouterr().err


def test_corrupt_manifest_is_a_storage_error_and_is_left_alone(tmp_path, project, server, capsys):
    project.mkdir(parents=True)
    (project / "manifest.json").write_text('{"format": 1, "series": {')

    assert main(["run", "--config", str(write_config(tmp_path))]) == EXIT_STORAGE

    assert "manifest.json: not valid JSON" in capsys.readouterr().err
    assert (project / "manifest.json").read_text() == '{"format": 1, "series": {'
    assert server.requests == []


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[]", "not a format 1 manifest"),
        ('"x"', "not a format 1 manifest"),
        ('{"format": 1, "series": {"fred/GDP": 5}}', "series 'fred/GDP': the entry is not an object"),
        (
            '{"format": 1, "series": {"fred/GDP": {"content_hash": "x"}}}',
            "series 'fred/GDP': 'file' is missing or not a str",
        ),
        (
            '{"format": 1, "series": {"fred/GDP": {"file": "fred/GDP.parquet", "content_hash": "x", '
            '"last_observation": "July", "fetched_at": "x", "origin": "network"}}}',
            "series 'fred/GDP': 'last_observation' 'July' is not an ISO date",
        ),
    ],
)
def test_a_manifest_of_another_shape_is_a_storage_error_naming_what_is_wrong(
    tmp_path, project, server, capsys, text, problem
):
    project.mkdir(parents=True)
    (project / "manifest.json").write_text(text)

    assert main(["run", "--config", str(write_config(tmp_path))]) == EXIT_STORAGE

    err = capsys.readouterr().err
    assert f"manifest.json: {problem}" in err.strip().splitlines()[-1]
    assert "Traceback" not in err
    assert (project / "manifest.json").read_text() == text
    assert server.requests == []


def test_the_key_never_reaches_logs_errors_or_files(tmp_path, project, server, monkeypatch, capsys):
    server.script("GDP", Fault(status=503), Fault(status=400, body=f"api_key={VALID_KEY} rejected".encode()))
    server.script("UNRATE", Fault(status=500, body=f'<error code="500" message="key {VALID_KEY}"/>'.encode()))

    code = main(["run", "--config", str(write_config(tmp_path, retries=1)), "--log-level", "DEBUG"])

    err = capsys.readouterr().err
    assert code == EXIT_SERIES_FAILED and "GET http://127.0.0.1" in err  # DEBUG logs the (redacted) URLs
    assert "api_key=***" in err and "key ***" in err
    log_text = "".join(p.read_text() for p in (project.parents[2] / "logs").glob("*.log"))
    every_file = b"".join(p.read_bytes() for p in project.rglob("*") if p.is_file())
    assert VALID_KEY not in err and VALID_KEY not in log_text and VALID_KEY.encode() not in every_file
    assert "fred/CPIAUCSL" in manifest(project)["series"]


def test_a_second_run_while_one_is_at_work_fails_naming_it_and_changes_nothing(tmp_path, project, server, capsys):
    # The first run (another process, as an overlapping cron run would be) waits on a slow answer.
    server.script("UNRATE", Fault(delay=60))
    first = subprocess.Popen(
        [sys.executable, "-m", "scraping", "run", "--config", str(write_config(tmp_path, series=("UNRATE",)))],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(3000):
            if server.requests_to("/fred/series"):
                break
            assert first.poll() is None, first.communicate()[1]
            time.sleep(0.01)
        before = snapshot(project)

        (tmp_path / "second").mkdir()
        second = main(["run", "--config", str(write_config(tmp_path / "second", series=("GDP",)))])

        assert snapshot(project) == before
    finally:
        first.kill()
        first.wait()
    assert second == EXIT_STORAGE
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.fullmatch(
        rf"scraping: {re.escape(str(project))}/\.storage-links\.lock: held by pid {first.pid} on \S+ \(scraping run\), "
        r"last touched \d+s ago; wait for it to finish \(a lock whose process is gone is broken by the next run\)",
        err,
    ), err
    assert [r.params["series_id"] for r in server.requests] == ["UNRATE"]  # the second asked for nothing


def test_help_and_module_entry_point(project):
    done = subprocess.run(
        [sys.executable, "-m", "scraping", "run", "--help"], capture_output=True, text=True, check=False
    )

    assert done.returncode == 0
    for option in ("--series", "--config", "--log-level", "--dry-run"):
        assert option in done.stdout


def test_default_config_is_the_checkouts_config_whether_installed_editable_or_as_a_wheel():
    found = default_config_path()

    assert found.read_bytes() == (Path(__file__).resolve().parents[1] / "config" / "series.toml").read_bytes()
