"""Fixtures: a throw-away project root (real contracts), the loopback fake server, a fast config."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from storage_links.testing import scaffold_project

# pytest runs with --import-mode=importlib, which puts no test directory on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_servers import VALID_KEY, FakeServer, monthly

PACKAGE_DIR = Path(__file__).resolve().parents[1]
ENV = (
    *("FRED_API_KEY", "FRED_API_KEY_FILE", "FRED_API_BASE_URL", "TREASURY_BASE_URL", "PIPELINE_PROFILE"),
    "SCRAPING_CONFIG",
    # a developer's proxy would carry the tests' loopback requests elsewhere
    *(name for scheme in ("http", "https", "all", "no") for name in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY")),
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project root whose scraped_data/ and logs/ live under tmp_path; returns scraped_data/."""
    root = scaffold_project(tmp_path / "project", [PACKAGE_DIR])
    monkeypatch.setenv("PIPELINE_ROOT", str(root))
    monkeypatch.setenv("PIPELINE_RUN_ID", "test-run")
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    return root / "packages" / "scraping" / "scraped_data"


@pytest.fixture
def server(project: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServer]:
    """The fake FRED + Treasury server, with three series, and the environment pointing at it."""
    with FakeServer() as fake:
        fake.add(monthly("UNRATE", missing=(3,)), monthly("CPIAUCSL"), monthly("GDP", n=12))
        monkeypatch.setenv("FRED_API_KEY", VALID_KEY)
        monkeypatch.setenv("FRED_API_BASE_URL", f"{fake.url}/fred")
        monkeypatch.setenv("TREASURY_BASE_URL", fake.url)
        yield fake
