import numpy as np
import pandas as pd
import pytest
from modelling import ets, seasonal_naive, theta


@pytest.fixture
def monthly(make_monthly) -> pd.Series:
    frame = make_monthly(72)
    return pd.Series(frame["value"].to_numpy(), index=pd.DatetimeIndex(frame["date"], freq="MS"))


@pytest.mark.parametrize("model", [ets, theta, seasonal_naive])
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


@pytest.mark.parametrize("model", [ets, theta])
def test_short_series_fall_back_with_a_reason(model):
    result = model(np.array([3.0, 4.0, 5.0, 4.0, 3.0]), 12, 3)
    assert result.attrs["fallback"].startswith("too short")
    assert result.attrs["fallback_model"] == "naive"
    np.testing.assert_allclose(result["mean"], 3.0)


def test_ets_picks_a_seasonal_model_for_a_seasonal_series(monthly):
    assert ets(monthly, 12, 3).attrs["spec"].endswith(",A)")
