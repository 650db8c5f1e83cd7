"""The U.S. Treasury daily par yield curve: one monthly TextView page per request, one column a maturity."""

from __future__ import annotations

from scraping._config import TreasurySettings
from scraping._html_table import Column, TableSource, TableSpec

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
META = {
    "source": "treasury",
    "id": "daily_treasury_yield_curve",
    "title": "Daily Treasury Par Yield Curve Rates",
    "units": "Percent",
    "frequency": "B",
    "seasonal_adjustment": "Not Seasonally Adjusted",
    "last_updated": None,  # the page does not say; fetched_at tells when it last changed here
}


def source(settings: TreasurySettings) -> TableSource:
    return TableSource(KEY, PAR_YIELD_CURVE, META, settings.base_url, settings.backfill_months)
