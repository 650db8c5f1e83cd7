"""Split-conformal calibration of the candidates' intervals (modelling._calibrate)."""

import numpy as np
import pandas as pd
import pytest
from modelling._calibrate import calibrate, calibrate_groups, read_factors, rescale, rescale_groups

Z80, Z95 = 1.2816, 1.9600


def backtest(n: int, true_sd: float, model_sd: float, seed: int = 0) -> pd.DataFrame:
    """Normal errors of sd `true_sd` under intervals that assume sd `model_sd`."""
    rng = np.random.default_rng(seed)
    mean = rng.normal(100, 10, n)
    frame = pd.DataFrame({"actual": mean + rng.normal(0, true_sd, n), "mean": mean})
    for level, z in ((80, Z80), (95, Z95)):
        frame[f"lo{level}"], frame[f"hi{level}"] = mean - z * model_sd, mean + z * model_sd
    return frame


def test_too_narrow_intervals_are_widened_to_cover_at_their_level():
    result = calibrate(backtest(4000, true_sd=2.0, model_sd=1.0), min_points=40)
    assert result.points == 4000
    assert result.factors[80] == pytest.approx(2.0, rel=0.06) and result.factors[95] == pytest.approx(2.0, rel=0.06)
    assert result.coverage_before[80] < 0.55 and result.coverage_before[95] < 0.70
    assert 0.80 <= result.coverage_after[80] < 0.81 and 0.95 <= result.coverage_after[95] < 0.96


def test_too_wide_intervals_are_narrowed():
    result = calibrate(backtest(4000, true_sd=1.0, model_sd=2.0), min_points=40)
    assert result.factors[80] == pytest.approx(0.5, rel=0.06) and result.factors[95] == pytest.approx(0.5, rel=0.06)


def test_a_group_with_too_few_points_keeps_the_models_intervals():
    result = calibrate(backtest(39, true_sd=3.0, model_sd=1.0), min_points=40)
    assert result.points == 39 and result.factors == {80: 1.0, 95: 1.0}
    assert result.coverage_after == result.coverage_before


def test_missing_actuals_are_not_scored():
    frame = backtest(60, true_sd=1.0, model_sd=1.0)
    frame.loc[:29, "actual"] = np.nan
    assert calibrate(frame, min_points=40).points == 30


def test_the_wider_level_is_never_scaled_less_so_intervals_stay_nested():
    # Heavy-tailed at 80% only: the 80% intervals need more widening than the 95% ones would alone.
    frame = backtest(2000, true_sd=1.0, model_sd=1.0)
    frame["lo80"], frame["hi80"] = frame["mean"] - 0.2, frame["mean"] + 0.2
    result = calibrate(frame, min_points=40)
    assert result.factors[95] >= result.factors[80] > 1.0
    out = rescale(frame, result.factors)
    assert (out["lo95"] <= out["lo80"]).all() and (out["hi80"] <= out["hi95"]).all()


def test_rescale_keeps_the_mean_and_undo_restores_the_models_intervals():
    frame = backtest(50, true_sd=1.0, model_sd=1.0)
    frame["hi95"] += 1.0  # asymmetric: each side is scaled on its own
    factors = {80: 1.3, 95: 1.7}
    out = rescale(frame, factors)
    pd.testing.assert_series_equal(out["mean"], frame["mean"])
    np.testing.assert_allclose(out["hi95"] - out["mean"], 1.7 * (frame["hi95"] - frame["mean"]))
    np.testing.assert_allclose(out["mean"] - out["lo80"], 1.3 * (frame["mean"] - frame["lo80"]))
    pd.testing.assert_frame_equal(rescale(out, factors, undo=True), frame, rtol=1e-12)


def test_groups_are_one_frequency_and_one_model():
    monthly = backtest(100, true_sd=2.0, model_sd=1.0).assign(series="m", model="ets")
    quarterly = backtest(100, true_sd=1.0, model_sd=1.0, seed=1).assign(series="q", model="ets")
    frames = pd.concat([monthly, quarterly], ignore_index=True)
    frequency = {"m": "M", "q": "Q"}
    result = calibrate_groups(frames, frequency, min_points=40)
    assert set(result) == {("M", "ets"), ("Q", "ets")}
    assert result[("M", "ets")].factors[80] > 1.5 > result[("Q", "ets")].factors[80]
    out = rescale_groups(frames, frequency, {("M", "ets"): {80: 2.0, 95: 2.0}})
    pd.testing.assert_frame_equal(out[out["series"] == "q"], frames[frames["series"] == "q"])
    np.testing.assert_allclose((out["hi80"] - out["mean"])[frames["series"] == "m"], 2 * Z80)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ([], "calibration: expected an object"),
        ({"M": {"ets": {}}}, "calibration.M.ets.factors: missing"),
        ({"M": {"ets": {"factors": {"80": -1.0}}}}, "calibration.M.ets.factors.80: not a positive number"),
        ({"M": {"ets": {"factors": {"80": "2"}}}}, "calibration.M.ets.factors.80: not a positive number"),
    ],
)
def test_a_malformed_recorded_calibration_is_refused_naming_the_key(record, message):
    with pytest.raises(ValueError, match=message):
        read_factors(record)


def test_recorded_factors_are_read_back():
    record = calibrate_groups(
        backtest(100, true_sd=2.0, model_sd=1.0).assign(series="m", model="ets"), {"m": "M"}, min_points=40
    )
    as_json = {"M": {"ets": record[("M", "ets")].to_json()}}
    assert read_factors(as_json) == {("M", "ets"): dict(record[("M", "ets")].factors)}
