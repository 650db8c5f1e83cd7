"""The U.S. Treasury daily par yield curve: one monthly TextView page per request, one column a maturity."""

from __future__ import annotations

from datetime import date

import pandas as pd

from scraping._html_table import Column, TableSpec, parse_table
from scraping._http import Fetcher

KEY = "treasury/par_yield_curve"


def _maturity(name: str, field: str, header: str, *, required: bool = True) -> Column:
    return Column(name, f"views-field-field-bc-{field}", header, required)


# The home.treasury.gov Drupal view: <table class="usa-table views-table ...">, one <th>/<td> class
# per field (views-field-field-bc-10year ...), dates as MM/DD/YYYY, "N/A" before a maturity existed.
PAR_YIELD_CURVE = TableSpec(
    title="Treasury par yield curve",
    url_template=(
        "{base}/resource-center/data-chart-center/interest-rates/TextView"
        "?type=daily_treasury_yield_curve&field_tdr_date_value_month={month:%Y%m}"
    ),
    table_selector="table.views-table",
    row_selector="tbody tr",
    empty_selector=".view-empty",
    date_column=Column("date", "views-field-field-tdr-date", "Date"),
    date_format="%m/%d/%Y",
    columns=(
        _maturity("1mo", "1month", "1 Mo"),
        # 1.5 month bills began in 2025; older pages lack the column
        _maturity("1.5mo", "1-5month", "1.5 Mo", required=False),
        _maturity("2mo", "2month", "2 Mo"),
        _maturity("3mo", "3month", "3 Mo"),
        _maturity("4mo", "4month", "4 Mo"),
        _maturity("6mo", "6month", "6 Mo"),
        _maturity("1yr", "1year", "1 Yr"),
        _maturity("2yr", "2year", "2 Yr"),
        _maturity("3yr", "3year", "3 Yr"),
        _maturity("5yr", "5year", "5 Yr"),
        _maturity("7yr", "7year", "7 Yr"),
        _maturity("10yr", "10year", "10 Yr"),
        _maturity("20yr", "20year", "20 Yr"),
        _maturity("30yr", "30year", "30 Yr"),
    ),
    missing_markers=frozenset({"N/A", "", "-"}),
)
COLUMNS = [c.name for c in PAR_YIELD_CURVE.columns]
META = {
    "source": "treasury",
    "id": "daily_treasury_yield_curve",
    "title": "Daily Treasury Par Yield Curve Rates",
    "units": "Percent",
    "frequency": "B",
    "seasonal_adjustment": "Not Seasonally Adjusted",
    "last_updated": None,  # the page does not say; fetched_at tells when it last changed here
}


def fetch_month(fetcher: Fetcher, base_url: str, month: date) -> pd.DataFrame:
    url = PAR_YIELD_CURVE.url(base_url, month)
    what = f"{PAR_YIELD_CURVE.title} {month:%Y-%m}"
    response = fetcher.get(url, what=what)
    return parse_table(response.text, PAR_YIELD_CURVE, f"{what} ({url})")


def months_to_fetch(last_stored: date | None, today: date, backfill_months: int) -> list[date]:
    """First days of the months to ask for: from the stored data's last month (or the backfill) to today's."""
    end = today.replace(day=1)
    if last_stored is not None:
        start = last_stored.replace(day=1)
    else:
        index = end.year * 12 + end.month - 1 - (backfill_months - 1)
        start = date(index // 12, index % 12 + 1, 1)
    months = []
    while start <= end:
        months.append(start)
        start = date(start.year + start.month // 12, start.month % 12 + 1, 1)
    return months
