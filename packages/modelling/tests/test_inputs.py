import json

import pytest
from modelling._inputs import read_manifest


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
