"""Everything the stage is told: the series list (TOML) and the environment, read here and nowhere else.

Every error names the file (or environment variable) and the key that is wrong.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from urllib.parse import urlsplit

from storage_links import SettingsError, read_settings

from scraping._errors import ConfigError
from scraping._html_table import Column, TableSource, TableSpec

PROFILES = ("local", "prod")
FRED_FORMATS = ("xml", "json")
DEFAULT_FRED_BASE_URL = "https://api.stlouisfed.org/fred"
DEFAULT_TREASURY_BASE_URL = "https://home.treasury.gov"
CONFIG_ENV = "SCRAPING_CONFIG"  # path of a TOML file that replaces the packaged series list
_FRED_ID = re.compile(r"[A-Z0-9_]{1,64}")  # ids become file names, so nothing else is allowed
_HTML_NAME = re.compile(r"[a-z0-9_]{1,64}")  # html/<name>.parquet
_COLUMN_NAME = re.compile(r"[A-Za-z0-9_.]{1,64}")
FREQUENCIES = ("D", "B", "W", "M", "Q", "A")  # the manifest's codes, as FRED's are mapped
_HTML_KEYS = {
    *("name", "title", "units", "frequency", "seasonal_adjustment", "url", "table", "rows", "empty"),
    *("date", "columns", "missing", "backfill_months"),
}
_HTML_MISSING = ("", "N/A", "NA", "-", "\u2014")  # a cell holding one of these is a missing value
# Bounds on the windows counted back from today: a century covers any series, and dates stay in range.
_MAX_DAYS = 36_600
_MAX_MONTHS = 1_200


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
    html: tuple[TableSource, ...] = ()  # the [[html]] tables, fetched like the Treasury curve

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
    """Read the series list at `path` (else SCRAPING_CONFIG, else the packaged config/series.toml)
    and the environment."""
    env = os.environ if env is None else env
    try:
        path, data = read_settings(path, CONFIG_ENV, default_config_path, env)
    except SettingsError as exc:
        raise ConfigError(str(exc)) from None

    _only(path, "", data, {"http", "fred", "treasury", "html"})
    http_t = _table(path, data, "http")
    fred_t = _table(path, data, "fred")
    tres_t = _table(path, data, "treasury")
    _only(path, "http", http_t, {"requests_per_second", "timeout_s", "max_retries", "backoff_s", "max_backoff_s"})
    _only(path, "fred", fred_t, {"series", "format", "revision_lookback_days"})
    _only(path, "treasury", tres_t, {"enabled", "backfill_months"})

    http = HttpSettings(
        requests_per_second=_number(
            path, "http.requests_per_second", http_t.get("requests_per_second", 2.0), maximum=1000
        ),
        timeout_s=_positive(path, "http.timeout_s", http_t.get("timeout_s", 20.0), maximum=600),
        max_retries=_count(path, "http.max_retries", http_t.get("max_retries", 4), maximum=20),
        backoff_s=_number(path, "http.backoff_s", http_t.get("backoff_s", 1.0), maximum=600),
        max_backoff_s=_number(path, "http.max_backoff_s", http_t.get("max_backoff_s", 60.0), maximum=3600),
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

    lookback = _count(path, "fred.revision_lookback_days", fred_t.get("revision_lookback_days", 400), maximum=_MAX_DAYS)

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
            backfill_months=_count(
                path, "treasury.backfill_months", tres_t.get("backfill_months", 24), minimum=1, maximum=_MAX_MONTHS
            ),
            base_url=_base_url(env, "TREASURY_BASE_URL", DEFAULT_TREASURY_BASE_URL),
        ),
        html=_html_sources(path, data.get("html", [])),
    )


def _html_sources(path: Path, tables: object) -> tuple[TableSource, ...]:
    """The [[html]] tables, each checked whole: selectors, URL template, date format, columns."""
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ConfigError(f"{path}: html must be an array of tables ([[html]])")
    sources, names = [], set()
    for number, table in enumerate(tables):
        name = table.get("name")
        if not isinstance(name, str) or not _HTML_NAME.fullmatch(name):
            raise ConfigError(f"{path}: html[{number}].name must be 1-64 of a-z, 0-9 and '_', not {name!r}")
        if name in names:
            raise ConfigError(f"{path}: html.{name}: the name is used twice")
        names.add(name)
        sources.append(_html_source(path, f"html.{name}", table))
    return tuple(sources)


def _html_source(path: Path, where: str, table: dict) -> TableSource:
    _only(path, where, table, _HTML_KEYS)
    for key in ("url", "table", "frequency", "date", "columns"):
        if key not in table:
            raise ConfigError(f"{path}: {where}.{key} is missing")
    text = {key: _text(path, f"{where}.{key}", table.get(key, default)) for key, default in (
        ("title", table["name"]), ("units", ""), ("seasonal_adjustment", ""), ("url", ""), ("frequency", ""),
    )}  # fmt: skip
    if text["frequency"] not in FREQUENCIES:
        allowed = ", ".join(FREQUENCIES)
        raise ConfigError(f"{path}: {where}.frequency must be one of {allowed}, not {text['frequency']!r}")
    url = _url_template(path, f"{where}.url", text["url"])
    selectors = {
        key: _selector(path, f"{where}.{key}", table.get(key, default))
        for key, default in (("table", None), ("rows", "tbody tr"), ("empty", None))
        if key in table or default is not None
    }
    date_t = table["date"]
    if not isinstance(date_t, dict):
        raise ConfigError(f"{path}: {where}.date must be a table (header or class, and format)")
    _only(path, f"{where}.date", date_t, {"header", "class", "format"})
    date_column = _html_column(path, f"{where}.date", "date", {k: v for k, v in date_t.items() if k != "format"})
    date_format = _date_format(path, f"{where}.date.format", date_t.get("format"))
    columns_t = table["columns"]
    if not isinstance(columns_t, dict) or not columns_t:
        raise ConfigError(f"{path}: {where}.columns must be a table of stored name = header (at least one)")
    for name in columns_t:
        if not _COLUMN_NAME.fullmatch(name) or name == "date":
            raise ConfigError(f"{path}: {where}.columns.{name}: a stored name is 1-64 of letters, digits, '_', '.' "
                              "(and not 'date')")  # fmt: skip
    columns = tuple(_html_column(path, f"{where}.columns.{n}", n, spec) for n, spec in columns_t.items())
    missing = table.get("missing", list(_HTML_MISSING))
    if not isinstance(missing, list) or not all(isinstance(m, str) for m in missing):
        raise ConfigError(f"{path}: {where}.missing must be a list of strings")
    spec = TableSpec(
        title=text["title"],
        url_template=url,
        table_selector=selectors["table"],
        row_selector=selectors["rows"],
        empty_selector=selectors.get("empty"),
        date_column=date_column,
        date_format=date_format,
        columns=columns,
        missing_markers=frozenset(missing),
    )
    if "backfill_months" in table and not spec.monthly:
        raise ConfigError(f"{path}: {where}.backfill_months: only for a url with {{month}} (one page per month)")
    meta = {
        "source": "html",
        "id": table["name"],
        "title": text["title"],
        "units": text["units"],
        "frequency": text["frequency"],
        "seasonal_adjustment": text["seasonal_adjustment"],
        "last_updated": None,  # a page does not say; fetched_at tells when it last changed here
    }
    backfill = _count(
        path, f"{where}.backfill_months", table.get("backfill_months", 24), minimum=1, maximum=_MAX_MONTHS
    )
    return TableSource(f"html/{table['name']}", spec, meta, "", backfill)


def _html_column(path: Path, where: str, name: str, spec: object) -> Column:
    """A column given by its header text ("10 Yr"), or a table of header and/or class and required."""
    if isinstance(spec, str):
        spec = {"header": spec}
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: {where} must be a header text or a table (header, class, required)")
    _only(path, where, spec, {"header", "class", "required"})
    header, cell_class = (_text(path, f"{where}.{k}", spec.get(k, "")).strip() for k in ("header", "class"))
    if not header and not cell_class:
        raise ConfigError(f"{path}: {where} needs a header or a class to find the column by")
    required = spec.get("required", True)
    if not isinstance(required, bool):
        raise ConfigError(f"{path}: {where}.required must be true or false")
    return Column(name, cell_class, header, required)


def _text(path: Path, key: str, value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{path}: {key} must be a string, not {value!r}")
    return value


def _url_template(path: Path, key: str, url: str) -> str:
    try:
        example = url.format(base="", month=date(2024, 1, 1))
    except (KeyError, IndexError, ValueError, TypeError, AttributeError) as exc:  # {month[0]}, {month.x}...
        raise ConfigError(f"{path}: {key}: only {{month}} (with a date format, as {{month:%Y%m}}) may be filled in "
                          f"({type(exc).__name__}: {exc})") from None  # fmt: skip
    _check_url(example, f"{path}: {key}")
    return url


def _selector(path: Path, key: str, selector: object) -> str:
    from selectolax.lexbor import LexborHTMLParser, SelectolaxError

    selector = _text(path, key, selector)
    try:
        LexborHTMLParser("<html></html>").css_first(selector)
    except SelectolaxError:
        raise ConfigError(f"{path}: {key}: {selector!r} is not a CSS selector") from None
    return selector


def _date_format(path: Path, key: str, fmt: object) -> str:
    fmt = _text(path, key, fmt if fmt is not None else "%Y-%m-%d")
    try:
        datetime.strptime(datetime(2024, 1, 31).strftime(fmt), fmt)
    except ValueError:
        raise ConfigError(f"{path}: {key}: {fmt!r} is not a date format that reads back (as %m/%d/%Y)") from None
    if "%" not in fmt:
        raise ConfigError(f"{path}: {key}: {fmt!r} has no date fields (as %Y-%m-%d)")
    return fmt


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
        except UnicodeDecodeError:  # PowerShell's `echo key > file` writes UTF-16
            raise ConfigError(f"{source}: the key file is not UTF-8 text") from None
        key = lines[0].strip() if lines else ""
        if not key:
            raise ConfigError(f"{source}: the first line is empty; it must hold the FRED API key")
    if not key:
        return None
    if not key.isascii() or not key.isalnum():
        # FRED's keys are 32 lower-case letters and digits. Anything else is a paste gone wrong (quotes,
        # spaces), and it would travel URL-encoded, in a form redaction could miss.
        raise ConfigError(f"{source}: the key has characters other than letters and digits")
    return key


def _base_url(env: Mapping[str, str], name: str, default: str) -> str:
    url = env.get(name) or default
    _check_url(url, f"{name}={url!r}")
    return url.rstrip("/")


def _check_url(url: str, where: str) -> None:
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
        raise ConfigError(f"{where}: must be an http:// or https:// URL")
    try:
        urlsplit(url).port  # noqa: B018 - raises on a bad host or port, as httpx would on the first request
    except ValueError as exc:
        raise ConfigError(f"{where}: not a valid URL ({exc})") from None


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


def _number(path: Path, key: str, value: object, *, maximum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= maximum:  # NaN too
        raise ConfigError(f"{path}: {key} must be a number from 0 to {maximum:g}, not {value!r}")
    return float(value)


def _positive(path: Path, key: str, value: object, *, maximum: float) -> float:
    number = _number(path, key, value, maximum=maximum)
    if number == 0:
        raise ConfigError(f"{path}: {key} must be greater than 0")
    return number


def _count(path: Path, key: str, value: object, *, minimum: int = 0, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ConfigError(f"{path}: {key} must be a whole number from {minimum} to {maximum}, not {value!r}")
    return value
