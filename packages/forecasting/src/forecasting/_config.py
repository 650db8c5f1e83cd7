"""Every setting the stage reads: the TOML config and the environment, checked here and nowhere else.

Errors name the key and the file (or the variable). Secrets (the account key, the connection
string) are held in `BlobCredentials` and never formatted into a message or a log line.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from storage_links import SettingsError, read_settings

from forecasting._errors import ConfigError, CredentialsError

CONFIG_ENV = "FORECASTING_CONFIG"  # path of a TOML file that replaces the packaged default
PROFILES = ("local", "prod")
COMBINATIONS = ("weighted", "median")

# Environment variables for Blob Storage (Azurite takes the same ones plus an endpoint).
CONNECTION_STRING_ENV = "AZURE_STORAGE_CONNECTION_STRING"
ACCOUNT_ENV = "AZURE_STORAGE_ACCOUNT"
KEY_ENV = "AZURE_STORAGE_KEY"
ENDPOINT_ENV = "AZURE_STORAGE_BLOB_ENDPOINT"
CONTAINER_ENV = "AZURE_STORAGE_CONTAINER"
_CONTAINER_NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")  # with 3-63 characters: Azure's rule


@dataclass(frozen=True)
class SelectSettings:
    combinations: tuple[str, ...] = COMBINATIONS
    single_margin: float = 0.5
    pool: int = 0
    floor: tuple[str, ...] = ("seasonal_naive",)


@dataclass(frozen=True)
class IntervalSettings:
    calibrate: bool = True
    min_points: int = 40


@dataclass(frozen=True)
class ReportSettings:
    history_points: int = 96


@dataclass(frozen=True)
class UploadSettings:
    container: str = "forecasts"
    attempts: int = 4
    connect_timeout_s: float = 10
    read_timeout_s: float = 60


@dataclass(frozen=True)
class Settings:
    source: Path
    select: SelectSettings
    intervals: IntervalSettings
    report: ReportSettings
    upload: UploadSettings
    profile: str = "local"

    def shaping(self) -> dict:
        """The settings that shape what is published (not where it goes), as inputs.json records them."""
        shaping = {"select": asdict(self.select), "intervals": asdict(self.intervals), "report": asdict(self.report)}
        return {table: {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
                for table, values in shaping.items()}  # fmt: skip


@dataclass(frozen=True)
class BlobCredentials:
    """Either a connection string or account + key (+ endpoint); repr never shows the secret."""

    account: str
    endpoint: str
    connection_string: str | None = field(default=None, repr=False)
    key: str | None = field(default=None, repr=False)


def default_config_path() -> Path:
    """The packaged config: forecasting/config in a wheel, packages/forecasting/config in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "config", here.parents[1] / "config"):
        if (candidate / "forecasting.toml").is_file():
            return candidate / "forecasting.toml"
    raise ConfigError(f"forecasting.toml not found in {here / 'config'} or {here.parents[1] / 'config'}")


def load_settings(path: Path | None = None) -> Settings:
    """Read the config (FORECASTING_CONFIG, else the packaged default) and PIPELINE_PROFILE."""
    try:
        source, data = read_settings(path, CONFIG_ENV, default_config_path)
    except SettingsError as exc:
        raise ConfigError(str(exc)) from None
    reader = _Reader(source, data)
    select = SelectSettings(
        combinations=reader.combinations("select", "combinations"),
        single_margin=reader.number("select", "single_margin", minimum=0.0, maximum=1.0),
        pool=reader.pool("select", "pool"),
        floor=reader.names("select", "floor"),
    )
    intervals = IntervalSettings(
        calibrate=reader.flag("intervals", "calibrate"),
        min_points=int(reader.number("intervals", "min_points", minimum=1, integer=True)),
    )
    report = ReportSettings(history_points=int(reader.number("report", "history_points", minimum=1, integer=True)))
    upload = UploadSettings(
        container=reader.text("upload", "container"),
        attempts=int(reader.number("upload", "attempts", minimum=1, maximum=20, integer=True)),
        connect_timeout_s=reader.number("upload", "connect_timeout_s", minimum=0.1),
        read_timeout_s=reader.number("upload", "read_timeout_s", minimum=0.1),
    )
    reader.reject_unknown(
        {"select": SelectSettings, "intervals": IntervalSettings, "report": ReportSettings, "upload": UploadSettings}
    )
    return Settings(source=source, select=select, intervals=intervals, report=report, upload=upload, profile=profile())


def check_floor(settings: Settings, models: Iterable[str], run: str) -> None:
    """Check select.floor against the models predictions run `run` holds.

    Here, not in load_settings: the model names are modelling's, known only from its output. A
    misspelt name would otherwise match nothing and silently let the benchmark be published.
    """
    known = sorted(set(models))
    for name in settings.select.floor:
        if known and name not in known:  # a run with no models is refused as such when it is built
            # The packaged file is not the user's to edit: say how to give the stage another one.
            packaged = settings.source == default_config_path()
            hint = f"; set {CONFIG_ENV} to a copy whose select.floor names one of them, or []" if packaged else ""
            raise ConfigError(
                f"{settings.source}: select.floor: unknown model {name!r} "
                f"(models in predictions run {run}: {', '.join(known)}){hint}"
            )


def profile() -> str:
    value = os.environ.get("PIPELINE_PROFILE", "local")
    if value not in PROFILES:
        raise ConfigError(f"PIPELINE_PROFILE={value!r}: choose one of {', '.join(PROFILES)}")
    return value


def container_name(settings: UploadSettings) -> str:
    """AZURE_STORAGE_CONTAINER, else the config's; checked against Azure's naming rules."""
    name = os.environ.get(CONTAINER_ENV) or settings.container
    source = CONTAINER_ENV if os.environ.get(CONTAINER_ENV) else "upload.container"
    # ASCII only: str.islower()/isdigit() pass 'é' and '²', which the service then refuses with HTTP 400.
    if not (3 <= len(name) <= 63 and _CONTAINER_NAME.fullmatch(name)):
        raise ConfigError(
            f"{source}={name!r}: a container name is 3-63 ASCII lowercase letters, digits and single hyphens, "
            "starting and ending with a letter or digit"
        )
    return name


def blob_credentials() -> BlobCredentials | None:
    """Credentials from the environment, or None when none are set at all."""
    conn = os.environ.get(CONNECTION_STRING_ENV, "").strip()
    account = os.environ.get(ACCOUNT_ENV, "").strip()
    key = os.environ.get(KEY_ENV, "").strip()
    endpoint = os.environ.get(ENDPOINT_ENV, "").strip()
    if conn:
        parts = _parse_connection_string(conn)
        account = parts.get("AccountName", "")
        endpoint = parts.get("BlobEndpoint", "")
        if not endpoint and account:
            protocol = parts.get("DefaultEndpointsProtocol", "https")
            endpoint = f"{protocol}://{account}.blob.{parts.get('EndpointSuffix', 'core.windows.net')}"
        if not endpoint:
            raise CredentialsError(f"{CONNECTION_STRING_ENV}: has neither AccountName nor BlobEndpoint")
        return BlobCredentials(
            account=account or "?", endpoint=endpoint, connection_string=conn, key=parts.get("AccountKey")
        )
    if not (account or key):
        return None
    if not account:
        raise CredentialsError(f"{KEY_ENV} is set but {ACCOUNT_ENV} is not")
    if not key:
        raise CredentialsError(f"{ACCOUNT_ENV}={account} is set but {KEY_ENV} is not")
    return BlobCredentials(account=account, endpoint=endpoint or f"https://{account}.blob.core.windows.net", key=key)


def _parse_connection_string(conn: str) -> dict[str, str]:
    parts = {}
    for item in conn.split(";"):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        if not sep:
            # Name only the position: the item could be a fragment of the key.
            raise CredentialsError(f"{CONNECTION_STRING_ENV}: item {len(parts) + 1} is not Name=Value")
        parts[name.strip()] = value.strip()
    return parts


class _Reader:
    """Typed access to the TOML tables, each error naming the file and the key."""

    def __init__(self, source: Path, data: dict) -> None:
        self.source = source
        self.data = data

    def _get(self, table: str, key: str, default: object) -> object:
        section = self.data.get(table, {})
        if not isinstance(section, dict):
            raise ConfigError(f"{self.source}: [{table}] must be a table")
        return section.get(key, default)

    def number(
        self, table: str, key: str, *, minimum: float, maximum: float | None = None, integer: bool = False
    ) -> float:
        default = getattr(_DEFAULTS[table], key)
        value = self._get(table, key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or (integer and not isinstance(value, int)):
            kind = "an integer" if integer else "a number"
            raise ConfigError(f"{self.source}: {table}.{key} must be {kind}, got {value!r}")
        # TOML has nan and inf: nan passes every bounds check (its comparisons are all false), never
        # equals itself (so every run would look new), and neither is valid JSON in inputs.json.
        if not math.isfinite(value):
            raise ConfigError(f"{self.source}: {table}.{key} must be a finite number, got {value!r}")
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
            raise ConfigError(f"{self.source}: {table}.{key}={value!r} must be {bounds}")
        return float(value)

    def flag(self, table: str, key: str) -> bool:
        value = self._get(table, key, getattr(_DEFAULTS[table], key))
        if not isinstance(value, bool):
            raise ConfigError(f"{self.source}: {table}.{key} must be true or false, got {value!r}")
        return value

    def text(self, table: str, key: str) -> str:
        value = self._get(table, key, getattr(_DEFAULTS[table], key))
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{self.source}: {table}.{key} must be a non-empty string, got {value!r}")
        return value

    def combinations(self, table: str, key: str) -> tuple[str, ...]:
        value = self._get(table, key, list(COMBINATIONS))
        if not isinstance(value, list) or any(v not in COMBINATIONS for v in value):
            raise ConfigError(
                f"{self.source}: {table}.{key} must be a list drawn from {list(COMBINATIONS)}, got {value!r}"
            )
        return tuple(dict.fromkeys(value))

    def names(self, table: str, key: str) -> tuple[str, ...]:
        value = self._get(table, key, list(getattr(_DEFAULTS[table], key)))
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"{self.source}: {table}.{key} must be a list of model names, got {value!r}")
        return tuple(dict.fromkeys(value))

    def pool(self, table: str, key: str) -> int:
        value = int(self.number(table, key, minimum=0, integer=True))
        if value == 1:
            raise ConfigError(f"{self.source}: {table}.{key}=1 combines one model; use 0 (all) or at least 2")
        return value

    def reject_unknown(self, tables: dict[str, type]) -> None:
        for table, section in self.data.items():
            if table not in tables:
                raise ConfigError(f"{self.source}: [{table}]: unknown table (allowed: {', '.join(tables)})")
            known = set(tables[table].__dataclass_fields__)
            for key in section:
                if key not in known:
                    raise ConfigError(
                        f"{self.source}: {table}.{key}: unknown key (allowed: {', '.join(sorted(known))})"
                    )


_DEFAULTS = {
    "select": SelectSettings(),
    "intervals": IntervalSettings(),
    "report": ReportSettings(),
    "upload": UploadSettings(),
}
