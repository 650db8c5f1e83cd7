"""Modelling stopped half-way (SIGTERM, as `docker stop` sends) and resumed, against one uninterrupted run.

12 monthly series of 10 years (seeded random walks with a season) on a throw-away project root, the
packaged config, `--jobs 2`. Each round: one uninterrupted run; then, from a fresh cache, a run
stopped once half the series are checkpointed, and the run that resumes it. The resumed run takes
the finished series from cache/checkpoints/, so it should cost about what the unfinished half costs
(resumed / uninterrupted about 0.5; stopped + resumed about 1, the excess being the fits under way
at the stop). The resumed run's forecasts, backtests and scores must equal the
uninterrupted run's. Wall and CPU seconds (the stage and its workers).

Run by `make bench` with the root venv's python; writes bench/results/modelling_resume.{json,md}.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import record  # noqa: E402
from storage_links import data_dir  # noqa: E402
from storage_links.testing import scaffold_project  # noqa: E402

REPO = HERE.parent
SERIES = 12
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "1"))
FILES = ("forecasts", "backtests", "scores")


def make_root(path: Path) -> Path:
    """A project whose scraped_data/ holds SERIES monthly series, as scraping stores them."""
    root = scaffold_project(path, [REPO / "packages" / "modelling", REPO / "packages" / "scraping"])
    os.environ["PIPELINE_ROOT"] = str(root)  # where data_dir() looks, here and in the stage
    scraped = data_dir("scraping", "scraped_data")
    scraped.mkdir(parents=True, exist_ok=True)
    manifest: dict = {"format": 1, "series": {}}
    for k in range(SERIES):
        t = np.arange(120)
        noise = np.random.default_rng(k).normal(0, 1, 120).cumsum() * 0.3
        values = 100 + 0.3 * t + 5 * np.sin(2 * np.pi * t / 12) + noise
        file = scraped / f"S{k:02d}.parquet"
        pd.DataFrame({"date": pd.date_range("2010-01-01", periods=120, freq="MS"), "value": values}).to_parquet(
            file, index=False
        )
        manifest["series"][f"bench/S{k:02d}"] = {
            "source": "bench", "id": f"S{k:02d}", "title": f"S{k:02d}", "units": "Index", "frequency": "M",
            "file": file.name, "columns": ["value"], "origin": "bundled", "last_observation": "2019-12-01",
            "fetched_at": "2026-01-01T00:00:00+00:00",
            "content_hash": "sha256:" + hashlib.sha256(file.read_bytes()).hexdigest(),
        }  # fmt: skip
    (scraped / "manifest.json").write_text(json.dumps(manifest))
    return root


def stage(run_id: str, stop_after: int | None = None) -> dict:
    """One `modelling run`; with `stop_after`, SIGTERM once that many series are checkpointed."""
    env = {**os.environ, "PIPELINE_RUN_ID": run_id, "PIPELINE_PROFILE": "local"}
    checkpoints = data_dir("modelling", "cache") / "checkpoints"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelling", "run", "--jobs", "2", "--log-level", "WARNING"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    if stop_after is not None:
        while proc.poll() is None and len(list(checkpoints.glob("*.json"))) < stop_after:
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate()
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    expected = 143 if stop_after is not None else 0
    if proc.returncode != expected:
        sys.exit(f"modelling run {run_id}: exit {proc.returncode}, expected {expected}:\n{stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(seconds, 2), "cpu_s": round(cpu, 2)}


def same_outputs(a: str, b: str) -> bool:
    predictions = data_dir("modelling", "predictions")

    def read(run_id: str, name: str) -> pd.DataFrame:
        return pd.read_parquet(predictions / run_id / f"{name}.parquet")

    return all(read(a, name).equals(read(b, name)) for name in FILES)


def one_round(base: Path, n: int) -> dict:
    make_root(base / f"root{n}")
    whole = stage("whole")
    # The next run starts from nothing: no cached fits, no previous run to reuse.
    shutil.rmtree(data_dir("modelling", "cache") / "checkpoints", ignore_errors=True)
    shutil.rmtree(data_dir("modelling", "cache") / "sarima_params", ignore_errors=True)
    (data_dir("modelling", "predictions") / "LATEST").unlink()
    stopped = stage("stopped", stop_after=SERIES // 2)
    resumed = stage("resumed")
    return {"whole": whole, "stopped": stopped, "resumed": resumed, "same_outputs": same_outputs("whole", "resumed")}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rounds = [one_round(Path(tmp), n) for n in range(ROUNDS)]

    def median(part: str, what: str) -> float:
        return round(statistics.median(r[part][what] for r in rounds), 2)

    summary = {
        part: {what: median(part, what) for what in ("wall_s", "cpu_s")} for part in ("whole", "stopped", "resumed")
    }
    ratios = {
        "resumed_over_whole_cpu": round(summary["resumed"]["cpu_s"] / summary["whole"]["cpu_s"], 2),
        "stopped_plus_resumed_over_whole_cpu": round(
            (summary["stopped"]["cpu_s"] + summary["resumed"]["cpu_s"]) / summary["whole"]["cpu_s"], 2
        ),
    }
    same = all(r["same_outputs"] for r in rounds)
    lines = [
        __doc__.split("\n\n")[1].replace("\n", " "),
        "",
        f"Rounds: {ROUNDS} (BENCH_ROUNDS), medians.",
        "",
        "| run | wall (s) | CPU (s) |",
        "|---|---|---|",
        *(f"| {part} | {summary[part]['wall_s']} | {summary[part]['cpu_s']} |" for part in summary),
        "",
        f"Resumed / uninterrupted, CPU: {ratios['resumed_over_whole_cpu']}; stopped + resumed / uninterrupted, "
        f"CPU: {ratios['stopped_plus_resumed_over_whole_cpu']}. The resumed run's forecasts, backtests and scores "
        f"equal the uninterrupted run's: {'yes' if same else 'NO'}.",
        "",
        "Command: `make bench` (or `.venv/bin/python bench/bench_modelling_resume.py`).",
    ]
    record("modelling_resume", {"rounds": rounds, "summary": summary, "ratios": ratios, "same_outputs": same}, lines)
    print("\n".join(lines))
    if not same:
        sys.exit("the resumed run's outputs differ from the uninterrupted run's")


if __name__ == "__main__":
    main()
