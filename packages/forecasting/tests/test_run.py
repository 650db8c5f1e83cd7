"""`forecasting run`: what it publishes, when it publishes nothing, and how it refuses bad input."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import fields, replace
from pathlib import Path

import pandas as pd
import pytest
from forecasting import _cli as forecasting_cli
from forecasting import _publish, load_settings
from forecasting._cli import main
from forecasting._config import IntervalSettings, ReportSettings, SelectSettings, UploadSettings, default_config_path
from forecasting._errors import InputError, StorageError
from PIL import Image
from storage_links import data_dir, logs_dir

from packages.forecasting.tests.conftest import LABELS, chmod_during, replace_with_eio, unreadable


def output_root() -> Path:
    return data_dir("forecasting", "data") / "output"


def input_root() -> Path:
    return data_dir("forecasting", "data") / "input"


def predictions_root() -> Path:
    return data_dir("modelling", "predictions")


OUTPUT_FILES = {"forecasts.parquet", "forecasts.csv", "scores.csv", "report.html"}


def run_cli(monkeypatch: pytest.MonkeyPatch, run_id: str, *args: str) -> int:
    monkeypatch.setenv("PIPELINE_RUN_ID", run_id)
    return main(["run", *args])


def latest() -> str:
    return (output_root() / "LATEST").read_text().strip()


def output_runs() -> list[str]:
    return sorted(p.name for p in output_root().iterdir() if p.is_dir())


def test_publishes_tables_report_inputs_and_latest(make_predictions, monkeypatch):
    make_predictions("p1")
    assert run_cli(monkeypatch, "r1") == 0
    out = output_root() / "r1"
    assert {p.name for p in out.iterdir()} == OUTPUT_FILES
    assert latest() == "r1"

    forecasts = pd.read_parquet(out / "forecasts.parquet")
    assert list(forecasts.columns) == [
        "series",
        "step",
        "date",
        "mean",
        "lo80",
        "hi80",
        "lo95",
        "hi95",
        "method",
        "models",
    ]
    assert forecasts.groupby("series").size().to_dict() == {"CPI": 12, "GDP": 8, "UNRATE": 12}
    ordered = (forecasts.lo95 <= forecasts.lo80) & (forecasts.lo80 <= forecasts["mean"])
    ordered &= (forecasts["mean"] <= forecasts.hi80) & (forecasts.hi80 <= forecasts.hi95)
    assert ordered.all()
    csv = pd.read_csv(out / "forecasts.csv", parse_dates=["date"])
    pd.testing.assert_frame_equal(
        csv[["series", "step", "date"]], forecasts[["series", "step", "date"]], check_dtype=False
    )

    # GDP's auto_sarima has a quarter of the others' error and they share a bias: published alone, or
    # weighted so that it carries the forecast (within half the default margin, the weights decide).
    gdp = forecasts[forecasts.series == "GDP"].reset_index(drop=True)
    candidates = pd.read_parquet(predictions_root() / "p1" / "forecasts.parquet").query("series == 'GDP'")
    gap = {m: (gdp["mean"] - rows["mean"].to_numpy()).abs().max() for m, rows in candidates.groupby("model")}
    assert gap["auto_sarima"] < 0.25 * min(gap["ets"], gap["theta"])
    assert forecasts.loc[forecasts.series != "GDP", "method"].isin(["weighted", "median"]).all()
    scores = pd.read_csv(out / "scores.csv")
    assert scores.groupby("series")["chosen"].sum().to_dict() == {"CPI": 1, "GDP": 1, "UNRATE": 1}
    assert set(scores["candidate"]) == {"auto_sarima", "ets", "theta", "seasonal_naive", "weighted", "median"}
    chosen = scores[scores.chosen].set_index("series")["mase"]
    best_combination = scores[scores.candidate.isin(["weighted", "median"])].groupby("series")["mase"].min()
    for series, mase in chosen.items():  # the default rule: a single model only under half the best combination's
        assert mase < 0.5 * best_combination[series] or mase == best_combination[series], series

    record = json.loads((data_dir("forecasting", "data") / "input" / "r1" / "inputs.json").read_text())
    assert record["run_id"] == "r1"
    assert record["predictions"]["run_id"] == "p1"
    for name, digest in record["predictions"]["files"].items():
        assert hashlib.sha256((predictions_root() / "p1" / name).read_bytes()).hexdigest() == digest
    assert set(record["scraped"]) == {"fred/GDP", "fred/UNRATE", "fred/CPI"}


def test_a_margin_of_one_publishes_a_combination_for_every_series(make_predictions, monkeypatch, tmp_path):
    config = tmp_path / "forecasting.toml"
    config.write_text(load_settings().source.read_text().replace("single_margin = 0.5", "single_margin = 1"))
    monkeypatch.setenv("FORECASTING_CONFIG", str(config))
    make_predictions("p1")
    assert run_cli(monkeypatch, "r1") == 0
    forecasts = pd.read_parquet(output_root() / "r1" / "forecasts.parquet")
    assert forecasts["method"].isin(["weighted", "median"]).all()
    # Weighting by backtest accuracy still gives GDP's far better auto_sarima most of the weight.
    gdp = forecasts.loc[forecasts.series == "GDP", "models"].unique().tolist()
    assert len(gdp) == 1 and gdp[0].startswith("weighted(auto_sarima ")


def test_report_is_self_contained_with_one_chart_per_series(make_predictions, monkeypatch):
    make_predictions("p1")
    assert run_cli(monkeypatch, "r1") == 0
    page = (output_root() / "r1" / "report.html").read_text()
    assert "http://" not in page and "https://" not in page and "<script" not in page
    charts = page.split('src="data:image/png;base64,')[1:]
    assert len(charts) == 3
    for chart in charts:
        image = Image.open(io.BytesIO(base64.b64decode(chart.split('"')[0])))
        assert image.size == (1000, 340)
        assert len(image.convert("RGB").getcolors(1 << 16) or range(1 << 16)) > 20  # drawn, not blank
    for series in ("GDP", "UNRATE", "CPI"):
        assert f">{series}</h2>" in page
        title, units = LABELS[series]["title"], LABELS[series]["units"]
        assert f"<p>{title} ({units})</p>" in page  # under the heading
        assert f'<span class="note">{title}</span>' in page  # in the summary table
        assert f"Source: FRED series {LABELS[series]['id']}. Published:" in page
    assert 'class="warn"' not in page  # no series from the offline dataset
    history = pd.read_parquet(data_dir("modelling", "predictions") / "p1" / "history.parquet")
    for series, last in history.groupby("series")["date"].max().items():
        row = page.split(f">{series}</a>")[1].split("</tr>")[0]  # the summary table's row
        assert f"<td>{last:%Y-%m-%d}</td>" in row


def test_report_says_what_mase_is_scaled_by(make_predictions, monkeypatch):
    make_predictions("p1")
    assert run_cli(monkeypatch, "r1") == 0
    page = (output_root() / "r1" / "report.html").read_text()
    note = page.split("<h2>Backtest accuracy</h2>")[1].split("</p>")[0]
    # The scale is the in-sample one-step seasonal naive error (_combine.mase_scale), not the seasonal_naive
    # model's backtest error, which is itself above 1 in the same table: "below 1 beats it" was wrong.
    assert "below 1" not in note
    assert "divided by the in-sample one-step seasonal naive error" in note
    assert "not by the seasonal_naive row's backtest error; lower is better." in note
    seasonal_naive = page.split("<td>seasonal_naive</td>")[1].split("</tr>")[0]
    assert float(seasonal_naive.split('<td class="num">')[2].split("<")[0]) > 1


def test_a_run_without_labels_is_reported_under_the_series_names(make_predictions, monkeypatch):
    make_predictions("p1", labels=None)
    assert run_cli(monkeypatch, "r1") == 0
    page = (output_root() / "r1" / "report.html").read_text()
    assert ">GDP</h2>" in page and "Gross Domestic Product" not in page
    assert "<p>GDP</p>" not in page and 'class="note">GDP<' not in page  # the name is not repeated as a title


def test_series_from_the_offline_dataset_are_said_to_be_so(make_predictions, monkeypatch):
    offline = {"GDP": {"title": "Real GDP", "source": "bundled", "id": "statsmodels.macrodata.realgdp"}}
    make_predictions("p1", labels={**LABELS, **offline})
    assert run_cli(monkeypatch, "r1") == 0
    page = (output_root() / "r1" / "report.html").read_text()
    assert '<p class="warn">1 of 3 series come from the offline dataset bundled with statsmodels' in page
    assert "Source: the offline dataset bundled with statsmodels, statsmodels.macrodata.realgdp. Published:" in page
    assert "<p>Real GDP</p>" in page  # no units recorded: none shown


def test_malformed_labels_are_an_input_error_naming_run_json(make_predictions, monkeypatch, capsys):
    make_predictions("p1", labels={"GDP": {"title": 7}})
    assert run_cli(monkeypatch, "r1") == InputError.exit_code
    err = capsys.readouterr().err
    assert "run.json: labels must be an object keyed by series of {title, units, source, id} strings" in err
    assert not output_root().exists() or not any(output_root().iterdir())


def test_second_run_without_new_predictions_says_nothing_new(make_predictions, monkeypatch, capsys):
    make_predictions("p1")
    assert run_cli(monkeypatch, "r1") == 0
    capsys.readouterr()
    assert run_cli(monkeypatch, "r2") == 0
    out, err = capsys.readouterr()
    # Once, as a log line on stderr; stdout stays empty.
    assert err.count("nothing new: predictions run p1 is already published") == 1 and out == ""
    assert output_runs() == ["r1"] and latest() == "r1"


def test_edited_settings_are_published_again_from_the_same_predictions(make_predictions, monkeypatch, tmp_path):
    make_predictions("p1")
    assert run_cli(monkeypatch, "r1") == 0
    config = tmp_path / "forecasting.toml"
    config.write_text(load_settings().source.read_text().replace("single_margin = 0.5", "single_margin = 1"))
    monkeypatch.setenv("FORECASTING_CONFIG", str(config))

    assert run_cli(monkeypatch, "r2") == 0

    assert output_runs() == ["r1", "r2"] and latest() == "r2"
    forecasts = pd.read_parquet(output_root() / "r2" / "forecasts.parquet")
    assert forecasts["method"].isin(["weighted", "median"]).all()  # the new margin took effect
    inputs = json.loads((data_dir("forecasting", "data") / "input" / "r2" / "inputs.json").read_text())
    assert inputs["settings"]["select"]["single_margin"] == 1
    assert run_cli(monkeypatch, "r3") == 0 and output_runs() == ["r1", "r2"]  # then nothing new again


def test_nothing_new_is_an_info_line_that_warning_hides(make_predictions, monkeypatch, capsys):
    make_predictions("p1")
    assert run_cli(monkeypatch, "r1") == 0
    capsys.readouterr()
    assert run_cli(monkeypatch, "r2", "--log-level", "WARNING") == 0
    assert capsys.readouterr() == ("", "")


def test_new_predictions_make_a_new_run_and_keep_prunes_all_but_latest(make_predictions, monkeypatch):
    for k in (1, 2, 3):
        make_predictions(f"p{k}", seed=k)
        assert run_cli(monkeypatch, f"r{k}") == 0
    assert output_runs() == ["r1", "r2", "r3"] and latest() == "r3"
    make_predictions("p4", seed=4)
    assert run_cli(monkeypatch, "r4", "--keep", "2") == 0
    assert output_runs() == ["r3", "r4"] and latest() == "r4"
    # LATEST is never pruned, even when it is not the newest name.
    (output_root() / "LATEST").write_text("r3\n")
    assert run_cli(monkeypatch, "r5", "--keep", "1", "--dry-run") == 0
    assert output_runs() == ["r3", "r4"]


def publish_two_runs(make_predictions, monkeypatch) -> None:
    for k in (1, 2):
        make_predictions(f"p{k}", seed=k)
        assert run_cli(monkeypatch, f"r{k}") == 0


def test_keep_prunes_a_runs_inputs_with_its_outputs(make_predictions, monkeypatch):
    publish_two_runs(make_predictions, monkeypatch)

    assert run_cli(monkeypatch, "r3", "--keep", "1") == 0  # nothing new: only prunes

    assert output_runs() == ["r2"] and latest() == "r2"
    assert sorted(p.name for p in input_root().iterdir()) == ["r2"]


def test_keep_prunes_orphaned_inputs_but_nothing_linked_or_not_a_run(make_predictions, monkeypatch, tmp_path):
    publish_two_runs(make_predictions, monkeypatch)
    (input_root() / "r0").mkdir()  # inputs whose output run an earlier version pruned
    (input_root() / "r0" / "inputs.json").write_text("{}")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.txt").write_text("not the stage's")
    (input_root() / "r00").symlink_to(elsewhere)
    (output_root() / "r05").symlink_to(elsewhere)
    (input_root() / "notes here").mkdir()  # not a run id

    assert run_cli(monkeypatch, "r3", "--keep", "1") == 0

    assert sorted(p.name for p in output_root().iterdir() if not p.is_symlink() and p.is_dir()) == ["r2"]
    assert sorted(p.name for p in input_root().iterdir()) == ["notes here", "r00", "r2"]
    assert (output_root() / "r05").is_symlink() and (input_root() / "r00").is_symlink()
    assert (elsewhere / "precious.txt").read_text() == "not the stage's"


def test_an_output_dir_that_cannot_be_listed_still_publishes_and_warns_it_was_not_pruned(
    make_predictions, monkeypatch, run_unprivileged
):
    publish_two_runs(make_predictions, monkeypatch)
    make_predictions("p3", seed=3)
    with chmod_during(output_root(), 0o300):  # its files can be reached and written, but it cannot be listed
        published = run_unprivileged("r3", "run", "--keep", "1")
        nothing_new = run_unprivileged("r4", "run", "--keep", "1")

    # Housekeeping of a run that published: each failure is one warning, and the next --keep tries again.
    cannot_list = f"{output_root()}: cannot be listed (Permission denied)"
    assert published.returncode == 0, published.stderr
    assert f"forecasting: {cannot_list}; stale staging dirs are not cleared\n" in published.stderr
    assert f"forecasting: {cannot_list}; nothing pruned\n" in published.stderr
    assert (nothing_new.returncode, nothing_new.stderr.splitlines()[-1]) == (
        0,
        f"forecasting: {cannot_list}; nothing pruned",
    )
    assert output_runs() == ["r1", "r2", "r3"] and latest() == "r3"


def test_a_run_that_cannot_be_pruned_is_a_warning_keeping_its_inputs_and_the_rest_is_pruned(
    make_predictions, monkeypatch, run_unprivileged
):
    publish_two_runs(make_predictions, monkeypatch)
    make_predictions("p3", seed=3)
    stuck = output_root() / "r1"
    with chmod_during(stuck, 0o500):  # its files cannot be removed
        done = run_unprivileged("r3", "run", "--keep", "1")

    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "cannot prune" in line]
    assert len(warnings) == 1 and warnings[0].startswith(f"forecasting: {stuck}: cannot prune output run r1: ")
    assert output_runs() == ["r1", "r3"] and latest() == "r3"
    # Its inputs.json stays with it: upload refuses an output run without one.
    assert sorted(p.name for p in input_root().iterdir()) == ["r1", "r3"]


def test_dry_run_writes_nothing(make_predictions, monkeypatch):
    make_predictions("p1")
    assert run_cli(monkeypatch, "r1", "--dry-run") == 0
    assert not output_root().exists() or not any(output_root().iterdir())


def test_no_predictions_yet(project, monkeypatch, capsys):
    assert run_cli(monkeypatch, "r1") == 4
    err = capsys.readouterr().err
    assert "no predictions yet" in err and "LATEST not found" in err
    assert len(err.strip().splitlines()) == 1


def test_failed_predictions_run_is_ignored_and_latest_stays(make_predictions, monkeypatch, capsys):
    make_predictions("p1")
    assert run_cli(monkeypatch, "r1") == 0
    # A newer run that was killed before run.json: modelling did not move LATEST, so nothing is new.
    make_predictions("p2", seed=2, complete=False)
    assert run_cli(monkeypatch, "r2") == 0
    assert output_runs() == ["r1"]
    # LATEST naming an unfinished run (run.json missing) is refused with the path, and LATEST stays.
    (predictions_root() / "LATEST").write_text("p2\n")
    capsys.readouterr()
    assert run_cli(monkeypatch, "r3") == 4
    err = capsys.readouterr().err
    assert "names p2" in err and "run.json is missing" in err
    assert latest() == "r1" and output_runs() == ["r1"]


def test_series_with_scores_but_no_forecasts_is_refused(make_predictions, monkeypatch, capsys):
    make_predictions("p1")
    assert run_cli(monkeypatch, "r1") == 0
    make_predictions("p2", seed=2, without_forecasts=("CPI",))
    capsys.readouterr()
    assert run_cli(monkeypatch, "r2") == 4
    err = capsys.readouterr().err
    assert "series CPI have scores but no forecasts" in err
    assert latest() == "r1" and output_runs() == ["r1"]
    assert not any(p.name.startswith(".") for p in output_root().iterdir())  # no staging left behind


def test_series_failed_in_modelling_is_listed_not_published(make_predictions, monkeypatch):
    make_predictions("p1", without_forecasts=("CPI",), failed={"CPI": "too short"})
    assert run_cli(monkeypatch, "r1") == 0
    forecasts = pd.read_parquet(output_root() / "r1" / "forecasts.parquet")
    assert set(forecasts.series) == {"GDP", "UNRATE"}
    assert "CPI: too short" in (output_root() / "r1" / "report.html").read_text()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda meta: meta["season_length"].update(CPI="x"),
            "season_length[\"CPI\"] must be a whole number >= 1, got 'x'",
        ),
        (lambda meta: meta["season_length"].update(CPI=0), 'season_length["CPI"] must be a whole number >= 1, got 0'),
        (lambda meta: meta["horizon"].update(GDP=8.5), 'horizon["GDP"] must be a whole number >= 1, got 8.5'),
        (lambda meta: meta["frequency"].update(CPI=12), 'frequency["CPI"] must be a frequency code, got 12'),
        (lambda meta: meta["frequency"].pop("CPI"), "frequency has no entry for series CPI"),
        (lambda meta: meta["season_length"].pop("GDP"), "season_length has no entry for series GDP"),
        (lambda meta: meta["horizon"].pop("UNRATE"), "horizon has no entry for series UNRATE"),
        # Python writes and reads NaN, JSON has no such value; it would reach inputs.json.
        (lambda meta: meta["inputs"].update({"fred/GDP": float("nan")}), "not valid JSON (NaN is not a JSON value)"),
    ],
    ids=[
        "season-text",
        "season-zero",
        "horizon-fraction",
        "frequency-number",
        "no-frequency",
        "no-season",
        "no-horizon",
        "inputs-nan",
    ],
)
def test_hand_edited_run_json_is_one_input_error_naming_the_key(make_predictions, monkeypatch, capsys, edit, message):
    run_json = make_predictions("p1") / "run.json"
    meta = json.loads(run_json.read_text())
    edit(meta)
    run_json.write_text(json.dumps(meta))
    assert run_cli(monkeypatch, "r1") == InputError.exit_code
    assert capsys.readouterr().err == f"forecasting: error: {run_json}: {message}\n"
    assert not output_root().exists() or not any(output_root().iterdir())


def test_damaged_parquet_names_the_file(make_predictions, monkeypatch, capsys):
    directory = make_predictions("p1")
    (directory / "backtests.parquet").write_bytes(b"not parquet")
    assert run_cli(monkeypatch, "r1") == 4
    assert "backtests.parquet: cannot be read as Parquet" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("what", "named"),
    [("LATEST", "LATEST"), ("p1", "p1/run.json"), ("p1/history.parquet", "p1/history.parquet")],
    ids=["latest", "run-dir", "parquet"],
)
def test_predictions_that_cannot_be_read_are_one_input_error_naming_the_file(
    make_predictions, run_unprivileged, what, named
):
    make_predictions("p1")
    with unreadable(predictions_root() / what):
        done = run_unprivileged("r1", "run")

    assert (done.returncode, done.stderr) == (
        InputError.exit_code,
        f"forecasting: error: {predictions_root() / named}: cannot be read (Permission denied)\n",
    )
    assert not output_root().exists() or not any(output_root().iterdir())


@pytest.mark.parametrize("what", ["output/LATEST", "input/r1/inputs.json"])
def test_a_file_of_data_that_cannot_be_read_is_one_storage_error_naming_it(
    make_predictions, monkeypatch, run_unprivileged, what
):
    make_predictions("p1")
    assert run_cli(monkeypatch, "r1") == 0
    make_predictions("p2", seed=2)
    path = data_dir("forecasting", "data") / what
    with unreadable(path):
        done = run_unprivileged("r2", "run")

    assert (done.returncode, done.stderr) == (
        StorageError.exit_code,
        f"forecasting: error: {path}: cannot be read (Permission denied)\n",
    )
    assert output_runs() == ["r1"] and latest() == "r1"


@pytest.mark.parametrize("dry_run", [False, True])
def test_an_input_dir_that_cannot_be_searched_is_one_storage_error_and_nothing_is_written(
    make_predictions, run_unprivileged, dry_run
):
    make_predictions("p1")
    input_root().mkdir(parents=True)  # left by an earlier run; LATEST is not there to be read first
    with unreadable(input_root()):
        done = run_unprivileged("r1", "run", *(["--dry-run"] if dry_run else []))

    assert (done.returncode, done.stderr.splitlines()[-1]) == (
        StorageError.exit_code,
        f"forecasting: error: {input_root() / 'r1'}: cannot be read (Permission denied)",
    )
    assert "Traceback" not in done.stderr
    assert not output_root().exists() or not any(output_root().iterdir())


def test_an_inputs_json_that_is_not_utf8_is_one_input_error_naming_it(make_predictions, monkeypatch, capsys):
    make_predictions("p1")
    assert run_cli(monkeypatch, "r1") == 0
    inputs = input_root() / "r1" / "inputs.json"
    inputs.write_bytes(b"\xff\xfe{}")
    capsys.readouterr()

    assert run_cli(monkeypatch, "r2") == InputError.exit_code

    assert capsys.readouterr().err.startswith(f"forecasting: error: {inputs}: unreadable (UnicodeDecodeError: ")
    assert output_runs() == ["r1"]


@pytest.mark.parametrize("content", [b"r1\x00\n", b"../r1\n"], ids=["nul", "path"])
def test_a_data_latest_that_names_no_run_is_published_over(make_predictions, monkeypatch, capsys, content):
    make_predictions("p1")
    assert run_cli(monkeypatch, "r1") == 0
    (output_root() / "LATEST").write_bytes(content)

    assert run_cli(monkeypatch, "r2") == 0

    assert "which is not a run id; publishing again" in capsys.readouterr().err
    assert output_runs() == ["r1", "r2"] and latest() == "r2"


@pytest.mark.parametrize("content", [b"\xffp1\n", b"p1\x00\n", b"../p1\n"], ids=["not-utf8", "nul", "path"])
def test_a_latest_that_names_no_run_is_one_input_error(make_predictions, monkeypatch, capsys, content):
    make_predictions("p1")
    (predictions_root() / "LATEST").write_bytes(content)

    assert run_cli(monkeypatch, "r1") == InputError.exit_code

    assert capsys.readouterr().err.startswith(
        f"forecasting: error: {predictions_root() / 'LATEST'}: does not name a run"
    )


@pytest.mark.parametrize("name", ["run.json", "scores.parquet"])
def test_an_io_error_reading_predictions_is_one_input_error_naming_the_file(
    make_predictions, monkeypatch, capsys, name
):
    path = make_predictions("p1") / name
    replace_with_eio(path)

    assert run_cli(monkeypatch, "r1") == InputError.exit_code

    assert capsys.readouterr().err == f"forecasting: error: {path}: cannot be read (Input/output error)\n"
    assert not output_root().exists() or not any(output_root().iterdir())


@pytest.mark.parametrize(
    ("where", "error"),
    [
        ("predictions/LATEST", InputError),
        ("predictions/p1/history.parquet", InputError),
        ("output/LATEST", StorageError),
    ],
    ids=["latest", "parquet", "data"],
)
def test_a_named_pipe_in_place_of_a_file_is_one_error_naming_it_not_a_read_that_waits(
    make_predictions, monkeypatch, capsys, no_hang, where, error
):
    make_predictions("p1")
    if where.startswith("output/"):
        assert run_cli(monkeypatch, "r1") == 0
        make_predictions("p2", seed=2)
        path = output_root() / where.removeprefix("output/")
    else:
        path = predictions_root() / where.removeprefix("predictions/")
    path.unlink()
    os.mkfifo(path)
    capsys.readouterr()

    assert run_cli(monkeypatch, "r2") == error.exit_code

    assert capsys.readouterr().err == f"forecasting: error: {path}: is a named pipe, not a regular file\n"
    assert not (output_root() / "r2").exists()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("[select]\nsingle_margin = 2\n", "select.single_margin=2 must be between"),
        ("[select]\ncombinations = ['mean']\n", "select.combinations must be a list drawn from"),
        ("[select]\npool = 1\n", "select.pool=1 combines one model"),
        ("[select]\npool = 2.5\n", "select.pool must be an integer"),
        ("[select]\nfloor = 'seasonal_naive'\n", "select.floor must be a list of model names"),
        ("[upload]\nretries = 3\n", "upload.retries: unknown key"),
        ("[intervals]\ncalibrate = 'yes'\n", "intervals.calibrate must be true or false"),
        ("[intervals]\nmin_points = 0\n", "intervals.min_points=0 must be >= 1"),
        ("[select\n", "invalid TOML"),
    ],
)
def test_bad_config_names_key_and_file(make_predictions, monkeypatch, capsys, tmp_path, config, message):
    path = tmp_path / "bad.toml"
    path.write_text(config)
    monkeypatch.setenv("FORECASTING_CONFIG", str(path))
    make_predictions("p1")
    assert run_cli(monkeypatch, "r1") == 3
    err = capsys.readouterr().err
    assert message in err and str(path) in err


SETTINGS_TABLES = {"select": SelectSettings, "intervals": IntervalSettings, "report": ReportSettings,
                   "upload": UploadSettings}  # fmt: skip
FLOAT_KEYS = [(table, f.name) for table, kind in SETTINGS_TABLES.items() for f in fields(kind) if f.type == "float"]


def test_every_float_key_is_covered_below():
    assert FLOAT_KEYS == [("select", "single_margin"), ("upload", "connect_timeout_s"), ("upload", "read_timeout_s")]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
@pytest.mark.parametrize(("table", "key"), FLOAT_KEYS)
@pytest.mark.parametrize("command", ["run", "upload"])
def test_nan_and_infinity_are_config_errors_naming_file_and_key(
    make_predictions, monkeypatch, capsys, tmp_path, command, table, key, value
):
    # TOML has nan and inf. NaN slipped past every bounds check: runs never matched LATEST's settings, and
    # inputs.json held a bare NaN; upload failed with a traceback from the HTTP client's timeout.
    path = tmp_path / "forecasting.toml"
    path.write_text(f"[{table}]\n{key} = {value}\n")
    monkeypatch.setenv("FORECASTING_CONFIG", str(path))
    monkeypatch.setenv("PIPELINE_RUN_ID", "r1")
    make_predictions("p1")

    assert main([command]) == 3

    assert capsys.readouterr().err == (
        f"forecasting: error: {path}: {table}.{key} must be a finite number, got {value}\n"
    )
    assert not output_root().exists() or not any(output_root().iterdir())


def test_inputs_json_is_strict_json_or_nothing_is_published(make_predictions, monkeypatch, capsys):
    # Settings are checked when read; this guards the writer itself against a NaN reaching the record.
    make_predictions("p1")
    settings = load_settings()
    bad = replace(settings, select=replace(settings.select, single_margin=float("nan")))
    monkeypatch.setattr(forecasting_cli, "load_settings", lambda: bad)

    assert run_cli(monkeypatch, "r1") == 1

    inputs = input_root() / "r1" / "inputs.json"
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"forecasting: error: {inputs}: would not be valid JSON (Out of range float values are not JSON compliant: "
        "nan); nothing published"
    )
    assert not output_root().exists() or not any(output_root().iterdir())
    assert not input_root().exists() or not any(input_root().iterdir())


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda path: path.write_bytes(b"\xff\xfe[select]\n"), "not UTF-8 text"),  # a UTF-16 save
        (lambda path: path.mkdir(), "cannot read: Is a directory"),
    ],
    ids=["not-utf8", "directory"],
)
def test_unreadable_config_is_one_line_naming_the_file(make_predictions, monkeypatch, capsys, tmp_path, make, message):
    path = tmp_path / "forecasting.toml"
    make(path)
    monkeypatch.setenv("FORECASTING_CONFIG", str(path))
    make_predictions("p1")
    assert run_cli(monkeypatch, "r1") == 3
    err = capsys.readouterr().err
    assert err == f"forecasting: error: {path} (from FORECASTING_CONFIG): {message}\n"
    assert not output_root().exists() or not any(output_root().iterdir())


@pytest.mark.parametrize("floor", ["seasonal_naiv", "median"])  # a typo; a combination is not a model
def test_floor_naming_no_model_of_the_predictions_is_a_config_error(
    make_predictions, monkeypatch, capsys, tmp_path, floor
):
    path = tmp_path / "forecasting.toml"
    path.write_text(f'[select]\nfloor = ["{floor}"]\n')
    monkeypatch.setenv("FORECASTING_CONFIG", str(path))
    make_predictions("p1")
    assert run_cli(monkeypatch, "r1") == 3
    err = capsys.readouterr().err
    assert err == (
        f"forecasting: error: {path}: select.floor: unknown model {floor!r} "
        "(models in predictions run p1: auto_sarima, ets, seasonal_naive, theta)\n"
    )
    assert not output_root().exists() or not any(output_root().iterdir())


def test_a_packaged_floor_the_models_lack_says_how_to_give_another(make_predictions, monkeypatch, capsys):
    make_predictions("p1", models=("auto_sarima", "theta"))  # modelling told to fit these two only

    assert run_cli(monkeypatch, "r1") == 3

    assert capsys.readouterr().err == (
        f"forecasting: error: {default_config_path()}: select.floor: unknown model 'seasonal_naive' "
        "(models in predictions run p1: auto_sarima, theta); "
        "set FORECASTING_CONFIG to a copy whose select.floor names one of them, or []\n"
    )


def test_an_empty_floor_is_accepted_and_combines_the_benchmark_too(make_predictions, monkeypatch, tmp_path):
    path = tmp_path / "forecasting.toml"
    path.write_text("[select]\nfloor = []\n")
    monkeypatch.setenv("FORECASTING_CONFIG", str(path))
    make_predictions("p1")
    assert run_cli(monkeypatch, "r1") == 0
    forecasts = pd.read_parquet(output_root() / "r1" / "forecasts.parquet")
    assert forecasts["models"].str.contains("seasonal_naive").any()


def test_bad_profile_is_a_config_error(project, monkeypatch, capsys):
    monkeypatch.setenv("PIPELINE_PROFILE", "staging")
    assert run_cli(monkeypatch, "r1") == 3
    assert "PIPELINE_PROFILE='staging'" in capsys.readouterr().err


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("stderr", "level", "shown"),
    [(Terminal, "INFO", True), (Terminal, "WARNING", False), (io.StringIO, "INFO", False)],
    ids=["terminal", "terminal-warning", "not-a-terminal"],
)
def test_the_reports_charts_show_per_series_progress_on_a_terminal_only(
    make_predictions, monkeypatch, stderr, level, shown
):
    make_predictions("p1")
    monkeypatch.setattr(sys, "stderr", stderr())

    assert run_cli(monkeypatch, "r1", "--log-level", level) == 0

    err = sys.stderr.getvalue()
    steps = re.findall(r"\r\x1b\[K\[(\d)/3\] report (\w+): ok", err)
    if shown:  # as modelling's fits show theirs: one line rewritten per chart, ended before the next log line
        assert [n for n, _ in steps] == ["1", "2", "3"] and {s for _, s in steps} == {"GDP", "UNRATE", "CPI"}
        assert re.search(r"report \w+: ok\nforecasting: published r1: 3 series", err)
    else:
        assert steps == [] and "\x1b" not in err


def test_logs_go_to_the_run_log_file(make_predictions, monkeypatch):
    make_predictions("p1")
    assert run_cli(monkeypatch, "r1") == 0
    log_text = (data_dir("", "logs") / "r1.log").read_text()
    assert "published r1: 3 series" in log_text


# Tests run as root, whom a read-only mode does not stop: a regular file where a directory must be
# fails a write for every user, as a read-only directory does for the container's non-root user.


def test_a_logs_dir_that_cannot_be_written_is_one_line_and_the_storage_exit_code(make_predictions, monkeypatch, capsys):
    make_predictions("p1")
    logs = logs_dir()
    logs.parent.mkdir(parents=True, exist_ok=True)
    logs.write_text("not a directory")

    assert run_cli(monkeypatch, "r1") == StorageError.exit_code == 7

    assert capsys.readouterr().err == f"forecasting: error: cannot set up logging: [Errno 17] File exists: '{logs}'\n"
    assert not output_root().exists() or not any(output_root().iterdir())


def test_an_output_dir_that_cannot_be_written_is_one_line_and_leaves_nothing(make_predictions, monkeypatch, capsys):
    make_predictions("p1")
    output_root().parent.mkdir(parents=True, exist_ok=True)
    output_root().write_text("not a directory")

    assert run_cli(monkeypatch, "r1") == 7

    assert capsys.readouterr().err.splitlines()[-1] == (
        f"forecasting: error: {output_root() / 'r1'}: cannot publish the run: "
        f"[Errno 20] Not a directory: '{output_root() / '.r1.partial'}'"
    )
    assert output_root().read_text() == "not a directory"
    assert not input_root().exists() or not any(input_root().iterdir())


def test_inputs_that_cannot_be_written_leave_no_output_run_and_latest_as_it_was(make_predictions, monkeypatch, capsys):
    make_predictions("p1")
    assert run_cli(monkeypatch, "r1") == 0
    make_predictions("p2", seed=2)
    (input_root() / "r2").write_text("not a directory")  # inputs.json is written after the run dir is in place
    capsys.readouterr()

    assert run_cli(monkeypatch, "r2") == 7

    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith(f"forecasting: error: {output_root() / 'r2'}: cannot publish the run: [Errno 20] ")
    assert str(input_root() / "r2") in err
    assert output_runs() == ["r1"] and latest() == "r1"
    assert not [p.name for p in output_root().iterdir() if p.name.startswith(".")]  # no staging left either
    assert (input_root() / "r2").read_text() == "not a directory"  # not the run's to remove


def break_latest_during_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once the outputs are written, reading data/output/LATEST fails with EIO (as from the share)."""
    write_outputs = _publish._write_outputs

    def and_latest_breaks(*args, **kwargs) -> None:
        write_outputs(*args, **kwargs)
        replace_with_eio(output_root() / "LATEST")

    monkeypatch.setattr(_publish, "_write_outputs", and_latest_breaks)


def test_a_run_that_fails_is_removed_even_when_latest_has_become_unreadable(make_predictions, monkeypatch, capsys):
    make_predictions("p1")
    assert run_cli(monkeypatch, "r1") == 0
    make_predictions("p2", seed=2)
    (input_root() / "r2").write_text("not a directory")  # inputs.json is written after the run dir is in place
    break_latest_during_the_run(monkeypatch)
    capsys.readouterr()

    assert run_cli(monkeypatch, "r2") == StorageError.exit_code

    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith(f"forecasting: error: {output_root() / 'r2'}: cannot publish the run: [Errno 20] ")
    assert output_runs() == ["r1"]  # LATEST was not yet being written: r2 cannot be what it names


def test_a_run_whose_latest_write_fails_is_kept_where_latest_cannot_be_read_back(make_predictions, monkeypatch, capsys):
    make_predictions("p1")
    assert run_cli(monkeypatch, "r1") == 0
    make_predictions("p2", seed=2)
    break_latest_during_the_run(monkeypatch)
    write = _publish.atomic_write

    def latest_fails(path: Path, text: str) -> None:
        if path.name == "LATEST":  # as a failed fsync after the rename: LATEST may name r2 now
            raise OSError(5, "Input/output error", str(path))
        write(path, text)

    monkeypatch.setattr(_publish, "atomic_write", latest_fails)
    capsys.readouterr()

    assert run_cli(monkeypatch, "r2") == StorageError.exit_code

    err = capsys.readouterr().err.splitlines()
    assert err[-2] == (
        f"forecasting: {output_root() / 'LATEST'}: cannot be read (Input/output error); "
        "run r2 is left in place, as LATEST may name it"
    )
    assert err[-1].startswith(f"forecasting: error: {output_root() / 'r2'}: cannot publish the run: [Errno 5] ")
    assert output_runs() == ["r1", "r2"] and (input_root() / "r2" / "inputs.json").is_file()


def test_module_entry_point_help_and_usage_errors(project):
    done = subprocess.run([sys.executable, "-m", "forecasting", "run", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "--keep N" in done.stdout and "--dry-run" in done.stdout
    bad = subprocess.run([sys.executable, "-m", "forecasting", "run", "--keep", "0"], capture_output=True, text=True)
    assert bad.returncode == 2 and "must be at least 1" in bad.stderr


def test_packaged_config_is_found_and_complete(project):
    from forecasting._config import default_config_path, load_settings

    settings = load_settings()
    assert settings.source == default_config_path() and settings.source.name == "forecasting.toml"
    assert settings.select.combinations == ("weighted", "median")
    assert settings.upload.container == "forecasts"
    assert settings.intervals.calibrate is True and settings.intervals.min_points == 40
    assert Path(settings.source).parent.name == "config"


def test_an_interrupted_runs_staging_dir_is_cleared_and_never_published(make_predictions, monkeypatch):
    make_predictions("p1")
    stale = output_root() / ".r0.partial"
    stale.mkdir(parents=True)
    (stale / "report.html").write_text("half")
    assert run_cli(monkeypatch, "r1") == 0
    assert not stale.exists() and output_runs() == ["r1"]


def test_a_staging_dir_that_cannot_be_removed_is_one_warning_naming_it_and_the_run_publishes(
    make_predictions, run_unprivileged
):
    make_predictions("p1")
    stale = output_root() / ".r0.partial"
    (stale / "charts").mkdir(parents=True)
    (stale / "charts" / "a.png").write_text("half")
    with chmod_during(stale / "charts", 0o500):  # its files cannot be removed
        done = run_unprivileged("r1", "run")

    assert done.returncode == 0, done.stderr
    assert [line for line in done.stderr.splitlines() if ".r0.partial" in line] == [
        f"forecasting: {stale}: cannot remove the staging dir of an interrupted run (Permission denied)"
    ]
    assert output_runs() == [".r0.partial", "r1"] and latest() == "r1"


def test_sigterm_during_a_run_is_one_line_and_exit_143_with_latest_unchanged(make_predictions, monkeypatch, capsys):
    make_predictions("p1")
    assert run_cli(monkeypatch, "r1") == 0
    make_predictions("p2", seed=2)
    publish = forecasting_cli.run

    def stopped_halfway(*args, **kwargs):  # SIGTERM (docker stop) arrives once the run is under way
        signal.raise_signal(signal.SIGTERM)
        return publish(*args, **kwargs)

    monkeypatch.setattr(forecasting_cli, "run", stopped_halfway)
    capsys.readouterr()

    assert run_cli(monkeypatch, "r2") == 143

    assert capsys.readouterr().err == "forecasting: stopped by SIGTERM; LATEST still names the last complete run\n"
    assert latest() == "r1" and output_runs() == ["r1"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the test process's own handler is back


# A real `forecasting run` in another process, held up inside its lock (just before it reads
# predictions/LATEST) until the test closes its stdin.
HELD_RUN = """
import sys
from forecasting import _cli, _publish

read_latest = _publish.latest_run_id


def held_up():
    print("holding", flush=True)
    sys.stdin.read()
    return read_latest()


_publish.latest_run_id = held_up
sys.exit(_cli.main(["run"]))
"""


def snapshot(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


def test_a_second_run_while_one_is_at_work_fails_naming_it_and_changes_nothing(make_predictions, monkeypatch, capsys):
    make_predictions("p1")
    assert run_cli(monkeypatch, "r1") == 0
    make_predictions("p2", seed=2)
    data = data_dir("forecasting", "data")
    first = subprocess.Popen(
        [sys.executable, "-c", HELD_RUN],
        env={**os.environ, "PIPELINE_RUN_ID": "r2"},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert first.stdout.readline() == "holding\n", first.communicate()[1]
        before = snapshot(data)
        capsys.readouterr()

        second = run_cli(monkeypatch, "r3")
        err = capsys.readouterr().err
        dry_run = run_cli(monkeypatch, "r3", "--dry-run")  # writes nothing, so takes no lock

        assert snapshot(data) == before
    finally:
        first_err = first.communicate()[1]  # closes its stdin: the first run goes on
    assert second == StorageError.exit_code
    assert re.fullmatch(
        rf"forecasting: error: {re.escape(str(data))}/\.storage-links\.lock: held by pid {first.pid} on \S+ "
        r"\(forecasting run\), last touched \d+s ago; wait for it to finish \(a lock whose process is gone is "
        r"broken by the next run\)\n",
        err,
    ), err
    assert dry_run == 0
    assert first.returncode == 0, first_err
    assert latest() == "r2" and output_runs() == ["r1", "r2"]  # the first finished unharmed
    assert not (data / ".storage-links.lock").exists()


def test_an_existing_output_run_is_never_overwritten(make_predictions, monkeypatch, capsys):
    make_predictions("p1")
    assert run_cli(monkeypatch, "r1") == 0
    before = (output_root() / "r1" / "forecasts.parquet").read_bytes()
    make_predictions("p2", seed=2)
    assert run_cli(monkeypatch, "r1") == 1
    assert "already exists" in capsys.readouterr().err
    assert (output_root() / "r1" / "forecasts.parquet").read_bytes() == before


def test_the_floor_model_is_scored_but_never_published(make_predictions, monkeypatch):
    make_predictions("p1")
    assert run_cli(monkeypatch, "r1") == 0
    scores = pd.read_csv(output_root() / "r1" / "scores.csv")
    naive = scores[scores["candidate"] == "seasonal_naive"]
    assert len(naive) == 3 and naive["mase"].notna().all() and not naive["chosen"].any()
    forecasts = pd.read_parquet(output_root() / "r1" / "forecasts.parquet")
    assert not forecasts["models"].str.contains("seasonal_naive").any()
    assert forecasts["models"].str.contains("ets").any()


def test_series_without_backtest_publishes_the_best_model_by_modellings_scores(make_predictions, monkeypatch):
    make_predictions("p1", without_backtests=("GDP",))
    assert run_cli(monkeypatch, "r1") == 0
    forecasts = pd.read_parquet(output_root() / "r1" / "forecasts.parquet")
    scores = pd.read_parquet(predictions_root() / "p1" / "scores.parquet")
    best = scores[scores.series == "GDP"].sort_values("mase")["model"].iloc[0]
    assert forecasts.loc[forecasts.series == "GDP", "models"].unique().tolist() == [best]
