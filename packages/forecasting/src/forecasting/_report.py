"""report.html: one self-contained page (inline CSS, charts as base64 PNG) with no network needed.

Charts are drawn with matplotlib's object API on the Agg canvas (no pyplot, no display needed).
"""

from __future__ import annotations

import base64
import html
import io
import textwrap
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from storage_links import Progress

from forecasting._inputs import Label, Predictions
from forecasting._select import Published

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 1.5rem auto;
       max-width: 1100px; padding: 0 1rem; color: #1f2933; background: #fff; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
.meta { color: #52606d; font-size: .9rem; }
table { border-collapse: collapse; font-size: .9rem; width: 100%; }
th, td { padding: .3rem .5rem; border-bottom: 1px solid #e4e7eb; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.chosen td { font-weight: 600; }
img { max-width: 100%; height: auto; display: block; }
.note { color: #52606d; font-size: .85rem; }
.warn { background: #fff4e5; border-left: 4px solid #d94801; padding: .4rem .6rem; }
"""
_CHOSEN = ' class="chosen"'
_BUNDLED = "bundled"
# scraping's source names (manifest 'source'), as a reader would say them
_SOURCES = {
    "fred": "FRED series {id}",
    "treasury": "U.S. Treasury, {id}",
    "html": "the HTML table {id}",
    _BUNDLED: "the offline dataset bundled with statsmodels, {id}",
}


def render(run: str, predictions: Predictions, published: Published, history_points: int, progress: Progress) -> str:
    """The whole page as a string; `progress` steps once per series' chart."""
    created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Forecasts {_e(run)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Forecasts, run {_e(run)}</h1>",
        f'<p class="meta">Created {created} from predictions run {_e(predictions.run_id)} '
        f"({_e(predictions.meta.get('created_at', '?'))}). {len(published.choices)} series published"
        f"{', ' + str(len(published.failed)) + ' failed in modelling' if published.failed else ''}.</p>",
        _offline_note(predictions, published),
        _calibration_note(published),
        _summary_table(predictions, published),
        _failed_list(published),
    ]
    history = dict(tuple(predictions.history.groupby("series", sort=False)))
    forecasts = dict(tuple(published.forecasts.groupby("series", sort=False)))
    for series, choice in published.choices.items():
        label = predictions.label(series)
        chart = _chart(series, label, history[series], forecasts[series], history_points)
        parts.append(
            f'<h2 id="{_anchor(series)}">{_e(series)}</h2>{_title_line(series, label)}'
            f'<p class="note">{_source(label)}Published: {_e(choice.describe())}; '
            f"backtest MASE {_num(choice.mase)}.</p>"
            f'<img alt="{_e(series)}: history, forecast, 80% and 95% intervals" '
            f'src="data:image/png;base64,{chart}">'
        )
        progress.step(series, "ok")
    parts.append(_accuracy_table(published))  # detail for analysts, after the charts a reader came for
    parts.append("</body></html>")
    return "\n".join(parts)


def _accuracy_table(published: Published) -> str:
    """Mean backtest MASE and interval coverage over all series: the published choice against each model."""
    scores = published.scores
    chosen = scores[scores["chosen"]]
    rows = [("published", chosen)] + [
        (str(c), scores[scores["candidate"] == c]) for c in sorted(scores["candidate"].unique())
    ]
    body = "".join(
        f"<tr{_CHOSEN if name == 'published' else ''}><td>{_e(name)}</td>"
        f'<td class="num">{len(frame)}</td><td class="num">{_num(frame["mase"].mean())}</td>'
        f'<td class="num">{_pct(frame["coverage80"].mean())}</td>'
        f'<td class="num">{_pct(frame["coverage95"].mean())}</td></tr>'
        for name, frame in rows
    )
    return (
        "<h2>Backtest accuracy</h2>"
        '<p class="note">On modelling\'s rolling-origin folds. MASE: mean absolute error divided by the '
        "in-sample one-step seasonal naive error (the history's mean absolute change over one season), not by "
        "the seasonal_naive row's backtest error; lower is better. Coverage: share of actuals inside the interval "
        "(nominal 80% and 95%). A combination's intervals combine the candidates' bounds the same way as the "
        "means.</p>"
        '<table><thead><tr><th>candidate</th><th class="num">series</th><th class="num">mean MASE</th>'
        '<th class="num">coverage 80%</th><th class="num">coverage 95%</th></tr></thead>'
        f"<tbody>{body}</tbody></table>"
    )


def _offline_note(predictions: Predictions, published: Published) -> str:
    """A warning when series come from the offline dataset: forecasts of old data, not of today's."""
    bundled = [s for s in published.choices if predictions.label(s).source == _BUNDLED]
    if not bundled:
        return ""
    return (
        f'<p class="warn">{len(bundled)} of {len(published.choices)} series come from the offline dataset '
        "bundled with statsmodels (U.S. quarterly macro data, 1959-2009), which scraping stores when it runs "
        "without a FRED key: they are not current data. With FRED_API_KEY set, scraping fetches FRED.</p>"
    )


def _title_line(series: str, label: Label) -> str:
    """The title (unless it is just the series name again) and units under a series' heading."""
    words = [label.title if label.title != series else "", f"({label.units})" if label.units else ""]
    line = " ".join(filter(None, words))
    return f"<p>{_e(line)}</p>" if line else ""


def _source(label: Label) -> str:
    """'Source: FRED series GDP. ' and the like, or nothing when the run did not record it."""
    if not label.source:
        return ""
    described = _SOURCES.get(label.source, "{source} {id}").format(source=label.source, id=label.id)
    return f"Source: {_e(described.strip())}. "


def _calibration_note(published: Published) -> str:
    """How the published intervals were rescaled per frequency (see _calibrate.py)."""
    if not published.calibration:
        return '<p class="note">Intervals: as the models gave them (calibration is off).</p>'
    items = "".join(
        f"<li>{_e(freq)}: "
        + (f"{_e(c.describe())}, from {c.points} backtest points" if c.applied
           else f"as the models gave them ({c.points} backtest points)")
        + "</li>"
        for freq, c in published.calibration.items()
    )  # fmt: skip
    return (
        '<p class="note">Intervals: each frequency\'s 80% and 95% intervals are rescaled around the forecast so '
        "that, pooled over its series, they cover the backtest actuals at their nominal level. The coverage "
        "columns below are the models' intervals before this.</p>"
        f'<ul class="note">{items}</ul>'
    )


def _summary_table(predictions: Predictions, published: Published) -> str:
    chosen = published.scores[published.scores["chosen"]].set_index("series")
    last_observed = predictions.history.groupby("series")["date"].max()  # how fresh each forecast's data are
    rows = []
    for series, choice in published.choices.items():
        row = chosen.loc[series] if series in chosen.index else None
        last = f"{last_observed[series]:%Y-%m-%d}" if series in last_observed.index else "–"
        freq = predictions.meta["frequency"].get(series, "")
        horizon = predictions.meta["horizon"].get(series, "")
        cov80 = _pct(row["coverage80"]) if row is not None else "–"
        cov95 = _pct(row["coverage95"]) if row is not None else "–"
        title = predictions.label(series).title
        subtitle = f'<br><span class="note">{_e(title)}</span>' if title != series else ""
        rows.append(
            f'<tr><td><a href="#{_anchor(series)}">{_e(series)}</a>{subtitle}</td><td>{_e(freq)}</td><td>{last}</td>'
            f'<td class="num">{_e(horizon)}</td><td>{_e(choice.describe())}</td>'
            f'<td class="num">{_num(choice.mase)}</td><td class="num">{cov80}</td><td class="num">{cov95}</td></tr>'
        )
    return (
        "<h2>Series</h2><table><thead><tr><th>series</th><th>frequency</th><th>last observation</th>"
        '<th class="num">horizon</th>'
        '<th>published</th><th class="num">backtest MASE</th><th class="num">coverage 80%</th>'
        f'<th class="num">coverage 95%</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


def _failed_list(published: Published) -> str:
    if not published.failed:
        return ""
    items = "".join(f"<li>{_e(s)}: {_e(reason)}</li>" for s, reason in sorted(published.failed.items()))
    return f"<h2>Not published (failed in modelling)</h2><ul>{items}</ul>"


def _chart(series: str, label: Label, history: pd.DataFrame, forecast: pd.DataFrame, history_points: int) -> str:
    """The series' chart as a base64 PNG."""
    buf = io.BytesIO()
    _figure(series, label, history, forecast, history_points).savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(series: str, label: Label, history: pd.DataFrame, forecast: pd.DataFrame, history_points: int) -> Figure:
    past = history.sort_values("date").tail(history_points)
    ahead = forecast.sort_values("date")
    fig = Figure(figsize=(10, 3.4), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(past["date"], past["value"], color="#1f2933", linewidth=1.3, label="history")
    # Join the forecast to the last observation so the line does not start in mid-air.
    if not past.empty:
        link = pd.DataFrame({"date": [past["date"].iloc[-1]], "mean": [past["value"].iloc[-1]]})
        line = pd.concat([link, ahead[["date", "mean"]]], ignore_index=True)
    else:
        line = ahead[["date", "mean"]]
    ax.fill_between(ahead["date"], ahead["lo95"], ahead["hi95"], color="#9ecae1", alpha=0.55, label="95% interval")
    ax.fill_between(ahead["date"], ahead["lo80"], ahead["hi80"], color="#4292c6", alpha=0.55, label="80% interval")
    ax.plot(line["date"], line["mean"], color="#d94801", linewidth=1.8, label="forecast")
    # The chart says what it shows on its own, as an image saved from the page must too.
    heading = series if label.title == series else f"{series}: {textwrap.shorten(label.title, 110, placeholder=' …')}"
    # Titles and units are the source's text ("U.S. $ per Euro"), drawn as they are: as mathtext, a `$`
    # pair would be italicised and lost, and a lone or unbalanced one fails the whole report.
    ax.set_title(heading, loc="left", fontsize=11, parse_math=False)
    if label.units:
        ax.set_ylabel(textwrap.shorten(label.units, 50, placeholder=" …"), fontsize=9, parse_math=False)
    ax.grid(True, color="#e4e7eb", linewidth=0.8)
    ax.legend(loc="upper left", fontsize=8, frameon=False, ncols=4)
    values = np.concatenate([past["value"].to_numpy(), ahead["lo95"].to_numpy(), ahead["hi95"].to_numpy()])
    finite = values[np.isfinite(values)]
    if finite.size:
        low, high = float(finite.min()), float(finite.max())
        pad = (high - low) * 0.15 or abs(high) * 0.1 or 1.0
        ax.set_ylim(low - pad * 0.3, high + pad)  # headroom for the legend
    return fig


def _anchor(series: str) -> str:
    return "s-" + series.encode().hex()  # unique and valid for any series name


def _e(value: object) -> str:
    return html.escape(str(value))


def _num(value: float) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:.3f}"


def _pct(value: float) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{100 * value:.0f}%"
