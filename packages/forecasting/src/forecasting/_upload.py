"""`forecasting upload`: copy one output run to Azure Blob Storage as <run_id>/<file>.

Idempotent: a blob whose stored Content-MD5 equals the local file's is not sent again. Nothing is
half-published: the files go first and the <run_id>/_SUCCESS marker last; when any file has to
change, an existing marker is deleted before the first byte is sent. Transient failures (reset
connections, timeouts, 5xx) are retried by the SDK's retry policy, configured here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings, LinearRetry

from forecasting._config import (
    ACCOUNT_ENV,
    CONNECTION_STRING_ENV,
    KEY_ENV,
    BlobCredentials,
    Settings,
    blob_credentials,
    container_name,
)
from forecasting._errors import CredentialsError, ForecastingError, UploadError
from forecasting._publish import INPUTS_FILE, OUTPUT_FILES, input_dir, latest_output, output_dir

log = logging.getLogger(__name__)

MARKER = "_SUCCESS"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".csv": "text/csv; charset=utf-8",
    ".json": "application/json",
    ".parquet": "application/vnd.apache.parquet",
}


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
    credentials = blob_credentials()
    if credentials is None:
        hint = f"set {CONNECTION_STRING_ENV}, or {ACCOUNT_ENV} and {KEY_ENV}"
        if settings.profile == "prod":
            raise CredentialsError(f"no Blob Storage credentials in the environment ({hint})")
        log.info("upload skipped: no Blob Storage credentials (%s); output stays local", hint)
        return None
    run = run or latest_output()
    if run is None:
        raise ForecastingError(f"nothing to upload: {output_dir() / 'LATEST'} not found; run `forecasting run` first")
    files = _run_files(run)
    container = container_name(settings.upload)
    for noisy in ("azure", "urllib3"):  # their request logs say nothing we need, and could carry URLs
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return _upload(credentials, container, run, files, settings, dry_run)
    except ForecastingError as exc:
        raise type(exc)(_redact(str(exc), credentials)) from None


def _upload(
    creds: BlobCredentials, container: str, run: str, files: dict[str, Path], settings: Settings, dry_run: bool
) -> UploadResult:
    where = f"{creds.endpoint} (account {creds.account}, container {container})"
    client = _container_client(creds, container, settings)
    result = UploadResult(run_id=run, container=container)
    payloads = {name: path.read_bytes() for name, path in files.items()}
    digests = {name: hashlib.md5(data).digest() for name, data in payloads.items()}  # Azure's Content-MD5, not security
    marker = json.dumps({"run_id": run, "files": {n: d.hex() for n, d in sorted(digests.items())}}, indent=2).encode()
    payloads[MARKER], digests[MARKER] = marker, hashlib.md5(marker).digest()
    with _translate_errors(where):
        if not dry_run:
            try:
                client.create_container()
                log.info("created container %s", container)
            except ResourceExistsError:
                pass
        stored = {name: _stored_md5(client, f"{run}/{name}") for name in payloads}
        todo = [name for name in files if stored[name] != digests[name]]
        result.skipped = [f"{run}/{n}" for n in files if n not in todo]
        marker_fresh = not todo and stored[MARKER] == digests[MARKER]
        if dry_run:
            sends = [*todo, *([] if marker_fresh else [MARKER])]
            log.info(
                "dry run: would upload %s to %s; %d unchanged",
                ", ".join(sends) or "nothing",
                where,
                len(result.skipped),
            )
            return result
        if todo and stored[MARKER] is not None:
            # The run is about to change: it must not look complete until the new marker lands.
            client.delete_blob(f"{run}/{MARKER}")
        for name in todo:
            _put(client, f"{run}/{name}", payloads[name], digests[name])
            result.uploaded.append(f"{run}/{name}")
        if marker_fresh:
            result.skipped.append(f"{run}/{MARKER}")
        else:
            _put(client, f"{run}/{MARKER}", payloads[MARKER], digests[MARKER])
            result.uploaded.append(f"{run}/{MARKER}")
    log.info("uploaded run %s to %s: %d sent, %d unchanged", run, where, len(result.uploaded), len(result.skipped))
    return result


def _run_files(run: str) -> dict[str, Path]:
    """The files of a complete local run, in upload order: the outputs, then inputs.json."""
    directory = output_dir() / run
    if not directory.is_dir():
        raise ForecastingError(f"no output run {run} in {output_dir()}")
    files = {name: directory / name for name in OUTPUT_FILES}
    inputs = input_dir() / run / INPUTS_FILE
    if inputs.is_file():
        files[INPUTS_FILE] = inputs
    missing = [name for name, path in files.items() if not path.is_file()]
    if missing:
        raise ForecastingError(f"{directory}: incomplete run, missing {', '.join(missing)}; not uploaded")
    return files


def _container_client(creds: BlobCredentials, container: str, settings: Settings) -> ContainerClient:
    options = {
        "retry_policy": LinearRetry(backoff=1, random_jitter_range=0.5, retry_total=settings.upload.attempts - 1),
        "connection_timeout": settings.upload.connect_timeout_s,
        "read_timeout": settings.upload.read_timeout_s,
    }
    try:
        if creds.connection_string:
            service = BlobServiceClient.from_connection_string(creds.connection_string, **options)
        else:
            key = {"account_name": creds.account, "account_key": creds.key}
            service = BlobServiceClient(account_url=creds.endpoint, credential=key, **options)
    except ValueError:
        # The SDK's message can quote the connection string; say only which variable is wrong.
        source = CONNECTION_STRING_ENV if creds.connection_string else f"{ACCOUNT_ENV}/{KEY_ENV}"
        raise CredentialsError(f"{source}: not a valid Blob Storage connection setting") from None
    return service.get_container_client(container)


def _stored_md5(client: ContainerClient, blob: str) -> bytes | None:
    try:
        props = client.get_blob_client(blob).get_blob_properties()
    except ResourceNotFoundError:
        return None
    md5 = props.content_settings.content_md5
    return bytes(md5) if md5 else None


def _put(client: ContainerClient, blob: str, data: bytes, md5: bytes) -> None:
    content_type = CONTENT_TYPES.get(Path(blob).suffix, "text/plain; charset=utf-8")
    log.debug("upload %s (%d bytes, %s, md5 %s)", blob, len(data), content_type, base64.b64encode(md5).decode())
    client.get_blob_client(blob).upload_blob(
        data,
        overwrite=True,
        content_settings=ContentSettings(content_type=content_type, content_md5=md5),
        validate_content=True,  # the service checks the bytes it received against this MD5
    )


class _translate_errors:
    """Turn the SDK's exceptions into the stage's, with one line each and no secrets."""

    def __init__(self, where: str) -> None:
        self.where = where

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None or not isinstance(exc, AzureError):
            return False
        note = f"; {MARKER} not written"
        if type(exc).__name__ == "AzureSigningError":  # raised before sending: the key is not base64
            raise CredentialsError(f"{self.where}: cannot sign requests: the account key is malformed{note}") from None
        if isinstance(exc, ClientAuthenticationError) or (
            isinstance(exc, HttpResponseError) and exc.status_code == 403
        ):
            code = getattr(exc, "error_code", None) or "403"
            raise CredentialsError(
                f"{self.where} refused the credentials ({code}): check {CONNECTION_STRING_ENV} or {KEY_ENV}{note}"
            ) from None
        if isinstance(exc, HttpResponseError):
            code = getattr(exc, "error_code", None) or exc.reason
            raise UploadError(f"{self.where} answered HTTP {exc.status_code} {code}{note}") from None
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise UploadError(f"{self.where} failed after retries: {reason}{note}") from None


def _redact(text: str, creds: BlobCredentials) -> str:
    """Belt and braces: a message must never carry the key or the connection string."""
    for secret in (creds.connection_string, creds.key):
        if secret:
            text = text.replace(secret, "***")
    return text
