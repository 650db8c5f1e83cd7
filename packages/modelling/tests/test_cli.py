"""The stage end to end on a scaffolded root: outputs, incremental re-runs, the cache, bad input."""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from modelling import ConfigError
from modelling._cli import EXIT_CONFIG, EXIT_INPUT, EXIT_OK, EXIT_SERIES_FAILED, EXIT_STORAGE, EXIT_WORKER, main

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


@pytest.fixture
def quick_models(tmp_path, monkeypatch):
    """MODELLING_CONFIG with auto_sarima (whose fits are cached), theta and seasonal naive: the
    default settings but ETS's model search and optimised Theta, about 7 of the 10 s a default run
    takes on two_series. For the tests whose subject is the command, not which models run."""
    monkeypatch.setenv(
        "MODELLING_CONFIG", stage_config(tmp_path, "quick.toml", models='["auto_sarima", "theta", "seasonal_naive"]')
    )


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
    assert meta["labels"] == {
        s: {"title": f"Test series {s}", "units": "Index", "source": "test", "id": s} for s in meta["inputs"]
    }
    scores = pd.read_parquet(run_dir / "scores.parquet")
    assert (scores["folds"] == 3).all() and scores["mase"].notna().all()
    assert (predictions / "LATEST").read_text().strip() == "r1"


def test_rerun_with_nothing_new_fits_nothing_and_writes_no_run(
    two_series, quick_models, predictions, monkeypatch, capsys
):
    assert model("r1", monkeypatch) == EXIT_OK
    capsys.readouterr()
    assert model("r2", monkeypatch) == EXIT_OK
    assert runs(predictions) == ["r1"]
    assert "nothing new" in capsys.readouterr().err
    assert (predictions / "LATEST").read_text().strip() == "r1"


def test_nothing_new_is_recognised_from_the_bytes_without_pandas(
    two_series, quick_models, scraped, predictions, monkeypatch
):
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
    two_series, quick_models, store, make_monthly, predictions, monkeypatch, capsys
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


def test_cached_parameters_are_used_for_an_unchanged_series(two_series, quick_models, root, predictions, monkeypatch):
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


MANY = 16  # series in many_quick: seconds of fitting left when the first fit is cached


@pytest.fixture
def many_quick(store, make_monthly, root, tmp_path):
    """MANY monthly series and a config that fits auto_sarima alone with no backtests: a few seconds'
    work for two workers, to stop or break halfway. Returns (config, cache dir)."""
    for k in range(MANY):
        store(f"fred/S{k:02d}", make_monthly(120, seed=k), "M")
    config = tmp_path / "quick.toml"
    text = (Path(__file__).parents[1] / "config" / "modelling.toml").read_text()
    config.write_text(text.replace('models = ["auto_sarima", "ets", "theta", "optimised_theta", "seasonal_naive"]',
                                   'models = ["auto_sarima"]').replace("folds = 3", "folds = 0"))  # fmt: skip
    return config, root / "packages" / "modelling" / "cache" / "sarima_params"


def start_stage_once_a_fit_is_cached(config, cache) -> subprocess.Popen:
    command = [sys.executable, "-m", "modelling", "run", "--jobs", "2", "--config", str(config)]
    stage = subprocess.Popen(command, env={**os.environ, "PIPELINE_RUN_ID": "r1"}, stderr=subprocess.PIPE, text=True)
    while not list(cache.glob("*.json")):
        assert stage.poll() is None, stage.communicate()[1]
        time.sleep(0.01)
    return stage


def test_sigterm_mid_run_keeps_the_finished_fits_cached_and_the_next_run_starts_from_them(
    many_quick, predictions, monkeypatch
):
    config, cache = many_quick
    stage = start_stage_once_a_fit_is_cached(config, cache)
    try:
        stage.send_signal(signal.SIGTERM)  # as `docker stop` does
        err = stage.communicate(timeout=120)[1]
    finally:
        stage.kill()

    assert stage.returncode == 143, err
    assert err.endswith("modelling: stopped by SIGTERM: the fits finished so far are cached for the next run; "
                        "LATEST still names the last complete run\n")  # fmt: skip
    assert "Traceback" not in err
    cached = sorted(cache.glob("*.json"))
    assert 1 <= len(cached) < MANY  # the fits not started were dropped
    assert all(json.loads(p.read_text())["choice"]["params"] for p in cached)
    assert not (predictions / "LATEST").exists() and not list(predictions.glob("*/run.json"))

    from modelling import _cache, _checkpoint

    hits, resumed = [], []
    original, checkpointed = _cache.lookup, _checkpoint.lookup
    monkeypatch.setattr(_cache, "lookup", lambda *a: hits.append(r := original(*a)) or r)
    monkeypatch.setattr(_checkpoint, "lookup", lambda *a: resumed.append(r := checkpointed(*a)) or r)
    assert main(["run", "--jobs", "2", "--config", str(config)]) == EXIT_OK
    # The next run takes each series finished before the stop from its checkpoint, or (stopped
    # between writing the two) starts from its cached fit.
    assert sum(hit is not None for hit in [*hits, *resumed]) == len(cached)


def test_a_run_resumed_after_a_stop_reuses_the_finished_series_backtest_searches(
    store, make_monthly, root, tmp_path, predictions, monkeypatch, capsys
):
    """A stopped run's finished series are not searched again, final model or backtest folds, and
    the resumed run writes what an uninterrupted one does."""
    from modelling import _cache, _sarima

    store("fred/A", make_monthly(54, seed=1), "M")
    store("fred/B", make_monthly(60, seed=2), "M")
    config = stage_config(tmp_path, "sarima.toml", models='["auto_sarima"]')
    assert model("whole", monkeypatch, "--config", config) == EXIT_OK
    cache = root / "packages" / "modelling" / "cache" / "sarima_params"
    for path in [*cache.iterdir(), predictions / "LATEST"]:
        path.unlink()

    stored = _cache.store

    # A SIGINT as the first series' fits land, before its checkpoint is written: fred/A done, fred/B
    # not begun, and only this cache to resume fred/A from.
    def store_then_stop(*args):
        stored(*args)
        os.kill(os.getpid(), signal.SIGINT)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_cache, "store", store_then_stop)
        assert model("stopped", monkeypatch, "--config", config) == 130
    assert len(list(cache.iterdir())) == 1
    searched = []
    search = _sarima._search
    monkeypatch.setattr(_sarima, "_search", lambda x, *a: searched.append(len(x)) or search(x, *a))
    capsys.readouterr()

    assert model("resumed", monkeypatch, "--config", config) == EXIT_OK

    # fred/B (60 points: 60 and its folds' 42, 33, 24) is searched; fred/A (54; 36, 27, 18) not at all.
    assert sorted(searched) == [24, 33, 42, 60]
    err = capsys.readouterr().err
    assert "fred/A: auto_sarima: 3 of 3 backtest folds reused their cached models, unsearched" in err
    for name in ("forecasts", "backtests", "scores"):
        whole, resumed = (pd.read_parquet(predictions / run / f"{name}.parquet") for run in ("whole", "resumed"))
        pd.testing.assert_frame_equal(whole, resumed)


@contextlib.contextmanager
def stop_after_checkpoints(count: int) -> Iterator[None]:
    """A run in this context is sent a real SIGINT once `count` series are checkpointed."""
    from modelling import _checkpoint

    stored, written = _checkpoint.store, []

    def store_then_stop(*args):
        stored(*args)
        written.append(args[1].series)
        if len(written) == count:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_checkpoint, "store", store_then_stop)
        yield


def count_fits(monkeypatch) -> list[str]:
    from modelling import _fit

    fitted, fit = [], _fit.fit_series
    monkeypatch.setattr(_fit, "fit_series", lambda task: fitted.append(task.name) or fit(task))
    return fitted


def test_a_run_resumed_after_a_stop_fits_only_the_series_not_finished_and_writes_what_an_uninterrupted_one_does(
    store, make_monthly, root, tmp_path, predictions, monkeypatch, capsys
):
    """A resumed run takes the finished series' outcomes from their checkpoints, and calibrates the
    pool of every series' backtests as the uninterrupted run did."""
    for k, name in enumerate(("fred/A", "fred/B", "fred/C")):
        store(name, make_monthly(40 + 3 * k, seed=k), "M")
    # ETS, most of a series' time; auto_sarima's own resumption is the test above's subject.
    config = stage_config(tmp_path, "three.toml", models='["ets", "theta", "seasonal_naive"]')
    assert model("whole", monkeypatch, "--config", config) == EXIT_OK
    cache = root / "packages" / "modelling" / "cache"
    assert not list((cache / "checkpoints").iterdir())  # a complete run leaves none
    (predictions / "LATEST").unlink()

    with stop_after_checkpoints(1):
        assert model("stopped", monkeypatch, "--config", config) == 130
    assert len(list((cache / "checkpoints").iterdir())) == 1
    fitted = count_fits(monkeypatch)
    capsys.readouterr()

    assert model("resumed", monkeypatch, "--config", config) == EXIT_OK

    assert fitted == ["fred/B", "fred/C"]
    err = capsys.readouterr().err
    assert "3 series: 2 to fit, 0 unchanged (reused from run -), 1 finished by a stopped run (not fitted again)" in err
    assert "fitted 2 series, resumed 1 (finished before a stop), reused 0, failed 0; run resumed" in err
    for name in ("forecasts", "backtests", "scores", "history"):
        whole, resumed = (pd.read_parquet(predictions / run / f"{name}.parquet") for run in ("whole", "resumed"))
        pd.testing.assert_frame_equal(whole, resumed, check_exact=True)
    whole, resumed = (json.loads((predictions / run / "run.json").read_text()) for run in ("whole", "resumed"))
    assert whole["calibration"]["M"]["ets"]["points"] >= 40  # calibrated, on the three series pooled
    assert whole["calibration"] == resumed["calibration"]
    assert not list((cache / "checkpoints").iterdir())


@pytest.fixture
def stopped_with_two_checkpoints(store, make_monthly, tmp_path, monkeypatch) -> str:
    """fred/A and fred/B stored, and a run of the quick config stopped once both were checkpointed
    (exit 130, no run written): that config."""
    store("fred/A", make_monthly(40, seed=1), "M")
    store("fred/B", make_monthly(40, seed=2), "M")
    config = stage_config(tmp_path, "quick.toml", models='["theta", "seasonal_naive"]')
    with stop_after_checkpoints(2):
        assert model("stopped", monkeypatch, "--config", config) == 130
    return config


@pytest.mark.parametrize("change", ["nothing", "values", "config", "code"])
def test_a_checkpoint_is_used_only_for_the_values_config_and_code_it_was_written_under(
    stopped_with_two_checkpoints, store, make_monthly, root, tmp_path, predictions, monkeypatch, change
):
    from modelling import _checkpoint

    config = stopped_with_two_checkpoints
    if change == "values":
        store("fred/B", make_monthly(41, seed=2), "M")  # one more month
    elif change == "config":
        config = stage_config(tmp_path, "other.toml", models='["theta", "seasonal_naive"]', folds="2")
    elif change == "code":
        monkeypatch.setattr(_checkpoint, "_versions", lambda: {"statsmodels": "0.0.0"})
    fitted = count_fits(monkeypatch)

    assert model("resumed", monkeypatch, "--config", config) == EXIT_OK

    expected = {"nothing": [], "values": ["fred/B"], "config": ["fred/A", "fred/B"], "code": ["fred/A", "fred/B"]}
    assert fitted == expected[change]


def test_corrupt_and_foreign_checkpoints_are_ignored_with_a_warning_and_fitted_again(
    stopped_with_two_checkpoints, root, predictions, monkeypatch, capsys
):
    config = stopped_with_two_checkpoints
    from modelling import _checkpoint

    checkpoints = root / "packages" / "modelling" / "cache" / "checkpoints"
    a, b = (_checkpoint.entry_path(checkpoints, name) for name in ("fred/A", "fred/B"))
    a.write_text("{not json")
    entry = json.loads(b.read_text())
    entry["scores"]["model"] = ["__import__('os').system('touch pwned')", "seasonal_naive"]
    b.write_text(json.dumps(entry))
    fitted = count_fits(monkeypatch)
    capsys.readouterr()

    assert model("resumed", monkeypatch, "--config", config) == EXIT_OK

    assert fitted == ["fred/A", "fred/B"]
    err = capsys.readouterr().err
    assert f"ignoring checkpoint {a} for fred/A: Expecting property name" in err
    assert f"ignoring checkpoint {b} for fred/B: not an outcome of the models theta, seasonal_naive" in err
    assert not (root / "pwned").exists()


def test_a_series_run_removes_its_own_checkpoints_only_and_the_next_full_run_takes_the_others(
    stopped_with_two_checkpoints, root, tmp_path, predictions, monkeypatch, capsys
):
    """A stopped full run's checkpoints of the series a --series run did not run are for the next full
    run, which would otherwise fit those again. A full run removes every entry, foreign ones too, but
    only the cache's own regular files: a symlink (and what it points to) and other files stay."""
    from modelling import _checkpoint

    config = stopped_with_two_checkpoints
    checkpoints = root / "packages" / "modelling" / "cache" / "checkpoints"
    a, b, gone = (_checkpoint.entry_path(checkpoints, name) for name in ("fred/A", "fred/B", "fred/GONE"))
    assert a.exists() and b.exists()
    gone.write_text("{}")
    notes, link, target = checkpoints / "notes.json", checkpoints / ("0" * 24 + ".json"), tmp_path / "elsewhere.json"
    notes.write_text("not the cache's")
    target.write_text("{}")
    link.symlink_to(target)

    assert model("r1", monkeypatch, "--config", config, "--series", "fred/A") == EXIT_OK
    assert not a.exists() and b.exists() and gone.exists()
    fitted = count_fits(monkeypatch)
    capsys.readouterr()

    assert model("r2", monkeypatch, "--config", config) == EXIT_OK

    assert fitted == []  # fred/A reused from r1, fred/B taken from its checkpoint
    err = capsys.readouterr().err
    assert "2 series: 0 to fit, 1 unchanged (reused from run r1), 1 finished by a stopped run" in err
    assert not b.exists() and not gone.exists()
    assert notes.exists() and link.is_symlink() and target.exists()


def test_sigterm_to_the_whole_process_group_ends_the_workers_too(many_quick, predictions):
    # A stop of the whole group (systemd's, a killed `make run`'s) reaches the workers too, and the
    # stage twice: make relays the SIGTERM it got to its children.
    config, cache = many_quick
    command = [sys.executable, "-m", "modelling", "run", "--jobs", "2", "--config", str(config)]
    stage = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        while not list(cache.glob("*.json")):
            assert stage.poll() is None, stage.communicate()[1]
            time.sleep(0.01)
        os.killpg(stage.pid, signal.SIGTERM)
        os.kill(stage.pid, signal.SIGTERM)
        err = stage.communicate(timeout=120)[1]
        for _ in range(600):  # the workers' exit may trail the parent's by a moment
            try:
                os.killpg(stage.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            pytest.fail("a worker outlived the stage")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(stage.pid, signal.SIGKILL)

    assert stage.returncode == 143, err
    assert err.endswith("modelling: stopped by SIGTERM: the fits finished so far are cached for the next run; "
                        "LATEST still names the last complete run\n")  # fmt: skip
    assert "Traceback" not in err


def test_a_killed_worker_is_one_line_and_its_own_exit_code_with_the_finished_fits_cached(many_quick, predictions):
    config, cache = many_quick
    stage = start_stage_once_a_fit_is_cached(config, cache)
    try:
        worker = Path(f"/proc/{stage.pid}/task/{stage.pid}/children").read_text().split()[0]
        os.kill(int(worker), signal.SIGKILL)  # as the kernel's out-of-memory killer does
        err = stage.communicate(timeout=120)[1]
    finally:
        stage.kill()

    assert stage.returncode == EXIT_WORKER, err
    assert err.endswith(") are cached for the next run\n") and "modelling: a worker process was killed" in err
    assert "Traceback" not in err
    assert list(cache.glob("*.json")) and not (predictions / "LATEST").exists()


def test_a_second_run_while_one_is_at_work_fails_naming_it_and_reads_nothing(many_quick, predictions, capsys):
    config, cache = many_quick
    first = start_stage_once_a_fit_is_cached(config, cache)  # another process, as an overlapping cron run
    from modelling import _cache

    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("PIPELINE_RUN_ID", "r2")
            patch.setattr(_cache, "lookup", lambda *a: pytest.fail("the second run read the cache"))
            second = main(["run", "--jobs", "1", "--config", str(config)])
    finally:
        first.send_signal(signal.SIGTERM)  # it ends its workers (a killed stage would leave them behind)
        try:
            first.communicate(timeout=120)
        finally:
            first.kill()
    assert second == EXIT_STORAGE
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.fullmatch(
        rf"modelling: storage: {re.escape(str(predictions))}/\.storage-links\.lock: held by pid {first.pid} on \S+ "
        r"\(modelling run\), last touched \d+s ago; wait for it to finish \(a lock whose process is gone is broken "
        r"by the next run\)",
        err,
    ), err
    assert runs(predictions) == [] and not (predictions / "LATEST").exists()


def test_corrupt_and_foreign_cache_entries_are_ignored_with_a_warning(
    two_series, quick_models, root, monkeypatch, capsys
):
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


def test_a_completed_run_removes_the_cache_entries_of_another_config_or_of_a_series_no_longer_listed(
    store, make_monthly, root, scraped, tmp_path, predictions, monkeypatch
):
    """A stopped or failed run removes none (the config it tried may be given up), a --series run keeps
    the other series' entries, and nothing but this cache's own regular files is touched."""
    from modelling._config import load_config

    store("fred/A", make_monthly(40, seed=1), "M")
    store("fred/B", make_monthly(40, seed=2), "M")
    manifest = json.loads((scraped / "manifest.json").read_text())
    manifest["series"]["fred/C"] = {"frequency": "fortnightly"}  # listed, but unreadable this time
    (scraped / "manifest.json").write_text(json.dumps(manifest))
    config = stage_config(tmp_path, "naive.toml", models='["seasonal_naive"]', folds="0")
    current = load_config(Path(config)).fingerprint()
    cache = root / "packages" / "modelling" / "cache" / "sarima_params"
    kept = [plant(cache, "fred/A", current), plant(cache, "fred/B", current), plant(cache, "fred/C:close", current),
            cache / "notes.json"]  # fmt: skip
    kept[-1].write_text("not the cache's")
    target = tmp_path / "elsewhere.json"
    target.write_text("{}")
    (cache / ("0" * 24 + ".json")).symlink_to(target)
    stale = [plant(cache, "fred/A", "another config"), plant(cache, "fred/GONE", current)]

    with stop_after_checkpoints(1):
        assert model("stopped", monkeypatch, "--config", config) == 130
    (predictions / "taken").mkdir(parents=True)
    assert model("taken", monkeypatch, "--config", config) == EXIT_STORAGE
    assert all(path.exists() for path in kept + stale)

    assert model("r1", monkeypatch, "--config", config) == EXIT_SERIES_FAILED  # fred/C failed
    assert all(path.exists() for path in kept) and not any(path.exists() for path in stale)
    assert (cache / ("0" * 24 + ".json")).is_symlink() and target.exists()

    store("fred/A", make_monthly(41, seed=1), "M")
    stale = [plant(cache, "fred/GONE", current)]
    assert model("r2", monkeypatch, "--config", config, "--series", "fred/A") == EXIT_SERIES_FAILED
    assert all(path.exists() for path in kept) and not any(path.exists() for path in stale)


def plant(cache: Path, series: str, config_fp: str) -> Path:
    """A sarima_params entry of `series` under `config_fp`, as prune tells them apart (by name)."""
    from modelling import _cache

    cache.mkdir(parents=True, exist_ok=True)
    path = _cache.entry_path(cache, series, config_fp)
    path.write_text(json.dumps({"series": series, "config": config_fp}))
    return path


def test_a_run_with_nothing_new_removes_the_cache_entries_of_another_config_too(
    store, make_monthly, root, scraped, tmp_path, predictions, monkeypatch, capsys
):
    """LATEST's run stands for it, complete under this config and manifest: a stopped run under another
    config, then this one again, left that config's entries, which no later run found anything new to
    remove. Either check that finds nothing new prunes; a --series run still keeps the others', and a dry
    run removes nothing."""
    from modelling._config import load_config

    store("fred/A", make_monthly(40, seed=1), "M")
    store("fred/B", make_monthly(40, seed=2), "M")
    config = stage_config(tmp_path, "naive.toml", models='["seasonal_naive"]', folds="0")
    current = load_config(Path(config)).fingerprint()
    cache = root / "packages" / "modelling" / "cache" / "sarima_params"
    assert model("r1", monkeypatch, "--config", config) == EXIT_OK
    kept = [plant(cache, "fred/A", current), plant(cache, "fred/B", current)]
    manifest = scraped / "manifest.json"

    for run_id, args in (("r2", ()), ("r3", ()), ("r4", ("--series", "fred/A"))):
        if run_id == "r3":  # other bytes, same series: nothing new found after planning, not from the bytes
            manifest.write_text(json.dumps(json.loads(manifest.read_text()), indent=4))
        stale = [plant(cache, "fred/A", "another config"), plant(cache, "fred/GONE", current)]
        assert model(run_id, monkeypatch, "--config", config, "--dry-run", *args) == EXIT_OK
        assert all(path.exists() for path in kept + stale), run_id
        capsys.readouterr()
        assert model(run_id, monkeypatch, "--config", config, *args) == EXIT_OK
        assert "nothing new since run r1" in capsys.readouterr().err, run_id
        assert all(path.exists() for path in kept) and not any(path.exists() for path in stale), run_id
    assert runs(predictions) == ["r1"]


def test_a_stale_cache_entry_that_vanishes_or_cannot_be_removed_is_no_failure(tmp_path, monkeypatch, caplog):
    from modelling import _cache

    vanished, locked, stale = (_cache.entry_path(tmp_path, name, "old") for name in ("fred/A", "fred/B", "fred/C"))
    for path in (vanished, locked, stale):
        path.write_text("{}")
    unlink = os.unlink

    def flaky(path):
        if path == str(vanished):
            unlink(path)
            raise FileNotFoundError(path)
        if path == str(locked):
            raise PermissionError(13, "Permission denied")
        unlink(path)

    monkeypatch.setattr(os, "unlink", flaky)
    caplog.set_level("INFO", "modelling")
    _cache.prune(tmp_path, "new", ["fred/A", "fred/B"])
    assert f"cannot remove 1 stale cache entry ({locked}: [Errno 13] Permission denied)" in caplog.text
    assert "removed 1 cache entry of another config" in caplog.text  # the vanished one not counted
    assert locked.exists() and not stale.exists()


def set_choice(**values):
    return lambda choice: choice | values


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (set_choice(params=[1.0]), "ignoring cache entry {entry} for fred/SALES: 1 parameters for a model with 3"),
        (
            set_choice(order=[99, 0, 0]),
            "ignoring cache entry {entry} for fred/SALES: order [99, 0, 0] x [1, 1, 1, 12] "
            "is beyond the search's bounds",
        ),
        (
            set_choice(seasonal_order=[1, 1, 1, 4]),
            "ignoring cache entry {entry} for fred/SALES: seasonal period 4 for a season of 12",
        ),
        # Well-formed, but no use: only fitting shows it.
        (
            set_choice(params=[50.0, 50.0, 50.0]),
            "fred/SALES: auto_sarima: the cached model failed (non-finite ARIMA forecast); searched afresh",
        ),
    ],
    ids=["parameter-count", "order", "season", "explosive"],
)
def test_a_cache_entry_of_no_use_is_searched_afresh_and_replaced(
    store, make_monthly, root, tmp_path, predictions, monkeypatch, capsys, corrupt, message
):
    store("fred/SALES", make_monthly(60), "M")
    config = stage_config(tmp_path, "sarima.toml", models='["auto_sarima"]', folds="0")
    assert model("r1", monkeypatch, "--config", config) == EXIT_OK
    (entry,) = (root / "packages" / "modelling" / "cache" / "sarima_params").glob("*.json")
    good = json.loads(entry.read_text())
    assert good["choice"]["order"] == [0, 1, 1] and good["choice"]["seasonal_order"] == [1, 1, 1, 12]
    entry.write_text(json.dumps(good | {"choice": corrupt(good["choice"])}))
    (predictions / "LATEST").unlink()  # no run to reuse: the cache is consulted
    capsys.readouterr()

    assert model("r2", monkeypatch, "--config", config) == EXIT_OK

    err = capsys.readouterr().err
    assert message.format(entry=entry) in err
    assert "fell back" not in err
    first, second = (pd.read_parquet(predictions / run / "forecasts.parquet") for run in ("r1", "r2"))
    pd.testing.assert_frame_equal(first, second)  # as the search found it, not seasonal naive
    assert json.loads(entry.read_text()) == good  # the search's result replaced the entry


def test_bad_series_are_reported_and_the_others_still_modelled(
    two_series, quick_models, store, scraped, predictions, monkeypatch
):
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


def test_a_series_with_infinite_values_fails_alone_naming_them(
    two_series, store, make_monthly, tmp_path, scraped, predictions, monkeypatch, capsys
):
    """inf is no missing value but a broken one (a ratio over zero, the log of zero upstream): modelled
    as a gap, the series would be forecast from values made up in its place, and published as sound."""
    broken = make_monthly(60)
    broken.loc[[20, 41], "value"] = np.inf
    broken.loc[30, "value"] = -np.inf
    store("fred/BROKEN", broken, "M")
    config = stage_config(tmp_path, "naive.toml", models='["seasonal_naive"]')

    assert model("r1", monkeypatch, "--config", config) == EXIT_SERIES_FAILED

    reason = (f"{scraped / 'fred/BROKEN.parquet'}: column 'value': 3 infinite values (the first on 2011-09-01); "
              "fix them at the source, or store them as missing")  # fmt: skip
    assert f"modelling: fred/BROKEN: {reason}\n" in capsys.readouterr().err
    meta = json.loads((predictions / "r1" / "run.json").read_text())
    assert meta["failed"] == {"fred/BROKEN": reason}
    assert set(pd.read_parquet(predictions / "r1" / "forecasts.parquet")["series"]) == {"bundled/realgdp", "fred/SALES"}


def test_a_series_missing_a_date_is_forecast_on_its_manifest_frequency(
    store, macro, tmp_path, predictions, monkeypatch
):
    # Without 2006-07-01 no frequency can be inferred from the dates; their median gap (91 days)
    # drifted off the quarter starts: 2009-09-30, 2009-12-30, 2010-03-31...
    store("bundled/cpi", macro("cpi").drop(index=190), "Q")
    config = stage_config(tmp_path, "naive.toml", models='["seasonal_naive"]')
    assert model("r1", monkeypatch, "--config", config) == EXIT_OK
    forecasts = pd.read_parquet(predictions / "r1" / "forecasts.parquet")
    assert list(forecasts["date"]) == list(pd.date_range("2009-10-01", periods=8, freq="QS"))


def test_modelling_config_replaces_the_packaged_settings_and_the_option_replaces_both(
    two_series, tmp_path, predictions, monkeypatch, capsys
):
    monkeypatch.setenv("MODELLING_CONFIG", stage_config(tmp_path, "naive.toml", models='["seasonal_naive"]'))
    assert model("r1", monkeypatch) == EXIT_OK
    assert f"modelling: settings {tmp_path / 'naive.toml'}\n" in capsys.readouterr().err
    assert set(pd.read_parquet(predictions / "r1" / "forecasts.parquet")["model"]) == {"seasonal_naive"}
    assert model("r2", monkeypatch, "--config", stage_config(tmp_path, "theta.toml", models='["theta"]')) == EXIT_OK
    assert set(pd.read_parquet(predictions / "r2" / "forecasts.parquet")["model"]) == {"theta"}

    missing = tmp_path / "nowhere.toml"
    monkeypatch.setenv("MODELLING_CONFIG", str(missing))
    capsys.readouterr()
    assert model("r3", monkeypatch) == EXIT_CONFIG
    assert f"{missing} (from MODELLING_CONFIG): config file not found" in capsys.readouterr().err
    assert runs(predictions) == ["r1", "r2"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda path: path.mkdir(), "cannot read: Is a directory"),
        (lambda path: path.write_text("models = ['theta']\n", encoding="utf-16"), "not UTF-8 text"),
        (lambda path: path.write_text("models = [\n"), "invalid TOML"),
    ],
    ids=["directory", "utf-16", "bad-toml"],
)
def test_a_settings_file_that_cannot_be_read_is_one_line_naming_it_and_the_variable(
    tmp_path, monkeypatch, make, message
):
    from modelling._config import load_config

    path = tmp_path / "modelling.toml"
    make(path)
    monkeypatch.setenv("MODELLING_CONFIG", str(path))
    with pytest.raises(ConfigError) as caught:
        load_config()
    assert str(caught.value).startswith(f"{path} (from MODELLING_CONFIG): {message}")
    assert "\n" not in str(caught.value)


def test_missing_scraped_data_is_an_input_error_and_writes_nothing(root, predictions, monkeypatch, capsys):
    assert model("r1", monkeypatch) == EXIT_INPUT
    assert "scraped_data directory is missing" in capsys.readouterr().err
    assert runs(predictions) == []


def test_failed_run_leaves_the_previous_run_alone(two_series, quick_models, scraped, predictions, monkeypatch):
    assert model("r1", monkeypatch) == EXIT_OK
    before = {p.name: p.read_bytes() for p in (predictions / "r1").iterdir()}
    (scraped / "manifest.json").write_text("{broken")
    assert model("r2", monkeypatch) == EXIT_INPUT
    assert runs(predictions) == ["r1"]
    assert {p.name: p.read_bytes() for p in (predictions / "r1").iterdir()} == before
    assert (predictions / "LATEST").read_text().strip() == "r1"


def test_existing_run_directory_is_never_overwritten(two_series, quick_models, predictions, monkeypatch):
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


def test_min_points_below_two_is_a_config_error(two_series, tmp_path, predictions, monkeypatch, capsys):
    config = stage_config(tmp_path, "one.toml", min_points="1")
    assert model("r1", monkeypatch, "--config", config) == EXIT_CONFIG
    assert capsys.readouterr().err == (
        f"modelling: {config}: min_points: expected an integer >= 2 (a forecast needs 2 points at least), got 1\n"
    )
    assert runs(predictions) == []


def test_with_min_points_two_a_shorter_series_fails_alone_and_a_two_point_one_is_forecast(
    store, make_monthly, tmp_path, predictions, monkeypatch, capsys
):
    store("fred/SALES", make_monthly(60), "M")
    store("fred/TWO", make_monthly(2), "M")
    store("fred/ONE", make_monthly(1), "M")
    config = stage_config(tmp_path, "two.toml", min_points="2")
    assert model("r1", monkeypatch, "--config", config) == EXIT_SERIES_FAILED
    assert "Traceback" not in capsys.readouterr().err
    failed = json.loads((predictions / "r1" / "run.json").read_text())["failed"]
    assert list(failed) == ["fred/ONE"] and "column 'value': too few points (1 < min_points 2" in failed["fred/ONE"]
    forecasts = pd.read_parquet(predictions / "r1" / "forecasts.parquet")
    two = forecasts[forecasts["series"] == "fred/TWO"]
    assert len(two) == 5 * 18 and two["mean"].notna().all()  # every model, through its naive fallback
    assert two["date"].min() == pd.Timestamp("2010-03-01")


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]], ids=["run", "dry-run"])
def test_a_horizon_beyond_the_bound_is_a_config_error_naming_the_key_and_the_file(
    two_series, tmp_path, predictions, monkeypatch, capsys, dry_run
):
    config = stage_config(tmp_path, "long.toml", Q="100000")
    assert model("r1", monkeypatch, "--config", config, *dry_run) == EXIT_CONFIG
    assert capsys.readouterr().err == f"modelling: {config}: horizon.Q: 100000 is more than the 1000 steps allowed\n"
    assert runs(predictions) == []


def test_a_horizon_running_past_pandas_dates_fails_that_series_alone(
    store, make_monthly, tmp_path, predictions, monkeypatch, capsys
):
    store("fred/SALES", make_monthly(60), "M")
    store("fred/ANNUAL", pd.DataFrame({"date": pd.date_range("2000-01-01", periods=20, freq="YS"),
                                       "value": np.arange(20.0)}), "A")  # fmt: skip
    config = stage_config(tmp_path, "long.toml", A="300", models='["seasonal_naive"]')  # 2019 + 300 years
    assert model("r1", monkeypatch, "--config", config) == EXIT_SERIES_FAILED
    err = capsys.readouterr().err
    assert "Traceback" not in err
    reason = json.loads((predictions / "r1" / "run.json").read_text())["failed"]["fred/ANNUAL"]
    assert reason.endswith(f"ANNUAL.parquet: column 'value': 300 steps from 2019-01-01 run past 2262-04-11, the last "
                           f"date pandas can hold (horizon.A in {config})")  # fmt: skip
    assert f"modelling: fred/ANNUAL: {reason}\n" in err
    assert set(pd.read_parquet(predictions / "r1" / "forecasts.parquet")["series"]) == {"fred/SALES"}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda text: "foo = 1\n" + text, "foo: unknown key (allowed: backtest, daily_window, horizon,"),
        (lambda text: text.replace("folds = 3", "foldz = 3"), "backtest.foldz: unknown key (allowed: folds, step)"),
        (lambda text: text.replace("calibrate = true", "calbrate = true"), "intervals.calbrate: unknown key"),
        (lambda text: text.replace('"ets", ', '"ets", "ets", '), "models: 'ets' is listed twice"),
    ],
    ids=["top-level", "backtest", "intervals", "model-twice"],
)
def test_a_misspelt_or_repeated_key_is_named_with_the_file(tmp_path, edit, message):
    from modelling._config import default_config_path, load_config

    config = tmp_path / "modelling.toml"
    config.write_text(edit(default_config_path().read_text()))
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert str(caught.value).startswith(f"{config}: {message}")


def test_dry_run_and_series_selection_write_nothing(two_series, predictions, monkeypatch, capsys):
    assert model("r1", monkeypatch, "--dry-run", "--series", "fred/SALES") == EXIT_OK
    err = capsys.readouterr().err
    assert "would fit fred/SALES" in err and "bundled/realgdp" not in err
    assert runs(predictions) == []


@pytest.mark.parametrize(
    ("named", "unknown"),
    [
        (["nosuch"], "nosuch"),
        # One misspelt id among good ones fails the whole run: the user asked for every one of them.
        (["fred/SALES", "fred/SALE", "nosuch"], "fred/SALE (did you mean fred/SALES?), nosuch"),
    ],
    ids=["unknown", "some-unknown"],
)
def test_an_unknown_series_id_is_a_config_error_naming_it_before_any_work(
    two_series, scraped, root, predictions, monkeypatch, capsys, named, unknown
):
    assert model("r1", monkeypatch, "--series", *named) == EXIT_CONFIG
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"modelling: --series: no series {unknown} in {scraped / 'manifest.json'}, which lists what scraping "
        "stored (a series is a manifest key, or key:column for a multi-column file)"
    )
    assert runs(predictions) == [] and not (root / "packages" / "modelling" / "cache" / "sarima_params").exists()


def test_a_series_run_fits_those_named_and_carries_the_others_over(
    two_series, quick_models, store, make_monthly, macro, predictions, monkeypatch, capsys
):
    """LATEST is what forecasting publishes: a --series run must not drop the series it was not asked
    to fit. They are carried over as they were, and a later full run fits them to their new data."""
    store("bundled/realgdp", macro().iloc[-84:-4], "Q")
    assert model("r1", monkeypatch) == EXIT_OK
    store("fred/SALES", make_monthly(63), "M")
    store("bundled/realgdp", macro().iloc[-84:], "Q")  # both grew; only SALES is asked for

    assert model("r2", monkeypatch, "--series", "fred/SALES") == EXIT_OK

    assert "2 series: 1 to fit, 1 unchanged (reused from run r1)" in capsys.readouterr().err
    old, new = (pd.read_parquet(predictions / run / "forecasts.parquet") for run in ("r1", "r2"))
    assert set(new["series"]) == {"fred/SALES", "bundled/realgdp"}
    gdp = [f[f["series"] == "bundled/realgdp"].reset_index(drop=True) for f in (old, new)]
    pd.testing.assert_frame_equal(*gdp)  # as it was, not refit to the four new quarters
    assert new[new["series"] == "fred/SALES"]["date"].min() == pd.Timestamp("2015-04-01")  # fitted to 63 months
    assert (predictions / "LATEST").read_text().strip() == "r2"

    assert model("r3", monkeypatch) == EXIT_OK  # not "nothing new": realgdp's fit is older than its data
    assert "2 series: 1 to fit, 1 unchanged (reused from run r2)" in capsys.readouterr().err
    latest = pd.read_parquet(predictions / "r3" / "forecasts.parquet")
    assert latest[latest["series"] == "bundled/realgdp"]["date"].min() == pd.Timestamp("2009-10-01")
    assert gdp[0]["date"].min() == pd.Timestamp("2008-10-01")


def test_a_series_run_under_another_config_is_refused_and_writes_nothing(
    two_series, quick_models, tmp_path, predictions, monkeypatch, capsys
):
    assert model("r1", monkeypatch) == EXIT_OK
    config = stage_config(tmp_path, "ets.toml", models='["ets"]')

    assert model("r2", monkeypatch, "--config", config, "--series", "fred/SALES") == EXIT_INPUT

    assert "--series: the config changed since run r1, so its other series cannot be carried over" in (
        capsys.readouterr().err
    )
    assert runs(predictions) == ["r1"] and (predictions / "LATEST").read_text().strip() == "r1"


def test_a_retitled_series_makes_a_new_run_without_fitting(
    two_series, quick_models, scraped, predictions, monkeypatch, capsys
):
    """Titles and units reach the report through run.json: a manifest that renames a series is news."""
    assert model("r1", monkeypatch) == EXIT_OK
    manifest = json.loads((scraped / "manifest.json").read_text())
    manifest["series"]["fred/SALES"] |= {"title": "Retail sales", "units": "Millions of Dollars"}
    (scraped / "manifest.json").write_text(json.dumps(manifest))

    assert model("r2", monkeypatch) == EXIT_OK

    assert "2 series: 0 to fit, 2 unchanged (reused from run r1)" in capsys.readouterr().err
    label = json.loads((predictions / "r2" / "run.json").read_text())["labels"]["fred/SALES"]
    assert (label["title"], label["units"]) == ("Retail sales", "Millions of Dollars")
    assert model("r3", monkeypatch) == EXIT_OK and runs(predictions) == ["r1", "r2"]  # and then nothing new


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


def stage_config(tmp_path, name: str, **replace: str) -> str:
    """The default config file with some lines replaced, e.g. models='["ets"]'."""
    from modelling._config import default_config_path

    lines = default_config_path().read_text().splitlines()
    for key, value in replace.items():
        lines = [f"{key} = {value}" if line.startswith(f"{key} =") else line for line in lines]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture
def three_monthly(store, make_monthly, macro):
    store("bundled/realgdp", macro().iloc[-80:], "Q")
    for seed in range(3):
        store(f"fred/M{seed}", make_monthly(60, seed=seed), "M")


def half_widths(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.sort_values(["series", "model", "step"]).reset_index(drop=True)
    sides = {}
    for level in (80, 95):
        sides[f"lo{level}"] = frame["mean"] - frame[f"lo{level}"]
        sides[f"hi{level}"] = frame[f"hi{level}"] - frame["mean"]
    return pd.DataFrame(sides)


def rows_of(frame: pd.DataFrame, prefix: str, model_name: str) -> pd.DataFrame:
    return frame[frame["series"].str.startswith(prefix) & (frame["model"] == model_name)]


def covered(rows: pd.DataFrame, level: int) -> pd.Series:
    return (rows["actual"] >= rows[f"lo{level}"]) & (rows["actual"] <= rows[f"hi{level}"])


def test_intervals_are_calibrated_per_frequency_and_model_on_the_backtests(
    three_monthly, tmp_path, predictions, monkeypatch
):
    models = '["auto_sarima", "theta", "seasonal_naive"]'  # ets fits up to 15 models: slow and not needed here
    raw_config = stage_config(tmp_path, "raw.toml", calibrate="false", models=models)
    assert model("raw", monkeypatch, "--config", raw_config) == EXIT_OK
    assert model("r1", monkeypatch, "--config", stage_config(tmp_path, "calibrated.toml", models=models)) == EXIT_OK
    calibration = json.loads((predictions / "r1" / "run.json").read_text())["calibration"]
    assert json.loads((predictions / "raw" / "run.json").read_text())["calibration"] == {}
    # Three monthly series x 3 folds x 18 steps pool into each monthly group; one quarterly series
    # has 3 x 8 = 24 backtest points, fewer than min_points 40: its models' intervals are kept.
    assert set(calibration) == {"M", "Q"}
    assert all(c["points"] == 162 for c in calibration["M"].values())
    assert all(c["factors"] == {"80": 1.0, "95": 1.0} for c in calibration["Q"].values())
    raw_fc = pd.read_parquet(predictions / "raw" / "forecasts.parquet")
    cal_fc = pd.read_parquet(predictions / "r1" / "forecasts.parquet")
    backtests = pd.read_parquet(predictions / "r1" / "backtests.parquet")
    scores = pd.read_parquet(predictions / "r1" / "scores.parquet").set_index(["series", "model"])
    for frequency, prefix in (("M", "fred/M"), ("Q", "bundled/")):
        for name, record in calibration[frequency].items():
            raw, cal, rows = (
                rows_of(raw_fc, prefix, name),
                rows_of(cal_fc, prefix, name),
                rows_of(backtests, prefix, name),
            )
            np.testing.assert_allclose(cal.sort_values(["series", "step"])["mean"],
                                       raw.sort_values(["series", "step"])["mean"])  # fmt: skip
            widened = half_widths(cal) / half_widths(raw)
            for level in (80, 95):
                ratio = widened[[f"lo{level}", f"hi{level}"]].to_numpy()
                np.testing.assert_allclose(ratio[np.isfinite(ratio)], record["factors"][str(level)], rtol=1e-9)
                hits = covered(rows, level)
                assert hits.mean() == pytest.approx(record["coverage_after"][str(level)], abs=1e-6)
                if frequency == "M":  # split conformal: at least the nominal level on the pooled backtests
                    assert hits.mean() >= level / 100
                for series, value in hits.groupby(rows["series"]).mean().items():  # scores: calibrated coverage
                    assert scores.loc[(series, name), f"coverage{level}"] == pytest.approx(value)


def test_a_reused_series_is_recalibrated_as_if_everything_were_fitted_afresh(
    three_monthly, store, make_monthly, root, tmp_path, predictions, monkeypatch
):
    config = stage_config(tmp_path, "fast.toml", models='["theta", "seasonal_naive"]')
    assert model("r1", monkeypatch, "--config", config) == EXIT_OK
    store("fred/M0", make_monthly(63, seed=0), "M")  # the other two monthly series are reused
    assert model("r2", monkeypatch, "--config", config) == EXIT_OK
    first = json.loads((predictions / "r1" / "run.json").read_text())["calibration"]["M"]
    second = json.loads((predictions / "r2" / "run.json").read_text())["calibration"]["M"]
    assert first["theta"]["factors"] != second["theta"]["factors"]  # the pool changed with fred/M0
    (predictions / "LATEST").unlink()  # from scratch: nothing to reuse
    assert model("fresh", monkeypatch, "--config", config) == EXIT_OK
    for name in ("forecasts", "backtests", "scores"):
        reused = pd.read_parquet(predictions / "r2" / f"{name}.parquet").sort_values(["series", "model"], kind="stable")
        fresh = pd.read_parquet(predictions / "fresh" / f"{name}.parquet").sort_values(
            ["series", "model"], kind="stable"
        )
        pd.testing.assert_frame_equal(reused.reset_index(drop=True), fresh.reset_index(drop=True), rtol=1e-9)


def test_a_malformed_recorded_calibration_means_nothing_is_reused(two_series, store, make_monthly, tmp_path,
                                                                   predictions, monkeypatch, capsys):  # fmt: skip
    config = stage_config(tmp_path, "fast.toml", models='["theta", "seasonal_naive"]')
    assert model("r1", monkeypatch, "--config", config) == EXIT_OK
    meta_path = predictions / "r1" / "run.json"
    meta = json.loads(meta_path.read_text())
    meta["calibration"] = {"M": {"theta": {"factors": {"80": "wide"}}}}
    meta_path.write_text(json.dumps(meta))
    store("fred/SALES", make_monthly(63), "M")
    capsys.readouterr()
    assert model("r2", monkeypatch, "--config", config) == EXIT_OK
    err = capsys.readouterr().err
    assert (
        "run r1: run.json: calibration.M.theta.factors.80: not a positive number; every series is fitted again" in err
    )
    assert "2 series: 2 to fit, 0 unchanged" in err


def write_without_mase(path):
    pd.read_parquet(path).drop(columns="mase").to_parquet(path)


@pytest.mark.parametrize(
    ("file", "corrupt", "message"),
    [
        ("forecasts.parquet", lambda path: path.write_bytes(b"not parquet"), "not a Parquet file"),
        ("history.parquet", lambda path: path.write_bytes(b"PAR1" + bytes(64) + b"PAR1"), ""),  # whatever Arrow says
        ("scores.parquet", write_without_mase, "no column 'mase'"),
        ("run.json", lambda path: path.write_text("{broken"), "Expecting property name"),
    ],
    ids=["not-parquet", "bad-footer", "missing-column", "run.json"],
)
def test_a_previous_run_with_an_unreadable_file_is_ignored_naming_the_file_and_every_series_fitted_again(
    two_series, store, make_monthly, tmp_path, predictions, monkeypatch, capsys, file, corrupt, message
):
    config = stage_config(tmp_path, "fast.toml", models='["theta", "seasonal_naive"]')
    assert model("r1", monkeypatch, "--config", config) == EXIT_OK
    corrupt(predictions / "r1" / file)
    store("fred/SALES", make_monthly(63), "M")  # news, so the previous run's files are read to reuse realgdp
    capsys.readouterr()

    assert model("r2", monkeypatch, "--config", config) == EXIT_OK

    err = capsys.readouterr().err
    assert f"modelling: ignoring run r1: {predictions / 'r1' / file}: {message}" in err
    assert "; every series is fitted again\n" in err
    assert "2 series: 2 to fit, 0 unchanged" in err
    assert (predictions / "LATEST").read_text().strip() == "r2"
    assert set(pd.read_parquet(predictions / "r2" / "forecasts.parquet")["series"]) == {"bundled/realgdp", "fred/SALES"}


def test_a_previous_run_with_a_corrupt_parquet_file_is_not_taken_for_one_with_nothing_new(
    two_series, tmp_path, predictions, monkeypatch, capsys
):
    config = stage_config(tmp_path, "fast.toml", models='["theta", "seasonal_naive"]')
    assert model("r1", monkeypatch, "--config", config) == EXIT_OK
    (predictions / "r1" / "forecasts.parquet").write_bytes(b"")  # what forecasting would publish from
    assert model("r2", monkeypatch, "--config", config) == EXIT_OK
    err = capsys.readouterr().err
    assert f"ignoring run r1: {predictions / 'r1' / 'forecasts.parquet'}: not a Parquet file" in err
    assert "nothing new" not in err
    assert (predictions / "LATEST").read_text().strip() == "r2"
    assert len(pd.read_parquet(predictions / "r2" / "forecasts.parquet")) == 2 * 8 + 2 * 18  # 2 models, h 8 and 18


@pytest.mark.parametrize(
    ("replace", "message"),
    [
        (("calibrate = true", 'calibrate = "yes"'), "intervals.calibrate: expected bool, got 'yes'"),
        (("min_points = 40", "min_points = 0"), "intervals.min_points: expected a positive integer, got 0"),
        (("[intervals]", "[interval_settings]"), "interval_settings: unknown key"),
    ],
)
def test_a_bad_intervals_setting_names_the_key_and_the_file(
    two_series, tmp_path, monkeypatch, capsys, replace, message
):
    from modelling._config import default_config_path

    config = tmp_path / "bad.toml"
    config.write_text(default_config_path().read_text().replace(*replace))
    assert model("r1", monkeypatch, "--config", str(config)) == EXIT_CONFIG
    assert f"{config}: {message}" in capsys.readouterr().err
