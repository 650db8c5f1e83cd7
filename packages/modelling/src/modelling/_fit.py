"""One series, every candidate: the forecasts, the backtests and the scores. Runs in a worker process."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from modelling._backtest import origins, run_folds, scores
from modelling._candidates import ets, seasonal_naive, theta
from modelling._sarima import Choice, auto_sarima
from modelling._theta import optimised_theta

FORECASTERS = {
    "auto_sarima": auto_sarima,
    "ets": ets,
    "theta": theta,
    "optimised_theta": optimised_theta,
    "seasonal_naive": seasonal_naive,
}


@dataclass(frozen=True)
class Task:
    name: str
    series: pd.Series
    future: pd.DatetimeIndex
    season_length: int
    horizon: int
    models: tuple[str, ...]
    levels: tuple[int, ...]
    transform: str
    folds: int
    step: int
    min_points: int
    cached: Choice | None = None
    cache_kind: str | None = None  # "same" or "extended" when `cached` is set
    cached_folds: dict[int, Choice] = field(default_factory=dict)  # by training length: reused as they are


@dataclass
class Outcome:
    name: str
    forecasts: pd.DataFrame | None = None
    backtests: pd.DataFrame | None = None
    scores: pd.DataFrame | None = None
    choice: dict | None = None
    fold_choices: dict[int, dict] = field(default_factory=dict)  # auto_sarima's per fold, by training length
    folds_reused: int = 0  # auto_sarima's backtest folds that reused their cached model, no search
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0


def fit_series(task: Task) -> Outcome:
    started = time.process_time()
    outcome = Outcome(task.name)
    try:
        _fit(task, outcome)
    except Exception as exc:  # one series' failure must not end the run; the run reports it
        outcome.error = f"{type(exc).__name__}: {exc}"
    outcome.seconds = time.process_time() - started
    return outcome


def _forecaster(task: Task, model: str, final: bool):
    if model != "auto_sarima":
        return FORECASTERS[model]
    if final and task.cached is not None:
        return functools.partial(
            auto_sarima, transform=task.transform, start=task.cached, refit=task.cache_kind != "same"
        )
    return functools.partial(auto_sarima, transform=task.transform)


def _fold_sarima(task: Task, outcome: Outcome) -> Callable[[pd.Series, int, int], pd.DataFrame]:
    """auto_sarima for the backtest folds: a fold whose training values the cache vouches for reuses
    its cached model as it is (the forecast its search gave), the others are searched; every fold's
    choice lands in `outcome.fold_choices`, for the cache."""

    def forecast(train: pd.Series, m: int, h: int) -> pd.DataFrame:
        cached = task.cached_folds.get(len(train))
        result = None
        if cached is not None:
            result = auto_sarima(train, m, h, transform=task.transform, start=cached, refit=False)
            if result.attrs.get("fallback"):  # as for the final model: search afresh
                result = None
        if result is None:
            result = auto_sarima(train, m, h, transform=task.transform)
        else:
            outcome.folds_reused += 1
        if result.attrs.get("choice") is not None:
            outcome.fold_choices[len(train)] = result.attrs["choice"]
        return result

    return forecast


def _fit(task: Task, outcome: Outcome) -> None:
    m, h = task.season_length, task.horizon
    lengths = origins(len(task.series), h, task.folds, task.step, task.min_points)
    forecasts, backtests, rows = [], [], []
    for model in task.models:
        forecast = _forecaster(task, model, final=True)(task.series, m, h, levels=task.levels)
        if model == "auto_sarima" and task.cached is not None and forecast.attrs.get("fallback"):
            # The cached model failed where a search might not (the backtests' scores come from
            # searches): search afresh, and the cache then holds the result instead.
            outcome.notes.append(
                f"auto_sarima: the cached model failed ({forecast.attrs['fallback']}); searched afresh"
            )
            forecast = _forecaster(task, model, final=False)(task.series, m, h, levels=task.levels)
        if forecast.attrs.get("fallback"):
            outcome.notes.append(
                f"{model}: fell back to {forecast.attrs['fallback_model']}: {forecast.attrs['fallback']}"
            )
        if model == "auto_sarima":
            outcome.choice = forecast.attrs.get("choice")
        frame = forecast.reset_index(drop=True)
        frame.insert(0, "date", task.future)
        frame.insert(0, "step", range(1, h + 1))
        frame.insert(0, "model", model)
        forecasts.append(frame)
        fold_forecaster = _fold_sarima(task, outcome) if model == "auto_sarima" else FORECASTERS[model]
        backtest = run_folds(fold_forecaster, task.series, m, h, lengths)
        if model == "auto_sarima" and outcome.folds_reused:
            outcome.notes.append(f"auto_sarima: {outcome.folds_reused} of {len(lengths)} backtest folds reused "
                                 "their cached models, unsearched")  # fmt: skip
        rows.append({"model": model, **scores(backtest)})
        if not backtest.empty:
            backtest.insert(0, "model", model)
            backtests.append(backtest.drop(columns="scale"))
    outcome.forecasts = pd.concat(forecasts, ignore_index=True)
    outcome.backtests = pd.concat(backtests, ignore_index=True) if backtests else None
    outcome.scores = pd.DataFrame(rows)
