"""A scaffolded project root with a small scraped_data/ written in the documented format."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from storage_links.testing import scaffold_project
from threadpoolctl import threadpool_limits

MODELLING_DIR = Path(__file__).parents[1]
SCRAPING_DIR = Path(__file__).parents[2] / "scraping"


@pytest.fixture(autouse=True, scope="session")
def single_threaded_blas():
    """As the stage's workers run: a threaded BLAS on these small matrices only burns CPU."""
    with threadpool_limits(1):
        yield


@pytest.fixture
def root(tmp_path, monkeypatch) -> Path:
    project = scaffold_project(tmp_path / "project", [MODELLING_DIR, SCRAPING_DIR])
    monkeypatch.setenv("PIPELINE_ROOT", str(project))
    monkeypatch.delenv("PIPELINE_RUN_ID", raising=False)
    monkeypatch.delenv("MODELLING_CONFIG", raising=False)
    return project


@pytest.fixture
def store(root):
    """store(key, frame, frequency) writes one series into the scaffolded scraped_data/."""
    return lambda key, frame, frequency: write_series(root, key, frame, frequency)


@pytest.fixture
def scraped(root) -> Path:
    return scraped_dir(root)


@pytest.fixture
def predictions(root) -> Path:
    return predictions_dir(root)


def scraped_dir(root: Path) -> Path:
    return root / "packages" / "scraping" / "scraped_data"


def predictions_dir(root: Path) -> Path:
    return root / "packages" / "modelling" / "predictions"


def write_series(root: Path, key: str, frame: pd.DataFrame, frequency: str) -> None:
    """Store `frame` (date + value columns) as scraping would, and list it in manifest.json."""
    directory = scraped_dir(root)
    path = directory / f"{key}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    add_manifest_entry(root, key, frequency, [c for c in frame.columns if c != "date"], path)


def add_manifest_entry(root: Path, key: str, frequency: str, columns: list[str], path: Path) -> None:
    manifest_path = scraped_dir(root) / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"format": 1, "series": {}}
    manifest["series"][key] = {
        "source": "test",
        "id": key,
        "title": f"Test series {key}",
        "units": "Index",
        "frequency": frequency,
        "file": f"{key}.parquet",
        "columns": columns,
        "content_hash": "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest(),
        "origin": "bundled",
    }
    manifest_path.write_text(json.dumps(manifest))


@pytest.fixture
def make_monthly():
    return monthly_frame


@pytest.fixture
def macro():
    return macro_frame


def monthly_frame(n: int, seed: int = 0, start: str = "2010-01-01") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    value = 100 + 0.3 * t + 5 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 1, n).cumsum() * 0.3
    return pd.DataFrame({"date": pd.date_range(start, periods=n, freq="MS"), "value": value})


def macro_frame(column: str = "realgdp") -> pd.DataFrame:
    from statsmodels.datasets import macrodata

    data = macrodata.load_pandas().data
    dates = pd.PeriodIndex.from_fields(year=data["year"].astype(int), quarter=data["quarter"].astype(int),
                                       freq="Q").to_timestamp()  # fmt: skip
    return pd.DataFrame({"date": dates, "value": data[column].to_numpy(dtype=float)})
