"""scraping: FRED series and HTML-table sources (the Treasury par yield curve) into scraped_data/.

`run(load_config())` is what `python -m scraping run` does. Where things happen:
_config (series list and environment), _http (rate limit, timeouts, retries), _fred (fredapi over
httpx), _html_table and _treasury (the yield-curve page), _bundled (the offline dataset),
_store (Parquet files and manifest.json), _run (the incremental run), _cli (the command line).
"""

from __future__ import annotations

from storage_links import lazy_exports

# Names are imported on first use (PEP 562), so that a run with nothing new does not pay for
# importing pandas, httpx and fredapi.
_SOURCES = {
    "Config": "_config",
    "default_config_path": "_config",
    "load_config": "_config",
    "ConfigError": "_errors",
    "LayoutChanged": "_errors",
    "MalformedAnswer": "_errors",
    "RequestRejected": "_errors",
    "RetriesExhausted": "_errors",
    "ScrapingError": "_errors",
    "SourceError": "_errors",
    "StoreError": "_errors",
    "RunReport": "_run",
    "SeriesResult": "_run",
    "run": "_run",
}

__all__ = sorted(_SOURCES)

__getattr__, __dir__ = lazy_exports(__name__, _SOURCES)
