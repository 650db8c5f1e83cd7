"""Sending one output run to Azure Blob Storage with azure-storage-blob (see _upload for what is sent).

Transient failures (reset connections, timeouts, 5xx) are retried by the SDK's retry policy,
configured here; the SDK's exceptions become the stage's, one line each and without secrets.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from pathlib import Path

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings, LinearRetry

from forecasting._config import ACCOUNT_ENV, CONNECTION_STRING_ENV, KEY_ENV, BlobCredentials, Settings
from forecasting._errors import CredentialsError, UploadError
from forecasting._upload import LATEST_BLOB, MARKER, UploadResult

log = logging.getLogger(__name__)

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".csv": "text/csv; charset=utf-8",
    ".json": "application/json",
    ".parquet": "application/vnd.apache.parquet",
}


def send(
    creds: BlobCredentials,
    container: str,
    run: str,
    files: dict[str, Path],
    settings: Settings,
    dry_run: bool,
    *,
    point_latest: bool,
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
        latest = f"{run}\n".encode()
        move_latest = point_latest and _stored_md5(client, LATEST_BLOB) != hashlib.md5(latest).digest()
        if dry_run:
            sends = [*todo, *([] if marker_fresh else [MARKER]), *([LATEST_BLOB] if move_latest else [])]
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
        if move_latest:  # only now that the run is complete
            _put(client, LATEST_BLOB, latest, hashlib.md5(latest).digest())
            result.uploaded.append(LATEST_BLOB)
        elif point_latest:
            result.skipped.append(LATEST_BLOB)
    log.info("uploaded run %s to %s: %d sent, %d unchanged", run, where, len(result.uploaded), len(result.skipped))
    return result


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
