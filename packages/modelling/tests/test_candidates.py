import numpy as np
import pandas as pd
import pytest
from modelling import ets, optimised_theta, seasonal_naive, theta


@pytest.fixture
def monthly(make_monthly) -> pd.Series:
    frame = make_monthly(72)
    return pd.Series(frame["value"].to_numpy(), index=pd.DatetimeIndex(frame["date"], freq="MS"))


@pytest.mark.parametrize("model", [ets, theta, optimised_theta, seasonal_naive])
def test_candidates_share_the_frame_and_continue_dates(model, monthly):
    result = model(monthly, 12, 5)
    assert list(result.columns) == ["mean", "lo80", "hi80", "lo95", "hi95"]
    assert result.index[0] == pd.Timestamp("2016-01-01") and len(result) == 5
    assert (result["lo95"] <= result["lo80"]).all() and (result["hi80"] <= result["hi95"]).all()
    assert (result["lo80"] < result["hi80"]).all()
    assert result.attrs["fallback"] is None


def test_seasonal_naive_repeats_the_last_season_with_widening_intervals():
    y = np.tile([1.0, 5.0, 3.0, 2.0], 5) + np.repeat(np.arange(5.0), 4)
    result = seasonal_naive(y, 4, 8)
    np.testing.assert_allclose(result["mean"], [5, 9, 7, 6, 5, 9, 7, 6])
    width = (result["hi80"] - result["lo80"]).to_numpy()
    np.testing.assert_allclose(width[4:], width[:4] * np.sqrt(2))


@pytest.mark.parametrize("model", [ets, theta, optimised_theta])
def test_short_series_fall_back_with_a_reason(model):
    result = model(np.array([3.0, 4.0, 5.0, 4.0, 3.0]), 12, 3)
    assert result.attrs["fallback"].startswith("too short")
    assert result.attrs["fallback_model"] == "naive"
    np.testing.assert_allclose(result["mean"], 3.0)


def test_ets_picks_a_seasonal_model_for_a_seasonal_series(monthly):
    assert ets(monthly, 12, 3).attrs["spec"].endswith(",A)")


def _trend_with_season(n: int, seasonal: np.ndarray, multiplicative: bool) -> tuple[np.ndarray, np.ndarray]:
    """n + 12 points of 100 + 2t with the given 12-month pattern and a little noise: (history, future)."""
    t = np.arange(n + 12, dtype=float)
    level = 100.0 + 2.0 * t
    pattern = np.resize(seasonal, len(t))
    values = level * pattern if multiplicative else level + pattern
    values = values + np.random.default_rng(7).normal(0.0, 0.5, len(t))
    return values[:n], values[n:]


def test_optimised_theta_follows_a_trend_that_standard_theta_halves():
    history, future = _trend_with_season(96, np.ones(12), multiplicative=False)
    optimised, standard = optimised_theta(history, 12, 12), theta(history, 12, 12)
    # theta = 2 extrapolates half the slope; an estimated theta keeps (nearly) all of it.
    assert optimised.attrs["theta"] > 5 and optimised.attrs["seasonal"] == "none"
    optimised_error = np.abs(optimised["mean"].to_numpy() - future).mean()
    standard_error = np.abs(standard["mean"].to_numpy() - future).mean()
    assert optimised_error < 2.0 < standard_error
    # The 95% half-width matches the noise (sd 0.5) the series was made with.
    half_width = (optimised["hi95"] - optimised["lo95"]).to_numpy() / 2
    assert 0.7 < half_width[0] / (1.96 * 0.5) < 1.4
    assert np.all(np.diff(half_width) >= 0)


def test_optimised_theta_removes_multiplicative_or_additive_seasonality():
    pattern = 1.0 + 0.3 * np.sin(2 * np.pi * np.arange(12) / 12)
    history, future = _trend_with_season(96, pattern, multiplicative=True)
    result = optimised_theta(history, 12, 12)
    assert result.attrs["seasonal"] == "multiplicative"
    assert np.abs(result["mean"].to_numpy() - future).mean() < 0.02 * future.mean()
    # Values below zero cannot be divided by an index: the decomposition turns additive.
    below_zero, _ = _trend_with_season(96, 40.0 * np.sin(2 * np.pi * np.arange(12) / 12), multiplicative=False)
    assert optimised_theta(below_zero - 400.0, 12, 12).attrs["seasonal"] == "additive"


def test_ets_models_growing_seasonal_swings_with_a_multiplicative_season():
    pattern = np.array([0.7, 0.8, 1.0, 1.2, 1.4, 1.3, 1.1, 1.0, 0.9, 0.8, 0.9, 0.9])
    t = np.arange(108)
    noise = np.exp(np.random.default_rng(3).normal(0, 0.02, len(t)))
    y = 100.0 * np.exp(0.015 * t) * np.resize(pattern, len(t)) * noise
    history, future = y[:96], y[96:]

    result = ets(history, 12, 12)

    assert result.attrs["spec"].endswith(",M)")
    error = np.abs(result["mean"].to_numpy() - future).mean()
    assert error < 0.5 * np.abs(seasonal_naive(history, 12, 12)["mean"].to_numpy() - future).mean()
    # Simulated intervals: nested around the mean, positive, and the same on every call (fixed seed).
    assert (result["lo95"] > 0).all()
    assert (result["lo95"] <= result["lo80"]).all() and (result["lo80"] <= result["mean"]).all()
    assert (result["mean"] <= result["hi80"]).all() and (result["hi80"] <= result["hi95"]).all()
    pd.testing.assert_frame_equal(result, ets(history, 12, 12))


def test_ets_keeps_multiplicative_parts_away_from_series_that_reach_zero():
    pattern = np.array([-3.0, -2.0, 0.0, 2.0, 4.0, 3.0, 1.0, 0.0, -1.0, -2.0, -1.0, -1.0])
    y = np.resize(pattern, 96) + np.random.default_rng(5).normal(0, 0.3, 96)

    result = ets(y, 12, 12)

    assert result.attrs["spec"].startswith("ETS(A,") and not result.attrs["spec"].endswith(",M)")


def test_ets_leaves_seasons_longer_than_24_unmodelled_as_r_does():
    t = np.arange(300)
    weekly = 100.0 + 0.1 * t + 5.0 * np.sin(2 * np.pi * t / 52) + np.random.default_rng(9).normal(0, 0.5, len(t))

    assert ets(weekly, 52, 13).attrs["spec"].endswith(",N)")
