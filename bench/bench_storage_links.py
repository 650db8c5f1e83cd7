"""Benchmark storage-links: start-up cost of validate and a warm init, and a first init's migration.

1. `storage-links validate` and a warm `storage-links init` (links already in place)
   against `python -c pass` with the same interpreter, interleaved round by round so
   that both see the same machine load. Target: median ratio <= 1.5.
   Also shown: `python -m storage_links validate` (runpy costs extra), importing the
   CLI module alone, and validate with no bytecode cache (every module compiled).
2. A first init migrating 1,000 files / 100 MB on local disk against `cp -a` of the
   same tree followed by `sync`, interleaved. Target: median ratio <= 2.

Writes bench/results/storage_links.json and bench/results/storage_links.md.
Run: make bench (or .venv/bin/python bench/bench_storage_links.py [--rounds N]).
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import storage_links
from storage_links.testing import scaffold_project

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
PACKAGES = REPO / "packages"
BIN = Path(sys.executable).parent


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode()}")
    return elapsed


def summarize(samples: dict[str, list[float]], base: str) -> dict[str, dict[str, float]]:
    out = {}
    for name, values in samples.items():
        paired = [v / b for v, b in zip(values, samples[base], strict=True)]
        out[name] = {
            "median_ms": round(statistics.median(values) * 1000, 2),
            "min_ms": round(min(values) * 1000, 2),
            "ratio_of_medians": round(statistics.median(values) / statistics.median(samples[base]), 3),
            "median_paired_ratio": round(statistics.median(paired), 3),
        }
    return out


def bench_startup(work: Path, rounds: int) -> dict:
    root = scaffold_project(work / "project", [PACKAGES / p for p in ("scraping", "modelling", "forecasting")])
    share = work / "share"
    share.mkdir()
    env = {
        **os.environ,
        "PIPELINE_ROOT": str(root),
        "FILESHARE_ROOT": str(share),
        "XDG_CACHE_HOME": str(work / "cache"),
    }
    # An installed wheel ships bytecode; this checkout may run with PYTHONDONTWRITEBYTECODE, so compile once.
    compileall.compile_dir(Path(storage_links.__file__).parent, quiet=1)
    script = str(BIN / "storage-links")
    timed([script, "init"], env)  # links in place, contract cache warm: what a container restart sees
    no_pyc = {**env, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": str(work / "empty-pycache")}
    cases = {
        "python -c pass": ([sys.executable, "-c", "pass"], env),
        "storage-links validate": ([script, "validate"], env),
        "storage-links init (warm)": ([script, "init"], env),
        "python -m storage_links validate": ([sys.executable, "-m", "storage_links", "validate"], env),
        "python -c 'import storage_links._cli'": ([sys.executable, "-c", "import storage_links._cli"], env),
        "storage-links validate (no bytecode cache)": ([script, "validate"], no_pyc),
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(3):  # warm the page cache
        for cmd, case_env in cases.values():
            timed(cmd, case_env)
    for _ in range(rounds):
        for name, (cmd, case_env) in cases.items():
            samples[name].append(timed(cmd, case_env))
    return {"rounds": rounds, "links": len(storage_links.links(root)), "results": summarize(samples, "python -c pass")}


def make_tree(top: Path, files: int, size: int) -> None:
    for i in range(files):
        path = top / f"d{i // 100:02d}" / f"f{i:04d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))


def bench_migration(work: Path, share_parent: Path, rounds: int, files: int, size: int) -> dict:
    """First init against `cp -a` + `sync` into the share's file system, interleaved round by round.

    Also timed: `rm -r` of the same tree on the local disk, since a move across file systems must delete
    the local copy, and `cp -a + sync + rm -r` (a move done by hand) as a second reference.
    """
    source = work / "source"
    make_tree(source, files, size)
    root = scaffold_project(work / "project", [PACKAGES / "scraping"])
    share = Path(tempfile.mkdtemp(prefix="bench-share-", dir=share_parent))
    local = storage_links.data_dir("scraping", "scraped_data", root)
    env = {**os.environ, "PIPELINE_ROOT": str(root), "FILESHARE_ROOT": str(share), "XDG_CACHE_HOME": str(work / "c")}
    script = str(BIN / "storage-links")
    cp_copy = share / "cp-copy"
    names = ["cp -a + sync", "storage-links init (first, migrating)", "rm -r (local copy)", "cp -a + sync + rm -r"]
    samples: dict[str, list[float]] = {name: [] for name in names}

    def reset() -> None:
        for path in (local, root / "logs", *share.iterdir()):
            if path.is_symlink():
                path.unlink()
            elif path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        subprocess.run(["sync"], check=True)

    def populate_local() -> None:
        subprocess.run(["cp", "-a", str(source), str(local)], check=True)
        subprocess.run(["sync"], check=True)

    try:
        for _ in range(rounds):
            reset()
            start = time.perf_counter()
            subprocess.run(["cp", "-a", str(source), str(cp_copy)], check=True)
            subprocess.run(["sync"], check=True)
            samples["cp -a + sync"].append(time.perf_counter() - start)
            reset()
            populate_local()
            samples["storage-links init (first, migrating)"].append(timed([script, "init"], env))
            moved = sum(1 for _ in (share / "scraping" / "scraped_data").rglob("*.bin"))
            if moved != files or not local.is_symlink():
                raise SystemExit(f"migration incomplete: {moved} of {files} files on the share")
            reset()
            populate_local()
            start = time.perf_counter()
            subprocess.run(["rm", "-r", str(local)], check=True)
            samples["rm -r (local copy)"].append(time.perf_counter() - start)
            samples["cp -a + sync + rm -r"].append(samples["cp -a + sync"][-1] + samples["rm -r (local copy)"][-1])
        reset()
    finally:
        shutil.rmtree(share, ignore_errors=True)
    return {
        "rounds": rounds,
        "files": files,
        "bytes": files * size,
        "share_fs_same_as_local": share.parent.stat().st_dev == work.stat().st_dev,
        "share_parent": str(share_parent),
        "results": summarize(samples, "cp -a + sync"),
    }


def machine() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "cpu": model,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def to_markdown(doc: dict) -> str:
    m = doc["machine"]
    lines = [
        "# storage-links benchmark",
        "",
        f"Machine: {m['cpu']} ({m['cpu_count']} CPUs), {m['platform']}; Python {m['python']}; {m['date']}.",
        "Ratios are taken within one run, the cases interleaved round by round.",
        "",
        f"## Start-up ({doc['startup']['rounds']} rounds, {doc['startup']['links']} links; target ratio <= 1.5)",
        "",
        "| command | median ms | ratio of medians | median paired ratio |",
        "|---|---:|---:|---:|",
    ]
    for name, r in doc["startup"]["results"].items():
        lines.append(f"| `{name}` | {r['median_ms']} | {r['ratio_of_medians']} | {r['median_paired_ratio']} |")
    ratios = {name: doc["startup"]["results"][name]["ratio_of_medians"]
              for name in ("storage-links validate", "storage-links init (warm)")}  # fmt: skip
    lines += ["", "; ".join(f"`{name}` {r}x `python -c pass`: {_verdict(r, 1.5)}" for name, r in ratios.items())
              + " (target <= 1.5)."]  # fmt: skip
    for label, mig in doc["migration"].items():
        lines += [
            "",
            f"## First init, share on {label}: {mig['files']} files, {mig['bytes'] / 1e6:.0f} MB "
            f"({mig['rounds']} rounds; target <= 2 against `cp -a + sync`)",
            "",
            "| command | median ms | ratio of medians | median paired ratio |",
            "|---|---:|---:|---:|",
        ]
        for name, r in mig["results"].items():
            lines.append(f"| `{name}` | {r['median_ms']} | {r['ratio_of_medians']} | {r['median_paired_ratio']} |")
        init = mig["results"]["storage-links init (first, migrating)"]["ratio_of_medians"]
        by_hand = mig["results"]["cp -a + sync + rm -r"]["ratio_of_medians"]
        lines += ["", f"storage-links init {init}x `cp -a + sync` (target <= 2): {_verdict(init, 2)}; "
                      f"{init / by_hand:.2f}x a move by hand (`cp -a + sync + rm -r`)."]  # fmt: skip
    lines += [
        "",
        "Notes: the start-up cases run with the package's bytecode compiled, as an installed wheel has it (the",
        "last row shows the cost without). `python -m` pays for runpy; the console script is what `make`, the",
        "container entrypoint and the health check call. A share on the same file system (./local_fileshare)",
        "is filled by renames. A share on another file system gets verified copies, and then the local copies",
        "must be deleted, as in any move: the `rm -r` row is that deletion alone on this disk, and",
        "`cp -a + sync + rm -r` is a move done by hand, the fair yardstick for that case.",
        "",
        f"Command: `{doc['command']}`",
        "",
    ]
    return "\n".join(lines)


def _verdict(ratio: float, target: float) -> str:
    return "meets the target" if ratio <= target else "MISSES the target"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30, help="start-up rounds (default 30)")
    parser.add_argument("--migration-rounds", type=int, default=5, help="migration rounds (default 5)")
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--file-size", type=int, default=100_000, help="bytes per file (default 100000)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-storage-links-") as tmp:
        work = Path(tmp)
        (work / "s").mkdir()
        startup = bench_startup(work / "s", args.rounds)
        migration = {}
        # The local disk for both (./local_fileshare: files are renamed), then a share on another file system
        # (what the container sees: files are copied, verified, and the local copies deleted).
        shm = Path("/dev/shm")
        places = {"the same file system (local disk)": work}
        if shm.is_dir() and shm.stat().st_dev != work.stat().st_dev and os.access(shm, os.W_OK):
            places["another file system (tmpfs at /dev/shm)"] = shm
        for i, (label, share_parent) in enumerate(places.items()):
            (work / f"m{i}").mkdir()
            migration[label] = bench_migration(
                work / f"m{i}", share_parent, args.migration_rounds, args.files, args.file_size
            )
    doc = {
        "machine": machine(),
        "command": "python bench/bench_storage_links.py " + " ".join(sys.argv[1:]),
        "startup": startup,
        "migration": migration,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "storage_links.json").write_text(json.dumps(doc, indent=2) + "\n")
    (RESULTS / "storage_links.md").write_text(to_markdown(doc))
    print(to_markdown(doc))


if __name__ == "__main__":
    main()
