"""Per series: score the candidates on modelling's backtest folds and build the published forecast."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pandas as pd

from forecasting._calibrate import Calibration, calibrate, rescale
from forecasting._combine import VALUES, Choice, choose, eligible, mase_scale
from forecasting._config import IntervalSettings, SelectSettings
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
    calibration: dict[str, Calibration]  # frequency -> how its series' intervals were rescaled


def build(predictions: Predictions, settings: SelectSettings, intervals: IntervalSettings) -> Published:
    """Choose per series (see forecasting.choose), calibrate the intervals per frequency, assemble the tables."""
    published, scores, choices, checked = {}, [], {}, {}
    backtests = dict(tuple(predictions.backtests.groupby("series", sort=False)))
    history = dict(tuple(predictions.history.groupby("series", sort=False)))
    for series, rows in predictions.forecasts.groupby("series", sort=True):
        candidates = _candidates(predictions, series, rows)
        backtest = backtests.get(series)
        if backtest is not None:
            backtest = backtest[backtest["model"].isin(candidates)]
        if backtest is None or backtest.empty:
            choice, table = _without_backtest(predictions, series, candidates, settings.floor)
        else:
            past = history[series]
            past = past[past["date"] < backtest["date"].min()].sort_values("date")["value"].to_numpy()
            scale = mase_scale(past, predictions.season_length(series))
            try:
                choice, table = choose(backtest, scale, settings.combinations, settings.single_margin, settings.pool,
                                       settings.floor)  # fmt: skip
            except ValueError as exc:
                raise InputError(f"{predictions.directory / 'backtests.parquet'}: series {series}: {exc}") from None
            if intervals.calibrate:
                checked[series] = choice.apply_backtest(backtest)
        choices[series] = choice
        first = candidates[next(iter(candidates))]
        forecast = choice.apply(candidates)
        forecast.insert(0, "date", first["date"])
        forecast.insert(0, "step", forecast.index)
        forecast.insert(0, "series", series)
        forecast["method"] = "single" if not choice.is_combination else choice.method
        forecast["models"] = choice.describe()
        published[series] = forecast.reset_index(drop=True)
        table = table.reset_index()
        table.insert(0, "series", series)
        table["chosen"] = table["candidate"] == choice.method
        scores.append(table)
        log.debug("%s: %s (backtest MASE %.3f)", series, choice.describe(), choice.mase)
    if not published:
        raise InputError(f"{predictions.directory / 'forecasts.parquet'}: no series to publish")
    calibration = _calibrate(predictions, published, checked, intervals) if intervals.calibrate else {}
    return Published(
        forecasts=pd.concat(published.values(), ignore_index=True)[FORECAST_COLUMNS],
        scores=pd.concat(scores, ignore_index=True)[SCORE_COLUMNS],
        choices=choices,
        failed={str(k): str(v) for k, v in predictions.meta["failed"].items()},
        calibration=calibration,
    )


def _calibrate(
    predictions: Predictions,
    published: dict[str, pd.DataFrame],
    checked: dict[str, pd.DataFrame],
    intervals: IntervalSettings,
) -> dict[str, Calibration]:
    """Rescale the intervals of `published` in place, one factor per level and frequency."""
    groups: dict[str, list[str]] = {}
    for series in published:
        groups.setdefault(str(predictions.meta["frequency"].get(series, "?")), []).append(series)
    calibration = {}
    for frequency, members in sorted(groups.items()):
        result = calibrate([checked[s] for s in members if s in checked], intervals.min_points)
        calibration[frequency] = result
        if not result.applied:
            why = f"fewer than {intervals.min_points}" if result.points < intervals.min_points else "no usable factor"
            log.info("frequency %s: intervals as the models gave them (%d backtest points, %s)",
                     frequency, result.points, why)  # fmt: skip
            continue
        log.info("frequency %s: intervals calibrated on %d backtest points: %s", frequency, result.points,
                 result.describe())  # fmt: skip
        for series in members:
            published[series] = rescale(published[series], result.factors)
    return calibration


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
    predictions: Predictions, series: str, candidates: dict[str, pd.DataFrame], floor: tuple[str, ...]
) -> tuple[Choice, pd.DataFrame]:
    """No backtest rows (a series too short to backtest): trust modelling's scores, else the median."""
    scores = predictions.scores[
        (predictions.scores["series"] == series) & predictions.scores["model"].isin(candidates)
    ].set_index("model")
    table = scores.drop(columns="series").rename_axis("candidate")
    candidates = {m: candidates[m] for m in eligible(candidates, floor)}
    finite = table.loc[table.index.isin(candidates), "mase"].dropna()
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
