"""The report opened in a real headless browser (Debian's chromium): it must render its charts offline."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from forecasting._cli import main
from PIL import Image, ImageStat
from storage_links import data_dir

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
FORECAST_ORANGE = (0xD9, 0x48, 0x01)  # the forecast line's colour in every chart


def near(pixel: tuple[int, int, int], colour: tuple[int, int, int], tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=True))


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (scripts/install-test-services.sh installs it)")
def test_report_renders_charts_in_headless_chromium(make_predictions, monkeypatch, tmp_path):
    make_predictions("p1")
    monkeypatch.setenv("PIPELINE_RUN_ID", "r1")
    assert main(["run"]) == 0
    report = data_dir("forecasting", "data") / "output" / "r1" / "report.html"
    shot = tmp_path / "report.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--hide-scrollbars"]
    flags += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
    flags += [f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1280,900"]
    done = subprocess.run(
        [CHROMIUM, *flags, report.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert shot.is_file(), f"no screenshot (exit {done.returncode}): {done.stderr[-800:]}"
    image = Image.open(shot).convert("RGB")
    assert image.size == (1280, 900)
    assert ImageStat.Stat(image).stddev[0] > 10  # not a blank page
    colours = image.getcolors(1 << 20)
    assert colours is not None and len(colours) > 200  # text, table rules and anti-aliased chart lines
    orange = sum(count for count, pixel in colours if near(pixel, FORECAST_ORANGE))
    assert orange > 200, f"no forecast line visible ({orange} orange pixels); see {shot}"
