"""Helpers the tests share: a fast series list, and readers for what the stage stored."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd


def write_config(
    directory: Path,
    series: tuple[str, ...] = ("UNRATE", "CPIAUCSL", "GDP"),
    *,
    fmt: str = "xml",
    treasury: bool = False,
    rate: float = 0,
    timeout: float = 2.0,
    retries: int = 2,
    max_backoff: float = 1.0,
    extra: str = "",
) -> Path:
    """A series list with tiny backoffs so retry tests stay fast."""
    path = directory / "series.toml"
    path.write_text(
        f"""
[http]
requests_per_second = {rate}
timeout_s = {timeout}
max_retries = {retries}
backoff_s = 0.01
max_backoff_s = {max_backoff}

[fred]
format = "{fmt}"
revision_lookback_days = 100
series = {json.dumps(list(series))}

[treasury]
enabled = {str(treasury).lower()}
backfill_months = 2
{extra}"""
    )
    return path


def manifest(scraped: Path) -> dict:
    return json.loads((scraped / "manifest.json").read_text())


def stored(scraped: Path, key: str) -> pd.DataFrame:
    return pd.read_parquet(scraped / f"{key}.parquet")


def snapshot(scraped: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under scraped_data/ with its bytes and mtime: to prove nothing was lost or rewritten."""
    return {
        str(p.relative_to(scraped)): (p.read_bytes(), p.stat().st_mtime_ns) for p in scraped.rglob("*") if p.is_file()
    }
