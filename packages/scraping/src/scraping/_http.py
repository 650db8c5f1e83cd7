"""Polite HTTP for every source: one rate limiter, timeouts, retries with backoff honouring Retry-After.

Secrets (the FRED key travels in the query string) are redacted from every message this
module produces, and httpx's own request logging is silenced because it prints full URLs.
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from urllib.parse import urlencode

import httpx

from scraping._config import HttpSettings
from scraping._errors import RequestRejected, RetriesExhausted, Stopped

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
            transport=transport,
            follow_redirects=True,
            headers={"User-Agent": USER_AGENT},
        )
        self.requests = 0  # every attempt, retries included: the run reports it
        self._stopped = threading.Event()

    def stop(self) -> None:
        """Make every wait for the rate limiter or a retry, now or later, raise Stopped (from any thread).

        A request already under way is not cut short: it ends within the timeout.
        """
        self._stopped.set()

    def close(self) -> None:
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
                response = self._client.get(target)
            except httpx.TimeoutException:
                reason = f"no answer within {self._settings.timeout_s:g}s"
            except httpx.RequestError as exc:  # its message may hold the URL, so only its kind is kept
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

    def _delay(self, attempt: int, retry_after: float | None) -> float | None:
        # Exponential backoff with jitter spreads retries out; the server's Retry-After is a floor.
        s = self._settings
        backoff = min(s.max_backoff_s, s.backoff_s * 2**attempt) * random.uniform(0.5, 1.0)
        if retry_after is None:
            return backoff
        if retry_after > s.max_backoff_s:
            return None
        return max(retry_after, backoff)


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
