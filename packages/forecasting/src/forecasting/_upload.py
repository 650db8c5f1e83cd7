"""`forecasting upload`: copy one output run to Azure Blob Storage as <run_id>/<file>.

Idempotent: a blob whose stored Content-MD5 equals the local file's is not sent again. Nothing is
half-published: the files go first and the <run_id>/_SUCCESS marker last; when any file has to
change, an existing marker is deleted before the first byte is sent. Uploading the newest local
run (the one data/output/LATEST names) then points the container's LATEST blob at it, as the local
LATEST file does, so readers find the newest complete run without listing the container; LATEST
only moves forward (run ids sort by time), and only by a conditional write, so a newer run another
machine uploaded, before or during this upload, is never replaced. Every file is read before the
first request: one that cannot be read fails the upload (StorageError) before anything is sent.
Transient failures (reset connections, timeouts, 5xx) are retried by the SDK's retry policy,
configured here. It writes nothing under data/, so it takes no run lock: an upload may run beside
`forecasting run`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from storage_links import is_run_id

from forecasting._config import (
    ACCOUNT_ENV,
    CONNECTION_STRING_ENV,
    KEY_ENV,
    BlobCredentials,
    Settings,
    blob_credentials,
    container_name,
)
from forecasting._errors import ConfigError, CredentialsError, ForecastingError, StorageError
from forecasting._inputs import read_or_none
from forecasting._publish import INPUTS_FILE, OUTPUT_FILES, input_dir, latest_output, output_dir

log = logging.getLogger(__name__)

MARKER = "_SUCCESS"
LATEST_BLOB = "LATEST"


@dataclass
class UploadResult:
    run_id: str
    container: str
    uploaded: list[str] = field(default_factory=list)  # blob names sent, in order (marker last)
    skipped: list[str] = field(default_factory=list)  # blob names already up to date


def upload(settings: Settings, run: str | None = None, *, dry_run: bool = False) -> UploadResult | None:
    """Upload a complete output run (default: the one data/output/LATEST names).

    Returns None when the local profile has no credentials (the upload is skipped, not failed).
    """
    if run is not None:
        try:
            run = checked_run_id(run)
        except ValueError as exc:
            raise ConfigError(f"run: {exc}") from None
    credentials = blob_credentials()
    if credentials is None:
        hint = f"set {CONNECTION_STRING_ENV}, or {ACCOUNT_ENV} and {KEY_ENV}"
        if settings.profile == "prod":
            raise CredentialsError(f"no Blob Storage credentials in the environment ({hint})")
        log.info("upload skipped: no Blob Storage credentials (%s); output stays local", hint)
        return None
    newest = latest_output()
    if newest is not None and not is_run_id(newest):  # hand-edited: it would be used as a path
        raise ForecastingError(f"{output_dir() / 'LATEST'}: names {newest[:80]!r}, which is not a run id")
    run = run or newest
    if run is None:
        raise ForecastingError(f"nothing to upload: {output_dir() / 'LATEST'} not found; run `forecasting run` first")
    files = _run_files(run)
    container = container_name(settings.upload)
    # Their request logs say nothing we need, and could carry URLs. The SDK's warnings come just before
    # an exception that our one error line reports (e.g. "Unexpected return type" from a server that
    # is not a Blob service), so only its errors are let through.
    logging.getLogger("azure").setLevel(logging.ERROR)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    # Imported only now: azure-storage-blob costs most of this command's start-up, and a local
    # run without credentials (above) never needs it.
    from forecasting._blob import send

    try:
        return send(credentials, container, run, files, settings, dry_run, point_latest=run == newest)
    except ForecastingError as exc:
        raise type(exc)(_redact(str(exc), credentials)) from None


def checked_run_id(text: str) -> str:
    """`text` as the name of a run directory, or ValueError saying why it is not one.

    Tab completion's trailing slash is dropped. Anything else is refused by the rule run ids are made
    by (storage_links.is_run_id): a path would name the blobs after it and look for inputs.json elsewhere.
    """
    name = text.rstrip("/")
    if is_run_id(name):
        return name
    if "/" in name and is_run_id(Path(name).name):
        raise ValueError(f"{text!r} is a path, not a run id: give the run's name alone, {Path(name).name}")
    raise ValueError(f"{text!r} is not a run id (a run's name in data/output/: letters, digits, '-', '_', '.')")


def _run_files(run: str) -> dict[str, bytes]:
    """The contents of a complete local run's files, in upload order: the outputs, then inputs.json.

    All are read before the first request, so a file that cannot be read (a StorageError naming it:
    data/ is this stage's own) fails the upload with nothing sent, and no run marked or unmarked.
    """
    directory = output_dir() / run
    contents = {name: read_or_none(directory / name, StorageError) for name in OUTPUT_FILES}
    if all(content is None for content in contents.values()) and not directory.is_dir():
        raise ForecastingError(f"no output run {run} in {output_dir()}")
    missing = [name for name, content in contents.items() if content is None]
    inputs = input_dir() / run / INPUTS_FILE
    contents[INPUTS_FILE] = read_or_none(inputs, StorageError)
    # `forecasting run` writes inputs.json just after renaming the run into place: a run without it
    # was interrupted there, and its uploaded copy would not say what it was made from.
    if contents[INPUTS_FILE] is None:
        missing.append(str(inputs))
    if missing:
        raise ForecastingError(f"{directory}: incomplete run, missing {', '.join(missing)}; not uploaded")
    return contents


def _redact(text: str, creds: BlobCredentials) -> str:
    """Belt and braces: a message must never carry the key or the connection string."""
    for secret in (creds.connection_string, creds.key):
        if secret:
            text = text.replace(secret, "***")
    return text
