import numpy as np
import pandas as pd
from modelling._backtest import mase_scale, origins, run_folds, scores, smape
from modelling._candidates import seasonal_naive


def test_origins_end_at_the_last_value_and_skip_short_training_parts():
    assert origins(100, 8, 3, 0, 12) == [84, 88, 92]
    assert origins(30, 8, 3, 10, 12) == [12, 22]


def test_scores_of_a_perfect_seasonal_series():
    y = pd.Series(np.tile([1.0, 2.0, 3.0, 4.0], 10) + 0.0)
    y.iloc[::4] += np.arange(10) * 0.01  # a scale above zero
    backtest = run_folds(seasonal_naive, y, 4, 4, origins(len(y), 4, 2, 4, 8))
    result = scores(backtest)
    assert result["folds"] == 2
    assert result["mase"] < 1.5
    assert 0 <= result["coverage80"] <= 1


def test_smape_and_scale_by_hand():
    np.testing.assert_allclose(smape(np.array([100.0, 0.0]), np.array([50.0, 0.0])), [200 * 50 / 150, 0.0])
    assert mase_scale(np.array([1.0, 2.0, 4.0, 7.0]), 1) == 2.0
    assert np.isnan(mase_scale(np.array([5.0, 5.0, 5.0]), 1))
