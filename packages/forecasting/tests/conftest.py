"""Fixtures: a throw-away project root and predictions written in modelling's documented format.

The predictions are made here (never by importing modelling): a few monthly and quarterly series
with four candidate models whose errors differ, over three rolling-origin backtest folds.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from azure.storage.blob import BlobServiceClient
from storage_links import data_dir
from storage_links.testing import scaffold_project

from packages.forecasting.tests.azurite import (  # noqa: F401  (azurite is a fixture)
    AZURITE_ACCOUNT,
    AZURITE_KEY,
    azurite,
)

PACKAGE_DIR = Path(__file__).parents[1]
MODELLING_DIR = Path(__file__).parents[2] / "modelling"
MODELS = ("auto_sarima", "ets", "theta", "seasonal_naive")
Z = {80: 1.2816, 95: 1.96}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = scaffold_project(tmp_path / "project", [PACKAGE_DIR, MODELLING_DIR])
    monkeypatch.setenv("PIPELINE_ROOT", str(root))
    monkeypatch.setenv("PIPELINE_PROFILE", "local")
    for var in ("PIPELINE_RUN_ID", "FORECASTING_CONFIG", "AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT",
                "AZURE_STORAGE_KEY", "AZURE_STORAGE_BLOB_ENDPOINT", "AZURE_STORAGE_CONTAINER"):  # fmt: skip
        monkeypatch.delenv(var, raising=False)
    return root


# Mode bits do not stop root: as root, the CLI runs without the capabilities that let it read anyway
# (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), as the container's non-root user would.
UNPRIVILEGED = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []


@pytest.fixture
def run_unprivileged() -> Callable[..., subprocess.CompletedProcess]:
    """`run(run_id, *args)`: `python -m forecasting *args` in a subprocess that mode bits stop."""
    if UNPRIVILEGED and subprocess.run([*UNPRIVILEGED, "true"], capture_output=True, check=False).returncode:
        pytest.skip("runs as root and cannot drop the capabilities that bypass mode bits (setpriv)")

    def run(run_id: str, *args: str) -> subprocess.CompletedProcess:
        command = [*UNPRIVILEGED, sys.executable, "-m", "forecasting", *args]
        env = {**os.environ, "PIPELINE_RUN_ID": run_id}
        return subprocess.run(command, capture_output=True, text=True, env=env, check=False)

    return run


@contextlib.contextmanager
def chmod_during(path: Path, mode: int) -> Iterator[None]:
    """`path` at `mode` for the block, its own mode back after it (so that tmp_path can be removed)."""
    before = path.stat().st_mode
    path.chmod(mode)
    try:
        yield
    finally:
        path.chmod(before)


def unreadable(path: Path) -> contextlib.AbstractContextManager[None]:
    """`path` cannot be read for the block: a file has no permissions, a directory cannot be searched."""
    return chmod_during(path, 0o600 if path.is_dir() else 0)


def replace_with_eio(path: Path) -> None:
    """Make reading `path` fail with EIO, for every user: an I/O error, as from a share, whose OSError
    names no file. Reading /proc/self/mem from its start fails so; skip where it is not there."""
    if not Path("/proc/self/mem").is_file():
        pytest.skip("needs Linux's /proc/self/mem")
    path.unlink()
    path.symlink_to("/proc/self/mem")


@pytest.fixture
def no_hang() -> Iterator[None]:
    """A read that blocks (a named pipe without a writer) fails the test after 5 s, not the suite by hanging."""

    def expire(signum: int, frame: object) -> None:
        pytest.fail("still blocked after 5 s")  # not an OSError, which the code under test would catch

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(5)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


LABELS = {
    "GDP": {"title": "Gross Domestic Product", "units": "Billions of Dollars", "source": "fred", "id": "GDP"},
    "UNRATE": {"title": "Unemployment Rate", "units": "Percent", "source": "fred", "id": "UNRATE"},
    "CPI": {
        "title": "Consumer Price Index for All Urban Consumers: All Items",
        "units": "Index 1982-1984=100",
        "source": "fred",
        "id": "CPIAUCSL",
    },
}


@pytest.fixture
def make_predictions(project: Path):
    """A function writing predictions/<run>/ into the project (see `write_predictions`)."""
    return write_predictions


def write_predictions(
    run: str,
    *,
    series: dict[str, str] | None = None,
    seed: int = 0,
    folds: int = 3,
    complete: bool = True,
    latest: bool = True,
    failed: dict[str, str] | None = None,
    without_forecasts: tuple[str, ...] = (),
    without_backtests: tuple[str, ...] = (),
    interval_scale: float = 1.0,
    labels: dict[str, dict[str, str]] | None = LABELS,
    models: tuple[str, ...] = MODELS,
) -> Path:
    """Write predictions/<run>/ like modelling does: the Parquet files, then run.json, then LATEST.

    series: name -> frequency code ("MS" monthly, "QS" quarterly). complete=False leaves out
    run.json (a killed run); without_forecasts drops those series from forecasts.parquet only,
    without_backtests from backtests.parquet only (a series too short to backtest).
    interval_scale multiplies every interval's half-width (below 1: intervals too narrow for the errors).
    labels=None leaves them out of run.json, as runs made before modelling recorded them.
    models: the models the run holds (some of MODELS).
    """
    series = series or {"GDP": "QS", "UNRATE": "MS", "CPI": "MS"}
    rng = np.random.default_rng(seed)
    directory = data_dir("modelling", "predictions") / run
    directory.mkdir(parents=True, exist_ok=True)
    forecasts, backtests, scores, history = [], [], [], []
    seasons, horizons = {}, {}
    for k, (name, freq) in enumerate(series.items()):
        m, h, n = (12, 12, 120) if freq == "MS" else (4, 8, 60)
        seasons[name], horizons[name] = m, h
        t = np.arange(n + h)
        y = 100 + 10 * k + 0.3 * t + 5 * np.sin(2 * np.pi * t / m) + rng.normal(0, 1.0, n + h)
        dates = pd.date_range("2000-01-01", periods=n + h, freq=freq)
        history.append(pd.DataFrame({"series": name, "date": dates[:n], "value": y[:n]}))
        # Each model's error: on the first series auto_sarima is right and the others share a bias (so no
        # combination can beat it); on the rest the errors are independent and alike (combinations win).
        noise = dict(zip(MODELS, (0.5, 1.0, 1.2, 3.0) if k == 0 else (1.0, 1.1, 1.2, 2.5), strict=True))
        bias = {model: 0.0 if k or model == "auto_sarima" else 4.0 for model in MODELS}
        for model in models:
            if name not in without_forecasts:
                centre = y[n - 1] + 0.3 * np.arange(1, h + 1) + bias[model]
                forecasts.append(_model_rows(name, model, centre, dates[n:], noise[model], rng, interval_scale))
            mase_folds = []
            for fold in range(folds):
                origin = n - (folds - fold) * h // 2 - h
                actual = y[origin : origin + h]
                rows = _model_rows(
                    name, model, actual + bias[model], dates[origin : origin + h], noise[model], rng, interval_scale
                )
                rows.insert(2, "fold", fold)
                rows.insert(5, "actual", actual)
                if name not in without_backtests:
                    backtests.append(rows)
                mase_folds.append(np.mean(np.abs(rows["mean"] - actual)))
            scores.append({"series": name, "model": model, "mase": float(np.mean(mase_folds)), "smape": 1.0,
                           "coverage80": 0.8, "coverage95": 0.95, "folds": folds})  # fmt: skip
    pd.concat(forecasts, ignore_index=True).to_parquet(directory / "forecasts.parquet")
    pd.concat(backtests, ignore_index=True).to_parquet(directory / "backtests.parquet")
    pd.DataFrame(scores).to_parquet(directory / "scores.parquet")
    pd.concat(history, ignore_index=True).to_parquet(directory / "history.parquet")
    if complete:
        meta = {
            "run_id": run,
            "created_at": "2026-11-23T12:00:00+00:00",
            "frequency": series,
            "season_length": seasons,
            "horizon": horizons,
            "inputs": {f"fred/{s}": f"sha256:{seed:02d}{k:062d}" for k, s in enumerate(series)},
            "failed": failed or {},
        }
        if labels is not None:
            meta["labels"] = {name: label for name, label in labels.items() if name in series}
        (directory / "run.json").write_text(json.dumps(meta))
        if latest:
            (directory.parent / "LATEST").write_text(run + "\n")
    return directory


def _model_rows(name: str, model: str, centre, dates, sigma: float, rng, interval_scale: float = 1.0) -> pd.DataFrame:
    h = len(dates)
    mean = np.asarray(centre, dtype=float) + rng.normal(0, sigma, h)
    spread = interval_scale * sigma * np.sqrt(np.arange(1, h + 1))
    return pd.DataFrame({
        "series": name, "model": model, "step": np.arange(1, h + 1), "date": dates, "mean": mean,
        "lo80": mean - Z[80] * spread, "hi80": mean + Z[80] * spread,
        "lo95": mean - Z[95] * spread, "hi95": mean + Z[95] * spread,
    })  # fmt: skip


# ---- Azurite and a connection-cutting proxy for the upload tests ---------------------------------


class CuttingProxy:
    """A TCP proxy on loopback that records HTTP request lines and can cut connections.

    The first `cuts` connections are closed once `cut_after` bytes from the client have gone
    through, as a network failure would, mid-request. `before(method, path)`, when given, is called
    as each request arrives and before it is passed on: a concurrent writer can act there.
    """

    REQUEST_LINE = re.compile(rb"(GET|PUT|HEAD|DELETE|POST) (/\S*) HTTP/1\.1\r\n")

    def __init__(
        self,
        target_port: int,
        *,
        cut_after: int = 0,
        cuts: int = 0,
        before: Callable[[str, str], None] | None = None,
    ) -> None:
        self.target_port = target_port
        self.before = before
        self.cut_after = cut_after
        self.cuts_left = cuts
        self.requests: list[tuple[str, str]] = []
        self.cut_count = 0
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._server.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                cut = self.cuts_left > 0
                self.cuts_left -= cut
            threading.Thread(target=self._pump_up, args=(client, upstream, cut), daemon=True).start()
            threading.Thread(target=self._pump_down, args=(upstream, client), daemon=True).start()

    def _pump_up(self, client: socket.socket, upstream: socket.socket, cut: bool) -> None:
        stream, last_line = bytearray(), -1
        try:
            while data := client.recv(65536):
                if cut and len(stream) + len(data) >= self.cut_after:
                    upstream.sendall(data[: self.cut_after - len(stream)])
                    with self._lock:
                        self.cut_count += 1
                    break
                scan_from = max(0, len(stream) - 64)  # a request line may straddle two reads
                stream += data
                for match in self.REQUEST_LINE.finditer(stream, scan_from):
                    if match.start() > last_line:
                        last_line = match.start()
                        with self._lock:
                            self.requests.append((match[1].decode(), match[2].decode()))
                        if self.before:
                            self.before(match[1].decode(), match[2].decode())
                upstream.sendall(data)
        except OSError:
            pass
        for sock in (client, upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    @staticmethod
    def _pump_down(upstream: socket.socket, client: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := upstream.recv(65536):
                client.sendall(data)


_containers = itertools.count()


class BlobTarget:
    """Where one test uploads: Azurite (direct or through a CuttingProxy) and a container of its own."""

    def __init__(self, endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.endpoint = endpoint
        self.key = AZURITE_KEY
        self.port = int(endpoint.split(":")[2].split("/")[0])
        self.container = f"test-{next(_containers)}-{os.getpid()}"
        self.monkeypatch = monkeypatch
        self.service = BlobServiceClient(
            endpoint, credential={"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY}
        )
        self.proxies: list[CuttingProxy] = []
        monkeypatch.setenv("AZURE_STORAGE_CONTAINER", self.container)
        self.use_key(AZURITE_KEY)

    def use_key(self, key: str, port: int | None = None) -> None:
        """Credentials as account + key + endpoint (the connection string form is tested separately)."""
        self.monkeypatch.setenv("AZURE_STORAGE_ACCOUNT", AZURITE_ACCOUNT)
        self.monkeypatch.setenv("AZURE_STORAGE_KEY", key)
        self.monkeypatch.setenv(
            "AZURE_STORAGE_BLOB_ENDPOINT", f"http://127.0.0.1:{port or self.port}/{AZURITE_ACCOUNT}"
        )

    def through_proxy(
        self, *, cut_after: int = 0, cuts: int = 0, before: Callable[[str, str], None] | None = None
    ) -> CuttingProxy:
        proxy = CuttingProxy(self.port, cut_after=cut_after, cuts=cuts, before=before)
        self.proxies.append(proxy)
        self.use_key(AZURITE_KEY, proxy.port)
        return proxy

    def blobs(self) -> dict[str, object]:
        container = self.service.get_container_client(self.container)
        if not container.exists():
            return {}
        return {b.name: b for b in container.list_blobs()}


@pytest.fixture
def blob_target(azurite: str, project: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[BlobTarget]:  # noqa: F811
    target = BlobTarget(azurite, monkeypatch)
    yield target
    for proxy in target.proxies:
        proxy.close()
