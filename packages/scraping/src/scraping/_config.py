"""Everything the stage is told: the series list (TOML) and the environment, read here and nowhere else.

Every error names the file (or environment variable) and the key that is wrong.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from scraping._errors import ConfigError

PROFILES = ("local", "prod")
FRED_FORMATS = ("xml", "json")
DEFAULT_FRED_BASE_URL = "https://api.stlouisfed.org/fred"
DEFAULT_TREASURY_BASE_URL = "https://home.treasury.gov"
_FRED_ID = re.compile(r"[A-Z0-9_]{1,64}")  # ids become file names, so nothing else is allowed


def default_config_path() -> Path:
    """config/series.toml: inside the installed package (the wheel puts it there), else in the checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "config", here.parents[1] / "config"):
        if (candidate / "series.toml").is_file():
            return candidate / "series.toml"
    return here.parents[1] / "config" / "series.toml"


@dataclass(frozen=True)
class HttpSettings:
    """Politeness shared by every source: one rate limiter, timeouts, retries."""

    requests_per_second: float  # 0 turns the limiter off (benchmarks against a local server)
    timeout_s: float
    max_retries: int
    backoff_s: float
    max_backoff_s: float


@dataclass(frozen=True)
class FredSettings:
    series: tuple[str, ...]
    format: str
    revision_lookback_days: int
    base_url: str
    api_key: str | None = field(repr=False)  # never printed, not even by a debugger's repr


@dataclass(frozen=True)
class TreasurySettings:
    enabled: bool
    backfill_months: int
    base_url: str


@dataclass(frozen=True)
class Config:
    path: Path
    profile: str
    http: HttpSettings
    fred: FredSettings
    treasury: TreasurySettings

    @property
    def offline(self) -> bool:
        """No key in the local profile: store the bundled dataset and touch no network."""
        return self.fred.api_key is None


def parse_series_ids(text: str, where: str) -> tuple[str, ...]:
    """'GDP, unrate' -> ('GDP', 'UNRATE'); `where` names the option or key in the error."""
    ids = tuple(part.strip().upper() for part in text.split(",") if part.strip())
    if not ids:
        raise ConfigError(f"{where}: no series ids given")
    for sid in ids:
        _check_id(sid, where)
    return ids


def load_config(path: Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read the series list at `path` (default: the packaged config/series.toml) and the environment."""
    env = os.environ if env is None else env
    path = Path(path) if path is not None else default_config_path()
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None

    _only(path, "", data, {"http", "fred", "treasury"})
    http_t = _table(path, data, "http")
    fred_t = _table(path, data, "fred")
    tres_t = _table(path, data, "treasury")
    _only(path, "http", http_t, {"requests_per_second", "timeout_s", "max_retries", "backoff_s", "max_backoff_s"})
    _only(path, "fred", fred_t, {"series", "format", "revision_lookback_days"})
    _only(path, "treasury", tres_t, {"enabled", "backfill_months"})

    http = HttpSettings(
        requests_per_second=_number(path, "http.requests_per_second", http_t.get("requests_per_second", 2.0)),
        timeout_s=_positive(path, "http.timeout_s", http_t.get("timeout_s", 20.0)),
        max_retries=_count(path, "http.max_retries", http_t.get("max_retries", 4)),
        backoff_s=_number(path, "http.backoff_s", http_t.get("backoff_s", 1.0)),
        max_backoff_s=_number(path, "http.max_backoff_s", http_t.get("max_backoff_s", 60.0)),
    )

    series = fred_t.get("series", [])
    if not isinstance(series, list) or not all(isinstance(s, str) for s in series):
        raise ConfigError(f"{path}: fred.series must be a list of FRED series ids")
    ids = tuple(s.strip().upper() for s in series)
    for sid in ids:
        _check_id(sid, f"{path}: fred.series")
    if len(set(ids)) != len(ids):
        dupes = sorted({s for s in ids if ids.count(s) > 1})
        raise ConfigError(f"{path}: fred.series lists {', '.join(dupes)} more than once")
    fmt = fred_t.get("format", "xml")
    if fmt not in FRED_FORMATS:
        raise ConfigError(f"{path}: fred.format must be one of {', '.join(FRED_FORMATS)}, not {fmt!r}")

    lookback = _count(path, "fred.revision_lookback_days", fred_t.get("revision_lookback_days", 400))

    profile = env.get("PIPELINE_PROFILE") or "local"
    if profile not in PROFILES:
        raise ConfigError(f"PIPELINE_PROFILE={profile!r}: choose one of {', '.join(PROFILES)}")
    api_key = _api_key(env)
    if api_key is None and profile == "prod":
        raise ConfigError(
            "FRED_API_KEY (or FRED_API_KEY_FILE) is not set; the prod profile never falls back to the bundled dataset"
        )

    enabled = tres_t.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"{path}: treasury.enabled must be true or false")
    return Config(
        path=path,
        profile=profile,
        http=http,
        fred=FredSettings(
            series=ids,
            format=fmt,
            revision_lookback_days=lookback,
            base_url=_base_url(env, "FRED_API_BASE_URL", DEFAULT_FRED_BASE_URL),
            api_key=api_key,
        ),
        treasury=TreasurySettings(
            enabled=enabled,
            backfill_months=_count(path, "treasury.backfill_months", tres_t.get("backfill_months", 24), minimum=1),
            base_url=_base_url(env, "TREASURY_BASE_URL", DEFAULT_TREASURY_BASE_URL),
        ),
    )


def _api_key(env: Mapping[str, str]) -> str | None:
    key = env.get("FRED_API_KEY", "").strip()
    source = "FRED_API_KEY"
    if not key and env.get("FRED_API_KEY_FILE"):
        key_file = Path(env["FRED_API_KEY_FILE"])
        source = f"FRED_API_KEY_FILE={key_file}"
        try:
            lines = key_file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read the key file: {exc.strerror}") from None
        key = lines[0].strip() if lines else ""
        if not key:
            raise ConfigError(f"{source}: the first line is empty; it must hold the FRED API key")
    if not key:
        return None
    if any(c.isspace() or not c.isprintable() for c in key):
        raise ConfigError(f"{source}: the key contains spaces or control characters")
    return key


def _base_url(env: Mapping[str, str], name: str, default: str) -> str:
    url = env.get(name) or default
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
        raise ConfigError(f"{name}={url!r}: must be an http:// or https:// URL")
    try:
        urlsplit(url).port  # noqa: B018 - raises on a bad host or port, as httpx would on the first request
    except ValueError as exc:
        raise ConfigError(f"{name}={url!r}: not a valid URL ({exc})") from None
    return url.rstrip("/")


def _check_id(sid: str, where: str) -> None:
    if not _FRED_ID.fullmatch(sid):
        raise ConfigError(f"{where}: {sid!r} is not a FRED series id (letters, digits and '_' only)")


def _table(path: Path, data: dict, key: str) -> dict:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: {key} must be a table ([{key}])")
    return value


def _only(path: Path, prefix: str, table: dict, allowed: set[str]) -> None:
    for key in sorted(set(table) - allowed):
        name = f"{prefix}.{key}" if prefix else key
        raise ConfigError(f"{path}: {name}: unknown key (allowed: {', '.join(sorted(allowed))})")


def _number(path: Path, key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"{path}: {key} must be a number >= 0, not {value!r}")
    return float(value)


def _positive(path: Path, key: str, value: object) -> float:
    number = _number(path, key, value)
    if number == 0:
        raise ConfigError(f"{path}: {key} must be greater than 0")
    return number


def _count(path: Path, key: str, value: object, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{path}: {key} must be a whole number >= {minimum}, not {value!r}")
    return value
