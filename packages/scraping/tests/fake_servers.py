"""A real HTTP server on loopback that speaks FRED's `series` and `series/observations` (XML and JSON)
and serves Treasury-style TextView pages and any other page put in `pages`, with faults scripted
per series (or "treasury", or a page's path).

Tests (and bench/bench_scraping.py) start it, point FRED_API_BASE_URL / TREASURY_BASE_URL at it,
and read back every request it saw, with its arrival time.
"""

from __future__ import annotations

import calendar
import json
import ssl
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit
from xml.sax.saxutils import quoteattr

VALID_KEY = "abcdef0123456789abcdef0123456789"  # FRED keys are 32 lowercase hex-like characters
TEXTVIEW = "/resource-center/data-chart-center/interest-rates/TextView"
# (stored name, Drupal field, header) as on home.treasury.gov
MATURITIES = [
    ("1mo", "1month", "1 Mo"),
    ("1.5mo", "1-5month", "1.5 Mo"),
    ("2mo", "2month", "2 Mo"),
    ("3mo", "3month", "3 Mo"),
    ("4mo", "4month", "4 Mo"),
    ("6mo", "6month", "6 Mo"),
    ("1yr", "1year", "1 Yr"),
    ("2yr", "2year", "2 Yr"),
    ("3yr", "3year", "3 Yr"),
    ("5yr", "5year", "5 Yr"),
    ("7yr", "7year", "7 Yr"),
    ("10yr", "10year", "10 Yr"),
    ("20yr", "20year", "20 Yr"),
    ("30yr", "30year", "30 Yr"),
]


@dataclass
class FakeSeries:
    id: str
    observations: list[tuple[str, str]]  # (YYYY-MM-DD, value or ".")
    title: str = "A test series"
    units: str = "Percent"
    frequency: str = "Monthly"
    frequency_short: str = "M"
    seasonal_adjustment: str = "Seasonally Adjusted"
    last_updated: str = "2024-10-30 07:52:02-05"


def monthly(series_id: str, n: int = 24, start: date = date(2020, 1, 1), missing: tuple[int, ...] = ()) -> FakeSeries:
    """A monthly series of `n` observations; the indices in `missing` are FRED's "."."""
    obs = []
    for i in range(n):
        day = date(start.year + (start.month - 1 + i) // 12, (start.month - 1 + i) % 12 + 1, 1)
        obs.append((day.isoformat(), "." if i in missing else f"{100 + i * 0.25:.2f}"))
    return FakeSeries(series_id, obs)


@dataclass
class Request:
    at: float  # time.monotonic() on arrival
    path: str
    params: dict[str, str]


@dataclass
class Fault:
    """One scripted answer: a status (with headers), a delay before the normal answer, a truncated
    body, or the answer sent a byte at a time, `trickle` seconds apart (each read is quick, the
    whole answer slow)."""

    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    truncate: bool = False
    body: bytes | None = None
    trickle: float = 0.0


class FakeServer:
    """`tls`: a server-side ssl.SSLContext, to serve https (the tests' own CA signs its certificate)."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.series: dict[str, FakeSeries] = {}
        self.faults: dict[str, deque[Fault]] = defaultdict(deque)  # series id or "treasury" -> next answers
        self.requests: list[Request] = []
        self.treasury_layout = "current"  # "current", "renamed" (10 Yr column renamed), "no-table"
        self.treasury_override: dict[tuple[date, str], str] = {}
        self.pages: dict[str, str] = {}  # path -> HTML served there (the [[html]] sources' tests)
        self.latency = 0.0  # added to every answer (the benchmark's stand-in for a real network)
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        if tls is not None:
            self._httpd.socket = tls.wrap_socket(self._httpd.socket, server_side=True)
        self._scheme = "https" if tls is not None else "http"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"{self._scheme}://{host}:{port}"

    def __enter__(self) -> FakeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def add(self, *series: FakeSeries) -> None:
        for s in series:
            self.series[s.id] = s

    def script(self, target: str, *faults: Fault) -> None:
        self.faults[target].extend(faults)

    def requests_to(self, path_end: str = "") -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path.endswith(path_end)]

    def reset_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    # ---- answers ------------------------------------------------------------------

    def answer(self, path: str, params: dict[str, str]) -> tuple[int, dict[str, str], bytes, Fault]:
        with self._lock:
            self.requests.append(Request(time.monotonic(), path, params))
            target = "treasury" if path == TEXTVIEW else path if path in self.pages else params.get("series_id", "")
            fault = self.faults[target].popleft() if self.faults[target] else Fault()
            page = self.pages.get(path)
        if fault.status is not None:
            return fault.status, fault.headers, fault.body or b"", fault
        if page is not None:
            status, ctype, body = 200, "text/html; charset=utf-8", page.encode()
        elif path == TEXTVIEW:
            status, ctype, body = 200, "text/html; charset=utf-8", self._treasury_page(params).encode()
        else:
            status, ctype, body = self._fred(path, params)
        if fault.truncate:
            body = body[: len(body) // 2]
        return status, {"Content-Type": ctype}, body, fault

    def _fred(self, path: str, params: dict[str, str]) -> tuple[int, str, bytes]:
        as_json = params.get("file_type") == "json"
        if path not in ("/fred/series", "/fred/series/observations"):
            return self._error(404, "Not Found.", as_json)
        if params.get("api_key") != VALID_KEY:
            return self._error(400, "Bad Request.  The value for variable api_key is not registered.", as_json)
        series = self.series.get(params.get("series_id", ""))
        if series is None:
            return self._error(404, "Bad Request.  The series does not exist.", as_json)
        today = date.today().isoformat()
        if path == "/fred/series":
            attrs = {
                "id": series.id,
                "realtime_start": today,
                "realtime_end": today,
                "title": series.title,
                "observation_start": series.observations[0][0],
                "observation_end": series.observations[-1][0],
                "frequency": series.frequency,
                "frequency_short": series.frequency_short,
                "units": series.units,
                "units_short": series.units,
                "seasonal_adjustment": series.seasonal_adjustment,
                "seasonal_adjustment_short": "SA",
                "last_updated": series.last_updated,
                "popularity": "50",
                "notes": "Fake series & notes <for> tests",
            }
            if as_json:
                body = {"realtime_start": today, "realtime_end": today, "seriess": [attrs]}
                return 200, "application/json", json.dumps(body).encode()
            xml = (
                f'<?xml version="1.0" encoding="utf-8" ?>\n<seriess realtime_start="{today}" realtime_end="{today}">\n'
            )
            xml += "  <series " + " ".join(f"{k}={quoteattr(v)}" for k, v in attrs.items()) + "/>\n</seriess>\n"
            return 200, "text/xml; charset=UTF-8", xml.encode()
        start = params.get("observation_start", "0000-00-00")
        rows = [(d, v) for d, v in series.observations if d >= start]
        if as_json:
            body = {
                "realtime_start": today,
                "realtime_end": today,
                "observation_start": params.get("observation_start", "1600-01-01"),
                "observation_end": "9999-12-31",
                "units": "lin",
                "output_type": 1,
                "file_type": "json",
                "order_by": "observation_date",
                "sort_order": "asc",
                "count": len(rows),
                "offset": 0,
                "limit": 100000,
                "observations": [
                    {"realtime_start": today, "realtime_end": today, "date": d, "value": v} for d, v in rows
                ],
            }
            return 200, "application/json", json.dumps(body).encode()
        lines = [
            '<?xml version="1.0" encoding="utf-8" ?>',
            f'<observations realtime_start="{today}" realtime_end="{today}" observation_start="1600-01-01" '
            f'observation_end="9999-12-31" units="lin" output_type="1" file_type="xml" order_by="observation_date" '
            f'sort_order="asc" count="{len(rows)}" offset="0" limit="100000">',
        ]
        lines += [
            f'  <observation realtime_start="{today}" realtime_end="{today}" date="{d}" value="{v}"/>' for d, v in rows
        ]
        lines.append("</observations>")
        return 200, "text/xml; charset=UTF-8", "\n".join(lines).encode()

    @staticmethod
    def _error(code: int, message: str, as_json: bool) -> tuple[int, str, bytes]:
        if as_json:
            return code, "application/json", json.dumps({"error_code": code, "error_message": message}).encode()
        xml = f'<?xml version="1.0" encoding="utf-8" ?>\n<error code="{code}" message={quoteattr(message)}/>\n'
        return code, "text/xml; charset=UTF-8", xml.encode()

    # ---- Treasury -----------------------------------------------------------------

    def treasury_value(self, day: date, name: str) -> str:
        """The page's text for a maturity on a business day: deterministic, "N/A" where it did not exist."""
        if (day, name) in self.treasury_override:
            return self.treasury_override[(day, name)]
        if name == "4mo" and day < date(2022, 10, 19):
            return "N/A"
        if name == "1.5mo" and day < date(2025, 2, 18):
            return "N/A"
        index = [m[0] for m in MATURITIES].index(name)
        return f"{3.0 + index * 0.1 + (day.toordinal() % 17) * 0.01:.2f}"

    @staticmethod
    def treasury_days(year: int, month: int) -> list[date]:
        """Business days of a month, up to today (the page only lists published days)."""
        last = min(date(year, month, calendar.monthrange(year, month)[1]), datetime.now(UTC).date())
        days = [date(year, month, 1) + timedelta(d) for d in range((last - date(year, month, 1)).days + 1)]
        return [d for d in days if d.weekday() < 5]

    def _treasury_page(self, params: dict[str, str]) -> str:
        stamp = params.get("field_tdr_date_value_month", "")
        if params.get("type") != "daily_treasury_yield_curve" or len(stamp) != 6 or not stamp.isdigit():
            return "<html><body><p>Unknown view</p></body></html>"
        days = self.treasury_days(int(stamp[:4]), int(stamp[4:]))
        shell = (
            '<!DOCTYPE html><html lang="en"><head><title>Resource Center | U.S. Department of the Treasury</title>'
            '</head><body><main><div class="view view-treasury-rates view-id-treasury_rates">{}</div></main>'
            "</body></html>"
        )
        if self.treasury_layout == "no-table":
            return shell.format('<div class="view-content"><ul class="rates-list"><li>4.37</li></ul></div>')
        if not days:
            return shell.format('<div class="view-empty">No Record Found</div>')
        maturities = list(MATURITIES)
        if self.treasury_layout == "renamed":
            maturities[11] = ("10yr", "ten-year", "Ten Year")
        head = [
            '<th id="view-field-tdr-date-table-column" class="views-field views-field-field-tdr-date" '
            'scope="col">Date</th>',
            # a column the parser does not use, as the real page carries several
            '<th id="view-field-bc-20year-ext-table-column" class="views-field views-field-field-extrapolation" '
            'scope="col">Extrapolation</th>',
        ]
        head += [
            f'<th id="view-field-bc-{f}-table-column" class="views-field views-field-field-bc-{f}" scope="col">{h}</th>'
            for _, f, h in maturities
        ]
        body = []
        for day in days:
            cells = [
                '<td class="views-field views-field-field-tdr-date" headers="view-field-tdr-date-table-column">'
                f'<time datetime="{day.isoformat()}T12:00:00Z" class="datetime">{day:%m/%d/%Y}</time>\n</td>',
                '<td class="views-field views-field-field-extrapolation">N/A</td>',
            ]
            cells += [
                f'<td class="bc{f.replace("-", "")} views-field views-field-field-bc-{f}" '
                f'headers="view-field-bc-{f}-table-column">{self.treasury_value(day, name)}          </td>'
                for name, f, _ in maturities
            ]
            body.append('<tr class="odd">' + "".join(cells) + "</tr>")
        table = (
            f'<div class="view-content"><table class="usa-table views-table views-view-table cols-{len(head)}">'
            f"<thead><tr>{''.join(head)}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
        )
        return shell.format(table)


def _handler(server: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the real hosts offer
        # Headers and body go out in two writes; with Nagle on, delayed ACKs add ~40 ms to every answer.
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            status, headers, body, fault = server.answer(parts.path, dict(parse_qsl(parts.query)))
            if fault.delay or server.latency:
                time.sleep(fault.delay + server.latency)
            try:
                if fault.trickle:
                    self._trickle(status, headers, body, fault.trickle)
                    return
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)

        def _trickle(self, status: int, headers: dict[str, str], body: bytes, gap: float) -> None:
            lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", *(f"{k}: {v}" for k, v in headers.items())]
            answer = "\r\n".join([*lines, f"Content-Length: {len(body)}", "", ""]).encode() + body
            for at in range(len(answer)):
                self.wfile.write(answer[at : at + 1])
                time.sleep(gap)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler
