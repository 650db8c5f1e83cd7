"""Interval calibration on the backtest folds: the pure functions, then the stage with it on and off."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from forecasting import Choice, calibrate, load_settings, rescale
from forecasting._cli import main
from storage_links import data_dir

from packages.forecasting.tests.conftest import Z


def forecasts(rng: np.random.Generator, n: int, error_sd: float, claimed_sd: float) -> pd.DataFrame:
    """n forecasts whose errors have sd `error_sd` while their intervals claim `claimed_sd`."""
    mean = rng.normal(100, 10, n)
    frame = pd.DataFrame({"mean": mean, "actual": mean + rng.normal(0, error_sd, n)})
    for level in (80, 95):
        frame[f"lo{level}"] = mean - Z[level] * claimed_sd
        frame[f"hi{level}"] = mean + Z[level] * claimed_sd
    return frame


def coverage(frame: pd.DataFrame, level: int) -> float:
    return float(np.mean((frame["actual"] >= frame[f"lo{level}"]) & (frame["actual"] <= frame[f"hi{level}"])))


@pytest.mark.parametrize("claimed_sd", [0.5, 2.0], ids=["too-narrow", "too-wide"])
def test_factors_make_new_forecasts_of_the_same_kind_cover_at_the_nominal_level(claimed_sd):
    rng = np.random.default_rng(1)
    backtests = [forecasts(rng, 18, error_sd=1.0, claimed_sd=claimed_sd) for _ in range(100)]
    result = calibrate(backtests)
    assert result.points == 1800 and result.applied
    for level in (80, 95):
        # The intervals were off by 1 / claimed_sd; the factor undoes it.
        assert result.factors[level] == pytest.approx(1.0 / claimed_sd, rel=0.1)
        assert abs(result.coverage_before[level] - level / 100) > 0.04
        assert result.coverage_after[level] >= level / 100
    unseen = forecasts(rng, 4000, error_sd=1.0, claimed_sd=claimed_sd)
    widened = rescale(unseen, result.factors)
    for level in (80, 95):
        assert abs(coverage(unseen, level) - level / 100) > 0.04
        assert coverage(widened, level) == pytest.approx(level / 100, abs=0.03)
    assert np.array_equal(widened["mean"], unseen["mean"])


def test_too_few_backtest_points_leave_the_intervals_alone():
    rng = np.random.default_rng(2)
    result = calibrate([forecasts(rng, 8, 1.0, 0.2) for _ in range(4)], min_points=40)
    assert result.points == 32
    assert result.factors == {80: 1.0, 95: 1.0} and not result.applied
    assert result.coverage_before[80] == result.coverage_after[80] < 0.5


def test_zero_width_intervals_that_miss_cannot_be_widened_and_are_left_alone():
    rng = np.random.default_rng(3)
    frame = forecasts(rng, 50, 1.0, 0.0)
    result = calibrate([frame], min_points=10)
    assert result.factors == {80: 1.0, 95: 1.0}


def test_rescale_keeps_the_wider_level_outside_the_narrower_one():
    frame = pd.DataFrame({"mean": [10.0], "lo80": [9.0], "hi80": [11.0], "lo95": [8.5], "hi95": [11.5]})
    out = rescale(frame, {80: 2.0, 95: 1.0})  # the 80% interval would poke out of the 95% one
    assert out.loc[0, ["lo95", "lo80", "mean", "hi80", "hi95"]].tolist() == [8.0, 8.0, 10.0, 12.0, 12.0]


def test_choice_on_the_backtest_folds_matches_the_choice_on_the_forecasts():
    rows = []
    for model, shift in (("a", 1.0), ("b", 3.0)):
        for fold in (0, 1):
            rows.append(pd.DataFrame({"model": model, "fold": fold, "step": [1, 2], "actual": [5.0, 6.0],
                                      "mean": [5.0 + shift, 6.0 + shift], "lo80": [0.0, 0.0], "hi80": [9.0, 9.0],
                                      "lo95": [-1.0, -1.0], "hi95": [10.0, 10.0]}))  # fmt: skip
    backtest = pd.concat(rows, ignore_index=True)
    out = Choice("weighted", {"a": 0.75, "b": 0.25}).apply_backtest(backtest)
    assert out["mean"].tolist() == [6.5, 7.5, 6.5, 7.5]
    assert out["actual"].tolist() == [5.0, 6.0, 5.0, 6.0]
    assert Choice("b", {"b": 1.0}).apply_backtest(backtest)["mean"].tolist() == [8.0, 9.0, 8.0, 9.0]


def published_width(run: str) -> pd.DataFrame:
    table = pd.read_parquet(data_dir("forecasting", "data") / "output" / run / "forecasts.parquet")
    return table.assign(width=table["hi80"] - table["lo80"]).set_index(["series", "step"])["width"]


def test_the_stage_widens_intervals_that_are_too_narrow_per_frequency(make_predictions, monkeypatch, tmp_path):
    series = {f"M{k}": "MS" for k in range(4)} | {"GDP": "QS"}
    make_predictions("p1", series=series, interval_scale=0.1)
    monkeypatch.setenv("PIPELINE_RUN_ID", "calibrated")
    assert main(["run"]) == 0
    report = (data_dir("forecasting", "data") / "output" / "calibrated" / "report.html").read_text()

    config = tmp_path / "forecasting.toml"
    config.write_text(load_settings().source.read_text().replace("calibrate = true", "calibrate = false"))
    monkeypatch.setenv("FORECASTING_CONFIG", str(config))
    monkeypatch.setenv("PIPELINE_RUN_ID", "raw")
    make_predictions("p2", series=series, interval_scale=0.1)  # the same data as a new predictions run
    assert main(["run"]) == 0

    ratio = published_width("calibrated") / published_width("raw")
    monthly = ratio.loc[[f"M{k}" for k in range(4)]]
    # Four monthly series x 3 folds x 12 steps = 144 backtest points: one factor for all of them, and
    # intervals several times too narrow are widened several times.
    assert np.allclose(monthly, monthly.iloc[0]) and monthly.iloc[0] > 2.0
    # One quarterly series has 3 folds x 8 steps = 24 points, under min_points: left as it was.
    assert np.allclose(ratio.loc["GDP"], 1.0)
    assert "MS: 80% x" in report and "QS: as the models gave them (24 backtest points)" in report
