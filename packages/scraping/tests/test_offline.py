"""No key: the local profile stores the bundled statsmodels macrodata dataset and touches no network."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pyarrow as pa
from fake_servers import monthly
from scraping._cli import EXIT_CONFIG, EXIT_SERIES_FAILED, main
from scraping._store import from_frame, normalise, to_parquet_bytes
from statsmodels.datasets import macrodata
from support import manifest, snapshot, stored, write_config

BUNDLED = ["realgdp", "realcons", "realinv", "realgovt", "realdpi", "cpi", "m1", "tbilrate", "unemp", "pop"]


def test_offline_run_stores_the_bundled_dataset_and_says_so_once(project, monkeypatch, capsys):
    unreachable = "http://127.0.0.1:9"  # discard port: any request would fail loudly
    monkeypatch.setenv("FRED_API_BASE_URL", unreachable)
    monkeypatch.setenv("TREASURY_BASE_URL", unreachable)

    assert main(["run"]) == 0

    err = capsys.readouterr().err
    assert err.count("runs offline") == 1 and "0 requests" in err
    series = manifest(project)["series"]
    assert {f"bundled/{c}" for c in BUNDLED} <= set(series) and not any(k.startswith("fred/") for k in series)
    entry = series["bundled/realgdp"]
    assert entry["origin"] == "bundled" and entry["source"] == "bundled" and entry["frequency"] == "Q"
    assert entry["title"] == "Real Gross Domestic Product" and entry["units"] == "Billions of Chained 2005 Dollars"
    assert (entry["first_observation"], entry["last_observation"], entry["rows"]) == ("1959-01-01", "2009-07-01", 203)
    frame = stored(project, "bundled/realgdp")
    assert str(frame["date"].dtype) == "datetime64[ns]" and frame["date"].is_unique
    np.testing.assert_array_equal(frame["value"].to_numpy(), macrodata.load_pandas().data["realgdp"].to_numpy())
    assert frame["date"].iloc[2] == pd.Timestamp("1959-07-01")  # 1959Q3


def test_offline_rerun_rewrites_nothing(project, capsys):
    assert main(["run"]) == 0
    before = snapshot(project)

    assert main(["run"]) == 0

    assert snapshot(project) == before
    assert "12 series (offline: bundled dataset): 12 unchanged; 0 requests; 0 files written" in capsys.readouterr().err


def test_offline_run_keeps_series_fetched_earlier(project):
    project.mkdir(parents=True)
    (project / "fred").mkdir()
    gdp = {
        "file": "fred/GDP.parquet",
        "content_hash": "sha256:0",
        "last_observation": "2024-07-01",
        "fetched_at": "2024-10-30T12:00:00+00:00",
        "origin": "network",
    }
    (project / "manifest.json").write_text(json.dumps({"format": 1, "series": {"fred/GDP": gdp}}))

    assert main(["run"]) == 0

    assert manifest(project)["series"]["fred/GDP"] == gdp


def test_prod_profile_without_key_is_an_error_not_a_fallback(project, monkeypatch, capsys):
    monkeypatch.setenv("PIPELINE_PROFILE", "prod")

    assert main(["run"]) == EXIT_CONFIG

    assert "FRED_API_KEY (or FRED_API_KEY_FILE) is not set" in capsys.readouterr().err
    assert not project.exists()


def test_parquet_bytes_depend_only_on_the_data():
    frame = pd.DataFrame({"date": pd.to_datetime(["2020-02-01", "2020-01-01", "2020-02-01"]), "value": [2, 1, 3]})
    table = from_frame(frame, ["value"])

    assert table.column("value").to_pylist() == [1.0, 3.0]  # sorted, the later duplicate wins
    assert table.schema == pa.schema([("date", pa.timestamp("ns")), ("value", pa.float64())])
    # However the same rows were put together (pandas, in two chunks, in other types, with metadata), the same bytes.
    chunked = pa.concat_tables([table.slice(0, 1), table.slice(1)])
    as_read = pa.table(
        {"value": pa.array([1, 3], pa.int64()), "date": pa.array(["2020-01-01", "2020-02-01"]).cast(pa.date32())}
    )
    for same in (
        from_frame(frame.iloc[[1, 2]], ["value"]),
        normalise(chunked, ["value"]),
        normalise(as_read, ["value"]),
        normalise(table.replace_schema_metadata({"written by": "another tool"}), ["value"]),
    ):
        assert to_parquet_bytes(same) == to_parquet_bytes(table)
    changed = pa.table({"date": table.column("date"), "value": [1.0, 4.0]})
    assert to_parquet_bytes(normalise(changed, ["value"])) != to_parquet_bytes(table)


def test_normalise_keeps_nan_and_drops_rows_without_a_date():
    days = pa.array([None, "2020-03-01", "2020-01-01", "2020-03-01"]).cast(pa.date32()).cast(pa.timestamp("ns"))
    table = normalise(pa.table({"date": days, "value": [9.0, float("nan"), 1.0, 2.0]}), ["value"])

    assert [d.isoformat()[:10] for d in table.column("date").to_pylist()] == ["2020-01-01", "2020-03-01"]
    assert table.column("value").to_pylist() == [1.0, 2.0] and table.column("value").null_count == 0
    with_nan = normalise(pa.table({"date": days.slice(1, 2), "value": [float("nan"), 1.0]}), ["value"])
    assert with_nan.column("value").null_count == 0 and math.isnan(with_nan.column("value")[1].as_py())


def test_offline_rerun_reloads_the_bundled_data_when_a_file_or_the_statsmodels_release_changed(project, capsys):
    assert main(["run"]) == 0
    intact = (project / "bundled" / "cpi.parquet").read_bytes()
    (project / "bundled" / "cpi.parquet").write_bytes(b"damaged")
    doc = manifest(project)
    doc["series"]["bundled/m1"]["bundled_with"] = "statsmodels 0.0.1"
    (project / "manifest.json").write_text(json.dumps(doc))
    capsys.readouterr()

    assert main(["run"]) == 0

    err = capsys.readouterr().err
    assert "bundled/cpi: updated" in err  # the damaged file was stored again, not trusted
    assert (project / "bundled" / "cpi.parquet").read_bytes() == intact
    assert manifest(project)["series"]["bundled/m1"]["bundled_with"] != "statsmodels 0.0.1"


def offline_run(monkeypatch) -> int:
    with monkeypatch.context() as m:
        m.delenv("FRED_API_KEY")
        return main(["run"])


def test_a_run_with_a_key_retires_the_bundled_dataset_once_network_data_land(
    tmp_path, project, server, monkeypatch, capsys
):
    assert offline_run(monkeypatch) == 0
    server.add(monthly("UNRATE"))
    config = str(write_config(tmp_path, series=("UNRATE",)))
    capsys.readouterr()

    assert main(["run", "--config", config]) == 0

    err = capsys.readouterr().err
    assert "bundled/cpi: retired: the offline stand-in, now that network data are stored" in err
    assert "1 updated, 12 retired" in err
    assert set(manifest(project)["series"]) == {"fred/UNRATE"}
    assert not (project / "bundled").exists()  # the files went with their entries
    # Offline again, the dataset comes back beside the network data; a dry run with a key says it would go.
    assert offline_run(monkeypatch) == 0
    assert {"fred/UNRATE", "bundled/cpi"} <= set(manifest(project)["series"])
    before = snapshot(project)
    capsys.readouterr()
    assert main(["run", "--config", config, "--dry-run"]) == 0
    assert "bundled/cpi: would retire the offline stand-in" in capsys.readouterr().err
    assert snapshot(project) == before


def test_the_bundled_dataset_stays_while_no_network_data_are_stored(tmp_path, project, server, monkeypatch, capsys):
    assert offline_run(monkeypatch) == 0
    before = snapshot(project)
    config = str(write_config(tmp_path, series=("NOSUCHSERIES",)))  # FRED answers 400: nothing lands

    assert main(["run", "--config", config]) == EXIT_SERIES_FAILED

    assert "retired" not in capsys.readouterr().err
    assert snapshot(project) == before


def test_a_run_whose_every_request_failed_keeps_the_bundled_dataset_beside_older_network_data(
    tmp_path, project, server, monkeypatch, capsys
):
    server.add(monthly("UNRATE"))
    config = str(write_config(tmp_path, series=("UNRATE",)))
    assert main(["run", "--config", config]) == 0
    assert offline_run(monkeypatch) == 0  # the dataset comes back beside fred/UNRATE
    before = snapshot(project)
    monkeypatch.setenv("FRED_API_KEY", "0" * 32)  # FRED answers 400 for a key it does not know
    capsys.readouterr()

    assert main(["run", "--config", config]) == EXIT_SERIES_FAILED

    assert "retired" not in capsys.readouterr().err
    assert snapshot(project) == before


def test_retiring_never_deletes_through_a_link(tmp_path, project, server, monkeypatch):
    assert offline_run(monkeypatch) == 0
    elsewhere = tmp_path / "elsewhere"
    (project / "bundled").rename(elsewhere)
    (project / "bundled").symlink_to(elsewhere)
    kept = sorted(p.name for p in elsewhere.iterdir())
    server.add(monthly("UNRATE"))

    assert main(["run", "--config", str(write_config(tmp_path, series=("UNRATE",)))]) == 0

    assert set(manifest(project)["series"]) == {"fred/UNRATE"}
    assert sorted(p.name for p in elsewhere.iterdir()) == kept and len(kept) == 12
