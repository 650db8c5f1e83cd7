"""The pure scoring and combination functions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from forecasting import Choice, choose, combine, evaluate, inverse_score_weights, mase_scale

VALUES = ["mean", "lo80", "hi80", "lo95", "hi95"]


def frame(mean, spread=1.0) -> pd.DataFrame:
    mean = np.asarray(mean, dtype=float)
    return pd.DataFrame(
        {
            "mean": mean,
            "lo80": mean - spread,
            "hi80": mean + spread,
            "lo95": mean - 2 * spread,
            "hi95": mean + 2 * spread,
        },
        index=pd.RangeIndex(1, len(mean) + 1, name="step"),
    )


def test_weighted_combination_is_the_weighted_mean_of_means_and_bounds():
    a, b = frame([10, 20], spread=1), frame([20, 40], spread=3)
    out = combine({"a": a, "b": b}, "weighted", {"a": 3, "b": 1})
    assert out["mean"].tolist() == pytest.approx([12.5, 25.0])
    assert out["hi95"].tolist() == pytest.approx([0.75 * 12 + 0.25 * 26, 0.75 * 22 + 0.25 * 46])
    assert out.index.equals(a.index)


def test_median_combination_takes_each_column_separately_and_keeps_bounds_ordered():
    cands = {"a": frame([1, 1], 1), "b": frame([5, 5], 10), "c": frame([3, 3], 0.5)}
    out = combine(cands, "median")
    assert out["mean"].tolist() == [3, 3]
    assert out["hi95"].tolist() == [4, 4]  # the median of 3, 25 and 4, not the bound of the median model
    ordered = (out.lo95 <= out.lo80) & (out.lo80 <= out["mean"]) & (out["mean"] <= out.hi80) & (out.hi80 <= out.hi95)
    assert ordered.all()


@pytest.mark.parametrize(
    ("cands", "method", "weights", "message"),
    [
        ({}, "median", None, "no candidates"),
        ({"a": frame([1, 2])}, "mode", None, "unknown method"),
        ({"a": frame([1, 2]), "b": frame([1, 2, 3])}, "median", None, "not aligned"),
        ({"a": frame([1, 2]), "b": frame([1, 2])}, "weighted", {"a": 1}, "one weight per candidate"),
        ({"a": frame([1, 2]), "b": frame([1, 2])}, "weighted", {"a": -1, "b": 1}, "non-negative"),
    ],
)
def test_combine_rejects_bad_arguments(cands, method, weights, message):
    with pytest.raises(ValueError, match=message):
        combine(cands, method, weights)


def test_inverse_score_weights():
    w = inverse_score_weights({"a": 0.5, "b": 1.0, "c": float("nan")})
    assert w == pytest.approx({"a": 2 / 3, "b": 1 / 3})


def test_mase_scale():
    assert mase_scale(np.array([1.0, 2, 4, 7]), 1) == pytest.approx(2.0)
    assert mase_scale(np.array([1.0, 2, 1, 3, 1, 4]), 2) == pytest.approx(0.5)  # |1-1|, |3-2|, |1-1|, |4-3|
    assert mase_scale([5.0, 5.0, 5.0], 12) == 1.0  # constant and too short: still positive
    assert mase_scale([1.0, 3.0, 2.0], 12) == pytest.approx(1.5)  # shorter than a season: lag 1


def backtest(errors: dict[str, list[list[float]]], actual: float = 100.0) -> pd.DataFrame:
    """models -> per fold a list of point errors; intervals of +-1 and +-2 around each forecast."""
    rows = []
    for model, folds in errors.items():
        for fold, errs in enumerate(folds):
            for step, err in enumerate(errs, start=1):
                mean = actual + err
                rows.append({"model": model, "fold": fold, "step": step, "actual": actual, "mean": mean,
                             "lo80": mean - 1, "hi80": mean + 1, "lo95": mean - 2, "hi95": mean + 2})  # fmt: skip
    return pd.DataFrame(rows)


def test_evaluate_scores_models_and_combinations_on_the_same_points():
    bt = backtest({"a": [[1, 1], [1, 1]], "b": [[-1, -1], [-3, -3]]})
    table = evaluate(bt, scale=2.0)
    assert table.loc["a", "mase"] == pytest.approx(0.5)
    assert table.loc["b", "mase"] == pytest.approx(1.0)
    assert table.loc["median", "mase"] == pytest.approx((0.0 + 0.5) / 2)  # median of two = their mean
    # Leave-one-fold-out weights: fold 0 uses fold 1's scores (a 1, b 3 -> 3/4, 1/4), fold 1 uses fold 0's (1/2, 1/2).
    fold0 = abs(0.75 * 1 + 0.25 * -1) / 2
    fold1 = abs(0.5 * 1 + 0.5 * -3) / 2
    assert table.loc["weighted", "mase"] == pytest.approx((fold0 + fold1) / 2)
    assert table.loc["a", "coverage80"] == 1.0 and table.loc["b", "coverage80"] == 0.5
    assert table["folds"].eq(2).all()


def test_evaluate_ignores_points_not_forecast_by_every_model():
    bt = backtest({"a": [[1, 1, 1]], "b": [[1, 1, 50]]})
    bt = bt[~((bt.model == "a") & (bt.step == 3))]
    assert evaluate(bt, scale=1.0).loc["b", "mase"] == pytest.approx(1.0)


def test_choose_prefers_a_clearly_better_single_model():
    bt = backtest({"good": [[0.1, 0.1]] * 3, "bad": [[5, 5]] * 3, "worse": [[9, 9]] * 3})
    choice, table = choose(bt, scale=1.0, single_margin=0.05)
    assert choice == Choice(method="good", weights={"good": 1.0}, mase=pytest.approx(0.1))
    assert choice.apply({"good": frame([1.0]), "bad": frame([2.0])})["mean"].tolist() == [1.0]
    assert set(table.index) == {"good", "bad", "worse", "weighted", "median"}


def test_choose_combines_when_errors_cancel_and_describes_it():
    bt = backtest({"high": [[2, 2]] * 3, "low": [[-2, -2]] * 3})
    choice, _ = choose(bt, scale=1.0)
    assert choice.method == "weighted"
    assert choice.weights == pytest.approx({"high": 0.5, "low": 0.5})
    assert choice.mase == pytest.approx(0.0)
    assert choice.describe() == "weighted(high 0.50, low 0.50)"
    out = choice.apply({"high": frame([12.0]), "low": frame([8.0])})
    assert out["mean"].tolist() == [10.0]


def test_choose_with_margin_keeps_the_combination_unless_a_model_is_clearly_better():
    # b alone scores 1.0; the median of (a, b, c) scores 1.02: within a 5% margin, so the median wins.
    bt = backtest({"a": [[1.04, 1.04]] * 2, "b": [[1.0, 1.0]] * 2, "c": [[1.02, 1.02]] * 2})
    assert choose(bt, 1.0, combinations=["median"], single_margin=0.05)[0].method == "median"
    assert choose(bt, 1.0, combinations=["median"], single_margin=0.0)[0].method == "b"
    assert choose(bt, 1.0, combinations=[], single_margin=0.05)[0].method == "b"


def test_a_single_model_must_win_every_fold_to_replace_a_combination():
    # On average "lucky" beats the median by far, but it loses fold 1: the evidence is mixed.
    bt = backtest({"lucky": [[0.0, 0.0], [3, 3]], "b": [[4, 4], [2, 2]], "c": [[5, 5], [-2, -2]]})
    choice, table = choose(bt, 1.0, combinations=["median"], single_margin=0.0)
    assert table.loc["lucky", "mase"] < table.loc["median", "mase"]
    assert choice.method == "median"


def test_pool_keeps_the_weakest_models_out_of_combinations():
    # "far" is far off on every fold: pooled out, the median of the two good ones (errors cancel) wins.
    bt = backtest({"up": [[1, 1]] * 3, "down": [[-1, -1]] * 3, "far": [[6, 6]] * 3})
    everything, table = choose(bt, 1.0, combinations=["median", "weighted"], pool=0)
    pooled, pooled_table = choose(bt, 1.0, combinations=["median", "weighted"], pool=2)
    assert everything.weights.keys() == {"up", "down", "far"}
    assert pooled.weights.keys() == {"up", "down"} and pooled.mase == pytest.approx(0.0)
    assert pooled_table.loc["median", "mase"] < table.loc["median", "mase"]
    assert pooled.is_combination and everything.is_combination


def test_the_floor_is_scored_but_neither_chosen_nor_combined():
    # "naive" is the best single model here, and would take the largest weight in a combination.
    bt = backtest({"naive": [[0.1, 0.1]] * 3, "up": [[1, 1]] * 3, "down": [[-1.5, -1.5]] * 3})
    assert choose(bt, 1.0, combinations=[])[0].method == "naive"
    single, table = choose(bt, 1.0, combinations=[], floor=["naive"])
    assert single.method == "up" and table.loc["naive", "mase"] == pytest.approx(0.1)
    combined, table = choose(bt, 1.0, single_margin=0.5, floor=["naive"])
    assert combined.is_combination and combined.weights.keys() == {"up", "down"}
    assert table.loc["median", "mase"] == pytest.approx(0.25)  # the median of up and down only
    assert set(table.index) == {"naive", "up", "down", "weighted", "median"}


def test_a_series_with_only_floor_models_still_gets_one():
    bt = backtest({"naive": [[0.5, 0.5]] * 2})
    assert choose(bt, 1.0, floor=["naive"])[0].method == "naive"
