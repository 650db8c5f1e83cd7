"""Command line: `python -m forecasting run|upload`. Errors become one line and a distinct exit code."""

from __future__ import annotations

import argparse
import logging
import sys

from storage_links import (
    LOG_LEVELS,
    ContractError,
    Interrupted,
    StorageLinksError,
    configure_logging,
    run_id,
    stop_on_signals,
)

from forecasting._config import load_settings
from forecasting._errors import ConfigError, ForecastingError, StorageError
from forecasting._publish import run
from forecasting._upload import checked_run_id, upload

log = logging.getLogger("forecasting")

EXIT_CODES = """exit codes: 0 done (or nothing new, or upload skipped locally without credentials),
  1 other error, 2 usage, 3 config, 4 bad or unreadable predictions input, 5 upload failed, 6 credentials,
  7 storage (data/ or logs/ cannot be written or read, nothing of the run is left or uploaded;
  or another run holds data/),
  130 / 143 stopped by Ctrl-C / SIGTERM (LATEST still names the last complete run)"""


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--log-level", default="INFO", type=str.upper, choices=LOG_LEVELS, help="default: INFO")
    common.add_argument("--dry-run", action="store_true", help="say what would be done, change nothing")
    parser = argparse.ArgumentParser(
        prog="forecasting",
        description="Stage 3: choose or combine models by backtest, publish tables and an HTML report, upload.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run_cmd = commands.add_parser(
        "run",
        parents=[common],
        help="publish the newest predictions as data/output/<run_id>/",
        description="Publish the predictions run that predictions/LATEST names, unless it is already published "
        "under the same settings.",
    )
    run_cmd.add_argument(
        "--keep", type=_positive, metavar="N", help="then prune local runs (output and input) beyond the newest N"
    )
    up_cmd = commands.add_parser(
        "upload",
        parents=[common],
        help="copy an output run to Azure Blob Storage",
        description="Upload data/output/<run_id>/ as blobs <run_id>/<file>, then <run_id>/_SUCCESS. "
        "Credentials: AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT + AZURE_STORAGE_KEY "
        "(+ AZURE_STORAGE_BLOB_ENDPOINT); container: AZURE_STORAGE_CONTAINER (default from the config).",
    )
    up_cmd.add_argument(
        "--run", type=_run_id, metavar="RUN_ID", help="a run's name in data/output/; default: the one LATEST names"
    )
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _run_id(text: str) -> str:
    """--run, checked by argparse before anything is read or sent: a bad value is a usage error (exit 2)."""
    try:
        return checked_run_id(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        this_run = run_id()
    except ValueError as exc:
        print(f"forecasting: error: {exc}", file=sys.stderr)
        return ConfigError.exit_code
    try:
        configure_logging("forecasting", args.log_level, this_run)
    except (StorageLinksError, OSError) as exc:  # no log file to say it in
        print(f"forecasting: error: cannot set up logging: {exc}", file=sys.stderr)
        return StorageError.exit_code
    try:
        with stop_on_signals():
            settings = load_settings()
            if args.command == "run":
                # "nothing new" is logged there
                run(this_run, settings, keep=args.keep, dry_run=args.dry_run, level=args.log_level)
            else:
                upload(settings, args.run, dry_run=args.dry_run)
    except ForecastingError as exc:
        log.error("error: %s", exc)
        return exc.exit_code
    except ContractError as exc:  # the project's [tool.storage-links] tables
        log.error("error: %s", exc)
        return ConfigError.exit_code
    except StorageLinksError as exc:  # data/'s run lock held by another run, a share dir that cannot be made
        log.error("error: %s", exc)
        return StorageError.exit_code
    except Interrupted as exc:
        kept = "LATEST still names the last complete run" if args.command == "run" else "the next upload sends the rest"
        log.error("stopped by %s; %s", exc, kept)
        return exc.exit_code
    return 0
