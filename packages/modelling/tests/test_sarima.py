import numpy as np
import pandas as pd
import pytest
from modelling import Choice, SeriesError, auto_sarima


def seasonal_ar(n: int, seed: int, m: int = 12) -> np.ndarray:
    rng = np.random.default_rng(seed)
    e = rng.normal(0, 1, n + 50)
    y = np.zeros(n + 50)
    for t in range(m + 1, n + 50):
        y[t] = 0.5 * y[t - 1] + 0.4 * y[t - m] - 0.2 * y[t - m - 1] + e[t]
    return y[50:] + 20


def test_forecast_frame_continues_the_monthly_dates():
    y = pd.Series(seasonal_ar(96, 1), index=pd.date_range("2015-01-01", periods=96, freq="MS"))
    result = auto_sarima(y, 12, 6)
    assert list(result.columns) == ["mean", "lo80", "hi80", "lo95", "hi95"]
    assert list(result.index) == list(pd.date_range("2023-01-01", periods=6, freq="MS"))
    assert (result["lo95"] < result["lo80"]).all() and (result["lo80"] < result["mean"]).all()
    assert (result["mean"] < result["hi80"]).all() and (result["hi80"] < result["hi95"]).all()
    assert result.attrs["fallback"] is None
    assert result.attrs["seasonal_order"][3] == 12


def test_arrays_get_positions_after_the_last_value():
    result = auto_sarima(np.asarray(seasonal_ar(60, 2)), 12, 4)
    assert list(result.index) == [60, 61, 62, 63]


def test_intervals_cover_about_as_promised_on_simulated_data():
    hits80, hits95, total = 0, 0, 0
    for seed in range(20):
        y = seasonal_ar(108, seed)
        result = auto_sarima(y[:96], 12, 12)
        actual = y[96:]
        hits80 += int(((actual >= result["lo80"]) & (actual <= result["hi80"])).sum())
        hits95 += int(((actual >= result["lo95"]) & (actual <= result["hi95"])).sum())
        total += len(actual)
    assert 0.65 <= hits80 / total <= 0.93
    assert 0.85 <= hits95 / total <= 0.995


def test_macrodata_gdp_gets_a_differenced_model_and_a_plausible_forecast(macro):
    frame = macro()
    y = pd.Series(frame["value"].to_numpy(), index=pd.DatetimeIndex(frame["date"], freq="QS-JAN"))
    result = auto_sarima(y, 4, 8)
    assert result.attrs["order"][1] + result.attrs["seasonal_order"][1] >= 1
    last = y.iloc[-1]
    assert (abs(result["mean"] / last - 1) < 0.15).all()
    assert result.index[0] == pd.Timestamp("2009-10-01")


def test_a_quarterly_search_never_picks_a_lag_in_both_polynomials(macro):
    # On the T-bill rate the search used to reach q=4 with Q=1, which SARIMAX refuses ("moving
    # average lag(s) {4} are in both the seasonal and non-seasonal moving average components"),
    # and the series fell back to seasonal naive.
    frame = macro("tbilrate")

    result = auto_sarima(frame["value"].to_numpy(), 4, 8)

    assert result.attrs["fallback"] is None
    p, _, q = result.attrs["order"]
    P, _, Q, m = result.attrs["seasonal_order"]
    assert not (P and p >= m) and not (Q and q >= m)


def test_short_series_falls_back_to_seasonal_naive_and_says_why():
    y = np.array([1.0, 2, 3, 4, 1, 2, 3])
    result = auto_sarima(y, 4, 4)
    assert result.attrs["fallback"] == "too short for ARIMA (7 points)"
    assert result.attrs["fallback_model"] == "seasonal_naive"
    np.testing.assert_allclose(result["mean"], [4, 1, 2, 3])


def test_constant_series_gives_the_constant_with_zero_width_intervals():
    result = auto_sarima(np.full(40, 7.0), 12, 3)
    assert result.attrs["fallback"] == "constant series"
    np.testing.assert_allclose(result.to_numpy(), 7.0)


def test_missing_tail_is_dropped_and_forecast_continues_from_the_last_observation():
    values = seasonal_ar(72, 3)
    values[-5:] = np.nan
    y = pd.Series(values, index=pd.date_range("2010-01-31", periods=72, freq="ME"))
    result = auto_sarima(y, 12, 3)
    assert "dropped 5 missing values at the end" in result.attrs["notes"]
    assert result.index[0] == y.index[-5]
    assert np.isfinite(result.to_numpy()).all()


def test_all_missing_series_is_an_error_naming_the_problem():
    with pytest.raises(SeriesError, match="no observations"):
        auto_sarima(np.full(30, np.nan), 12, 3)


def test_explosive_series_does_not_crash_and_stays_finite():
    y = 1.25 ** np.arange(80)
    result = auto_sarima(y, 1, 5)
    assert np.isfinite(result.to_numpy()).all()
    assert result.attrs["fallback"] is None or result.attrs["fallback_model"] == "naive"


def test_cached_choice_reproduces_the_forecast_without_a_search():
    y = seasonal_ar(96, 4)
    first = auto_sarima(y, 12, 6)
    choice = Choice.from_json(first.attrs["choice"])
    again = auto_sarima(y, 12, 6, start=choice, refit=False)
    np.testing.assert_allclose(again["mean"], first["mean"], rtol=1e-6)
    assert again.attrs["order"] == first.attrs["order"]


def test_choice_rejects_malformed_json():
    with pytest.raises((KeyError, ValueError, TypeError)):
        Choice.from_json({"order": [1, 1], "seasonal_order": [0, 0, 0, 0], "constant": 1, "boxcox_lambda": 1,
                          "params": []})  # fmt: skip
    with pytest.raises(ValueError):
        Choice.from_json({"order": [1, 0, 0], "seasonal_order": [0, 0, 0, 0], "constant": False,
                          "boxcox_lambda": 1, "params": ["nan"]})  # fmt: skip


def test_auto_transform_picks_log_for_multiplicative_growth():
    t = np.arange(120)
    rng = np.random.default_rng(5)
    y = np.exp(0.02 * t + 0.3 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 0.03, 120))
    result = auto_sarima(y, 12, 12)
    assert result.attrs["transform"] == "log"
    assert (result["lo95"] > 0).all()
    assert auto_sarima(y, 12, 12, transform="none").attrs["transform"] == "none"


def test_auto_transform_leaves_short_seasons_alone():
    # Four points a season give Guerrero's rule too little to compare: quarterly data stays untransformed.
    t = np.arange(60)
    y = np.exp(0.03 * t + 0.3 * np.sin(2 * np.pi * t / 4) + np.random.default_rng(5).normal(0, 0.03, 60))
    assert auto_sarima(y, 4, 8).attrs["transform"] == "none"


def test_stepwise_moves_follow_auto_arima_in_order_and_bounds():
    from modelling._css import Spec
    from modelling._sarima import _neighbours

    moves = [(s.p, s.q, s.P, s.Q, s.constant) for s in _neighbours(Spec(2, 2, 1, 1, True), True, True)]

    # R's forecast::auto.arima (and statsforecast): P-1, Q-1, P+1, Q+1, then both seasonal orders
    # together, the same for p and q, then the constant; p+q+P+Q may pass 5 in a stepwise search.
    assert moves == [
        (2, 2, 0, 1, True), (2, 2, 1, 0, True), (2, 2, 2, 1, True), (2, 2, 1, 2, True),
        (2, 2, 0, 0, True), (2, 2, 0, 2, True), (2, 2, 2, 0, True), (2, 2, 2, 2, True),
        (1, 2, 1, 1, True), (2, 1, 1, 1, True), (3, 2, 1, 1, True), (2, 3, 1, 1, True),
        (1, 1, 1, 1, True), (1, 3, 1, 1, True), (3, 1, 1, 1, True), (3, 3, 1, 1, True),
        (2, 2, 1, 1, False),
    ]  # fmt: skip
    at_the_limits = {(s.p, s.q, s.P, s.Q) for s in _neighbours(Spec(5, 0, 2, 0, False), True, False)}
    assert max(p for p, *_ in at_the_limits) == 5 and max(P for _, _, P, _ in at_the_limits) == 2
