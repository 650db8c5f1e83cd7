"""[[html]] tables in the series list: any HTML table described by a spec, fetched from the loopback server."""

from __future__ import annotations

import math

import pytest
from fake_servers import TEXTVIEW, FakeServer, monthly
from scraping import ConfigError, load_config, run
from scraping._html_table import months_to_fetch
from support import manifest, snapshot, stored, write_config

RATES = "/rates.html"
ROWS = [("01/02/2024", "4.10", "N/A"), ("01/03/2024", "4.20", "1,234.5"), ("01/04/2024", "4.30 %", "5.00%")]


def rates_source(base: str) -> str:
    return f"""
[[html]]
name = "rates"
title = "Example money-market rates"
units = "Percent"
frequency = "B"
url = "{base}/rates.html"
table = "table#rates"
date = {{ header = "Day", format = "%m/%d/%Y" }}
columns = {{ a = "Rate A", b = {{ header = "rate b" }} }}
"""


def rates_config(tmp_path, server: FakeServer, *, series: tuple[str, ...] = ()):
    return load_config(write_config(tmp_path, series=series, extra=rates_source(server.url)))


def serve(server: FakeServer, rows: list[tuple[str, str, str]], *, second_header: str = "Rate B") -> None:
    """A plain page whose columns are found by header text only (no classes), not in the spec's order."""
    body = "".join(f"<tr><td>{a}</td><td>{day}</td><td>{b}</td></tr>" for day, a, b in rows)
    server.pages[RATES] = (
        "<html><body><h1>Rates</h1><table id='rates'><thead><tr><th>Rate A</th><th> Day </th>"
        f"<th>{second_header}</th></tr></thead><tbody>{body}</tbody></table></body></html>"
    )


def test_a_configured_table_is_stored_with_its_manifest_entry(tmp_path, project, server):
    serve(server, ROWS)
    report = run(rates_config(tmp_path, server))

    assert [(r.key, r.describe()) for r in report.results] == [("html/rates", "updated (+3 rows)")]
    frame = stored(project, "html/rates")
    assert list(frame.columns) == ["date", "a", "b"]
    assert [d.strftime("%Y-%m-%d") for d in frame["date"]] == ["2024-01-02", "2024-01-03", "2024-01-04"]
    assert list(frame["a"]) == [4.10, 4.20, 4.30]
    assert math.isnan(frame["b"][0]) and list(frame["b"][1:]) == [1234.5, 5.0]
    entry = manifest(project)["series"]["html/rates"]
    assert entry["source"] == "html" and entry["id"] == "rates" and entry["origin"] == "network"
    assert (entry["title"], entry["units"], entry["frequency"]) == ("Example money-market rates", "Percent", "B")
    assert entry["columns"] == ["a", "b"] and entry["rows"] == 3


def test_row_header_cells_and_a_footnote_row_are_read_as_a_reader_sees_them(tmp_path, project, server):
    """No <thead>: the first row of <th>s is the header; a date may head its row in a <th scope="row">;
    a row with one cell across the table is a note, not data."""
    body = "".join(f"<tr><td>{a}</td><th scope='row'>{day}</th><td>{b}</td></tr>" for day, a, b in ROWS)
    server.pages[RATES] = (
        "<table id='rates'><tr><th>Rate A</th><th>Day</th><th>Rate B</th></tr>"
        f"{body}<tr><td colspan='3'>Source: an example bank. N/A: not published.</td></tr></table>"
    )

    report = run(rates_config(tmp_path, server))

    assert [r.describe() for r in report.results] == ["updated (+3 rows)"]
    frame = stored(project, "html/rates")
    assert list(frame["a"]) == [4.10, 4.20, 4.30] and list(frame["b"][1:]) == [1234.5, 5.0]


def test_a_rerun_asks_once_rewrites_nothing_unchanged_and_adds_new_rows(tmp_path, project, server):
    serve(server, ROWS)
    config = rates_config(tmp_path, server)
    run(config)
    before = snapshot(project)
    server.reset_requests()

    report = run(config)

    assert [r.describe() for r in report.results] == ["unchanged"]
    assert len(server.requests_to(RATES)) == 1 and snapshot(project) == before
    serve(server, [*ROWS, ("01/05/2024", "4.40", "5.10")])
    assert [r.describe() for r in run(config).results] == ["updated (+1 rows)"]
    assert len(stored(project, "html/rates")) == 4


def test_a_page_emptied_of_its_stored_rows_fails_and_keeps_its_file(tmp_path, project, server):
    serve(server, ROWS)
    config = rates_config(tmp_path, server)
    run(config)
    before = snapshot(project)
    serve(server, [])

    report = run(config)

    assert [r.describe() for r in report.results] == [
        "failed: Example money-market rates: the page has no rows, but 3 are stored; the layout or address changed"
    ]
    assert snapshot(project) == before


def test_a_changed_layout_fails_that_table_only_and_keeps_its_file(tmp_path, project, server):
    server.add(monthly("UNRATE"))
    serve(server, ROWS)
    config = rates_config(tmp_path, server, series=("UNRATE",))
    run(config)
    before = snapshot(project)["html/rates.parquet"]
    serve(server, [*ROWS, ("01/05/2024", "4.40", "5.10")], second_header="Rate C")

    report = run(config)

    results = {r.key: r for r in report.results}
    assert results["html/rates"].status == "failed"
    assert "columns not found: b (header 'rate b'); the page layout changed" in results["html/rates"].detail
    assert results["fred/UNRATE"].status == "unchanged"
    assert snapshot(project)["html/rates.parquet"] == before


def test_a_monthly_url_is_fetched_from_the_backfill_then_from_the_last_stored_month(tmp_path, project, server):
    extra = f"""
[[html]]
name = "curve_ends"
frequency = "B"
url = "{server.url}{TEXTVIEW}?type=daily_treasury_yield_curve&field_tdr_date_value_month={{month:%Y%m}}"
table = "table.views-table"
empty = ".view-empty"
backfill_months = 3
date = {{ header = "Date", format = "%m/%d/%Y" }}
columns = {{ short = "1 Mo", long = {{ class = "views-field-field-bc-30year" }} }}
"""
    config = load_config(write_config(tmp_path, series=(), extra=extra))
    run(config)
    assert len(server.requests_to("TextView")) == 3
    frame = stored(project, "html/curve_ends")
    first = frame["date"].iloc[0].date()
    assert list(frame.columns) == ["date", "short", "long"]
    assert frame["long"].iloc[0] == float(server.treasury_value(first, "30yr"))
    server.reset_requests()

    run(config)

    last = frame["date"].iloc[-1].date()
    asked = {r.params["field_tdr_date_value_month"] for r in server.requests_to("TextView")}
    assert asked == {m.strftime("%Y%m") for m in months_to_fetch(last, first.today(), 3)}
    assert manifest(project)["series"]["html/curve_ends"]["title"] == "curve_ends"  # no title given: its name


def test_without_a_fred_key_the_tables_are_not_fetched(tmp_path, project, server, monkeypatch):
    monkeypatch.delenv("FRED_API_KEY")
    serve(server, ROWS)
    report = run(rates_config(tmp_path, server))
    assert report.offline and server.requests_to("") == []
    assert "html/rates" not in manifest(project)["series"]


BAD = [
    ("name = 'Rates!'", "html[0].name must be 1-64 of a-z, 0-9 and '_', not 'Rates!'"),
    ("selector = 'table'", "html.rates.selector: unknown key"),
    ("table = 'table['", "html.rates.table: 'table[' is not a CSS selector"),
    ("frequency = 'H'", "html.rates.frequency must be one of D, B, W, M, Q, A, not 'H'"),
    ("url = 'ftp://example.org/rates'", "html.rates.url: must be an http:// or https:// URL"),
    ("url = 'https://example.org/{page}'", "html.rates.url: only {month} (with a date format"),
    ("url = 'https://example.org/{month[0]}'", "html.rates.url: only {month} (with a date format"),
    ("url = 'https://example.org/{month.year.x}'", "html.rates.url: only {month} (with a date format"),
    ("backfill_months = 3", "html.rates.backfill_months: only for a url with {month}"),
    ("columns = {}", "html.rates.columns must be a table of stored name = header (at least one)"),
    ("columns = { a = { required = false } }", "html.rates.columns.a needs a header or a class"),
    ("columns = { date = 'Date' }", "html.rates.columns.date: a stored name is"),
    ("date = { header = 'Day', format = 'YYYY' }", "html.rates.date.format: 'YYYY' has no date fields"),
    ("date = { header = 'Day', required = false }", "html.rates.date.required: unknown key"),
    ("missing = 'N/A'", "html.rates.missing must be a list of strings"),
]


@pytest.mark.parametrize(("line", "message"), BAD, ids=[b[0] for b in BAD])
def test_a_malformed_table_spec_names_the_file_and_key(tmp_path, line, message):
    key = line.split(" = ")[0]
    lines = rates_source("https://example.org").splitlines()
    spec = "\n".join([*(ln for ln in lines if not ln.startswith(f"{key} = ")), line])  # replaced or added
    path = write_config(tmp_path, series=(), extra=spec)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value)


def test_two_tables_with_one_name_and_a_missing_key_are_named(tmp_path):
    source = rates_source("https://example.org")
    with pytest.raises(ConfigError, match=r"html\.rates: the name is used twice"):
        load_config(write_config(tmp_path, series=(), extra=source + source))
    without_table = "\n".join(ln for ln in source.splitlines() if not ln.startswith("table ="))
    with pytest.raises(ConfigError, match=r"html\.rates\.table is missing"):
        load_config(write_config(tmp_path, series=(), extra=without_table))
