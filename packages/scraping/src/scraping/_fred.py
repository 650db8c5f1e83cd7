"""FRED: fredapi's request building and XML parsing, carried over our polite httpx fetcher.

fredapi fetches with urllib (no timeout) and turns every HTTP error into a bare ValueError,
so the subclass below replaces only its one fetching method; everything else is fredapi's.
FRED's JSON form (file_type=json) is the alternative wire format (`fred.format = "json"`).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import date, datetime

import httpx
import numpy as np
import pandas as pd
from fredapi import Fred

from scraping._config import FredSettings
from scraping._errors import MalformedAnswer, SourceError
from scraping._http import Fetcher

# FRED's frequency_short -> the pandas-style code in the manifest. FRED's plain "Daily" series are
# business-daily (no weekend observations); "Daily, 7-Day" ones are calendar-daily.
_FREQUENCIES = {"D": "B", "W": "W", "M": "M", "Q": "Q", "A": "A"}


@dataclass(frozen=True)
class SeriesMeta:
    id: str
    title: str
    units: str
    frequency: str
    seasonal_adjustment: str
    last_updated: str | None


class FredSource:
    """Metadata and observations of one FRED series at a time."""

    def __init__(self, settings: FredSettings, fetcher: Fetcher) -> None:
        if settings.api_key is None:
            raise ValueError("FredSource needs an API key")
        self._settings = settings
        self._fetcher = fetcher
        self._fred = _FredOverFetcher(settings.api_key, settings.base_url, fetcher)

    def info(self, series_id: str) -> SeriesMeta:
        if self._settings.format == "json":
            payload = self._json("series", series_id, {})
            try:
                attrs = payload["seriess"][0]
            except (KeyError, IndexError, TypeError):
                raise MalformedAnswer(f"FRED series {series_id}: JSON answer has no 'seriess' entry") from None
        else:
            try:
                attrs = dict(self._fred.get_series_info(series_id))
            except ValueError as exc:  # fredapi's "No info exists for series id"
                raise MalformedAnswer(f"FRED series {series_id}: {exc}") from None
        return _meta(series_id, attrs)

    def observations(self, series_id: str, start: date | None) -> pd.DataFrame:
        """`date` (datetime64[ns]) and `value` (float64, NaN for FRED's "."), from `start` on if given."""
        what = f"FRED observations {series_id}"
        try:
            if self._settings.format == "json":
                params = {"observation_start": start.isoformat()} if start else {}
                rows = self._json("series/observations", series_id, params).get("observations")
                if not isinstance(rows, list):
                    raise MalformedAnswer(f"{what}: JSON answer has no 'observations' list")
                dates = pd.to_datetime([row["date"] for row in rows], format="%Y-%m-%d")
                values = [np.nan if row["value"] == Fred.nan_char else row["value"] for row in rows]
            else:
                series = self._fred.get_series(series_id, observation_start=start)
                dates, values = pd.DatetimeIndex(series.index), series.to_numpy(dtype="float64")
            frame = pd.DataFrame({"date": dates, "value": pd.to_numeric(values)})
        # fredapi raises ValueError for a value that is not a number; JSON rows may lack keys
        except (ValueError, TypeError, KeyError) as exc:
            raise MalformedAnswer(f"{what}: {type(exc).__name__}: {exc}") from None
        return frame.astype({"date": "datetime64[ns]", "value": "float64"})

    def _json(self, path: str, series_id: str, params: dict[str, str]) -> dict:
        url = f"{self._settings.base_url}/{path}"
        query = {"series_id": series_id, "file_type": "json", **params, "api_key": self._settings.api_key or ""}
        response = self._fetcher.get(url, query, what=_what(path, series_id), error_detail=_error_detail)
        try:
            payload = json.loads(response.content)
        except ValueError as exc:
            raise MalformedAnswer(f"{_what(path, series_id)}: invalid or truncated JSON ({exc})") from None
        if not isinstance(payload, dict):
            raise MalformedAnswer(f"{_what(path, series_id)}: JSON answer is not an object")
        return payload


class _FredOverFetcher(Fred):
    """fredapi.Fred whose urllib fetch is replaced by the run's Fetcher (timeouts, retries, rate limit)."""

    def __init__(self, api_key: str, base_url: str, fetcher: Fetcher) -> None:
        super().__init__(api_key=api_key)
        self.root_url = base_url
        self._fetcher = fetcher

    def _Fred__fetch_data(self, url: str) -> ET.Element:  # fredapi's name-mangled private fetch
        parsed = httpx.URL(url)
        path = parsed.path.removeprefix(httpx.URL(self.root_url).path).strip("/")
        what = _what(path, parsed.params.get("series_id", "?"))
        response = self._fetcher.get(url, {"api_key": self.api_key}, what=what, error_detail=_error_detail)
        try:
            return ET.fromstring(response.content)
        except ET.ParseError as exc:
            raise MalformedAnswer(f"{what}: invalid or truncated XML ({exc})") from None

    def _parse(self, date_str: str, format: str = "%Y-%m-%d") -> datetime:
        # fredapi calls pd.to_datetime once per observation; for FRED's ISO dates fromisoformat gives the
        # same result far faster (it dominated the stage's CPU time on long daily series).
        if format == "%Y-%m-%d":
            return datetime.fromisoformat(date_str)
        return datetime.strptime(date_str, format)


def _what(path: str, series_id: str) -> str:
    return f"FRED {'observations' if path.endswith('observations') else 'series'} {series_id}"


def _error_detail(response: httpx.Response) -> str | None:
    """FRED's own message from an error body: XML <error message=...> or JSON {"error_message": ...}."""
    text = response.content[:4000]
    try:
        return str(json.loads(text)["error_message"])
    except (ValueError, KeyError, TypeError):
        pass
    try:
        return ET.fromstring(text).get("message")
    except ET.ParseError:
        return None


def _meta(series_id: str, attrs: dict) -> SeriesMeta:
    short = str(attrs.get("frequency_short", ""))
    long = str(attrs.get("frequency", ""))
    frequency = "D" if short == "D" and "7-Day" in long else _FREQUENCIES.get(short)
    if frequency is None:
        raise SourceError(f"FRED series {series_id}: frequency {long or short!r} is not supported (D, W, M, Q, A)")
    return SeriesMeta(
        id=str(attrs.get("id", series_id)),
        title=str(attrs.get("title", "")),
        units=str(attrs.get("units", "")),
        frequency=frequency,
        seasonal_adjustment=str(attrs.get("seasonal_adjustment", "")),
        last_updated=_iso_timestamp(attrs.get("last_updated")),
    )


def _iso_timestamp(value: object) -> str | None:
    """FRED's '2024-10-30 07:52:02-05' as ISO-8601 '2024-10-30T07:52:02-05:00'."""
    if not value:
        return None
    try:
        return pd.Timestamp(str(value)).isoformat()
    except ValueError:
        return str(value)
