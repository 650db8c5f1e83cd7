"""FRED against the loopback fake server: what is stored, how many requests, retries, errors, incremental runs."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
import shutil
import socket
import ssl
import threading
from datetime import date
from pathlib import Path

import httpx
import numpy as np
import pytest
import trustme
from fake_servers import VALID_KEY, FakeServer, Fault, monthly
from scraping import StoreError, load_config, run
from scraping._config import HttpSettings
from scraping._errors import Stopped
from scraping._http import Fetcher
from scraping._run import _ReadAhead
from storage_links.testing import opened_paths
from support import manifest, snapshot, stored, write_config


def fresh_run(tmp_path: Path, **options):
    return run(load_config(write_config(tmp_path, **options)))


@pytest.mark.parametrize("fmt", ["xml", "json"])
def test_first_run_stores_every_series_with_its_metadata(tmp_path, project, server, fmt):
    report = fresh_run(tmp_path, fmt=fmt)

    assert [r.describe() for r in report.results] == ["updated (+24 rows)", "updated (+24 rows)", "updated (+12 rows)"]
    assert report.requests == 6  # series + observations for each, one after the other in series order
    assert [(r.path, r.params["series_id"]) for r in server.requests] == [
        (path, sid) for sid in ("UNRATE", "CPIAUCSL", "GDP") for path in ("/fred/series", "/fred/series/observations")
    ]
    assert {r.params["file_type"] for r in server.requests if "file_type" in r.params} <= {"json"}
    if fmt == "xml":
        assert all("file_type" not in r.params for r in server.requests)
    frame = stored(project, "fred/UNRATE")
    assert list(frame.columns) == ["date", "value"]
    assert str(frame["date"].dtype) == "datetime64[ns]" and frame["value"].dtype == np.float64
    assert frame["date"].is_monotonic_increasing and frame["date"].is_unique
    assert math.isnan(frame["value"].iloc[3])  # FRED's "." is a missing value, not a string or zero
    assert frame["value"].iloc[4] == 101.0
    entry = manifest(project)["series"]["fred/UNRATE"]
    assert entry["source"] == "fred" and entry["origin"] == "network" and entry["id"] == "UNRATE"
    assert entry["frequency"] == "M" and entry["units"] == "Percent" and entry["title"] == "A test series"
    assert entry["last_updated"] == "2024-10-30T07:52:02-05:00"
    assert (entry["first_observation"], entry["last_observation"], entry["rows"]) == ("2020-01-01", "2021-12-01", 24)
    assert entry["file"] == "fred/UNRATE.parquet" and entry["columns"] == ["value"]
    digest = hashlib.sha256((project / "fred/UNRATE.parquet").read_bytes()).hexdigest()
    assert entry["content_hash"] == f"sha256:{digest}"


def test_a_run_syncs_the_directory_it_wrote_into_once_before_writing_the_manifest(tmp_path, project, server):
    with opened_paths() as opened:
        fresh_run(tmp_path)
    fred = str(project / "fred")
    manifest_writes = [i for i, path in enumerate(opened) if Path(path).name.startswith(".manifest.json.tmp")]
    assert opened.count(fred) == 1  # three series written into it
    assert manifest_writes and opened.index(fred) < manifest_writes[0]


def test_rerun_with_nothing_new_makes_one_request_per_series_and_rewrites_nothing(tmp_path, project, server):
    fresh_run(tmp_path)
    before = snapshot(project)
    server.reset_requests()

    report = fresh_run(tmp_path)

    assert [r.status for r in report.results] == ["unchanged"] * 3
    assert len(server.requests) == 3 and all(r.path == "/fred/series" for r in server.requests)
    assert report.files_written == 0
    assert snapshot(project) == before  # same bytes, same mtimes: nothing rewritten


def test_rerun_asks_only_for_the_recent_window_and_merges_new_and_revised_rows(tmp_path, project, server):
    fresh_run(tmp_path)
    server.reset_requests()
    unrate = server.series["UNRATE"]
    unrate.observations[-1] = ("2021-12-01", "9.99")  # a revision
    unrate.observations += [("2022-01-01", "7.00"), ("2022-02-01", ".")]
    unrate.last_updated = "2024-11-30 07:52:02-05"

    report = fresh_run(tmp_path)

    assert report.results[0].describe() == "updated (+2 rows, 1 revised)"
    assert [r.status for r in report.results[1:]] == ["unchanged", "unchanged"]
    (obs,) = server.requests_to("/observations")
    assert obs.params["observation_start"] == "2021-08-23"  # last stored 2021-12-01 minus 100 days of lookback
    frame = stored(project, "fred/UNRATE")
    assert len(frame) == 26 and frame["value"].iloc[23] == 9.99 and frame["value"].iloc[24] == 7.0
    assert math.isnan(frame["value"].iloc[25]) and math.isnan(frame["value"].iloc[3])
    assert manifest(project)["series"]["fred/UNRATE"]["last_updated"] == "2024-11-30T07:52:02-05:00"


def test_a_revision_reaching_the_start_of_the_window_fetches_the_whole_series_again(tmp_path, project, server):
    fresh_run(tmp_path)
    server.reset_requests()
    gdp = server.series["GDP"]
    # A comprehensive revision: every value, the years before the look-back window too.
    gdp.observations = [(day, f"{float(value) * 1.1:.2f}") for day, value in gdp.observations[:-1]]
    gdp.last_updated = "2025-07-30 07:52:02-05"

    report = fresh_run(tmp_path)

    assert report.results[2].describe() == "updated (-1 rows, 11 revised)"
    starts = [r.params.get("observation_start") for r in server.requests_to("/observations")]
    assert starts == ["2020-08-23", None]  # the window (last stored 2020-12-01 minus 100 days), then the whole
    frame = stored(project, "fred/GDP")
    assert list(frame["value"]) == [float(value) for _, value in gdp.observations]  # no old vintage left


def test_new_last_updated_with_identical_data_rewrites_no_parquet(tmp_path, project, server):
    fresh_run(tmp_path)
    parquet_before = (project / "fred/GDP.parquet").stat().st_mtime_ns
    server.series["GDP"].last_updated = "2025-01-01 08:00:00-06"

    report = fresh_run(tmp_path)

    assert report.results[2].describe() == "unchanged"
    assert (project / "fred/GDP.parquet").stat().st_mtime_ns == parquet_before
    assert manifest(project)["series"]["fred/GDP"]["last_updated"] == "2025-01-01T08:00:00-06:00"


def test_429_waits_at_least_retry_after_then_succeeds(tmp_path, project, server):
    server.script("GDP", Fault(status=429, headers={"Retry-After": "0.5"}))

    report = fresh_run(tmp_path, series=("GDP",))

    assert report.results[0].status == "updated"
    first, second = server.requests_to("/fred/series")
    # Retry-After honoured although backoff_s is 0.01; the slack is the arrival times' scheduling jitter
    assert second.at - first.at >= 0.4
    assert report.requests == 3


def test_retry_after_longer_than_max_backoff_fails_the_series_without_waiting(tmp_path, project, server):
    server.script("GDP", Fault(status=429, headers={"Retry-After": "3600"}))

    report = fresh_run(tmp_path, series=("GDP", "UNRATE"))

    assert report.results[0].detail == (
        "FRED series GDP: HTTP 429; asked to retry after 3600s, more than http.max_backoff_s (gave up after 1 attempt)"
    )
    assert report.results[1].status == "updated" and report.requests == 3


def test_500s_are_retried_with_backoff(tmp_path, project, server):
    server.script("CPIAUCSL", Fault(status=500), Fault(status=503))

    report = fresh_run(tmp_path, series=("CPIAUCSL",), retries=2)

    assert report.results[0].status == "updated"
    assert len(server.requests_to("/fred/series")) == 3


def test_persistent_500_fails_that_series_only_and_keeps_its_previous_file(tmp_path, project, server):
    fresh_run(tmp_path)
    before = snapshot(project)
    server.series["CPIAUCSL"].last_updated = "2025-01-01 00:00:00-06"
    server.script("CPIAUCSL", *[Fault(status=500)] * 3)

    report = fresh_run(tmp_path, retries=2)

    assert [r.status for r in report.results] == ["unchanged", "failed", "unchanged"]
    assert report.results[1].describe() == "failed: FRED series CPIAUCSL: HTTP 500 (gave up after 3 attempts)"
    assert snapshot(project) == before


# Too slow: no byte before the timeout, or (trickled) a byte every 50 ms, every read quicker than
# the timeout and the whole answer far slower.
TOO_SLOW = pytest.mark.parametrize("slow", [Fault(delay=1.5), Fault(trickle=0.05)], ids=["silent", "trickled"])


@TOO_SLOW
def test_an_answer_slower_than_the_timeout_is_cut_off_and_retried(tmp_path, project, server, slow):
    server.script("GDP", slow)

    report = fresh_run(tmp_path, series=("GDP",), timeout=0.5)

    assert report.results[0].status == "updated"
    assert len(server.requests_to("/fred/series")) == 2


@TOO_SLOW
def test_answers_always_too_slow_fail_with_the_timeout_named(tmp_path, project, server, slow):
    server.script("GDP", slow, slow)

    report = fresh_run(tmp_path, series=("GDP",), timeout=0.5, retries=1)

    assert report.results[0].describe() == "failed: FRED series GDP: no answer within 0.5s (gave up after 2 attempts)"
    assert not (project / "fred/GDP.parquet").exists()


@pytest.mark.parametrize("fmt", ["xml", "json"])
def test_bad_key_fails_each_series_with_freds_message_and_no_retry(tmp_path, project, server, monkeypatch, fmt):
    monkeypatch.setenv("FRED_API_KEY", "wrongkey0000000000000000000000ff")

    report = fresh_run(tmp_path, fmt=fmt)

    assert [r.status for r in report.results] == ["failed"] * 3
    assert report.results[0].detail == (
        "FRED series UNRATE: HTTP 400: Bad Request.  The value for variable api_key is not registered."
    )
    assert len(server.requests) == 3  # 4xx are not retried
    assert "wrongkey" not in " ".join(r.detail for r in report.results)


def test_unknown_series_fails_alone(tmp_path, project, server):
    report = fresh_run(tmp_path, series=("UNRATE", "NOSUCHSERIES", "GDP"))

    assert [r.status for r in report.results] == ["updated", "failed", "updated"]
    assert report.results[1].detail == "FRED series NOSUCHSERIES: HTTP 404: Bad Request.  The series does not exist."
    assert not (project / "fred/NOSUCHSERIES.parquet").exists()
    assert "fred/NOSUCHSERIES" not in manifest(project)["series"]


@pytest.mark.parametrize(("fmt", "kind"), [("xml", "XML"), ("json", "JSON")])
def test_truncated_answer_fails_cleanly_and_keeps_the_stored_file(tmp_path, project, server, fmt, kind):
    fresh_run(tmp_path, fmt=fmt)
    before = snapshot(project)
    server.series["UNRATE"].last_updated = "2025-01-01 00:00:00-06"
    server.series["UNRATE"].observations.append(("2022-01-01", "5.5"))
    server.script("UNRATE", Fault(), Fault(truncate=True))  # metadata fine, observations cut in half

    report = fresh_run(tmp_path, fmt=fmt)

    assert report.results[0].status == "failed"
    assert f"FRED observations UNRATE: invalid or truncated {kind}" in report.results[0].detail
    assert snapshot(project) == before


@pytest.mark.parametrize("fmt", ["xml", "json"])
def test_a_value_that_is_not_a_number_is_a_malformed_answer(tmp_path, project, server, fmt):
    server.add(monthly("BROKEN"))
    server.series["BROKEN"].observations[2] = ("2020-03-01", "n/a")

    report = fresh_run(tmp_path, series=("BROKEN",), fmt=fmt)

    assert report.results[0].status == "failed"
    assert report.results[0].detail.startswith("FRED observations BROKEN: a value is not a number (")
    assert "'n/a'" in report.results[0].detail


def observations_body(fmt: str, rows: list[dict]) -> bytes:
    """An observations answer as FRED words it, with rows given attribute by attribute."""
    if fmt == "json":
        return json.dumps({"count": len(rows), "observations": rows}).encode()
    tags = "".join("<observation " + " ".join(f'{k}="{v}"' for k, v in row.items()) + "/>" for row in rows)
    return f'<?xml version="1.0" encoding="utf-8" ?><observations count="{len(rows)}">{tags}</observations>'.encode()


@pytest.mark.parametrize("fmt", ["xml", "json"])
def test_dots_are_missing_values_wherever_they_stand(tmp_path, project, server, fmt):
    server.add(monthly("DOTS", n=5, missing=(0, 2, 4)), monthly("ALLDOTS", n=3, missing=(0, 1, 2)))

    report = fresh_run(tmp_path, series=("DOTS", "ALLDOTS"), fmt=fmt)

    assert [r.status for r in report.results] == ["updated", "updated"]
    values = stored(project, "fred/DOTS")["value"].tolist()
    assert [math.isnan(v) for v in values] == [True, False, True, False, True]
    assert values[1] == 100.25 and values[3] == 100.75
    frame = stored(project, "fred/ALLDOTS")
    assert len(frame) == 3 and frame["value"].isna().all() and frame["value"].dtype == np.float64


@pytest.mark.parametrize("fmt", ["xml", "json"])
def test_an_empty_observation_list_keeps_every_stored_row(tmp_path, project, server, fmt):
    fresh_run(tmp_path, fmt=fmt)
    before = snapshot(project)
    server.series["UNRATE"].last_updated = "2025-01-01 00:00:00-06"
    server.script("UNRATE", Fault(), Fault(status=200, body=observations_body(fmt, [])))

    report = fresh_run(tmp_path, fmt=fmt)

    assert [r.status for r in report.results] == ["unchanged"] * 3
    assert {k: v for k, v in snapshot(project).items() if k != "manifest.json"} == {
        k: v for k, v in before.items() if k != "manifest.json"
    }
    assert manifest(project)["series"]["fred/UNRATE"]["last_updated"] == "2025-01-01T00:00:00-06:00"


def fred_layout(rows: list[tuple[str, str]], *, count: int | None = None) -> str:
    """An observations answer in FRED's own XML layout, line for line."""
    count = len(rows) if count is None else count
    lines = [
        '<?xml version="1.0" encoding="utf-8" ?>',
        f'<observations realtime_start="2026-11-23" units="lin" count="{count}" limit="100000">',
        *(
            f'  <observation realtime_start="2026-11-23" realtime_end="2026-11-23" date="{d}" value="{v}"/>'
            for d, v in rows
        ),
        "</observations>",
    ]
    return "\n".join(lines)


ROWS = [("2020-01-01", "1.5"), ("2020-02-01", "."), ("2020-03-01", "-2.25")]
# Valid XML that FRED's layout reader declines; expat reads each to the same observations.
OTHER_LAYOUTS = {
    "attributes in another order": fred_layout(ROWS).replace(
        'realtime_start="2026-11-23" realtime_end="2026-11-23" date="2020-01-01" value="1.5"',
        'value="1.5" date="2020-01-01" realtime_end="2026-11-23" realtime_start="2026-11-23"',
    ),
    "single quotes": fred_layout(ROWS).replace('date="2020-02-01"', "date='2020-02-01'"),
    "a character reference": fred_layout(ROWS).replace('value="1.5"', 'value="1&#46;5"'),
    "no count on the root": fred_layout(ROWS).replace(' count="3"', ""),
    "a comment that looks like an observation": fred_layout(ROWS).replace(
        "</observations>", '<!-- <observation date="1999-01-01" value="9"/> -->\n</observations>'
    ),
    "an element between observations": fred_layout(ROWS).replace('value="."/>', 'value="."/><note/>'),
    "no realtime attributes": fred_layout(ROWS).replace(' realtime_start="2026-11-23" realtime_end="2026-11-23"', ""),
    "white space before />": fred_layout(ROWS).replace('"/>', '" />'),
    "CRLF line ends": fred_layout(ROWS).replace("\n", "\r\n"),
    "a tab for the indent": fred_layout(ROWS).replace("\n  <", "\n\t<"),
    "a realtime period that differs on one line": fred_layout(ROWS).replace(
        'realtime_end="2026-11-23" date="2020-02-01"', 'realtime_end="2026-11-24" date="2020-02-01"'
    ),
    "a document type declaration": fred_layout(ROWS).replace("?>\n", "?>\n<!DOCTYPE observations>\n"),
    "an observation over two lines": fred_layout(ROWS).replace('" value="1.5"', '"\n    value="1.5"'),
    "a comment at the end of a line": fred_layout(ROWS).replace('value="."/>', 'value="."/><!-- revised -->'),
}


def test_fred_layout_is_read_without_expat_and_as_expat_reads_it():
    from scraping._fred import _expat_observations, _fred_layout_observations

    for rows in (ROWS, ROWS[:1]):
        body = fred_layout(rows).encode()
        fast = _fred_layout_observations(body)
        assert fast is not None, rows
        assert [a.to_pylist() for a in fast] == [a.to_pylist() for a in _expat_observations("x", body)]
        assert fast[0].to_pylist() == [d for d, _ in rows] and fast[1].to_pylist() == [v for _, v in rows]


# Not XML, though laid out as FRED's: expat reports each.
BROKEN_LAYOUTS = {
    "truncated": fred_layout(ROWS).encode()[:-30],
    "a '<' in a value": fred_layout(ROWS).replace('value="1.5"', 'value="1<5"').encode(),
    "not UTF-8": fred_layout(ROWS).replace("2026-11-23", "2026-11-\xe9").encode("latin-1"),
    "text after the root": (fred_layout(ROWS) + "\nmore").encode(),
    "a quote in a value": fred_layout(ROWS).replace('value="1.5"', 'value="1"5"').encode(),
    "a form feed after the root": (fred_layout(ROWS) + "\f").encode(),
}


# Valid XML in FRED's layout but for a date or value that expat reads otherwise than as written there.
ODD_VALUES = {
    "a date of another length": fred_layout(ROWS).replace('date="2020-02-01"', 'date="2020-2-01"'),
    "a tab in a value": fred_layout(ROWS).replace('value="1.5"', 'value="1\t5"'),
}


@pytest.mark.parametrize(
    "layout", [*OTHER_LAYOUTS, *BROKEN_LAYOUTS, *ODD_VALUES, "a count the rows do not match", "no observations"]
)
def test_any_other_layout_is_left_to_expat(layout):
    from scraping._fred import _fred_layout_observations

    bodies = {name: body.encode() for name, body in (OTHER_LAYOUTS | ODD_VALUES).items()} | BROKEN_LAYOUTS
    bodies["a count the rows do not match"] = fred_layout(ROWS, count=4).encode()
    bodies["no observations"] = fred_layout([]).encode()  # expat reads those: nothing to gain
    assert _fred_layout_observations(bodies[layout]) is None


@pytest.mark.parametrize("layout", BROKEN_LAYOUTS)
def test_expat_reports_what_is_not_xml(layout):
    from scraping._errors import MalformedAnswer
    from scraping._fred import _xml_observations

    with pytest.raises(MalformedAnswer, match="invalid or truncated XML"):
        _xml_observations("FRED observations GDP", BROKEN_LAYOUTS[layout])


@pytest.mark.parametrize("layout", OTHER_LAYOUTS)
def test_every_valid_xml_layout_stores_the_same_series(tmp_path, project, server, layout):
    server.script("GDP", Fault(), Fault(status=200, body=fred_layout(ROWS).encode()))
    fresh_run(tmp_path, series=("GDP",))
    expected = (project / "fred/GDP.parquet").read_bytes()
    (project / "fred/GDP.parquet").unlink()
    (project / "manifest.json").unlink()
    server.script("GDP", Fault(), Fault(status=200, body=OTHER_LAYOUTS[layout].encode()))

    report = fresh_run(tmp_path, series=("GDP",))

    assert report.results[0].describe() == "updated (+3 rows)"
    assert (project / "fred/GDP.parquet").read_bytes() == expected
    assert stored(project, "fred/GDP")["value"].tolist()[::2] == [1.5, -2.25]


def test_a_stored_series_answer_is_let_go_so_memory_stays_within_the_read_ahead(tmp_path, project, server, monkeypatch):
    """The answers the run holds are those fetched and not yet stored, not every answer of the run.
    With the read-ahead at one answer, the Python memory in use stays flat from series to series
    (it grew by an answer a series when each was kept). A larger read-ahead would let the fetch
    thread hold more or fewer answers by chance, as a fast server and the storing race."""
    import tracemalloc

    ids = [f"S{i:02d}" for i in range(16)]
    server.add(*(monthly(series_id, n=3000, start=date(1800, 1, 1)) for series_id in ids))
    answer_bytes = 3000 * 100  # an observation line of FRED's XML is ~100 bytes
    monkeypatch.setattr("scraping._run.FETCH_AHEAD_BYTES", answer_bytes)
    in_use: list[int] = []

    tracemalloc.start()
    try:
        config = load_config(write_config(tmp_path, tuple(ids)))
        run(config, on_result=lambda _: in_use.append(tracemalloc.get_traced_memory()[0]))
    finally:
        tracemalloc.stop()

    assert len(in_use) == len(ids)
    assert max(in_use[4:]) - in_use[3] < 3 * answer_bytes, [round(m / 1e6, 2) for m in in_use]


def test_once_every_answer_is_in_the_fetch_thread_parses_those_not_yet_reached_last_first(tmp_path, monkeypatch):
    from concurrent.futures import Future

    from scraping._errors import MalformedAnswer
    from scraping._fred import FredSource
    from scraping._run import _FredAnswer, _Parsing

    monkeypatch.setenv("FRED_API_KEY", VALID_KEY)
    config = load_config(write_config(tmp_path))
    good = {sid: fred_layout([(f"2020-0{m}-01", f"{k}.{m}") for m in (1, 2)]).encode() for k, sid in enumerate("ABE")}
    bodies = {"A": good["A"], "B": good["B"], "C": fred_layout(ROWS).encode()[:-30], "D": None, "E": good["E"]}
    answers = []
    for series_id, body in bodies.items():  # D: FRED's last_updated said nothing changed
        answers.append((series_id, Future()))
        answers[-1][1].set_result(_FredAnswer(None, {}, body))
    fetcher = Fetcher(config.http)  # parsing makes no request
    try:
        parsing = _Parsing(FredSource(config.fred, fetcher))
        assert parsing.observations("A", bodies["A"]).column("value").to_pylist() == [0.1, 0.2]

        parsing.help_from_the_end(answers)  # E, then C (its error kept for it), then B; A is taken

        # What the fetch thread parsed is handed over as it is (the body given here is not read again).
        assert parsing.observations("E", b"").column("value").to_pylist() == [2.1, 2.2]
        assert parsing.observations("B", b"").column("value").to_pylist() == [1.1, 1.2]
        with pytest.raises(MalformedAnswer, match="FRED observations C: invalid or truncated XML"):
            parsing.observations("C", good["A"])
    finally:
        fetcher.close()


def test_a_truncated_answer_in_fred_layout_is_reported_by_expat(tmp_path, project, server):
    server.script("GDP", Fault(), Fault(status=200, body=fred_layout(ROWS).encode()[:-30]))

    report = fresh_run(tmp_path, series=("GDP",))

    assert report.results[0].detail.startswith("FRED observations GDP: invalid or truncated XML (")
    assert not (project / "fred/GDP.parquet").exists()


def test_a_series_with_no_observations_at_all_fails_clearly(tmp_path, project, server):
    server.script("GDP", Fault(), Fault(status=200, body=observations_body("xml", [])))

    report = fresh_run(tmp_path, series=("GDP",))

    assert report.results[0].describe() == "failed: FRED observations GDP: the series has no observations"
    assert not (project / "fred/GDP.parquet").exists()


MALFORMED = {
    "xml": [
        (b"<observations><observation date='2020-01-01' value='1.0'></observations>", "invalid or truncated XML"),
        (b"<observations><observation date='2020-01-01' value='1.0'/>", "invalid or truncated XML"),
        (b"", "invalid or truncated XML"),
        (b'<?xml version="1.0" encoding="x-bogus"?><observations/>', "invalid or truncated XML (unknown encoding"),
        (observations_body("xml", [{"date": "2020-01-01"}]), "an observation lacks its date or value"),
        (observations_body("xml", [{"date": "2020-13-01", "value": "1.0"}]), "a date is not YYYY-MM-DD"),
        (observations_body("xml", [{"date": "01/02/2020", "value": "1.0"}]), "a date is not YYYY-MM-DD"),
        (observations_body("xml", [{"date": "2020-01-01", "value": ""}]), "a value is not a number"),
    ],
    "json": [
        (b'{"observations": [{"date": "2020-01-01", "value": "1.0"}', "invalid or truncated JSON"),
        (b"", "invalid or truncated JSON"),
        (b'{"count": 0}', "JSON answer has no 'observations' list"),
        (b'{"observations": {}}', "invalid or truncated JSON, or not laid out as FRED's"),
        (b'{"observations": [["2020-01-01", "1.0"]]}', "invalid or truncated JSON, or not laid out as FRED's"),
        (b'{"observations": [{"date": "2020-01-01", "value": 1.0}]}', "invalid or truncated JSON, or not laid out"),
        (b'{"observations": [{"date": "2020-01-01"}]}', "an observation lacks its date or value"),
        (b'{"observations": [{"date": "2020-01-01", "value": null}]}', "an observation lacks its date or value"),
        (b'{"observations": [{"date": "2020-02-30", "value": "1.0"}]}', "a date is not YYYY-MM-DD"),
        (b'{"observations": [{"date": "2020-01-01", "value": "n/a"}]}', "a value is not a number"),
    ],
}


@pytest.mark.parametrize(
    ("fmt", "body", "message"), [(fmt, body, message) for fmt, cases in MALFORMED.items() for body, message in cases]
)
def test_a_malformed_answer_fails_its_series_in_one_line_and_keeps_the_stored_file(
    tmp_path, project, server, fmt, body, message
):
    fresh_run(tmp_path, fmt=fmt)
    before = snapshot(project)
    server.series["CPIAUCSL"].last_updated = "2025-01-01 00:00:00-06"
    server.script("CPIAUCSL", Fault(), Fault(status=200, body=body))

    report = fresh_run(tmp_path, fmt=fmt)

    assert [r.status for r in report.results] == ["unchanged", "failed", "unchanged"]
    detail = report.results[1].detail
    assert detail.startswith(f"FRED observations CPIAUCSL: {message}") and "\n" not in detail, detail
    assert snapshot(project) == before


MALFORMED_METADATA = [
    ("json", b'{"seriess": ["GDP"]}', "FRED series CPIAUCSL: JSON answer has no 'seriess' entry"),
    ("json", b'{"seriess": [[]]}', "FRED series CPIAUCSL: JSON answer has no 'seriess' entry"),
    ("json", b'{"seriess": []}', "FRED series CPIAUCSL: JSON answer has no 'seriess' entry"),
    ("xml", b'<?xml version="1.0" encoding="utf-8"?><seriess/>', "FRED series CPIAUCSL: the answer lists no series"),
    ("xml", b'<?xml version="1.0" encoding="x-bogus"?><seriess/>', "FRED series CPIAUCSL: invalid or truncated XML"),
    ("xml", b'<?xml version="1.0" encoding="shift_jis"?><seriess/>', "FRED series CPIAUCSL: invalid or truncated"),
]


@pytest.mark.parametrize(("fmt", "body", "message"), MALFORMED_METADATA)
def test_a_malformed_metadata_answer_fails_its_series_and_the_others_go_on(
    tmp_path, project, server, fmt, body, message
):
    fresh_run(tmp_path, fmt=fmt)
    before = snapshot(project)
    server.script("CPIAUCSL", Fault(status=200, body=body))

    report = fresh_run(tmp_path, fmt=fmt)

    assert [r.status for r in report.results] == ["unchanged", "failed", "unchanged"]
    assert report.results[1].detail.startswith(message), report.results[1].detail
    assert snapshot(project) == before


def test_a_file_that_cannot_be_written_stops_the_run_and_is_neither_reported_nor_recorded(tmp_path, project, server):
    (project / "fred" / "CPIAUCSL.parquet").mkdir(parents=True)  # a directory where the file belongs
    reported = []

    with pytest.raises(StoreError, match=r"fred/CPIAUCSL\.parquet: cannot write: Is a directory"):
        run(load_config(write_config(tmp_path)), on_result=reported.append)

    # Results are handed on in order once their file is in place: UNRATE's before the failure, none after.
    assert [r.describe() for r in reported] == ["updated (+24 rows)"] and reported[0].key == "fred/UNRATE"
    series = manifest(project)["series"]
    assert "fred/CPIAUCSL" not in series and "fred/UNRATE" in series
    for entry in series.values():  # every entry describes the file that is there
        digest = hashlib.sha256((project / entry["file"]).read_bytes()).hexdigest()
        assert entry["content_hash"] == f"sha256:{digest}"
    assert sorted(p.name for p in (project / "fred").iterdir()) == sorted(
        ["CPIAUCSL.parquet", *(Path(e["file"]).name for e in series.values())]
    )


def test_a_stored_file_that_cannot_be_read_stops_the_run_with_one_line_and_loses_nothing(tmp_path, project, server):
    fresh_run(tmp_path)
    shutil.rmtree(project / "fred")
    (project / "fred").write_text("")  # a file where the folder belongs: reading below it is ENOTDIR
    before = snapshot(project)
    server.series["UNRATE"].last_updated = "2025-01-01 00:00:00-06"  # so the stored file is read

    with pytest.raises(StoreError, match=r"^\S+/fred/UNRATE\.parquet: cannot read: Not a directory$"):
        fresh_run(tmp_path)

    assert snapshot(project) == before


def test_a_read_ahead_limit_below_one_answer_still_fetches_and_stores_every_series_in_order(
    tmp_path, project, server, monkeypatch
):
    monkeypatch.setattr("scraping._run.FETCH_AHEAD_BYTES", 1)  # each answer waits until the last is stored

    report = fresh_run(tmp_path)

    assert [r.describe() for r in report.results] == ["updated (+24 rows)", "updated (+24 rows)", "updated (+12 rows)"]
    assert [(r.path, r.params["series_id"]) for r in server.requests] == [
        (path, sid) for sid in ("UNRATE", "CPIAUCSL", "GDP") for path in ("/fred/series", "/fred/series/observations")
    ]
    assert set(manifest(project)["series"]) == {"fred/UNRATE", "fred/CPIAUCSL", "fred/GDP"}


def test_the_fetch_thread_waits_while_the_answers_ahead_fill_the_limit():
    ahead = _ReadAhead(100)
    ahead.hold(60)
    assert ahead.wait_for_room()  # under the limit: at once
    ahead.hold(60)
    answered: list[bool] = []
    waiter = threading.Thread(target=lambda: answered.append(ahead.wait_for_room()))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive() and answered == []  # 120 bytes held, over the limit of 100

    ahead.release(60)

    waiter.join(5)
    assert answered == [True]


def test_stopping_the_read_ahead_wakes_the_waiting_fetch_thread_with_no_room():
    ahead = _ReadAhead(100)
    ahead.hold(100)
    answered: list[bool] = []
    waiter = threading.Thread(target=lambda: answered.append(ahead.wait_for_room()))
    waiter.start()

    ahead.stop()

    waiter.join(5)
    assert answered == [False]


def test_stopping_the_fetcher_ends_a_retry_wait_at_once_and_makes_no_more_requests(server):
    server.script("GDP", Fault(status=503, headers={"Retry-After": "60"}))
    settings = HttpSettings(requests_per_second=0, timeout_s=5, max_retries=2, backoff_s=0.01, max_backoff_s=120)
    fetcher = Fetcher(settings)
    outcome: list[str] = []

    def get() -> None:
        try:
            fetcher.get(f"{server.url}/fred/series?series_id=GDP", {"api_key": VALID_KEY}, what="FRED series GDP")
        except Stopped as exc:
            outcome.append(str(exc))

    getter = threading.Thread(target=get)
    getter.start()
    for _ in range(1000):  # until the 503 has been answered; the retry then waits 60 s
        if server.requests:
            break
        getter.join(0.01)

    fetcher.stop()

    getter.join(20)  # well under the 60 s the retry would wait
    fetcher.close()
    assert not getter.is_alive() and outcome == ["FRED series GDP: the run stopped"]
    assert len(server.requests) == 1


def test_rate_limiter_spaces_every_request_of_the_run(tmp_path, project, server):
    server.script("CPIAUCSL", Fault(status=503))  # the retry goes through the same limiter

    report = fresh_run(tmp_path, rate=10)  # at most one request start every 100 ms

    assert report.requests == 7
    arrivals = [r.at for r in server.requests]
    # Arrival times carry the server thread's scheduling delay (tens of ms on a busy machine), so the
    # bounds leave room for it: each gap at least half the interval (unlimited gaps are ~1 ms), and
    # the whole run at least six intervals less one delay.
    assert min(b - a for a, b in itertools.pairwise(arrivals)) >= 0.05
    assert arrivals[-1] - arrivals[0] >= 6 * 0.1 - 0.05


def test_series_option_fetches_only_the_given_ids(tmp_path, project, server):
    report = run(load_config(write_config(tmp_path, treasury=True)), only=("GDP",))

    assert [r.key for r in report.results] == ["fred/GDP"]
    assert {r.params.get("series_id") for r in server.requests} == {"GDP"}
    assert not server.requests_to("TextView")


def test_a_series_named_twice_is_fetched_and_stored_once(tmp_path, project, server):
    report = run(load_config(write_config(tmp_path)), only=("GDP", "UNRATE", "GDP"))

    assert [(r.key, r.status) for r in report.results] == [("fred/GDP", "updated"), ("fred/UNRATE", "updated")]
    assert report.requests == 4 and set(manifest(project)["series"]) == {"fred/GDP", "fred/UNRATE"}


def test_dry_run_makes_no_request_and_writes_nothing(tmp_path, project, server):
    report = run(load_config(write_config(tmp_path, treasury=True)), dry_run=True)

    assert [r.describe() for r in report.results] == ["would fetch in full"] * 4
    assert server.requests == [] and not project.exists()


def test_unsupported_frequency_is_a_clear_per_series_error(tmp_path, project, server):
    weekly = monthly("BIWEEK")
    weekly.frequency, weekly.frequency_short = "Biweekly, Ending Wednesday", "BW"
    server.add(weekly)

    report = fresh_run(tmp_path, series=("BIWEEK", "GDP"))

    assert report.results[0].detail == (
        "FRED series BIWEEK: frequency 'Biweekly, Ending Wednesday' is not supported (D, W, M, Q, A)"
    )
    assert report.results[1].status == "updated"


def test_connection_refused_is_retried_then_reported(tmp_path, project, monkeypatch):
    with socket.socket() as probe:  # a loopback port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("FRED_API_KEY", VALID_KEY)
    monkeypatch.setenv("FRED_API_BASE_URL", f"http://127.0.0.1:{port}/fred")

    report = fresh_run(tmp_path, series=("GDP",), retries=1)

    assert (
        report.results[0].describe()
        == "failed: FRED series GDP: request failed (ConnectError) (gave up after 2 attempts)"
    )
    assert report.requests == 2


def test_https_answers_are_verified_against_the_trust_store_httpx_uses(tmp_path, project, monkeypatch):
    """TLS is set up only at the first https request, as httpx's default would set it up: a
    certificate from an unknown CA fails the series; trusted through SSL_CERT_FILE, it is stored."""
    ca = trustme.CA()
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(tls)
    with FakeServer(tls=tls) as fake:
        fake.add(monthly("GDP"))
        monkeypatch.setenv("FRED_API_KEY", VALID_KEY)
        monkeypatch.setenv("FRED_API_BASE_URL", f"{fake.url}/fred")

        untrusted = fresh_run(tmp_path, series=("GDP",), retries=0)
        ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
        trusted = fresh_run(tmp_path, series=("GDP",))

    assert fake.url.startswith("https://")
    assert untrusted.results[0].describe() == (
        "failed: FRED series GDP: request failed (ConnectError) (gave up after 1 attempt)"
    )
    assert trusted.results[0].describe() == "updated (+24 rows)"
    assert stored(project, "fred/GDP").shape == (24, 2)


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY"])
def test_a_proxy_named_in_the_environment_carries_the_requests_unless_no_proxy_exempts_the_host(
    tmp_path, project, monkeypatch, variable
):
    """The fake server stands in for the proxy (it reads the absolute URLs a proxy is sent); the FRED
    host itself does not resolve, so a request that bypassed the proxy would fail."""
    with FakeServer() as proxy:
        proxy.add(monthly("GDP"))
        monkeypatch.setenv("FRED_API_KEY", VALID_KEY)
        monkeypatch.setenv("FRED_API_BASE_URL", "http://fred.invalid/fred")
        monkeypatch.setenv(variable, proxy.url)
        proxied = fresh_run(tmp_path, series=("GDP",), retries=0)
        monkeypatch.setenv("NO_PROXY", "fred.invalid")
        exempt = fresh_run(tmp_path, series=("GDP",), retries=0)

    assert proxied.results[0].describe() == "updated (+24 rows)"
    assert [r.path for r in proxy.requests] == ["/fred/series", "/fred/series/observations"]
    assert exempt.results[0].describe() == (
        "failed: FRED series GDP: request failed (ConnectError) (gave up after 1 attempt)"
    )


# The three forms of HTTP date that a recipient must accept (RFC 9110, 5.6.7); asctime's has no zone.
@pytest.mark.parametrize(
    "when", ["Wed, 21 Oct 2015 07:28:00 GMT", "Wednesday, 21-Oct-15 07:28:00 GMT", "Wed Oct 21 07:28:00 2015"]
)
def test_retry_after_as_an_http_date_through_an_injected_transport(tmp_path, project, monkeypatch, when):
    """httpx.MockTransport: a Retry-After date in the past means "now"; the retry then succeeds."""
    with FakeServer() as real, httpx.Client() as passthrough:
        real.add(monthly("GDP"))
        answers = iter([httpx.Response(429, headers={"Retry-After": when})])

        def transport(request: httpx.Request) -> httpx.Response:
            answer = next(answers, None)
            if answer is not None:
                return answer
            return passthrough.get(str(request.url).replace("http://fred.test", real.url))

        monkeypatch.setenv("FRED_API_KEY", VALID_KEY)
        monkeypatch.setenv("FRED_API_BASE_URL", "http://fred.test/fred")
        config = load_config(write_config(tmp_path, series=("GDP",)))
        report = run(config, transport=httpx.MockTransport(transport))

    assert report.results[0].describe() == "updated (+24 rows)" and report.requests == 3
    assert len(real.requests) == 2


def test_the_fast_reader_never_reads_what_expat_would_not():
    """Single-byte damage anywhere in an answer in FRED's layout (changed, inserted or deleted): the
    fast reader declines it or reads exactly what expat reads; it never accepts what expat rejects."""
    from scraping._errors import MalformedAnswer
    from scraping._fred import _expat_observations, _fred_layout_observations

    body = fred_layout([("2020-01-01", "1.5"), ("2020-02-01", "."), ("2020-03-01", "-2.25"), ("2020-04-01", "3")])
    body = body.encode()
    randomly = random.Random(4)
    bytes_ = [b'"', b"<", b">", b"&", b" ", b"\n", b"\t", b"x", b"0", b"-", b".", b"=", b"/", b"\xff", b"\xc3"]
    read = 0
    for _ in range(1500):
        at = randomly.randrange(len(body))
        how = randomly.choice(("change", "insert", "delete"))
        new = b"" if how == "delete" else randomly.choice(bytes_)
        damaged = body[:at] + new + body[at + (how != "insert") :]
        fast = _fred_layout_observations(damaged)
        if fast is None:
            continue
        read += 1
        try:
            slow = _expat_observations("x", damaged)
        except MalformedAnswer:
            pytest.fail(f"fast reader accepted what expat rejects: {how} {new!r} at {at}")
        assert [a.to_pylist() for a in fast] == [a.to_pylist() for a in slow], (how, new, at)
    assert 0 < read < 1500  # some damage (a digit in a value, say) is still FRED's layout
