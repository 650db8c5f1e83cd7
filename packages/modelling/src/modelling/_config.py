"""The stage's configuration: every key is read and checked here, and nowhere else.

The default file is config/modelling.toml, found beside the package in an installed wheel (the
pyproject force-includes it as modelling/config) or in the source tree of an editable checkout.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from storage_links import SettingsError, read_settings

from modelling._errors import ConfigError

MODELS = ("auto_sarima", "ets", "theta", "optimised_theta", "seasonal_naive")
FREQUENCIES = ("D", "B", "W", "M", "Q", "A")
SEASON_LENGTH = {"M": 12, "Q": 4, "W": 52, "B": 5, "D": 7, "A": 1}
TRANSFORMS = ("none", "auto")
_KEYS = {"models", "levels", "min_points", "transform", "daily_window", "horizon", "backtest", "intervals"}
CONFIG_ENV = "MODELLING_CONFIG"  # path of a TOML file that replaces the packaged default
# The longest horizon: far beyond what these models say anything about. (A long quarterly or annual
# one can still run past 2262-04-11, the last date pandas holds: that series then fails alone.)
MAX_HORIZON = 1000
# The fewest points min_points may ask for: naive, which every model falls back to on a short
# series, needs two to have a step to continue and a spread to draw its intervals from.
MIN_POINTS = 2
CONFIG_VERSION = 4  # bump when the code changes what a fit produces, so cached fits are not reused


@dataclass(frozen=True)
class Config:
    models: tuple[str, ...]
    levels: tuple[int, ...]
    min_points: int
    transform: str
    daily_window: int
    horizon: dict[str, int]
    backtest_folds: int
    backtest_step: int
    calibrate: bool
    calibration_min_points: int
    source: str

    def fingerprint(self) -> str:
        """Changes whenever a setting that affects the fits changes (not the file's location)."""
        settings = {k: v for k, v in asdict(self).items() if k != "source"}
        settings["version"] = CONFIG_VERSION
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def default_config_path() -> Path:
    package = Path(__file__).resolve().parent
    installed = package / "config" / "modelling.toml"
    return installed if installed.exists() else package.parents[1] / "config" / "modelling.toml"


def load_config(path: Path | None = None) -> Config:
    """Read the settings at `path`, else MODELLING_CONFIG, else the packaged config/modelling.toml."""
    try:
        path, raw = read_settings(path, CONFIG_ENV, default_config_path)
    except SettingsError as exc:
        raise ConfigError(str(exc)) from None
    _only(path, "", raw, _KEYS)
    read = _Reader(raw, path)
    models = tuple(read.list_of("models", str))
    for model in models:
        if model not in MODELS:
            raise ConfigError(f"{path}: models: unknown model {model!r} (known: {', '.join(MODELS)})")
        if models.count(model) > 1:  # each would be fitted and written twice, rows forecasting cannot tell apart
            raise ConfigError(f"{path}: models: {model!r} is listed twice")
    if not models:
        raise ConfigError(f"{path}: models: name at least one model")
    levels = tuple(read.list_of("levels", int))
    if sorted(levels) != [80, 95]:
        raise ConfigError(f"{path}: levels: must be [80, 95] (the columns predictions/ promises)")
    transform = read.value("transform", str)
    if transform not in TRANSFORMS:
        raise ConfigError(f"{path}: transform: {transform!r} is not one of {', '.join(TRANSFORMS)}")
    horizon_table = read.value("horizon", dict)
    horizon = {}
    for code in FREQUENCIES:
        value = horizon_table.get(code)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{path}: horizon.{code}: expected a positive integer, got {value!r}")
        if value > MAX_HORIZON:
            raise ConfigError(f"{path}: horizon.{code}: {value} is more than the {MAX_HORIZON} steps allowed")
        horizon[code] = value
    unknown = set(horizon_table) - set(FREQUENCIES)
    if unknown:
        raise ConfigError(f"{path}: horizon.{sorted(unknown)[0]}: unknown frequency code")
    backtest = read.value("backtest", dict)
    _only(path, "backtest.", backtest, {"folds", "step"})
    folds, step = backtest.get("folds"), backtest.get("step")
    if not isinstance(folds, int) or isinstance(folds, bool) or folds < 0:
        raise ConfigError(f"{path}: backtest.folds: expected an integer >= 0, got {folds!r}")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise ConfigError(f"{path}: backtest.step: expected an integer >= 0, got {step!r}")
    intervals_table = read.value("intervals", dict)
    _only(path, "intervals.", intervals_table, {"calibrate", "min_points"})
    intervals = _Reader(intervals_table, path, "intervals.")
    min_points = read.positive_int("min_points")
    if min_points < MIN_POINTS:
        raise ConfigError(f"{path}: min_points: expected an integer >= {MIN_POINTS} (a forecast needs "
                          f"{MIN_POINTS} points at least), got {min_points}")  # fmt: skip
    return Config(
        models=models,
        levels=levels,
        min_points=min_points,
        transform=transform,
        daily_window=read.positive_int("daily_window"),
        horizon=horizon,
        backtest_folds=folds,
        backtest_step=step,
        calibrate=intervals.value("calibrate", bool),
        calibration_min_points=intervals.positive_int("min_points"),
        source=str(path),
    )


def _only(path: Path, prefix: str, table: dict, allowed: set[str]) -> None:
    """A misspelt key is an error, not a setting silently left at nothing."""
    for key in sorted(set(table) - allowed):
        raise ConfigError(f"{path}: {prefix}{key}: unknown key (allowed: {', '.join(sorted(allowed))})")


class _Reader:
    def __init__(self, raw: dict, path: Path, prefix: str = "") -> None:
        self.raw, self.path, self.prefix = raw, path, prefix  # prefix: the table's name in errors, e.g. "intervals."

    def value(self, key: str, kind: type):
        if key not in self.raw:
            raise ConfigError(f"{self.path}: {self.prefix}{key}: missing")
        value = self.raw[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(f"{self.path}: {self.prefix}{key}: expected {kind.__name__}, got {value!r}")
        return value

    def list_of(self, key: str, kind: type) -> list:
        values = self.value(key, list)
        for value in values:
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ConfigError(f"{self.path}: {self.prefix}{key}: expected a list of {kind.__name__}, got {value!r}")
        return values

    def positive_int(self, key: str) -> int:
        value = self.value(key, int)
        if value < 1:
            raise ConfigError(f"{self.path}: {self.prefix}{key}: expected a positive integer, got {value}")
        return value
