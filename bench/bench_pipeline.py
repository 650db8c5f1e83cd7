"""`make run` twice on the offline default (issue 7's target): the second run, with nothing new, takes
at most 10% of the first run's time.

Both runs go to a throw-away project root and share (tests/_pipeline.py's helpers), measured in the
same process, one after the other, `ROUNDS` times over fresh roots; the median of each is compared.
Run by `make bench` with the root venv's python; writes bench/results/pipeline.{json,md}.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _common import record, wall  # noqa: E402

from tests._pipeline import REPO, make_project, make_run  # noqa: E402
from tests._services import stage_env  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "1"))
TARGET = 0.10
PYTHON = str(REPO / ".venv" / "bin" / "python")
# What the second `make run` is made of: each stage on its own with nothing new, and its imports alone.
STAGES = {
    "storage-links init": ["-m", "storage_links", "init"],
    "scraping run": ["-m", "scraping", "run"],
    "modelling run": ["-m", "modelling", "run"],
    "forecasting run": ["-m", "forecasting", "run"],
    "forecasting upload": ["-m", "forecasting", "upload"],
}
IMPORTS = {
    "import scraping._cli": "scraping._cli",
    "import modelling._cli": "modelling._cli",
    "import forecasting._cli": "forecasting._cli",
    "python -c pass": "",
}


def breakdown(root: Path, share: Path) -> dict[str, float]:
    """Wall time of each stage CLI on a root with nothing new, and of importing each stage's CLI."""
    env = stage_env(root, share)
    out = {name: wall([PYTHON, *args], env=env) for name, args in STAGES.items()}
    for name, module in IMPORTS.items():
        out[name] = wall([PYTHON, "-c", f"import {module}" if module else "pass"], env=env)
    return out


def timed_run(root: Path, share: Path) -> tuple[float, str]:
    start = time.perf_counter()
    result = make_run(root, share)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"make run failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return elapsed, result.stderr


def main() -> None:
    firsts: list[float] = []
    seconds: list[float] = []
    notes: list[str] = []
    parts: dict[str, float] = {}
    for _ in range(ROUNDS):
        with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
            root, share = make_project(Path(tmp) / "root"), Path(tmp) / "share"
            share.mkdir()
            first, _ = timed_run(root, share)
            second, stderr = timed_run(root, share)
            firsts.append(first)
            seconds.append(second)
            parts = breakdown(root, share)
            notes = [line for line in stderr.splitlines() if "nothing new" in line.lower() or "unchanged" in line]
            print(f"first {first:.2f} s, second {second:.2f} s", file=sys.stderr)
    first, second = statistics.median(firsts), statistics.median(seconds)
    ratio = second / first
    verdict = "meets the target" if ratio <= TARGET else "MISSES the target"
    results = {
        "rounds": ROUNDS,
        "first_run_s": firsts,
        "second_run_s": seconds,
        "median_first_s": round(first, 3),
        "median_second_s": round(second, 3),
        "ratio": round(ratio, 4),
        "target_ratio": TARGET,
        "meets_target": ratio <= TARGET,
        "second_run_says": notes,
        "second_run_breakdown_s": {k: round(v, 3) for k, v in parts.items()},
    }
    lines = [
        f"`make run` on the offline default (bundled dataset, no keys), a fresh root and share, then again "
        f"with nothing new; {ROUNDS} round(s), median wall time:",
        "",
        "| run | median s |",
        "|---|---|",
        f"| first | {first:.2f} |",
        f"| second, nothing new | {second:.2f} |",
        "",
        f"Ratio {ratio:.1%} (target at most {TARGET:.0%}): {verdict}.",
    ]
    lines += [
        "",
        "Where the second run's time goes (each stage alone on the same root, nothing new; last round):",
        "",
        "| command | s |",
        "|---|---|",
        *[f"| {name} | {seconds_:.2f} |" for name, seconds_ in parts.items()],
    ]
    if notes:
        lines += ["", "The second run says:", "", *[f"    {line}" for line in notes]]
    lines += ["", "Command: `python bench/bench_pipeline.py` (run by `make bench`)."]
    record("pipeline", results, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
