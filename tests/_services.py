"""Shared by the end-to-end and fault tests: the fake FRED/Treasury server filled from the real series
list, Azurite, the stage CLIs run as a user would, and file hashes to prove nothing was lost.

`FredProcess` serves the fake FRED/Treasury API in a process of its own, so a test can kill it the
way a server dies (every connection drops at once), or have it SIGKILL itself on its Nth request.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tomllib
from datetime import date
from pathlib import Path

import pytest

from packages.forecasting.tests.azurite import azurite, connection_string  # noqa: F401  (azurite is a fixture)
from packages.scraping.tests.fake_servers import VALID_KEY, FakeSeries, FakeServer, monthly
from tests._pipeline import clean_env

REPO = Path(__file__).resolve().parents[1]
SERIES_TOML = REPO / "packages" / "scraping" / "config" / "series.toml"
MODELLING_TOML = REPO / "packages" / "modelling" / "config" / "modelling.toml"
PYTHON = str(REPO / ".venv" / "bin" / "python")


def fred_ids(config: Path = SERIES_TOML) -> list[str]:
    """Every FRED id the packaged series list asks for (read from the file, never restated)."""
    with config.open("rb") as fh:
        return list(tomllib.load(fh)["fred"]["series"])


MONTHS = 48  # observations per fake series: four seasons of monthly data


def fake_series(ids: list[str], months: int = MONTHS, updated: str = "2024-10-30 07:52:02-05") -> list[FakeSeries]:
    """One monthly series per id, each on its own level so no two files are alike."""
    out = []
    for k, sid in enumerate(ids):
        series = monthly(sid, n=months, start=date(2020, 1, 1))
        series.observations = [(d, f"{float(v) + 10 * k:.2f}") for d, v in series.observations]
        series.last_updated = updated
        out.append(series)
    return out


def fake_fred(ids: list[str] | None = None, months: int = MONTHS) -> FakeServer:
    """An in-process fake server holding every id of the series list (enter it to start)."""
    server = FakeServer()
    server.add(*fake_series(ids if ids is not None else fred_ids(), months))
    return server


def scraping_env(url: str) -> dict[str, str]:
    return {"FRED_API_KEY": VALID_KEY, "FRED_API_BASE_URL": f"{url}/fred", "TREASURY_BASE_URL": url}


def small_config(path: Path, ids: list[str], *, treasury: bool = False, retries: int = 1) -> Path:
    """A scraping config with no rate limit and quick, few retries: faults without minutes of backoff."""
    listed = ", ".join(f'"{i}"' for i in ids)
    path.write_text(
        "[http]\nrequests_per_second = 0\ntimeout_s = 3.0\n"
        f"max_retries = {retries}\nbackoff_s = 0.05\nmax_backoff_s = 0.2\n\n"
        f'[fred]\nformat = "xml"\nrevision_lookback_days = 400\nseries = [{listed}]\n\n'
        f"[treasury]\nenabled = {'true' if treasury else 'false'}\nbackfill_months = 2\n"
    )
    return path


# ---- Azurite ------------------------------------------------------------------------------------


def azure_env(endpoint: str, container: str) -> dict[str, str]:
    return {"AZURE_STORAGE_CONNECTION_STRING": connection_string(endpoint), "AZURE_STORAGE_CONTAINER": container}


def blob_names(endpoint: str, container: str) -> dict[str, bytes]:
    """Every blob in `container` with its bytes ({} when the container does not exist)."""
    from azure.storage.blob import BlobServiceClient

    client = BlobServiceClient.from_connection_string(connection_string(endpoint)).get_container_client(container)
    if not client.exists():
        return {}
    return {b.name: client.download_blob(b.name).readall() for b in client.list_blobs()}


# ---- the stages -------------------------------------------------------------------------------------

needs_modelling = pytest.mark.skipif(
    importlib.util.find_spec("modelling._cli") is None,
    reason="modelling has no CLI yet (python -m modelling run); this test runs once it lands",
)


def stage_env(root: Path, share: Path, **extra: str) -> dict[str, str]:
    """The environment make gives a stage, minus every key the caller does not pass."""
    return clean_env(root, share, PIPELINE_PROFILE="local", **extra)


def _settings_copy(source: Path, path: Path, values: dict[str, str]) -> Path:
    """The packaged settings file `source` written to `path` with these keys' values (TOML) replaced;
    each key must be on exactly one line of it, so a reshaped file fails here instead of changing nothing."""
    lines, replaced = [], []
    for line in source.read_text().splitlines():
        key = line.split("=", 1)[0].strip() if "=" in line else None
        if key in values:
            line = f"{key} = {values[key]}"
            replaced.append(key)
        lines.append(line)
    assert sorted(replaced) == sorted(values), f"{source.name}: expected each of {sorted(values)} once"
    path.write_text("\n".join(lines) + "\n")
    return path


def modelling_settings(path: Path, models: list[str]) -> Path:
    """The packaged modelling settings, fitting only `models`, written to `path`."""
    return _settings_copy(MODELLING_TOML, path, {"models": "[" + ", ".join(f'"{m}"' for m in models) + "]"})


def quick_scraping(directory: Path) -> dict[str, str]:
    """SCRAPING_CONFIG for a run whose subject is not politeness: the packaged series list, every
    series in it, with no rate limit and 6 months of Treasury pages instead of 24 (the limiter and
    the backfill have their own tests in packages/scraping); at 2 requests a second the list's 57
    requests took half a minute, and the longer curve doubled modelling's time."""
    quick = {"requests_per_second": "0", "backfill_months": "6"}
    return {"SCRAPING_CONFIG": str(_settings_copy(SERIES_TOML, directory / "quick-series.toml", quick))}


def quick_modelling(directory: Path) -> dict[str, str]:
    """MODELLING_CONFIG for a run whose subject is not the models: the packaged settings without ETS's
    model search and optimised Theta, which take most of modelling's time on the bundled dataset."""
    path = modelling_settings(directory / "quick-modelling.toml", ["auto_sarima", "theta", "seasonal_naive"])
    return {"MODELLING_CONFIG": str(path)}


def cli(root: Path, share: Path, *args: str, timeout: float = 300, **extra: str) -> subprocess.CompletedProcess[str]:
    """`python -m ARGS` (a stage CLI, or storage_links) against `root` and `share`."""
    return subprocess.run(
        [PYTHON, "-m", *args],
        env=stage_env(root, share, **extra),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# ---- proving nothing was lost ---------------------------------------------------------------------


def hashes(path: Path, skip: tuple[str, ...] = ("logs/",)) -> dict[str, str]:
    """sha256 of every file under `path` (relative names), leaving out those under `skip`."""
    out = {}
    for p in sorted(path.rglob("*")):
        name = str(p.relative_to(path))
        if p.is_file() and not name.startswith(skip):
            out[name] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def one_line_error(stderr: str, *needles: str) -> str:
    """The single stderr line that holds every needle (case-insensitive); fails if there is not one."""
    lines = [line for line in stderr.splitlines() if all(n.lower() in line.lower() for n in needles)]
    assert lines, f"no line with {needles} in:\n{stderr[-3000:]}"
    assert "Traceback" not in stderr, stderr[-3000:]
    return lines[-1]


def leftovers(path: Path) -> list[str]:
    """Temporary files or staging directories an interrupted write could leave behind
    (storage_links.atomic_path's `.<name>.<random>.tmp`, forecasting's `.<run>.partial/`, ...)."""
    marks = (".tmp", ".part", ".partial", ".staging", "~")
    found = []
    for p in path.rglob("*"):
        parts = p.relative_to(path).parts
        if p.is_file() and any(part.endswith(marks) or part.startswith(".#") for part in parts):
            found.append("/".join(parts))
    return sorted(found)


# ---- a fake FRED in a process of its own, to be killed -------------------------------------------------

# Runs in the child with only the stdlib and fake_servers imported, so it starts in a blink.
_SERVE = """
import json, os, signal, sys, threading
sys.path.insert(0, sys.argv[1])
from packages.scraping.tests.fake_servers import FakeSeries, FakeServer
spec = json.loads(open(sys.argv[2]).read())
server = FakeServer()
server.add(*(FakeSeries(**s) for s in spec["series"]))
answer, count, lock = server.answer, [0], threading.Lock()
def dying_answer(path, params):
    with lock:
        count[0] += 1
        if spec["die_after"] and count[0] >= spec["die_after"]:
            os.kill(os.getpid(), signal.SIGKILL)  # a server dies: no answer, every socket drops
    return answer(path, params)
server.answer = dying_answer
server.latency = spec["latency"]
with server:
    print(server.url, flush=True)
    threading.Event().wait()
"""


class FredProcess:
    """The fake server in a child process: `url`, `kill()`; on request `die_after` it SIGKILLs itself."""

    def __init__(
        self,
        spec_dir: Path,
        ids: list[str],
        *,
        months: int = MONTHS,
        updated: str,
        die_after: int = 0,
        latency: float = 0.0,
    ):
        spec = spec_dir / f"fred-{updated[:10]}-{die_after}.json"
        series = [dataclasses.asdict(s) for s in fake_series(ids, months, updated)]
        spec.write_text(json.dumps({"series": series, "die_after": die_after, "latency": latency}))
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-c", _SERVE, str(REPO), str(spec)],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        assert self.url.startswith("http://"), f"fake server did not start (exit {self.proc.poll()})"

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def __enter__(self) -> FredProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


def make_env(root: Path, share: Path, **extra: str) -> dict[str, str]:
    """The environment tests._pipeline.make_run gives `make run`, for a run started with Popen."""
    env = stage_env(root, share, **extra)
    env.pop("PIPELINE_PROFILE")
    return env
