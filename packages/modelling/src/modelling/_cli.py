"""`python -m modelling run` / `modelling run`: errors become one line and an exit code."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from storage_links import LOG_LEVELS, Interrupted, StorageLinksError, configure_logging, run_id, stop_on_signals

from modelling._config import CONFIG_ENV, default_config_path, load_config
from modelling._errors import ConfigError, InputError, ModellingError, OutputError, WorkerDied
from modelling._run import run

EXIT_OK = 0
EXIT_CONFIG = 1  # bad config file, PIPELINE_RUN_ID or --series id (not in the manifest); nothing fitted
EXIT_USAGE = 2  # argparse's own code for a bad command line
EXIT_SERIES_FAILED = 3  # the run was written, but some series failed (listed in run.json "failed")
EXIT_STORAGE = 4  # predictions/, cache/ or logs/ could not be written, or another run holds predictions/
EXIT_INPUT = 5  # scraped_data/ missing, empty or unreadable, or every series failed; nothing written
EXIT_WORKER = 6  # a worker process was killed (out of memory?); finished fits cached, nothing written
EXIT_CODES = {ConfigError: EXIT_CONFIG, InputError: EXIT_INPUT, OutputError: EXIT_STORAGE, WorkerDied: EXIT_WORKER}

log = logging.getLogger("modelling")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelling",
        description="Fit auto-SARIMA, ETS, Theta and seasonal naive to every series in scraped_data/; "
        "write forecasts, backtests and scores to predictions/<run_id>/.",
        epilog=f"Exit codes: {EXIT_OK} all good (or nothing new), {EXIT_CONFIG} bad config or --series id, "
        f"{EXIT_USAGE} usage, "
        f"{EXIT_SERIES_FAILED} some series failed, {EXIT_STORAGE} storage error (or another run at work), "
        f"{EXIT_INPUT} no usable input, "
        f"{EXIT_WORKER} a worker process was killed, "
        "130 / 143 stopped by Ctrl-C / SIGTERM (finished fits stay cached).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run_cmd = commands.add_parser("run", help="model every stored series (incrementally)")
    run_cmd.add_argument("--jobs", type=int, default=os.cpu_count() or 1, metavar="N",
                         help="worker processes (default: the number of CPUs)")  # fmt: skip
    run_cmd.add_argument("--series", nargs="+", metavar="NAME",
                         help="fit only these series (manifest keys, or key:column for a multi-column file); "
                              "the run carries the others over from the last run as they were")  # fmt: skip
    run_cmd.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help=f"settings (TOML); default: ${CONFIG_ENV} if set, else {default_config_path()}",
    )
    run_cmd.add_argument("--log-level", default="INFO", type=str.upper, choices=LOG_LEVELS,
                         help="stderr log level (default INFO)")  # fmt: skip
    run_cmd.add_argument("--dry-run", action="store_true", help="say what would be fitted; no fits, no writes")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.jobs < 1:
        print("modelling: --jobs must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    try:
        run_name = run_id()
        configure_logging("modelling", args.log_level, run_name)
    except (StorageLinksError, OSError) as exc:
        print(f"modelling: cannot set up logging: {exc}", file=sys.stderr)
        return EXIT_STORAGE
    except ValueError as exc:  # a bad PIPELINE_RUN_ID
        print(f"modelling: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        with stop_on_signals():
            config = load_config(args.config)
            log.info("settings %s", config.source)  # which file: --config, MODELLING_CONFIG or the packaged one
            report = run(config, run_name, jobs=args.jobs, only=args.series,
                         dry_run=args.dry_run, level=args.log_level)  # fmt: skip
    except Interrupted as exc:
        log.error("stopped by %s: the fits finished so far are cached for the next run; "
                  "LATEST still names the last complete run", exc)  # fmt: skip
        return exc.exit_code
    except ModellingError as exc:
        log.error("%s", exc)
        return EXIT_CODES.get(type(exc), EXIT_CONFIG)
    except (StorageLinksError, OSError) as exc:  # LockHeldError too: another run holds predictions/
        log.error("storage: %s", exc)
        return EXIT_STORAGE
    if report.nothing_new:
        log.info("nothing new")
        return EXIT_OK
    verb = "would fit" if args.dry_run else "fitted"
    log.info("%s %d series, %sreused %d, failed %d%s", verb, len(report.fitted),
             f"resumed {len(report.resumed)} (finished before a stop), " if report.resumed else "",
             len(report.reused), len(report.failed), f"; run {report.run_id}" if report.run_id else "")  # fmt: skip
    return EXIT_SERIES_FAILED if report.failed else EXIT_OK
