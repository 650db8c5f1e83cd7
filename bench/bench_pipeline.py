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

from _common import record  # noqa: E402

from tests._pipeline import make_project, make_run  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "1"))
TARGET = 0.10


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
    for _ in range(ROUNDS):
        with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
            root, share = make_project(Path(tmp) / "root"), Path(tmp) / "share"
            share.mkdir()
            first, _ = timed_run(root, share)
            second, stderr = timed_run(root, share)
            firsts.append(first)
            seconds.append(second)
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
    if notes:
        lines += ["", "The second run says:", "", *[f"    {line}" for line in notes]]
    record("pipeline", results, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
