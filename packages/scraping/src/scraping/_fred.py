"""FRED: fredapi's requests and metadata parsing, carried over our polite httpx fetcher.

fredapi fetches with urllib (no timeout) and turns every HTTP error into a bare ValueError,
so the subclass below replaces its fetching method. Its observation parsing (an ElementTree,
then a Python loop per row) is replaced too: on long series it was most of the stage's CPU
time. _xml_observations reads FRED's layout with numpy on the raw bytes (expat reads any
other), and _columns converts whole columns.
FRED's JSON form (file_type=json) is the alternative wire format (`fred.format = "json"`).
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import date, datetime
from urllib.parse import parse_qs
from xml.parsers import expat

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
from fredapi import Fred

from scraping._config import FredSettings
from scraping._errors import MalformedAnswer, SourceError
from scraping._http import Fetcher

# FRED's frequency_short -> the pandas-style code in the manifest. FRED's plain "Daily" series are
# business-daily (no weekend observations); "Daily, 7-Day" ones are calendar-daily.
_FREQUENCIES = {"D": "B", "W": "W", "M": "M", "Q": "Q", "A": "A"}
# FRED's XML observation line: `\n  <observation realtime_start="…" realtime_end="…" date="YYYY-MM-DD" value="…"/>`.
# The realtime period is the request's, the same on every line, so each line's head (up to its date) is too.
_LINE_HEAD = re.compile(rb'\n  <observation realtime_start="[^"<&\x00-\x1f]*" realtime_end="[^"<&\x00-\x1f]*" date="')
# After the head, the date and the value's opening: each byte's lowest allowed value and how far above it
# it may be (a digit, or exactly this byte); uint8 arithmetic wraps what is below the lowest past any span.
_DATE_THEN_VALUE = b'0000-00-00" value="'
_DATE_THEN_VALUE_SPAN = bytes([9, 9, 9, 9, 0, 9, 9, 0, 9, 9]) + bytes(9)
_LINE_END = b'"/>'
_LINE_END_BYTES = np.frombuffer(_LINE_END, np.uint8)
_DOCUMENT_END = re.compile(rb"\n</observations>[ \t\r\n]*")  # XML's white space only
# What expat (under ElementTree too) raises for a document it cannot read: besides its own errors,
# LookupError for an unknown declared encoding and ValueError for a multi-byte one (shift_jis).
_XML_ERRORS = (expat.ExpatError, ET.ParseError, LookupError, ValueError)
# The part of FRED's JSON observations answer that is read; other fields are ignored.
_JSON_OBSERVATIONS = pa.schema([("observations", pa.list_(pa.struct([("date", pa.string()), ("value", pa.string())])))])


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
            what = _what("series", series_id)
            payload = _json_object(what, self._json_get("series", series_id, {}))
            seriess = payload.get("seriess")
            attrs = seriess[0] if isinstance(seriess, list) and seriess else None
            if not isinstance(attrs, dict):
                raise MalformedAnswer(f"{what}: JSON answer has no 'seriess' entry")
        else:
            attrs = self._fred.series_attributes(series_id)
        return _meta(series_id, attrs)

    def fetch_observations(self, series_id: str, start: date | None) -> bytes:
        """The answer to the observations request, from `start` on if given, for parse_observations."""
        if self._settings.format == "json":
            params = {"observation_start": start.isoformat()} if start else {}
            return self._json_get("series/observations", series_id, params)
        return self._fred.observations_body(series_id, start)

    def parse_observations(self, series_id: str, body: bytes) -> pa.Table:
        """`date` (timestamp[ns]) and `value` (float64, NaN for FRED's ".") from an observations answer."""
        what = _what("series/observations", series_id)
        if self._settings.format == "json":
            dates, values = _json_observations(what, body)
        else:
            dates, values = _xml_observations(what, body)
        return _columns(what, dates, values)

    def _json_get(self, path: str, series_id: str, params: dict[str, str]) -> bytes:
        url = f"{self._settings.base_url}/{path}"
        query = {"series_id": series_id, "file_type": "json", **params, "api_key": self._settings.api_key or ""}
        return self._fetcher.get(url, query, what=_what(path, series_id), error_detail=_error_detail).content


class _FredOverFetcher(Fred):
    """fredapi.Fred whose urllib fetch is replaced by the run's Fetcher (timeouts, retries, rate limit)."""

    def __init__(self, api_key: str, base_url: str, fetcher: Fetcher) -> None:
        super().__init__(api_key=api_key)
        self.root_url = base_url
        self._fetcher = fetcher

    def _Fred__fetch_data(self, url: str) -> ET.Element:  # fredapi's name-mangled private fetch
        path, _, query = url.removeprefix(self.root_url).partition("?")
        what = _what(path, parse_qs(query).get("series_id", ["?"])[0])
        body = self._fetch(url, what)
        try:
            return ET.fromstring(body)
        except _XML_ERRORS as exc:
            raise MalformedAnswer(f"{what}: invalid or truncated XML ({exc})") from None

    def series_attributes(self, series_id: str) -> dict[str, str]:
        """fredapi's get_series_info as a dict: its request and its reading, without the pandas Series
        it builds (a millisecond a series, more than the rest of the answer's handling)."""
        root = self._Fred__fetch_data(f"{self.root_url}/series?series_id={series_id}")
        if not len(root):
            raise MalformedAnswer(f"FRED series {series_id}: the answer lists no series")
        return dict(root[0].attrib)

    def observations_body(self, series_id: str, start: date | None) -> bytes:
        """fredapi's get_series request (its parsing is _xml_observations)."""
        url = f"{self.root_url}/series/observations?series_id={series_id}"
        if start is not None:
            url += f"&observation_start={start.isoformat()}"
        return self._fetch(url, _what("series/observations", series_id))

    def _fetch(self, url: str, what: str) -> bytes:
        return self._fetcher.get(url, {"api_key": self.api_key}, what=what, error_detail=_error_detail).content


def _json_observations(what: str, body: bytes) -> tuple[pa.Array, pa.Array]:
    """The date and value fields of each observation, as string arrays.

    pyarrow's JSON reader (RapidJSON, outside the GIL) reads straight into columns: no Python
    object per observation, and the fetch thread runs meanwhile. A field of another type than
    string is a parse error; an absent one is a null (which _columns rejects).
    """
    parse = pa_json.ParseOptions(
        explicit_schema=_JSON_OBSERVATIONS, unexpected_field_behavior="ignore", newlines_in_values=True
    )
    # One block for the whole answer (one object may not straddle two); smaller blocks are slower.
    whole = pa_json.ReadOptions(use_threads=False, block_size=max(1 << 20, len(body) + 1))
    try:
        table = pa_json.read_json(pa.BufferReader(body), read_options=whole, parse_options=parse)
    except pa.ArrowInvalid as exc:
        raise MalformedAnswer(f"{what}: invalid or truncated JSON, or not laid out as FRED's ({exc})") from None
    observations = table.column("observations")
    if table.num_rows != 1 or observations.null_count:
        raise MalformedAnswer(f"{what}: JSON answer has no 'observations' list")
    rows = observations.chunk(0).flatten()
    return rows.field("date"), rows.field("value")


def _xml_observations(what: str, body: bytes) -> tuple[pa.Array, pa.Array]:
    """The date and value attributes of each <observation>, as string arrays.

    FRED's own layout is read by _fred_layout_observations; any other (valid or not) by expat.
    """
    columns = _fred_layout_observations(body)
    return columns if columns is not None else _expat_observations(what, body)


def _fred_layout_observations(body: bytes) -> tuple[pa.Array, pa.Array] | None:
    """The observations of an answer laid out exactly as FRED writes it, or None for any other.

    FRED writes one observation a line, always in one form: a head that is the same on every line
    (_LINE_HEAD), the date, the value, _LINE_END. numpy finds the line breaks, checks each line's
    fixed bytes in one pass over a row per line, and cuts the values from between: a fixed number
    of array operations per answer, none per observation, so a long answer costs little and takes
    few turns with the fetch thread for the GIL. What it accepts is checked: UTF-8, no document
    type declaration (which could change how attributes read) and no entity reference, the root's
    own count attribute (read by expat) matching the lines, every byte of every line but the
    values', values without markup, quotes or control bytes, and the document's end.
    Anything else returns None and is left to expat, which reads every valid form and reports the
    invalid ones.
    """
    first = body.find(b"\n  <observation ")
    head = _LINE_HEAD.match(body, first) if first >= 0 else None
    end = body.rfind(b"\n</observations>")
    if head is None or end < first or not _DOCUMENT_END.fullmatch(body, end) or b"&" in body:
        return None
    if b"<!" in body[:first] or not (body.isascii() or _is_utf8(body)):
        return None
    count = _declared_count(body[:first])
    raw = np.frombuffer(body, np.uint8)
    starts = np.flatnonzero(raw[first:end] == ord("\n")) + first
    if not count or len(starts) != count:
        return None
    head_length = head.end() - first
    value_ends = np.append(starts[1:], end) - len(_LINE_END)
    value_starts = starts + (head_length + len(_DATE_THEN_VALUE))
    if (value_ends < value_starts).any():  # a line too short to hold its fixed bytes
        return None
    # A row per line: its head, its date and the value's opening, against the lowest bytes and spans.
    low = np.frombuffer(head.group() + _DATE_THEN_VALUE, np.uint8)
    span = np.frombuffer(bytes(head_length) + _DATE_THEN_VALUE_SPAN, np.uint8)
    rows = _rows(raw, starts, len(low))
    if not (((rows - low) <= span).all() and (_rows(raw, value_ends, len(_LINE_END)) == _LINE_END_BYTES).all()):
        return None
    values = _cut(raw, value_starts, value_ends)
    # In a value, '<' or '"' makes the XML invalid (or ends it elsewhere), and expat reads a tab or
    # line break as a space.
    characters = np.frombuffer(values.buffers()[2], np.uint8)
    if np.count_nonzero((characters < ord(" ")) | (characters == ord('"')) | (characters == ord("<"))):
        return None
    day = np.ascontiguousarray(rows[:, head_length : head_length + 10])
    offsets = np.arange(0, 10 * count + 1, 10, np.int32)
    dates = pa.StringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(day))
    return dates, values


def _is_utf8(body: bytes) -> bool:
    """Whether `body` is UTF-8, checked by pyarrow in place (no copy)."""
    offsets = pa.py_buffer(np.array([0, len(body)], np.int32))
    try:
        pa.StringArray.from_buffers(1, offsets, pa.py_buffer(body)).validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _rows(raw: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """raw[s : s + width] for each s in `starts`, as the rows of one array."""
    # Every window of `width` bytes, a view of raw (sliding_window_view's checks cost more than the gather).
    return np.ndarray((len(raw) - width + 1, width), np.uint8, raw, 0, (1, 1))[starts]


def _cut(raw: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> pa.Array:
    """raw[starts[i]:ends[i]] for each i, as one string array (the bytes are known to be UTF-8)."""
    lengths = ends - starts
    offsets = np.zeros(len(starts) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    picked = raw[np.arange(offsets[-1]) + np.repeat(starts - offsets[:-1], lengths)]
    return pa.StringArray.from_buffers(len(starts), pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(picked))


def _declared_count(head: bytes) -> int | None:
    """The count attribute of the <observations> root that `head` opens, or None.

    Read as bytes, so that expat honours (or refuses) the encoding the XML declaration names.
    """
    count: list[str | None] = []

    def root(name: str, attrs: dict[str, str]) -> None:
        if not count and name == "observations":
            count.append(attrs.get("count"))

    parser = expat.ParserCreate()
    parser.StartElementHandler = root
    try:
        parser.Parse(head + b"</observations>", True)
    except _XML_ERRORS:
        return None
    return int(count[0]) if count and count[0] and count[0].isdigit() else None


def _expat_observations(what: str, body: bytes) -> tuple[pa.Array, pa.Array]:
    """Any valid XML form: expat hands over each element's attributes and the two wanted are kept."""
    dates: list[str | None] = []
    values: list[str | None] = []

    def keep(name: str, attrs: dict[str, str]) -> None:
        if name == "observation":
            dates.append(attrs.get("date"))
            values.append(attrs.get("value"))

    parser = expat.ParserCreate()
    parser.StartElementHandler = keep
    try:
        parser.Parse(body, True)
    except _XML_ERRORS as exc:
        raise MalformedAnswer(f"{what}: invalid or truncated XML ({exc})") from None
    return pa.array(dates, pa.string()), pa.array(values, pa.string())


def _json_object(what: str, body: bytes) -> dict:
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise MalformedAnswer(f"{what}: invalid or truncated JSON ({exc})") from None
    if not isinstance(payload, dict):
        raise MalformedAnswer(f"{what}: JSON answer is not an object")
    return payload


def _columns(what: str, day: pa.Array, raw: pa.Array) -> pa.Table:
    """FRED's date and value strings as the stored columns, each converted whole by pyarrow.

    Dates must be ISO (YYYY-MM-DD) and within datetime64[ns]; a value is FRED's "." (missing: NaN)
    or a number. Anything else, or a date or value that is absent, is a MalformedAnswer.
    """
    if day.null_count or raw.null_count:
        raise MalformedAnswer(f"{what}: an observation lacks its date or value")
    try:
        day = day.cast(pa.date32()).cast(pa.timestamp("ns"))
    except pa.ArrowInvalid as exc:
        raise MalformedAnswer(f"{what}: a date is not YYYY-MM-DD or is out of range ({exc})") from None
    try:
        value = pc.if_else(pc.equal(raw, Fred.nan_char), "nan", raw).cast(pa.float64())
    except pa.ArrowInvalid as exc:
        raise MalformedAnswer(f"{what}: a value is not a number ({exc})") from None
    return pa.table({"date": day, "value": value})


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
    except _XML_ERRORS:
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
        return datetime.fromisoformat(str(value)).isoformat()
    except ValueError:
        return str(value)
