import json

import pytest
from modelling._errors import SeriesError
from modelling._inputs import Label, read_manifest, read_series


@pytest.mark.parametrize("file", ["../../secrets.parquet", "/etc/passwd", "fred/../../x.parquet", ""])
def test_a_manifest_file_outside_scraped_data_is_a_problem_of_that_series_only(tmp_path, file):
    scraped = tmp_path / "scraped_data"
    scraped.mkdir()
    entry = {"frequency": "M", "columns": ["value"], "content_hash": "sha256:0"}
    manifest = {"series": {"fred/OUT": {**entry, "file": file}, "fred/OK": {**entry, "file": "fred/OK.parquet"}}}
    (scraped / "manifest.json").write_text(json.dumps(manifest))

    refs, problems = read_manifest(scraped)

    assert [r.name for r in refs] == ["fred/OK"]
    reason = f"'file' {file!r} is not a relative path inside scraped_data/"
    assert problems == {"fred/OUT": f"{scraped / 'manifest.json'}: series 'fred/OUT': {reason}"}


def test_titles_and_units_come_from_the_manifest_and_name_the_column_of_a_multi_column_file(tmp_path):
    scraped = tmp_path / "scraped_data"
    scraped.mkdir()
    curve = {"title": "Daily Treasury Par Yield Curve Rates", "units": "Percent", "columns": ["2yr", "10yr"],
             "source": "treasury", "id": "daily_treasury_yield_curve"}  # fmt: skip
    manifest = {
        "series": {
            "treasury/par_yield_curve": {**curve, "frequency": "B", "file": "treasury/par_yield_curve.parquet"},
            "fred/UNTITLED": {"frequency": "M", "file": "fred/UNTITLED.parquet"},
        }
    }
    (scraped / "manifest.json").write_text(json.dumps(manifest))

    refs, problems = read_manifest(scraped)

    assert not problems
    assert [(r.name, r.label) for r in refs] == [
        ("fred/UNTITLED", Label("fred/UNTITLED", "", "", "")),
        ("treasury/par_yield_curve:2yr", Label(f"{curve['title']}: 2yr", "Percent", "treasury", curve["id"])),
        ("treasury/par_yield_curve:10yr", Label(f"{curve['title']}: 10yr", "Percent", "treasury", curve["id"])),
    ]


def test_columns_that_are_not_names_are_a_problem_of_that_series_only(tmp_path):
    scraped = tmp_path / "scraped_data"
    scraped.mkdir()
    entry = {"frequency": "M", "content_hash": "sha256:0"}
    series = {"fred/ODD": {**entry, "file": "fred/ODD.parquet", "columns": [1]}, "fred/OK": {**entry, "file": "x"}}
    (scraped / "manifest.json").write_text(json.dumps({"series": series}))

    refs, problems = read_manifest(scraped)

    assert [r.name for r in refs] == ["fred/OK"]
    assert problems == {
        "fred/ODD": f"{scraped / 'manifest.json'}: series 'fred/ODD': 'columns' must be a list of column names"
    }


def test_a_column_the_file_lacks_is_named_in_one_line(tmp_path):
    import pandas as pd

    scraped = tmp_path / "scraped_data"
    (scraped / "fred").mkdir(parents=True)
    pd.DataFrame({"date": pd.date_range("2020-01-01", periods=24, freq="MS"), "value": 1.0}).to_parquet(
        scraped / "fred" / "CPI.parquet"
    )
    entry = {"frequency": "M", "file": "fred/CPI.parquet", "columns": ["value", "nope"], "content_hash": "sha256:0"}
    (scraped / "manifest.json").write_text(json.dumps({"series": {"fred/CPI": entry}}))
    refs, _ = read_manifest(scraped)

    assert len(read_series(scraped, refs[0])) == 24
    with pytest.raises(SeriesError) as caught:
        read_series(scraped, refs[1])
    assert str(caught.value) == f"{scraped / 'fred' / 'CPI.parquet'}: no column 'nope', which the manifest lists"
