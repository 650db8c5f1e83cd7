"""The stage end to end on a scaffolded root: outputs, incremental re-runs, the cache, bad input."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from modelling._cli import EXIT_CONFIG, EXIT_INPUT, EXIT_OK, EXIT_SERIES_FAILED, EXIT_STORAGE, main

COLUMNS = {
    "forecasts": ["series", "model", "step", "date", "mean", "lo80", "hi80", "lo95", "hi95"],
    "backtests": ["series", "model", "fold", "step", "date", "actual", "mean", "lo80", "hi80", "lo95", "hi95"],
    "scores": ["series", "model", "mase", "smape", "coverage80", "coverage95", "folds"],
    "history": ["series", "date", "value"],
}


def runs(predictions):
    return sorted(p.name for p in predictions.iterdir() if p.is_dir()) if predictions.exists() else []


def model(run_id, monkeypatch, *args):
    monkeypatch.setenv("PIPELINE_RUN_ID", run_id)
    return main(["run", "--jobs", "1", *args])


@pytest.fixture
def two_series(store, make_monthly, macro):
    store("bundled/realgdp", macro().iloc[-80:], "Q")
    store("fred/SALES", make_monthly(60), "M")


def test_run_writes_every_file_in_the_documented_shape(two_series, predictions, monkeypatch):
    assert model("r1", monkeypatch) == EXIT_OK
    run_dir = predictions / "r1"
    for name, columns in COLUMNS.items():
        frame = pd.read_parquet(run_dir / f"{name}.parquet")
        assert list(frame.columns) == columns, name
    forecasts = pd.read_parquet(run_dir / "forecasts.parquet")
    assert set(forecasts["model"]) == {"auto_sarima", "ets", "theta", "optimised_theta", "seasonal_naive"}
    gdp = forecasts[(forecasts["series"] == "bundled/realgdp") & (forecasts["model"] == "auto_sarima")]
    assert list(gdp["step"]) == list(range(1, 9))
    assert gdp["date"].iloc[0] == pd.Timestamp("2009-10-01")
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["season_length"] == {"bundled/realgdp": 4, "fred/SALES": 12}
    assert meta["horizon"] == {"bundled/realgdp": 8, "fred/SALES": 18}
    assert meta["failed"] == {}
    assert set(meta["inputs"]) == {"bundled/realgdp", "fred/SALES"}
    scores = pd.read_parquet(run_dir / "scores.parquet")
    assert (scores["folds"] == 3).all() and scores["mase"].notna().all()
    assert (predictions / "LATEST").read_text().strip() == "r1"


def test_rerun_with_nothing_new_fits_nothing_and_writes_no_run(two_series, predictions, monkeypatch, capsys):
    assert model("r1", monkeypatch) == EXIT_OK
    capsys.readouterr()
    assert model("r2", monkeypatch) == EXIT_OK
    assert runs(predictions) == ["r1"]
    assert "nothing new" in capsys.readouterr().err
    assert (predictions / "LATEST").read_text().strip() == "r1"


def test_nothing_new_is_recognised_from_the_bytes_without_pandas(two_series, scraped, predictions, monkeypatch):
    assert model("r1", monkeypatch) == EXIT_OK
    check = (
        "import sys; from modelling._cli import main; rc = main(['run']); "
        "assert 'pandas' not in sys.modules, 'pandas was imported'; sys.exit(rc)"
    )
    quick = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                           env=os.environ | {"PIPELINE_RUN_ID": "r2"}, check=False)  # fmt: skip
    assert quick.returncode == EXIT_OK, quick.stderr
    assert "nothing new since run r1" in quick.stderr
    # Other bytes, same series (the manifest re-serialised): the full check runs and still finds nothing new.
    manifest = scraped / "manifest.json"
    manifest.write_text(json.dumps(json.loads(manifest.read_text()), indent=4))
    assert model("r3", monkeypatch) == EXIT_OK
    assert runs(predictions) == ["r1"]


def test_grown_series_is_refit_from_its_cached_order_and_the_other_reused(
    two_series, store, make_monthly, predictions, monkeypatch, capsys
):
    assert model("r1", monkeypatch) == EXIT_OK
    first = json.loads((predictions / "r1" / "run.json").read_text())
    store("fred/SALES", make_monthly(63), "M")  # same values, three more months
    from modelling import _cache

    hits = []
    original = _cache.lookup
    monkeypatch.setattr(_cache, "lookup", lambda *a: hits.append(r := original(*a)) or r)
    assert model("r2", monkeypatch) == EXIT_OK
    assert [hit.kind for hit in hits] == ["extended"]
    assert "2 series: 1 to fit, 1 unchanged" in capsys.readouterr().err
    second = pd.read_parquet(predictions / "r2" / "forecasts.parquet")
    sales = second[(second["series"] == "fred/SALES") & (second["model"] == "auto_sarima")]
    assert sales["date"].iloc[0] == pd.Timestamp("2015-04-01")
    old = pd.read_parquet(predictions / "r1" / "forecasts.parquet")
    pd.testing.assert_frame_equal(
        old[old["series"] == "bundled/realgdp"].reset_index(drop=True),
        second[second["series"] == "bundled/realgdp"].reset_index(drop=True),
    )
    assert json.loads((predictions / "r2" / "run.json").read_text())["fingerprints"]["bundled/realgdp"] == \
        first["fingerprints"]["bundled/realgdp"]  # fmt: skip


def test_cached_parameters_are_used_for_an_unchanged_series(two_series, root, predictions, monkeypatch):
    from modelling import _cache

    assert model("r1", monkeypatch) == EXIT_OK
    (predictions / "LATEST").unlink()  # no previous run to copy from: only the cache can spare the fit
    cache = root / "packages" / "modelling" / "cache" / "sarima_params"
    entries = sorted(cache.glob("*.json"))
    assert len(entries) == 2
    calls = []
    original = _cache.lookup
    monkeypatch.setattr(_cache, "lookup", lambda *a: calls.append(r := original(*a)) or r)
    assert model("r2", monkeypatch) == EXIT_OK
    assert [hit.kind for hit in calls] == ["same", "same"]


def test_corrupt_and_foreign_cache_entries_are_ignored_with_a_warning(two_series, root, monkeypatch, capsys):
    assert model("r1", monkeypatch) == EXIT_OK
    cache = root / "packages" / "modelling" / "cache" / "sarima_params"
    first, second = sorted(cache.glob("*.json"))
    first.write_text("{not json")
    entry = json.loads(second.read_text())
    entry["choice"]["order"] = "__import__('os').system('touch pwned')"
    second.write_text(json.dumps(entry))
    (root / "packages" / "modelling" / "predictions" / "LATEST").unlink()
    assert model("r2", monkeypatch) == EXIT_OK
    assert capsys.readouterr().err.count("ignoring cache entry") == 2
    assert not (root / "pwned").exists()


def test_bad_series_are_reported_and_the_others_still_modelled(two_series, store, scraped, predictions, monkeypatch):
    store("fred/SHORT", pd.DataFrame({"date": pd.date_range("2020-01-01", periods=5, freq="MS"),
                                      "value": [1.0, 2, 3, 4, 5]}), "M")  # fmt: skip
    store("fred/ODD", pd.DataFrame({"date": pd.date_range("2020-01-01", periods=40, freq="MS"),
                                    "value": range(40)}), "X")  # fmt: skip
    store("fred/BROKEN", pd.DataFrame({"date": pd.date_range("2020-01-01", periods=40, freq="MS"),
                                       "value": range(40)}), "M")  # fmt: skip
    (scraped / "fred" / "BROKEN.parquet").write_bytes(b"PAR1 this is not parquet")
    assert model("r1", monkeypatch) == EXIT_SERIES_FAILED
    failed = json.loads((predictions / "r1" / "run.json").read_text())["failed"]
    assert "too few points (5 < min_points 12" in failed["fred/SHORT"]
    assert "unknown frequency 'X'" in failed["fred/ODD"]
    assert "BROKEN.parquet: malformed Parquet" in failed["fred/BROKEN"]
    forecasts = pd.read_parquet(predictions / "r1" / "forecasts.parquet")
    assert set(forecasts["series"]) == {"bundled/realgdp", "fred/SALES"}


def test_missing_scraped_data_is_an_input_error_and_writes_nothing(root, predictions, monkeypatch, capsys):
    assert model("r1", monkeypatch) == EXIT_INPUT
    assert "scraped_data directory is missing" in capsys.readouterr().err
    assert runs(predictions) == []


def test_failed_run_leaves_the_previous_run_alone(two_series, scraped, predictions, monkeypatch):
    assert model("r1", monkeypatch) == EXIT_OK
    before = {p.name: p.read_bytes() for p in (predictions / "r1").iterdir()}
    (scraped / "manifest.json").write_text("{broken")
    assert model("r2", monkeypatch) == EXIT_INPUT
    assert runs(predictions) == ["r1"]
    assert {p.name: p.read_bytes() for p in (predictions / "r1").iterdir()} == before
    assert (predictions / "LATEST").read_text().strip() == "r1"


def test_existing_run_directory_is_never_overwritten(two_series, predictions, monkeypatch):
    (predictions / "r1").mkdir(parents=True)
    (predictions / "r1" / "keep.txt").write_text("mine")
    assert model("r1", monkeypatch) == EXIT_STORAGE
    assert [p.name for p in (predictions / "r1").iterdir()] == ["keep.txt"]


def test_bad_config_names_the_key_and_the_file(two_series, tmp_path, monkeypatch, capsys):
    config = tmp_path / "bad.toml"
    config.write_text('models = ["auto_sarima"]\nlevels = [80, 95]\nmin_points = 12\ntransform = "none"\n'
                      'daily_window = 100\n[horizon]\nD = 1\nB = 1\nW = 1\nM = 0\nQ = 1\nA = 1\n'
                      '[backtest]\nfolds = 1\nstep = 0\n')  # fmt: skip
    assert model("r1", monkeypatch, "--config", str(config)) == EXIT_CONFIG
    assert f"{config}: horizon.M: expected a positive integer, got 0" in capsys.readouterr().err


def test_dry_run_and_series_selection_write_nothing(two_series, predictions, monkeypatch, capsys):
    assert model("r1", monkeypatch, "--dry-run", "--series", "fred/SALES") == EXIT_OK
    err = capsys.readouterr().err
    assert "would fit fred/SALES" in err and "bundled/realgdp" not in err
    assert runs(predictions) == []


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(flag in out for flag in ("--jobs", "--series", "--log-level", "--dry-run"))


def test_parallel_workers_give_the_same_forecasts_as_one(two_series, predictions, monkeypatch):
    assert model("r1", monkeypatch) == EXIT_OK
    (predictions / "LATEST").unlink()
    monkeypatch.setenv("PIPELINE_RUN_ID", "r2")
    assert main(["run", "--jobs", "2"]) == EXIT_OK
    one = pd.read_parquet(predictions / "r1" / "forecasts.parquet").sort_values(["series", "model", "step"])
    two = pd.read_parquet(predictions / "r2" / "forecasts.parquet").sort_values(["series", "model", "step"])
    pd.testing.assert_frame_equal(one.reset_index(drop=True), two.reset_index(drop=True), rtol=1e-6)
