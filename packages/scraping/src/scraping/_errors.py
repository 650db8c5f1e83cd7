"""The scraping stage's exceptions: one base class, a branch per kind of failure.

The CLI turns each branch into a one-line message and its own exit code.
"""

from __future__ import annotations


class ScrapingError(Exception):
    """Base of every error this stage raises on purpose."""


class ConfigError(ScrapingError):
    """The series list or the environment is wrong; nothing was fetched."""


class StoreError(ScrapingError):
    """scraped_data/ cannot be read or written (a corrupt manifest, a full disk)."""


class Stopped(ScrapingError):
    """The run was stopped (Ctrl-C, SIGTERM): a request waiting for the rate limiter or a retry is not made."""


class SourceError(ScrapingError):
    """One series could not be fetched; the run goes on with the others."""


class RequestRejected(SourceError):
    """The server refused the request (HTTP 4xx other than 429): a bad id or a bad key. Not retried."""


class RetriesExhausted(SourceError):
    """429, 5xx, timeouts or connection failures outlasted the retry budget."""


class MalformedAnswer(SourceError):
    """The answer could not be parsed: truncated or invalid JSON/XML, a value that is not a number."""


class LayoutChanged(SourceError):
    """An HTML page no longer has the table, columns or cells its spec describes."""
