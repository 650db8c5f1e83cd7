"""`python -m scraping run` / `scraping run`: errors become one line and an exit code."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from storage_links import LOG_LEVELS, Interrupted, StorageLinksError, configure_logging, run_id, stop_on_signals

from scraping._config import CONFIG_ENV, default_config_path, load_config, parse_series_ids
from scraping._errors import ConfigError, StoreError
from scraping._run import SeriesResult, run

EXIT_OK = 0
EXIT_CONFIG = 1  # bad config file or environment; nothing fetched
EXIT_USAGE = 2  # argparse's own code for a bad command line
EXIT_SERIES_FAILED = 3  # the run finished but some series failed (their previous files are kept)
EXIT_STORAGE = 4  # scraped_data/ or logs/ could not be read or written

log = logging.getLogger("scraping")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scraping",
        description="Fetch FRED series and the Treasury par yield curve into scraped_data/ (incrementally).",
        epilog=(
            "Environment: FRED_API_KEY or FRED_API_KEY_FILE; FRED_API_BASE_URL and TREASURY_BASE_URL replace the "
            "sources' host roots; PIPELINE_PROFILE=local|prod. Without a key the local profile runs offline and "
            "stores the bundled statsmodels macrodata dataset; prod refuses to. "
            f"Exit codes: {EXIT_OK} all good, {EXIT_CONFIG} bad config, {EXIT_USAGE} usage, "
            f"{EXIT_SERIES_FAILED} some series failed, {EXIT_STORAGE} storage error, "
            "130 / 143 stopped by Ctrl-C / SIGTERM (what was stored is kept)."
        ),
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run_cmd = commands.add_parser("run", help="bring scraped_data/ up to date")
    run_cmd.add_argument(
        "--series", type=_series_ids, metavar="ID,ID...", help="fetch only these FRED series ids (comma-separated)"
    )
    run_cmd.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help=f"series list (TOML); default: ${CONFIG_ENV} if set, else {default_config_path()}",
    )
    run_cmd.add_argument(
        "--log-level", default="INFO", type=str.upper, choices=LOG_LEVELS, help="stderr log level (default INFO)"
    )
    run_cmd.add_argument("--dry-run", action="store_true", help="say what would be fetched; no requests, no writes")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with stop_on_signals():
            return _run(args)
    except Interrupted as exc:
        # run() has waited for the writes in flight and saved the manifest of what landed.
        log.error("stopped by %s: the series stored so far are kept; the next run fetches the rest", exc)
        return exc.exit_code


def _run(args: argparse.Namespace) -> int:
    try:
        log_file = configure_logging("scraping", args.log_level, run_id())
    except (StorageLinksError, OSError) as exc:
        print(f"scraping: cannot set up logging: {exc}", file=sys.stderr)
        return EXIT_STORAGE
    except ValueError as exc:  # a bad PIPELINE_RUN_ID
        print(f"scraping: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    log.debug("logging to %s", log_file)
    try:
        config = load_config(args.config)
        log.info("config %s, profile %s%s", config.path, config.profile, " (dry run)" if args.dry_run else "")
        report = run(config, only=args.series, dry_run=args.dry_run, on_result=_log_result)
    except ConfigError as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    except (StoreError, StorageLinksError) as exc:
        log.error("%s", exc)
        return EXIT_STORAGE
    if report.failed:
        log.error("%s; failed: %s", report.summary(), ", ".join(r.key for r in report.failed))
        return EXIT_SERIES_FAILED
    log.info("%s; %d files written", report.summary(), report.files_written)
    return EXIT_OK


def _series_ids(text: str) -> tuple[str, ...]:
    """--series, checked by argparse: a bad value is a usage error (exit 2), named with the option."""
    try:
        return parse_series_ids(text, "--series")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--series: ")) from None


def _log_result(result: SeriesResult) -> None:
    log.log(logging.ERROR if result.status == "failed" else logging.INFO, "%s: %s", result.key, result.describe())
