"""The offline dataset: statsmodels' U.S. quarterly macro data (1959Q1-2009Q3), stored like fetched series.

Titles and units come from the dataset's own notes (statsmodels.datasets.macrodata.NOTE).
"""

from __future__ import annotations

from importlib.metadata import version
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

SA = "Seasonally Adjusted Annual Rate"
_CHAINED = "Billions of Chained 2005 Dollars"
# column -> (title, units, seasonal adjustment)
SERIES: dict[str, tuple[str, str, str]] = {
    "realgdp": ("Real Gross Domestic Product", _CHAINED, SA),
    "realcons": ("Real Personal Consumption Expenditures", _CHAINED, SA),
    "realinv": ("Real Gross Private Domestic Investment", _CHAINED, SA),
    "realgovt": ("Real Federal Consumption Expenditures and Gross Investment", _CHAINED, SA),
    "realdpi": ("Real Private Disposable Income", _CHAINED, SA),
    "cpi": (
        "Consumer Price Index for All Urban Consumers: All Items, End of Quarter",
        "Index 1982-1984=100",
        "Seasonally Adjusted",
    ),
    "m1": ("M1 Money Stock, End of Quarter", "Billions of Dollars", "Seasonally Adjusted"),
    "tbilrate": (
        "3-Month Treasury Bill: Secondary Market Rate, Quarterly Average",
        "Percent",
        "Not Seasonally Adjusted",
    ),
    "unemp": ("Unemployment Rate", "Percent", "Seasonally Adjusted"),
    "pop": (
        "Total Population: All Ages Including Armed Forces Overseas, End of Quarter",
        "Millions of Persons",
        "Not Seasonally Adjusted",
    ),
    "infl": ("Inflation Rate, 400 * ln(CPI_t / CPI_t-1)", "Percent, Annualized", "Seasonally Adjusted"),
    "realint": ("Real Interest Rate, T-Bill Rate Minus Inflation", "Percent", "Not Seasonally Adjusted"),
}


KEYS = tuple(f"bundled/{column}" for column in SERIES)


def stamp() -> str:
    """Which release of the data is installed; the same stamp means the same data."""
    return f"statsmodels {version('statsmodels')}"


def load() -> dict[str, tuple[pd.DataFrame, dict]]:
    """key -> (frame with date and value, manifest metadata) for every bundled series."""
    # Imported here: statsmodels takes seconds to import and only the offline run needs it.
    import pandas as pd
    from statsmodels.datasets import macrodata

    data = macrodata.load_pandas().data
    # Quarters are dated by their first day, as FRED dates quarterly observations.
    dates = pd.PeriodIndex.from_fields(year=data["year"].astype(int), quarter=data["quarter"].astype(int), freq="Q")
    start = dates.to_timestamp(how="start").astype("datetime64[ns]")
    result = {}
    for column, (title, units, adjustment) in SERIES.items():
        frame = pd.DataFrame({"date": start, "value": data[column].astype("float64").to_numpy()})
        meta = {
            "source": "bundled",
            "id": f"statsmodels.macrodata.{column}",
            "title": title,
            "units": units,
            "frequency": "Q",
            "seasonal_adjustment": adjustment,
            "last_updated": None,
            "bundled_with": stamp(),
        }
        result[f"bundled/{column}"] = (frame, meta)  # the keys are KEYS
    return result
