"""The Treasury par yield curve: pages like home.treasury.gov's TextView, parsed by header or cell class."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime

import pytest
from fake_servers import FakeServer
from scraping import LayoutChanged, load_config, run
from scraping._html_table import months_to_fetch, parse_table
from scraping._treasury import PAR_YIELD_CURVE
from support import manifest, snapshot, stored, write_config

MATURITY_COLUMNS = [
    "1mo",
    "1.5mo",
    "2mo",
    "3mo",
    "4mo",
    "6mo",
    "1yr",
    "2yr",
    "3yr",
    "5yr",
    "7yr",
    "10yr",
    "20yr",
    "30yr",
]


def treasury_run(tmp_path):
    return run(load_config(write_config(tmp_path, series=(), treasury=True)))


def expected_days(server: FakeServer) -> list[date]:
    months = months_to_fetch(None, datetime.now(UTC).date(), 2)
    return [d for m in months for d in server.treasury_days(m.year, m.month)]


def test_first_run_backfills_the_configured_months(tmp_path, project, server):
    report = treasury_run(tmp_path)

    assert report.results[0].key == "treasury/par_yield_curve" and report.results[0].status == "updated"
    pages = server.requests_to("TextView")
    assert len(pages) == 2 and all(p.params["type"] == "daily_treasury_yield_curve" for p in pages)
    frame = stored(project, "treasury/par_yield_curve")
    assert list(frame.columns) == ["date", *MATURITY_COLUMNS] == ["date", *(c.name for c in PAR_YIELD_CURVE.columns)]
    days = expected_days(server)
    assert [d.date() for d in frame["date"]] == days
    assert str(frame["date"].dtype) == "datetime64[ns]" and all(frame[c].dtype == "float64" for c in MATURITY_COLUMNS)
    first = days[0]
    assert frame["10yr"].iloc[0] == float(server.treasury_value(first, "10yr"))
    assert frame["30yr"].iloc[-1] == float(server.treasury_value(days[-1], "30yr"))
    entry = manifest(project)["series"]["treasury/par_yield_curve"]
    assert entry["source"] == "treasury" and entry["frequency"] == "B" and entry["columns"] == MATURITY_COLUMNS
    assert entry["rows"] == len(days) and entry["origin"] == "network"


def test_na_cells_become_missing_values(tmp_path, project, server):
    day = expected_days(server)[0]
    server.treasury_override[(day, "2mo")] = "N/A"

    treasury_run(tmp_path)

    frame = stored(project, "treasury/par_yield_curve")
    assert math.isnan(frame["2mo"].iloc[0]) and not math.isnan(frame["3mo"].iloc[0])


def test_rerun_fetches_only_from_the_last_stored_month(tmp_path, project, server):
    treasury_run(tmp_path)
    before = snapshot(project)
    server.reset_requests()

    report = treasury_run(tmp_path)

    last = max(expected_days(server))
    months_asked = {p.params["field_tdr_date_value_month"] for p in server.requests_to("TextView")}
    expected = months_to_fetch(last, datetime.now(UTC).date(), 2, weekdays_only=True)
    assert months_asked == {m.strftime("%Y%m") for m in expected}
    assert len(months_asked) <= 1 and report.results[0].status == "unchanged"
    assert snapshot(project) == before


def test_changed_layout_names_the_missing_column_and_keeps_the_stored_file(tmp_path, project, server):
    treasury_run(tmp_path)
    before = snapshot(project)
    server.treasury_layout = "renamed"

    report = treasury_run(tmp_path)

    detail = report.results[0].detail
    assert report.results[0].status == "failed"
    assert detail.startswith("Treasury par yield curve ")
    assert "columns not found: 10yr (class 'views-field-field-bc-10year' or header '10 Yr')" in detail
    assert snapshot(project) == before


def test_pages_emptied_of_stored_days_fail_and_keep_the_stored_file(tmp_path, project, server):
    """The site stops honouring the month: every page says "No Record Found", also for months whose
    days are stored. That is a changed site, not a quiet day."""
    treasury_run(tmp_path)
    before = snapshot(project)
    dates = stored(project, "treasury/par_yield_curve")["date"]
    month = dates.iloc[-1].date().replace(day=1)  # the first page a re-run asks for
    held = int((dates >= str(month)).sum())
    server.treasury_days = lambda year, month: []

    report = treasury_run(tmp_path)

    assert report.results[0].describe() == (
        f"failed: Treasury par yield curve {month:%Y-%m}: the page has no rows, "
        f"but {held} are stored for that month; the layout or address changed"
    )
    assert snapshot(project) == before


def test_page_without_the_table_is_a_layout_error(tmp_path, project, server):
    server.treasury_layout = "no-table"

    report = treasury_run(tmp_path)

    assert "no table matches 'table.views-table'; the page layout changed" in report.results[0].detail
    assert not (project / "treasury").exists()


PAGE = """<html><body><div class="view-content"><table class="usa-table views-table">
<thead><tr>
  <th class="views-field views-field-field-bc-30year">30 Yr</th>
  <th class="views-field views-field-field-tdr-date">Date</th>
  <th class="views-field">{one_month_header}</th>
  {rest}
</tr></thead>
<tbody><tr>
  <td>4.70</td><td><time datetime="2024-11-01T12:00:00Z">11/01/2024</time></td><td>4.65 </td>{cells}
</tr></tbody></table></div></body></html>"""


def page(one_month_header: str = "1 Mo", skip: str = "") -> str:
    rest = [c for c in PAR_YIELD_CURVE.columns if c.name not in ("1mo", "30yr", "1.5mo", skip)]
    return PAGE.format(
        one_month_header=one_month_header,
        rest="".join(f'<th class="views-field {c.cell_class}">x</th>' for c in rest),
        cells="".join("<td>N/A</td>" if c.name == "4mo" else "<td>4.50</td>" for c in rest),
    )


def test_columns_are_found_by_header_text_or_class_in_any_order():
    frame = parse_table(page(one_month_header=" 1  mo "), PAR_YIELD_CURVE, "test page")

    row = frame.iloc[0]
    assert row["date"] == datetime(2024, 11, 1)
    assert (row["30yr"], row["1mo"], row["10yr"]) == (4.70, 4.65, 4.50)
    assert math.isnan(row["4mo"]) and math.isnan(row["1.5mo"])  # N/A, and a column older pages lack


def test_a_required_column_missing_from_the_page_is_named():
    with pytest.raises(LayoutChanged, match=r"test page: columns not found: 7yr \(class 'views-field-field-bc-7year'"):
        parse_table(page(skip="7yr"), PAR_YIELD_CURVE, "test page")


def test_a_cell_that_is_not_a_number_is_named_with_row_and_column():
    with pytest.raises(LayoutChanged, match=r"test page: row 1, column 1mo: '4\.65\*' is not a number"):
        parse_table(page().replace("4.65 ", "4.65*"), PAR_YIELD_CURVE, "test page")


def test_a_month_with_no_published_day_yet_is_empty_not_an_error():
    html = '<html><body><div class="view"><div class="view-empty">No Record Found</div></div></body></html>'

    frame = parse_table(html, PAR_YIELD_CURVE, "test page")

    assert frame.empty and list(frame.columns) == ["date", *MATURITY_COLUMNS]


def test_months_to_fetch():
    assert months_to_fetch(None, date(2024, 2, 10), 3) == [date(2023, 12, 1), date(2024, 1, 1), date(2024, 2, 1)]
    assert months_to_fetch(date(2024, 2, 9), date(2024, 2, 10), 3) == [date(2024, 2, 1)]
    assert months_to_fetch(date(2023, 12, 29), date(2024, 1, 2), 24) == [date(2023, 12, 1), date(2024, 1, 1)]
    # Friday 29 December ends its month's weekdays: for business-daily data December is done.
    assert months_to_fetch(date(2023, 12, 29), date(2024, 1, 2), 24, weekdays_only=True) == [date(2024, 1, 1)]
    assert months_to_fetch(date(2023, 12, 28), date(2024, 1, 2), 24, weekdays_only=True)[0] == date(2023, 12, 1)
    assert months_to_fetch(date(2024, 1, 31), date(2024, 1, 31), 24) == []  # nothing can be newer yet
