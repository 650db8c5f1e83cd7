"""HTML tables described by a small spec, parsed with selectolax.

Columns are found by their header text or their cell class, never by position alone, so a
page that gains or reorders columns still parses; one that lost what the spec needs raises
LayoutChanged naming what is missing. A source's pages are one per month when its URL template
holds {month} (fetched from the last stored month on), else one page fetched whole each run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from scraping._errors import LayoutChanged

if TYPE_CHECKING:
    import pandas as pd
    from selectolax.lexbor import LexborNode as Node

    from scraping._http import Fetcher

# pandas and selectolax are imported where pages are parsed: the config (which builds the specs)
# is read by every run, the offline one with nothing new included.


@dataclass(frozen=True)
class Column:
    name: str  # the stored column name
    cell_class: str = ""  # a class token on the column's <th> (and its <td>s)
    header: str = ""  # or the header's text, compared case- and space-insensitively
    required: bool = True  # optional columns (added later by the site) are NaN where absent


@dataclass(frozen=True)
class TableSpec:
    title: str  # names the source in messages
    url_template: str  # str.format()ed with base (the host root) and month (a date)
    table_selector: str
    row_selector: str  # relative to the table
    empty_selector: str | None  # present instead of the table when a page has no rows yet
    date_column: Column
    date_format: str
    columns: tuple[Column, ...]
    missing_markers: frozenset[str]

    @property
    def monthly(self) -> bool:
        """One page per month ({month} in the URL), or one page for the whole table."""
        return "{month" in self.url_template

    def url(self, base: str, month: date) -> str:
        return self.url_template.format(base=base, month=month)


@dataclass(frozen=True)
class TableSource:
    """One HTML table of a run: where its pages are, how to read them, and its manifest entry."""

    key: str  # manifest key, and the file name under scraped_data/
    spec: TableSpec
    meta: Mapping[str, object]  # source, id, title, units, frequency, ... for the manifest
    base_url: str  # {base} in the URL template
    backfill_months: int  # monthly pages fetched on the first run


def fetch_page(fetcher: Fetcher, source: TableSource, month: date) -> pd.DataFrame:
    """The rows of one page: the month's for a monthly source, else the whole table."""
    spec = source.spec
    url = spec.url(source.base_url, month)
    what = f"{spec.title} {month:%Y-%m}" if spec.monthly else spec.title
    response = fetcher.get(url, what=what)
    return parse_table(response.text, spec, f"{what} ({url})")


def months_to_fetch(
    last_stored: date | None, today: date, backfill_months: int, *, weekdays_only: bool = False
) -> list[date]:
    """First days of the months to ask for: from the stored data's last month (or the backfill) to today's.

    The last stored month is skipped when no day of it (no weekday, for business-daily data) is left
    after the last stored one: early in a month a re-run then asks for one page, not two.
    """
    end = today.replace(day=1)
    if last_stored is not None:
        start = last_stored.replace(day=1)
        rest = (last_stored + timedelta(days=n) for n in range(1, 32))
        if not any(d.month == last_stored.month and (d.weekday() < 5 or not weekdays_only) for d in rest):
            start = date(start.year + start.month // 12, start.month % 12 + 1, 1)
    else:
        index = end.year * 12 + end.month - 1 - (backfill_months - 1)
        start = date(index // 12, index % 12 + 1, 1)
    months = []
    while start <= end:
        months.append(start)
        start = date(start.year + start.month // 12, start.month % 12 + 1, 1)
    return months


def parse_table(html: str, spec: TableSpec, where: str) -> pd.DataFrame:
    """The table in `html` as a frame: `date` then the spec's columns (float64, NaN where missing)."""
    import pandas as pd
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(html)
    table = tree.css_first(spec.table_selector)
    names = [c.name for c in spec.columns]
    if table is None:
        if spec.empty_selector and tree.css_first(spec.empty_selector) is not None:
            empty = {"date": pd.Series(dtype="datetime64[ns]"), **{n: pd.Series(dtype="float64") for n in names}}
            return pd.DataFrame(empty)
        raise LayoutChanged(f"{where}: no table matches {spec.table_selector!r}; the page layout changed")
    headers = table.css("thead th") or next((cells for cells in map(_cells, table.css("tr")) if _is_header(cells)), [])
    if not headers:
        raise LayoutChanged(f"{where}: the table has no header cells; the page layout changed")
    positions = {column.name: _find_column(headers, column) for column in (spec.date_column, *spec.columns)}
    lost = [c for c in (spec.date_column, *spec.columns) if c.required and positions[c.name] is None]
    if lost:
        described = ", ".join(f"{c.name} ({_described(c)})" for c in lost)
        raise LayoutChanged(f"{where}: columns not found: {described}; the page layout changed")

    dates: list[datetime] = []
    rows: dict[str, list[float]] = {n: [] for n in names}
    for number, row in enumerate(table.css(spec.row_selector), start=1):
        cells = _cells(row)
        if _is_header(cells) or _is_note(cells, len(headers)):
            continue
        if len(cells) != len(headers):
            raise LayoutChanged(f"{where}: row {number} has {len(cells)} cells, the header {len(headers)}")
        text = _text(cells[positions[spec.date_column.name]])
        try:
            dates.append(datetime.strptime(text, spec.date_format))
        except ValueError:
            raise LayoutChanged(f"{where}: row {number}: date {text!r} is not in the form {spec.date_format}") from None
        for column in spec.columns:
            index = positions[column.name]
            rows[column.name].append(math.nan if index is None else _number(cells[index], spec, where, number, column))
    return pd.DataFrame({"date": pd.to_datetime(dates).astype("datetime64[ns]"), **rows}).astype(
        dict.fromkeys(names, "float64")
    )


def _cells(row: Node) -> list[Node]:
    """A row's cells in order: <td>s and <th>s, which also head the rows of some tables (scope="row")."""
    return [node for node in row.iter() if node.tag in ("td", "th")]


def _is_header(cells: list[Node]) -> bool:
    return bool(cells) and all(cell.tag == "th" for cell in cells)


def _is_note(cells: list[Node], width: int) -> bool:
    """No cells, or one across the whole table: a footnote or a section title, not data."""
    if len(cells) != 1:
        return not cells
    span = (cells[0].attributes.get("colspan") or "").strip()
    return span.isdigit() and int(span) >= width


def _find_column(headers: list[Node], column: Column) -> int | None:
    wanted = _squash(column.header)
    for index, th in enumerate(headers):
        classes = (th.attributes.get("class") or "").split()
        if (column.cell_class and column.cell_class in classes) or (wanted and _squash(_text(th)) == wanted):
            return index
    return None


def _described(column: Column) -> str:
    """How the spec finds the column: "class 'x' or header 'y'", or one of the two."""
    ways = []
    if column.cell_class:
        ways.append(f"class {column.cell_class!r}")
    if column.header:
        ways.append(f"header {column.header!r}")
    return " or ".join(ways)


def _number(cell: Node, spec: TableSpec, where: str, row: int, column: Column) -> float:
    text = _text(cell)
    if text in spec.missing_markers:
        return math.nan
    try:  # thousands separators and a percent sign are how tables print numbers, not part of them
        return float(text.replace(",", "").removesuffix("%"))
    except ValueError:
        raise LayoutChanged(f"{where}: row {row}, column {column.name}: {text!r} is not a number") from None


def _text(node: Node) -> str:
    return " ".join(node.text(deep=True).split())


def _squash(text: str) -> str:
    return "".join(text.lower().split())
