"""Shared by the benchmark scripts: paired timing and the record written under bench/results/."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def wall(cmd: list[str], **kwargs) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)
    return time.perf_counter() - start


def paired_medians(commands: dict[str, tuple[list[str], dict]], rounds: int) -> dict[str, float]:
    """Median wall time of each command, run interleaved so that machine noise hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(rounds):
        for name, (cmd, kwargs) in commands.items():
            times[name].append(wall(cmd, **kwargs))
    return {name: statistics.median(values) for name, values in times.items()}


def machine() -> dict[str, str | int]:
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count() or 0,
    }


def record(name: str, results: dict, markdown_lines: list[str]) -> None:
    """Write bench/results/<name>.json and .md."""
    RESULTS.mkdir(exist_ok=True)
    info = machine()
    (RESULTS / f"{name}.json").write_text(json.dumps({"machine": info, **results}, indent=2) + "\n")
    header = [f"# {name} benchmark", "", f"{info['date']}, Python {info['python']}, {info['platform']}, "
              f"{info['cpus']} CPUs", ""]  # fmt: skip
    (RESULTS / f"{name}.md").write_text("\n".join(header + markdown_lines) + "\n")
