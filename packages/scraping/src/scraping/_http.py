"""Polite HTTP for every source: one rate limiter, timeouts, retries with backoff honouring Retry-After.

`http.timeout_s` bounds each attempt as a whole: httpx's timeouts bound each read, so a server
that trickles its answer a byte at a time would hold a request for as long as it liked, and a
watchdog (_Deadline) ends an attempt that outlives its time.

Secrets (the FRED key travels in the query string) are redacted from every message this
module produces, and httpx's own request logging is silenced because it prints full URLs.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import random
import socket
import threading
import time
import urllib.request
import weakref
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from urllib.parse import urlencode

import httpx

from scraping._config import HttpSettings
from scraping._errors import RequestRejected, RetriesExhausted, Stopped
from scraping._transport import StdlibTransport

log = logging.getLogger(__name__)
REDACTED = "***"
USER_AGENT = "financial-forecasting-scraper/0.1 (batch pipeline, rate-limited)"

for _noisy in ("httpx", "httpcore"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)


class RateLimiter:
    """At most `per_second` request starts a second, across every thread of the run (0: no limit)."""

    def __init__(self, per_second: float) -> None:
        self._interval = 1.0 / per_second if per_second > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def delay(self) -> float:
        """Seconds until the caller's turn, which is booked for it."""
        if not self._interval:
            return 0.0
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self._interval
        return start - now


class _Deadline:
    """Ends an attempt that outlives its time by shutting its client's sockets down, which wakes
    a read blocked on one at once (the client then connects afresh).

    The sockets are learnt from httpx's "trace" request extension as the client opens them. One
    thread watches one attempt at a time and sleeps until its deadline: arming it for the next
    attempt, usually while it sleeps towards a deadline that has not come yet, needs no wake-up,
    so a request costs two lock turns, not a thread switch.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self._until: float | None = None  # the deadline of the attempt under way, if any
        self._watching = False  # the thread sleeps towards a deadline (else: until armed)
        self._thread: threading.Thread | None = None
        self._closed = False
        self.expired = False  # the last attempt armed ran out of time

    def trace(self, event: str, info: dict) -> None:
        """httpx's "trace" extension: keeps the socket of each connection opened (TLS wraps a new one)."""
        if event in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            sock = info["return_value"].get_extra_info("socket")
            if sock is not None:
                with self._changed:
                    self._sockets.add(sock)

    def arm(self, seconds: float) -> None:
        with self._changed:
            self._until = time.monotonic() + seconds
            self.expired = False
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="scraping-deadline", daemon=True)
                self._thread.start()
            elif not self._watching:
                self._changed.notify()

    def disarm(self) -> None:
        with self._changed:
            self._until = None

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify()

    def _watch(self) -> None:
        with self._changed:
            while not self._closed:
                self._watching = self._until is not None
                if self._until is None:
                    self._changed.wait()
                    continue
                left = self._until - time.monotonic()
                if left > 0:
                    self._changed.wait(left)
                    continue
                self._until = None
                self.expired = True
                for sock in list(self._sockets):
                    with contextlib.suppress(OSError):  # closed meanwhile, or detached by a TLS wrap
                        sock.shutdown(socket.SHUT_RDWR)


class Fetcher:
    """GET with retries; 4xx (but 429) raise RequestRejected at once, the rest retry then RetriesExhausted."""

    def __init__(
        self,
        settings: HttpSettings,
        *,
        transport: httpx.BaseTransport | None = None,
        secrets: Iterable[str | None] = (),
    ) -> None:
        self._settings = settings
        self._limiter = RateLimiter(settings.requests_per_second)
        self._secrets = tuple(s for s in secrets if s)
        self._client = httpx.Client(
            timeout=settings.timeout_s,
            # Behind a proxy from the environment, httpx's own transport (which routes by HTTP(S)_PROXY,
            # ALL_PROXY and NO_PROXY, and tunnels) does the requests: httpx ignores those variables
            # once given a transport.
            transport=transport or (None if _environment_proxies() else StdlibTransport()),
            follow_redirects=True,
            headers={"User-Agent": USER_AGENT},
        )
        self.requests = 0  # every attempt, retries included: the run reports it
        self._stopped = threading.Event()
        self._deadline = _Deadline()

    def stop(self) -> None:
        """Make every wait for the rate limiter or a retry, now or later, raise Stopped (from any thread).

        A request already under way is not cut short: it ends within the timeout.
        """
        self._stopped.set()

    def close(self) -> None:
        self._deadline.close()
        self._client.close()

    def _pause(self, seconds: float, what: str) -> None:
        """Wait `seconds`; Stopped if the run stops meanwhile or already has."""
        stopped = self._stopped.wait(seconds) if seconds > 0 else self._stopped.is_set()
        if stopped:
            raise Stopped(f"{what}: the run stopped")

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def get(
        self,
        url: str,
        params: dict[str, str] | None = None,
        *,
        what: str,
        error_detail: Callable[[httpx.Response], str | None] = lambda _: None,
    ) -> httpx.Response:
        """The response to GET `url`; `what` names the request in messages ("FRED series GDP")."""
        attempts = self._settings.max_retries + 1
        # httpx replaces (not extends) a URL's query when given params, and fredapi builds queries itself.
        target = f"{url}{'&' if '?' in url else '?'}{urlencode(params)}" if params else url
        for attempt in range(attempts):
            self._pause(self._limiter.delay(), what)
            self.requests += 1
            retry_after = None
            try:
                response = self._get_in_time(target)
            except httpx.RequestError as exc:  # its message may hold the URL, so only its kind is kept
                if isinstance(exc, httpx.TimeoutException) or self._deadline.expired:
                    reason = f"no answer within {self._settings.timeout_s:g}s"
                else:
                    reason = f"request failed ({type(exc).__name__})"
            else:
                if log.isEnabledFor(logging.DEBUG):  # the URL is only rendered (and redacted) when logged
                    log.debug("GET %s -> %s", self.redact(str(response.url)), response.status_code)
                status = response.status_code
                if status < 400:
                    return response
                detail = error_detail(response)
                reason = f"HTTP {status}" + (f": {detail}" if detail else "")
                if status != 429 and status < 500:
                    raise RequestRejected(self.redact(f"{what}: {reason}"))
                retry_after = _retry_after(response)
            if attempt + 1 == attempts:
                break
            self._pause(0, what)  # stopped meanwhile (its client closed under this answer, say): no retry
            delay = self._delay(attempt, retry_after)
            if delay is None:
                reason += f"; asked to retry after {retry_after:g}s, more than http.max_backoff_s"
                break
            log.info("%s: %s; retry %d/%d in %.2fs", what, self.redact(reason), attempt + 1, attempts - 1, delay)
            self._pause(delay, what)
        tries = f"{attempt + 1} attempt{'' if attempt == 0 else 's'}"
        raise RetriesExhausted(self.redact(f"{what}: {reason} (gave up after {tries})"))

    def _get_in_time(self, target: str) -> httpx.Response:
        """One attempt, ended by the watchdog if it outlives http.timeout_s."""
        self._deadline.arm(self._settings.timeout_s)
        try:
            return self._client.get(target, extensions={"trace": self._deadline.trace})
        finally:
            self._deadline.disarm()

    def _delay(self, attempt: int, retry_after: float | None) -> float | None:
        # Exponential backoff with jitter spreads retries out; the server's Retry-After is a floor.
        s = self._settings
        backoff = min(s.max_backoff_s, s.backoff_s * 2**attempt) * random.uniform(0.5, 1.0)
        if retry_after is None:
            return backoff
        if retry_after > s.max_backoff_s:
            return None
        return max(retry_after, backoff)


def _environment_proxies() -> bool:
    """Whether the environment names an HTTP proxy (HTTP_PROXY, HTTPS_PROXY or ALL_PROXY, any case)."""
    return any(urllib.request.getproxies().get(scheme) for scheme in ("http", "https", "all"))


def _retry_after(response: httpx.Response) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))  # delta-seconds; fractions are accepted, which tests use
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # asctime's form and "-0000" carry no zone; HTTP dates are in UTC
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
