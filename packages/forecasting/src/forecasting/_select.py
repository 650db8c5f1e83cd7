"""Per series: score the candidates on modelling's backtest folds and build the published forecast."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pandas as pd

from forecasting._combine import VALUES, Choice, choose, mase_scale
from forecasting._config import SelectSettings
from forecasting._errors import InputError
from forecasting._inputs import Predictions

log = logging.getLogger(__name__)

FORECAST_COLUMNS = ["series", "step", "date", *VALUES, "method", "models"]
SCORE_COLUMNS = ["series", "candidate", "mase", "smape", "coverage80", "coverage95", "folds", "chosen"]


@dataclass(frozen=True)
class Published:
    """The stage's result before it is written: tables plus what was chosen per series."""

    forecasts: pd.DataFrame  # FORECAST_COLUMNS
    scores: pd.DataFrame  # SCORE_COLUMNS: every candidate's backtest accuracy, the chosen one marked
    choices: dict[str, Choice]
    failed: dict[str, str]  # series -> reason, from modelling's run.json


def build(predictions: Predictions, settings: SelectSettings) -> Published:
    """Choose per series (see forecasting.choose) and assemble the forecast and score tables."""
    forecasts, scores, choices = [], [], {}
    backtests = dict(tuple(predictions.backtests.groupby("series", sort=False)))
    history = dict(tuple(predictions.history.groupby("series", sort=False)))
    for series, rows in predictions.forecasts.groupby("series", sort=True):
        candidates = _candidates(predictions, series, rows)
        backtest = backtests.get(series)
        if backtest is not None:
            backtest = backtest[backtest["model"].isin(candidates)]
        if backtest is None or backtest.empty:
            choice, table = _without_backtest(predictions, series, candidates)
        else:
            past = history[series]
            past = past[past["date"] < backtest["date"].min()].sort_values("date")["value"].to_numpy()
            scale = mase_scale(past, predictions.season_length(series))
            try:
                choice, table = choose(backtest, scale, settings.combinations, settings.single_margin, settings.pool)
            except ValueError as exc:
                raise InputError(f"{predictions.directory / 'backtests.parquet'}: series {series}: {exc}") from None
        choices[series] = choice
        first = candidates[next(iter(candidates))]
        published = choice.apply(candidates)
        published.insert(0, "date", first["date"])
        published.insert(0, "step", published.index)
        published.insert(0, "series", series)
        published["method"] = "single" if not choice.is_combination else choice.method
        published["models"] = choice.describe()
        forecasts.append(published.reset_index(drop=True))
        table = table.reset_index()
        table.insert(0, "series", series)
        table["chosen"] = table["candidate"] == choice.method
        scores.append(table)
        log.debug("%s: %s (backtest MASE %.3f)", series, choice.describe(), choice.mase)
    if not forecasts:
        raise InputError(f"{predictions.directory / 'forecasts.parquet'}: no series to publish")
    return Published(
        forecasts=pd.concat(forecasts, ignore_index=True)[FORECAST_COLUMNS],
        scores=pd.concat(scores, ignore_index=True)[SCORE_COLUMNS],
        choices=choices,
        failed={str(k): str(v) for k, v in predictions.meta["failed"].items()},
    )


def _candidates(predictions: Predictions, series: str, rows: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """model -> its forecast indexed by step; every model must cover the same steps and dates."""
    candidates = {}
    for model, frame in rows.groupby("model", sort=True):
        candidates[model] = frame.sort_values("step").set_index("step")
    reference_model = next(iter(candidates))
    reference = candidates[reference_model]
    for model, frame in candidates.items():
        if not (frame.index.equals(reference.index) and frame["date"].equals(reference["date"])):
            raise InputError(
                f"{predictions.directory / 'forecasts.parquet'}: series {series}: model {model} forecasts "
                f"other steps or dates than {reference_model}"
            )
    return candidates


def _without_backtest(
    predictions: Predictions, series: str, candidates: dict[str, pd.DataFrame]
) -> tuple[Choice, pd.DataFrame]:
    """No backtest rows (a series too short to backtest): trust modelling's scores, else the median."""
    scores = predictions.scores[
        (predictions.scores["series"] == series) & predictions.scores["model"].isin(candidates)
    ].set_index("model")
    table = scores.drop(columns="series").rename_axis("candidate")
    finite = table["mase"].dropna()
    if not finite.empty:
        best = str(finite.idxmin())
        log.warning("%s: no backtest rows; publishing %s, the best by modelling's scores", series, best)
        return Choice(method=best, weights={best: 1.0}, mase=float(finite.min())), table
    if len(candidates) == 1:
        only = next(iter(candidates))
        log.warning("%s: no backtest and no scores; publishing its only model, %s", series, only)
        return Choice(method=only, weights={only: 1.0}), table
    log.warning("%s: no backtest and no scores; publishing the median of %d models", series, len(candidates))
    choice = Choice(method="median", weights={m: 1.0 / len(candidates) for m in candidates})
    return choice, table
