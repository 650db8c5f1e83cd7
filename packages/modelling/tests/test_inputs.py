import json

import pytest
from modelling._inputs import Label, read_manifest


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
