"""Choosing or combining candidate forecasts by their backtest: pure functions, no files.

Scores are scale-free (MASE: errors divided by the in-sample mean absolute error of the seasonal
naive forecast), so series of any unit can be compared and averaged.

Intervals of a combination are combined the same way as the means ("Vincentization"): the
weighted mean of the candidates' bounds for `weighted`, the per-step median of each bound for
`median`. Both keep lo95 <= lo80 <= mean <= hi80 <= hi95 whenever every candidate does. The
coverage this gives is measured on the backtest folds and reported, not assumed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

POINT = "mean"
BOUNDS = ("lo80", "hi80", "lo95", "hi95")
VALUES = (POINT, *BOUNDS)
COMBINATIONS = ("weighted", "median")
_TINY = 1e-12


@dataclass(frozen=True)
class Choice:
    """What a series publishes: one model, or a combination of models with their weights."""

    method: str  # a model name, "weighted" or "median"
    weights: Mapping[str, float]  # model -> weight (a single model: weight 1; median: equal shares)
    mase: float = float("nan")  # backtest MASE of this choice (nan when there was no backtest)

    @property
    def is_combination(self) -> bool:
        return self.method in COMBINATIONS

    def describe(self) -> str:
        """One short text for tables: "ets", "median(ets, theta)" or "weighted(ets 0.61, theta 0.39)"."""
        if not self.is_combination:
            return self.method
        if self.method == "median":
            return f"median({', '.join(self.weights)})"
        return f"weighted({', '.join(f'{m} {w:.2f}' for m, w in self.weights.items())})"

    def apply(self, candidates: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
        """The published forecast from the candidates' forecasts (frames with mean/lo80/hi80/lo95/hi95)."""
        if not self.is_combination:
            return candidates[self.method].loc[:, list(VALUES)].copy()
        return combine({m: candidates[m] for m in self.weights}, self.method, self.weights)

    def apply_backtest(self, backtest: pd.DataFrame) -> pd.DataFrame:
        """This choice on one series' backtest folds (rows model, fold, step, actual, mean, ...).

        Returns one row per (fold, step) that every model it uses forecast: actual and the values.
        A weighted combination uses its final weights on every fold.
        """
        wide = backtest.set_index(["fold", "step", "model"])[[*VALUES, "actual"]].unstack("model")
        frames = {m: wide.xs(m, axis=1, level="model") for m in self.weights}
        out = self.apply(frames)
        out["actual"] = frames[next(iter(frames))]["actual"]
        return out.dropna()


def combine(
    candidates: Mapping[str, pd.DataFrame], method: str = "weighted", weights: Mapping[str, float] | None = None
) -> pd.DataFrame:
    """Combine aligned candidate forecasts row by row, means and interval bounds alike.

    candidates: model -> frame with columns mean, lo80, hi80, lo95, hi95, all with the same index.
    method: "weighted" (weights required, normalised here) or "median" (weights ignored).
    """
    if not candidates:
        raise ValueError("combine: no candidates")
    if method not in COMBINATIONS:
        raise ValueError(f"combine: unknown method {method!r}; choose one of {', '.join(COMBINATIONS)}")
    models = list(candidates)
    index = candidates[models[0]].index
    for model in models[1:]:
        if not candidates[model].index.equals(index):
            raise ValueError(f"combine: {model!r} is not aligned with {models[0]!r} (different index)")
    # Column by column: far cheaper than selecting a column list from each frame.
    stacked = np.stack([np.column_stack([candidates[m][c].to_numpy(dtype=float) for c in VALUES]) for m in models])
    if method == "median":
        values = np.median(stacked, axis=0)
    else:
        if weights is None or set(weights) != set(models):
            raise ValueError("combine: 'weighted' needs one weight per candidate")
        w = np.array([weights[m] for m in models], dtype=float)
        if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError(f"combine: weights must be non-negative and not all zero, got {dict(weights)}")
        values = np.tensordot(w / w.sum(), stacked, axes=1)
    return pd.DataFrame(values, index=index, columns=list(VALUES))


def inverse_score_weights(scores: Mapping[str, float]) -> dict[str, float]:
    """Weights proportional to 1 / score, normalised to sum to 1 (a perfect score takes it all)."""
    inv = {m: 1.0 / max(float(s), _TINY) for m, s in scores.items() if np.isfinite(s)}
    if not inv:
        raise ValueError("inverse_score_weights: no finite score")
    total = sum(inv.values())
    return {m: v / total for m, v in inv.items()}


def mase_scale(history: Iterable[float], season_length: int) -> float:
    """In-sample mean absolute error of the seasonal naive forecast: the MASE denominator.

    Falls back to lag 1 when the history is shorter than two seasons, and to 1.0 for a constant
    series, so the scale is always positive and finite.
    """
    y = np.asarray(list(history) if not isinstance(history, np.ndarray | pd.Series) else history, dtype=float)
    y = y[np.isfinite(y)]
    for lag in (max(int(season_length), 1), 1):
        if len(y) > lag:
            scale = float(np.mean(np.abs(y[lag:] - y[:-lag])))
            if scale > _TINY:
                return scale
    return 1.0


def evaluate(
    backtest: pd.DataFrame,
    scale: float,
    combinations: Iterable[str] = COMBINATIONS,
    pool: int = 0,
    floor: Iterable[str] = (),
) -> pd.DataFrame:
    """Backtest accuracy of every model and of each combination of the `pool` best (0: all), on the same folds.

    backtest: one series' rows with model, fold, step, actual, mean, lo80, hi80, lo95, hi95. Only the
    (fold, step) points that every model forecast are scored, so the candidates compete on equal terms.
    Weights of `weighted` are scored leave-one-fold-out (the fold being scored never sets its own
    weights) so a combination is not flattered against single models. Models in `floor` are scored
    but never pooled (unless every model is). Returns one row per candidate:
    candidate, mase, smape, coverage80, coverage95, folds (index: candidate).
    """
    return _evaluate(backtest, scale, combinations, pool, floor)[0]


def _evaluate(
    backtest: pd.DataFrame, scale: float, combinations: Iterable[str], pool: int, floor: Iterable[str]
) -> tuple[pd.DataFrame, dict[str, np.ndarray], list[str]]:
    """evaluate(), plus each candidate's MASE fold by fold and the models the combinations pool, best first."""
    wide = backtest.set_index(["fold", "step", "model"])[[*VALUES, "actual"]].unstack("model").dropna()
    if wide.empty:
        raise ValueError("evaluate: no (fold, step) point forecast by every model")
    models = list(wide[POINT].columns)
    folds = wide.index.get_level_values("fold").to_numpy()
    actual = wide["actual"].iloc[:, 0].to_numpy()
    arrays = {col: wide[col].to_numpy().T for col in VALUES}  # each (model, point)
    fold_ids = np.unique(folds)

    def per_fold_mase(pred: np.ndarray) -> np.ndarray:
        err = np.abs(actual - pred) / scale
        return np.array([err[folds == f].mean() for f in fold_ids])

    fold_mase = {m: per_fold_mase(arrays[POINT][i]) for i, m in enumerate(models)}
    rows = {m: _score(actual, folds, fold_ids, {c: arrays[c][i] for c in VALUES}, scale) for i, m in enumerate(models)}
    # The pool is ranked on every fold, so a pooled combination is picked with the same hindsight as
    # the best single model it competes with.
    pooled = sorted(eligible(models, floor), key=lambda m: rows[m]["mase"])[: pool or None]
    if len(pooled) > 1:
        members = [models.index(m) for m in pooled]
        for method in combinations:
            if method == "median":
                combined = {c: np.median(arrays[c][members], axis=0) for c in VALUES}
            else:
                combined = {c: np.empty_like(actual) for c in VALUES}
                for k, fold in enumerate(fold_ids):
                    others = [j for j in range(len(fold_ids)) if j != k] or [k]
                    w = inverse_score_weights({m: fold_mase[m][others].mean() for m in pooled})
                    wv = np.array([w[m] for m in pooled])
                    mask = folds == fold
                    for c in VALUES:
                        combined[c][mask] = wv @ arrays[c][members][:, mask]
            rows[method] = _score(actual, folds, fold_ids, combined, scale)
            fold_mase[method] = per_fold_mase(combined[POINT])
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "candidate"
    return table, fold_mase, pooled


def eligible(models: Iterable[str], floor: Iterable[str]) -> list[str]:
    """The models that may be chosen or combined: all but the floor, or all of them when only the floor is left."""
    models, floor = list(models), set(floor)
    return [m for m in models if m not in floor] or models


def choose(
    backtest: pd.DataFrame,
    scale: float,
    combinations: Iterable[str] = COMBINATIONS,
    single_margin: float = 0.0,
    pool: int = 0,
    floor: Iterable[str] = (),
) -> tuple[Choice, pd.DataFrame]:
    """Pick the published forecast of one series by backtest MASE: the best model or a combination.

    Combinations take the `pool` models with the best backtest MASE (0: every model): a weak model
    then does not drag a median or take a share of the weights. Models in `floor` (e.g. seasonal
    naive, the benchmark every other model should beat) are scored but neither chosen nor combined,
    unless they are all the series has.

    A single model wins only when it beats the best combination on every fold and its MASE is lower
    by more than `single_margin` (a fraction): picking the best of several noisy scores rewards luck,
    and a combination is the safer bet when the evidence is mixed. Returns the choice and the
    evaluation table it was made from.
    """
    combinations = tuple(combinations)
    table, fold_mase, pooled = _evaluate(backtest, scale, combinations, pool, floor)
    models = eligible([c for c in table.index if c not in COMBINATIONS], floor)
    single = table.loc[models, "mase"].idxmin()
    best, best_mase = single, float(table.at[single, "mase"])
    combos = [c for c in combinations if c in table.index]
    if combos:
        combo = table.loc[combos, "mase"].idxmin()
        combo_mase = float(table.at[combo, "mase"])
        clear_win = best_mase < combo_mase * (1.0 - single_margin) and np.all(fold_mase[single] < fold_mase[combo])
        if not clear_win:
            best, best_mase = combo, combo_mase
    if best == "weighted":
        weights = inverse_score_weights(table.loc[pooled, "mase"].to_dict())
    elif best == "median":
        weights = {m: 1.0 / len(pooled) for m in pooled}
    else:
        weights = {best: 1.0}
    return Choice(method=best, weights=weights, mase=best_mase), table


def _score(
    actual: np.ndarray, folds: np.ndarray, fold_ids: np.ndarray, pred: Mapping[str, np.ndarray], scale: float
) -> dict[str, float]:
    err = np.abs(actual - pred[POINT])
    denom = np.abs(actual) + np.abs(pred[POINT])
    smape = np.where(denom > _TINY, 200.0 * err / np.where(denom > _TINY, denom, 1.0), 0.0)
    return {
        # Mean over folds of each fold's MASE, as modelling scores its folds.
        "mase": float(np.mean([err[folds == f].mean() / scale for f in fold_ids])),
        "smape": float(smape.mean()),
        "coverage80": float(np.mean((actual >= pred["lo80"]) & (actual <= pred["hi80"]))),
        "coverage95": float(np.mean((actual >= pred["lo95"]) & (actual <= pred["hi95"]))),
        "folds": len(fold_ids),
    }
