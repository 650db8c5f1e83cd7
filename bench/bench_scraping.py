"""Scraping against the loopback fake server, 50 series, no rate limit (issue 4's targets):

1. wall time of a full first run vs the same HTTP requests made with bare httpx in the same
   run, paired and interleaved (target: at most 1.5x);
2. a re-run with nothing new: requests per series (target: at most 1) and files rewritten (target: 0).

The server runs in a process of its own, as a real one would be elsewhere: in this process its
work would hold the GIL that the client being measured needs (the stage's and the bare client's
alike), and the stage's fetch thread could not overlap anything with it.

Run by `make bench` with the root venv's python; writes bench/results/scraping.{json,md}.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import closing
from datetime import date
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "packages" / "scraping" / "tests"))

import httpx  # noqa: E402
from _common import record  # noqa: E402
from fake_servers import VALID_KEY, FakeSeries, FakeServer  # noqa: E402
from scraping import load_config, run  # noqa: E402
from scraping._fred import FredSource  # noqa: E402
from scraping._http import Fetcher  # noqa: E402
from scraping._store import Store, normalise  # noqa: E402
from storage_links.testing import scaffold_project  # noqa: E402

SERIES = 50
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
# Loopback rounds take under a second and vary most with the machine's load (a round's ratio moves
# by +-0.2 here): enough of them that the median moves by a few hundredths between runs.
LOOPBACK_ROUNDS = 7 * ROUNDS
PACKAGE = HERE.parent / "packages" / "scraping"


def make_series(i: int) -> FakeSeries:
    """40 monthly series of 50 years, 10 business-daily ones of 20 years, a few "." in each."""
    if i < 40:
        days = [date(1975 + m // 12, m % 12 + 1, 1) for m in range(600)]
        freq = ("Monthly", "M")
    else:
        days = [date.fromordinal(date(2005, 1, 3).toordinal() + d) for d in range(7300)]
        days = [d for d in days if d.weekday() < 5]
        freq = ("Daily", "D")
    obs = [(d.isoformat(), "." if k % 97 == 5 else f"{100 + (k * 7919 % 1000) / 100:.2f}") for k, d in enumerate(days)]
    series = FakeSeries(f"BENCH{i:02d}", obs)
    series.frequency, series.frequency_short = freq
    return series


def config_file(directory: Path, ids: list[str], fmt: str) -> Path:
    path = directory / f"series-{fmt}.toml"
    path.write_text(
        "[http]\nrequests_per_second = 0\ntimeout_s = 30\nmax_retries = 2\n"
        f'[fred]\nformat = "{fmt}"\nseries = {ids!r}\n[treasury]\nenabled = false\n'.replace("'", '"')
    )
    return path


def fresh_root(base: Path, n: int) -> Path:
    root = scaffold_project(base / f"root{n}", [PACKAGE])
    os.environ["PIPELINE_ROOT"] = str(root)
    return root / "packages" / "scraping" / "scraped_data"


class ServerProcess:
    """The fake server (with the benchmark's series) in a child process, driven by JSON lines on its stdin."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.url = self._ask("url")

    def _ask(self, command: str, argument: object = None) -> object:
        assert self._proc.stdin and self._proc.stdout
        self._proc.stdin.write(json.dumps([command, argument]) + "\n")
        self._proc.stdin.flush()
        return json.loads(self._proc.stdout.readline())

    def set_latency(self, seconds: float) -> None:
        self._ask("latency", seconds)

    def reset_requests(self) -> None:
        self._ask("reset")

    def requests(self) -> list[tuple[str, dict[str, str], float]]:
        """(path, query parameters, time.monotonic() on arrival) of every request since the last reset,
        in arrival order (the monotonic clock is the machine's, so it compares with this process's)."""
        return [tuple(r) for r in self._ask("requests")]

    def close(self) -> None:
        self._ask("quit")
        self._proc.wait(30)


def serve() -> None:
    """The child's side of ServerProcess."""
    with FakeServer() as server:
        server.add(*(make_series(i) for i in range(SERIES)))
        for line in sys.stdin:
            command, argument = json.loads(line)
            answer: object = None
            if command == "url":
                answer = server.url
            elif command == "latency":
                server.latency = argument
            elif command == "reset":
                server.reset_requests()
            elif command == "requests":
                answer = [(r.path, r.params, r.at) for r in server.requests_to("")]
            print(json.dumps(answer), flush=True)
            if command == "quit":
                return


def bare_httpx(urls: list[str]) -> float:
    start = time.perf_counter()
    with httpx.Client(timeout=30) as client:
        for url in urls:
            client.get(url).raise_for_status().content  # noqa: B018 - read the body, as the stage does
    return time.perf_counter() - start


def best_of_3(step: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - start)
    return best


def parts_alone(base: Path, ids: list[str], urls: list[str], config_path: Path) -> dict[str, float]:
    """Seconds for each part of the stage's work on its own, with nothing else running (best of 3):
    the stage's fetching (its Fetcher and FredSource, one request after another, the same requests),
    its reader turning the observations answers into columns, and its store writing the tables
    into a fresh scraped_data/; the bare client's run beside them for scale."""
    config = load_config(config_path)
    fetcher = Fetcher(config.http)  # as the stage's run makes it: part of the fetching
    try:
        source = FredSource(config.fred, fetcher)
        bodies = [source.fetch_observations(series_id, None) for series_id in ids]

        def fetch() -> None:
            with closing(Fetcher(config.http)) as own:
                fetching = FredSource(config.fred, own)
                for series_id in ids:
                    fetching.info(series_id)
                    fetching.fetch_observations(series_id, None)

        parsed = [source.parse_observations(series_id, body) for series_id, body in zip(ids, bodies, strict=True)]
        tables = [normalise(table, ["value"]) for table in parsed]
        seconds = {
            "bare httpx": best_of_3(lambda: bare_httpx(urls)),
            "fetch": best_of_3(fetch),
            "parse": best_of_3(lambda: [source.parse_observations("BENCH", body) for body in bodies]),
        }
    finally:
        fetcher.close()

    def store() -> None:
        into = Store(Path(tempfile.mkdtemp(dir=base)))
        for series_id, table in zip(ids, tables, strict=True):
            into.put(f"fred/{series_id}", table, {"source": "fred", "id": series_id}, origin="network")
        into.save_manifest()  # waits for the writes in flight

    seconds["store"] = best_of_3(store)
    return seconds


def warm_up(server: ServerProcess, base: Path, ids: list[str]) -> dict[str, list[str]]:
    """One untimed run of each side and format (a process's first stage run imports pandas, pyarrow
    and fredapi, a one-off that the rounds are not about); the URLs each format asked for."""
    urls = {}
    for fmt in ("xml", "json"):
        fresh_root(base, len(list(base.iterdir())))
        server.reset_requests()
        run(load_config(config_file(base, ids, fmt)))
        urls[fmt] = [str(httpx.URL(f"{server.url}{path}").copy_merge_params(q)) for path, q, _ in server.requests()]
        bare_httpx(urls[fmt])
    return urls


def measure(server: ServerProcess, base: Path, ids: list[str], fmt: str, rounds: int) -> dict:
    config = load_config(config_file(base, ids, fmt))
    stage_times, bare_times, ratios, stage_cpu, bare_cpu = [], [], [], [], []
    timelines: dict[str, list[tuple[float, float, float]]] = {"stage": [], "bare": []}
    urls: list[str] = []
    for _ in range(rounds):
        scraped = fresh_root(base, len(list(base.iterdir())))
        server.reset_requests()
        began, start, cpu = time.monotonic(), time.perf_counter(), time.process_time()
        report = run(config)
        stage = time.perf_counter() - start
        stage_cpu.append(time.process_time() - cpu)
        timelines["stage"].append(_timeline(began, time.monotonic(), server.requests()))
        assert not report.failed, report.summary()
        if not urls:  # the very URLs the stage asked for, key included
            urls = [
                str(httpx.URL(f"{server.url}{path}").copy_merge_params(params)) for path, params, _ in server.requests()
            ]
        server.reset_requests()
        began, cpu = time.monotonic(), time.process_time()
        bare = bare_httpx(urls)
        bare_cpu.append(time.process_time() - cpu)
        timelines["bare"].append(_timeline(began, time.monotonic(), server.requests()))
        stage_times.append(stage)
        bare_times.append(bare)
        ratios.append(stage / bare)
    # The re-run with nothing new, on the last round's data.
    before = {p: p.stat().st_mtime_ns for p in scraped.rglob("*") if p.is_file()}
    server.reset_requests()
    rerun_start = time.perf_counter()
    rerun = run(config)
    rerun_s = time.perf_counter() - rerun_start
    after = {p: p.stat().st_mtime_ns for p in scraped.rglob("*") if p.is_file()}
    return {
        "format": fmt,
        "series": len(ids),
        "requests_first_run": len(urls),
        "stage_s_median": round(statistics.median(stage_times), 4),
        "bare_httpx_s_median": round(statistics.median(bare_times), 4),
        "ratio_median": round(statistics.median(ratios), 3),
        # CPU time of this process, every thread together (the server's is its own process's).
        "stage_cpu_s_median": round(statistics.median(stage_cpu), 4),
        "bare_httpx_cpu_s_median": round(statistics.median(bare_cpu), 4),
        "ratios": [round(r, 3) for r in ratios],
        # Medians (ms) of: start to the first request's arrival, first to last arrival, last arrival to the end.
        "timeline_ms": {
            side: [round(statistics.median(t[i] for t in rows) * 1000, 1) for i in range(3)]
            for side, rows in timelines.items()
        },
        "rerun_s": round(rerun_s, 4),
        "rerun_requests_per_series": len(server.requests()) / len(ids),
        "rerun_files_rewritten": sum(after[p] != before[p] for p in before) + len(set(after) - set(before)),
        "rerun_statuses": sorted({r.status for r in rerun.results}),
    }


def _quartiles(values: list[float]) -> str:
    """The first and third quartiles of `values`, as "q1-q3" ("-" for a single round)."""
    if len(values) < 2:
        return "-"
    q1, _, q3 = statistics.quantiles(values, n=4)
    return f"{q1:.2f}-{q3:.2f}"


def _timeline(began: float, ended: float, requests: list[tuple[str, dict[str, str], float]]) -> tuple[float, ...]:
    """Seconds from `began` to the first request's arrival at the server, from the first arrival to
    the last, and from the last to `ended` (its answer read, parsed and stored)."""
    first, last = requests[0][2], requests[-1][2]
    return first - began, last - first, ended - last


def main() -> None:
    logging.disable(logging.CRITICAL)
    os.environ.update({"FRED_API_KEY": VALID_KEY, "PIPELINE_PROFILE": "local"})
    results = {}
    load_before = os.getloadavg()[0]
    server = ServerProcess()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            base = Path(tmp)
            ids = [make_series(i).id for i in range(SERIES)]
            os.environ["FRED_API_BASE_URL"] = f"{server.url}/fred"
            urls = warm_up(server, base, ids)
            alone = {fmt: parts_alone(base, ids, urls[fmt], config_file(base, ids, fmt)) for fmt in ("xml", "json")}
            for latency in (0.0, 0.02, 0.1):
                server.set_latency(latency)
                for fmt in ("xml", "json"):
                    name = f"{fmt}, latency {latency * 1000:g} ms"
                    results[name] = measure(server, base, ids, fmt, ROUNDS if latency else LOOPBACK_ROUNDS)
                    print(name, results[name], file=sys.stderr)
    finally:
        server.close()
    load = {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)}
    libraries = {lib: version(lib) for lib in ("httpx", "fredapi", "pandas", "pyarrow", "selectolax", "statsmodels")}
    lines = [
        f"Libraries: {', '.join(f'{k} {v}' for k, v in libraries.items())}.",
        f"1-minute load average {load['before']} before, {load['after']} after (the machine is shared).",
        "",
        f"{SERIES} FRED series (40 monthly x 600 obs, 10 business-daily x ~5200 obs) from the loopback fake server",
        "(packages/scraping/tests/fake_servers.py), rate limiter off. Stage = `scraping.run()` in-process (fetch,",
        "parse, Parquet, manifest) into a fresh root; bare = the same URLs with one `httpx.Client`, bodies read.",
        "The stage's client is an `httpx.Client` too, over its own transport (http.client, scraping/_transport.py);",
        "bare httpx uses httpx's default transport (httpcore + h11), which spends about twice the CPU per request.",
        f"Paired and interleaved, {ROUNDS} rounds ({LOOPBACK_ROUNDS} on bare loopback) after one untimed run of each;",
        "ratio = median of per-round stage/bare (in brackets: the middle half of the rounds' ratios, which shows",
        "the machine's noise). 'latency' is a delay the server adds to every answer, a stand-in",
        "for a real network (FRED answers in ~100-300 ms). The server runs in a child process, as a real one runs",
        "elsewhere; the machine's 2 CPUs are shared by it, the client being measured, and whatever else runs.",
        "",
        "| wire format, added latency | stage (s) | bare httpx (s) | stage overhead per series (ms) "
        "| ratio (target <= 1.5) | stage CPU (ms) | bare httpx CPU (ms) "
        "| re-run requests/series (target <= 1) | re-run files rewritten (target 0) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['stage_s_median']} | {r['bare_httpx_s_median']} | "
            f"{(r['stage_s_median'] - r['bare_httpx_s_median']) / SERIES * 1000:.0f} | {r['ratio_median']} "
            f"({_quartiles(r['ratios'])}) | "
            f"{r['stage_cpu_s_median'] * 1000:.0f} | {r['bare_httpx_cpu_s_median'] * 1000:.0f} | "
            f"{r['rerun_requests_per_series']:g} | {r['rerun_files_rewritten']} |"
        )
    slowest_networked = max(r["ratio_median"] for name, r in results.items() if not name.endswith(" 0 ms"))
    loopback = {fmt: results[f"{fmt}, latency 0 ms"] for fmt in ("xml", "json")}
    lines += [
        "",
        "CPU is this process's time on every thread together (`time.process_time`), the server's not included.",
        "On bare loopback there is no network to hide the stage's own work, and all of it is CPU in one process",
        "under one GIL: parsing the answers (XML in FRED's layout: numpy on the raw bytes; JSON: pyarrow's",
        "reader), converting whole columns, Arrow tables and Parquet per series, the writer threads' file handling.",
        "The fetch thread (answers up to 64 MiB ahead) overlaps that work with the server's and with waits on",
        "the network, not with its own HTTP handling, which needs the GIL too; each return from a kernel that ran",
        "outside the GIL waits for the fetch thread to hand it back. Once every answer is in, the fetch thread",
        "parses those not yet reached, last first. So the stage's threads still run about one at a",
        "time (its CPU time / its wall time: "
        + ", ".join(f"{fmt} {r['stage_cpu_s_median'] / r['stage_s_median']:.2f}" for fmt, r in loopback.items())
        + "), and its CPU time alone, as a multiple of the bare client's wall time, is ("
        + ", ".join(f"{fmt} {r['stage_cpu_s_median'] / r['bare_httpx_s_median']:.2f}x" for fmt, r in loopback.items())
        + ").",
        "",
        "Each part of the stage's work on bare loopback, measured on its own with nothing else running (best of 3,",
        "ms): the stage's fetching (its Fetcher and FredSource, the same requests one after another), its reader",
        "(answers to columns) and its store (Parquet, hash, atomic writes, manifest), against the stage's whole",
        "run (median above). What the stage takes beyond the sum of its parts is what they cost each other when",
        "they run at once on 2 CPUs that the server shares.",
        "",
        "| wire format | bare httpx | fetching | parsing | storing | sum of the parts | whole stage | sum / bare |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for fmt, parts in alone.items():
        ms = {part: f"{seconds * 1000:.0f}" for part, seconds in parts.items()}
        total = parts["fetch"] + parts["parse"] + parts["store"]
        whole = results[f"{fmt}, latency 0 ms"]["stage_s_median"]
        lines.append(
            f"| {fmt} | {ms['bare httpx']} | {ms['fetch']} | {ms['parse']} | {ms['store']} | {total * 1000:.0f} "
            f"| {whole * 1000:.0f} | {total / parts['bare httpx']:.2f} |"
        )
    lines += [
        "",
        "Where a round's time goes on bare loopback, from the server's arrival times (medians, ms): from the",
        "start to the first request (setting up: the bare client's includes httpx's TLS set-up, ~30 ms, which",
        "the stage defers to its first https request), from the first request to the last (the requests, with",
        "whatever they wait for), and from the last request to the end (its answer, and the stage's parsing and",
        "storing still to do).",
        "",
        "| wire format | side | to the first request | first to last request | last request to the end | sum |",
        "|---|---|---|---|---|---|",
    ]
    for fmt, r in loopback.items():
        for side in ("stage", "bare"):
            parts = r["timeline_ms"][side]
            lines.append(f"| {fmt} | {side} | {' | '.join(f'{ms:.0f}' for ms in parts)} | {sum(parts):.0f} |")
    lines += [
        "",
        f"With 20 ms of added latency or more, every ratio is at most {slowest_networked:.2f}.",
        "",
        "Command: `make bench` (or `.venv/bin/python bench/bench_scraping.py`; BENCH_ROUNDS=N to change rounds).",
    ]
    summary = {
        "libraries": libraries,
        "load_average": load,
        "rounds": ROUNDS,
        "loopback_rounds": LOOPBACK_ROUNDS,
        "parts_alone_s": {fmt: {part: round(t, 4) for part, t in parts.items()} for fmt, parts in alone.items()},
    }
    record("scraping", {**summary, "results": results}, lines)


if __name__ == "__main__":
    serve() if sys.argv[1:] == ["--serve"] else main()
