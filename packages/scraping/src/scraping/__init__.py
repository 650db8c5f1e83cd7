"""scraping: FRED series and HTML-table sources (the Treasury par yield curve) into scraped_data/.

`run(load_config())` is what `python -m scraping run` does. Where things happen:
_config (series list and environment), _http (rate limit, timeouts, retries), _fred (fredapi over
httpx), _html_table and _treasury (the yield-curve page), _bundled (the offline dataset),
_store (Parquet files and manifest.json), _run (the incremental run), _cli (the command line).
"""

from scraping._config import Config, default_config_path, load_config
from scraping._errors import (
    ConfigError,
    LayoutChanged,
    MalformedAnswer,
    RequestRejected,
    RetriesExhausted,
    ScrapingError,
    SourceError,
    StoreError,
)
from scraping._run import RunReport, SeriesResult, run

__all__ = [
    "Config",
    "ConfigError",
    "LayoutChanged",
    "MalformedAnswer",
    "RequestRejected",
    "RetriesExhausted",
    "RunReport",
    "ScrapingError",
    "SeriesResult",
    "SourceError",
    "StoreError",
    "default_config_path",
    "load_config",
    "run",
]
