"""The report's charts: series titles and units (scraping's manifest text) are drawn as they are."""

from __future__ import annotations

import io
import re

import matplotlib
import pandas as pd
from forecasting._cli import main
from forecasting._inputs import Label
from forecasting._report import _figure
from storage_links import data_dir

from packages.forecasting.tests.conftest import LABELS

DOLLARS = "Trade balance, U.S. $ per Euro, $ millions"  # as FRED words some series
UNBALANCED = "$^{bad$"  # not valid mathtext: matplotlib failed the whole report on it


def drawn_texts(label: Label) -> list[str]:
    """Every text the chart draws, read back from it as SVG with text kept as text (not glyph paths)."""
    dates = pd.date_range("2020-01-01", periods=6, freq="MS")
    history = pd.DataFrame({"date": dates, "value": [1.0, 2, 3, 2, 3, 4]})
    ahead = pd.date_range("2020-07-01", periods=2, freq="MS")
    forecast = pd.DataFrame({"date": ahead, "mean": [4.0, 5], "lo80": [3.0, 4], "hi80": [5.0, 6], "lo95": [2.0, 3],
                             "hi95": [6.0, 7]})  # fmt: skip
    svg = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        _figure("DEXUSEU", label, history, forecast, 96).savefig(svg, format="svg")
    return re.findall(r"<text[^>]*>([^<]*)</text>", svg.getvalue())


def test_dollar_signs_in_titles_and_units_are_drawn_literally():
    # As mathtext, the `$ per Euro, $` pair was drawn as italic "perEuro," and both `$` were lost.
    texts = drawn_texts(Label(DOLLARS, "U.S. $ per Euro", "fred", "DEXUSEU"))

    assert f"DEXUSEU: {DOLLARS}" in texts
    assert "U.S. $ per Euro" in texts


def test_units_that_are_not_valid_mathtext_are_drawn_as_text():
    assert UNBALANCED in drawn_texts(Label(DOLLARS, UNBALANCED, "fred", "DEXUSEU"))


def test_a_run_whose_labels_hold_dollar_signs_publishes_its_report(make_predictions, monkeypatch):
    labels = {
        **LABELS,
        "GDP": {**LABELS["GDP"], "units": UNBALANCED},
        "CPI": {**LABELS["CPI"], "title": DOLLARS, "units": "$ millions"},
    }
    make_predictions("p1", labels=labels)
    monkeypatch.setenv("PIPELINE_RUN_ID", "r1")

    assert main(["run"]) == 0

    page = (data_dir("forecasting", "data") / "output" / "r1" / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 3
    assert f"<p>{DOLLARS} ($ millions)</p>" in page
