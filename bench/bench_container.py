"""Container start overhead: the entrypoint with all four skips and the links already in place,
against `python3 -c pass` with the same interpreter the entrypoint uses (the pyenv shim on
PATH costs more than Python itself, which would flatter the ratio), measured paired (target: at most 2x)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import paired_medians, record
from tests._image import build_app_root, image_env

ROUNDS = 30
SKIPS = ["--skip-scraping", "--skip-modeling", "--skip-forecasting", "--skip-upload"]
TARGET = 2.0


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        app_root = build_app_root(Path(tmp) / "app")
        share = Path(tmp) / "share"
        share.mkdir()
        env = image_env(app_root, share)
        entrypoint = [str(app_root / "docker" / "entrypoint.sh"), *SKIPS]
        kwargs = {"env": env, "cwd": app_root / "packages"}
        paired_medians({"warm-up": (entrypoint, kwargs)}, 1)  # first start migrates and links
        medians = paired_medians(
            {"python3 -c pass": ([sys.executable, "-c", "pass"], {}), "entrypoint, all skips": (entrypoint, kwargs)},
            ROUNDS,
        )
    ratio = medians["entrypoint, all skips"] / medians["python3 -c pass"]
    verdict = "meets" if ratio <= TARGET else "MISSES"
    record(
        "container",
        {"rounds": ROUNDS, "median_seconds": medians, "ratio": ratio, "target_ratio": TARGET},
        [
            f"Container start with all four skips, links in place, {ROUNDS} paired rounds (median wall time):",
            "",
            "| command | median s |",
            "|---|---|",
            *[f"| {name} | {seconds:.4f} |" for name, seconds in medians.items()],
            "",
            f"Ratio {ratio:.2f}x (target at most {TARGET}x): {verdict} the target.",
            "",
            "Command: `python bench/bench_container.py` (run by `make bench`).",
        ],
    )
    print(f"container start: {ratio:.2f}x python3 -c pass ({verdict} target {TARGET}x)")


if __name__ == "__main__":
    main()
