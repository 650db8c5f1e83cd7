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
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings, LinearRetry
from storage_links import is_run_id

from forecasting._config import ACCOUNT_ENV, CONNECTION_STRING_ENV, KEY_ENV, BlobCredentials, Settings
from forecasting._errors import CredentialsError, UploadError
from forecasting._upload import LATEST_BLOB, MARKER, UploadResult

if TYPE_CHECKING:
    from azure.core.pipeline.transport import HttpRequest

log = logging.getLogger(__name__)

_LATEST_TRIES = 3  # conditional writes of LATEST before giving up to a writer that keeps changing it

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
    files: dict[str, bytes],  # blob name under the run -> content, in upload order
    settings: Settings,
    dry_run: bool,
    *,
    point_latest: bool,
) -> UploadResult:
    where = f"{creds.endpoint} (account {creds.account}, container {container})"
    client = _container_client(creds, container, settings)
    result = UploadResult(run_id=run, container=container)
    payloads = dict(files)
    digests = {name: hashlib.md5(data).digest() for name, data in payloads.items()}  # Azure's Content-MD5, not security
    marker = json.dumps({"run_id": run, "files": {n: d.hex() for n, d in sorted(digests.items())}}, indent=2).encode()
    payloads[MARKER], digests[MARKER] = marker, hashlib.md5(marker).digest()
    with _translate_errors(where, f"; {MARKER} not written") as errors:
        if not dry_run:
            try:
                client.create_container(retry_hook=_say_retrying)
                log.info("created container %s", container)
            except ResourceExistsError:
                pass
        stored = {name: _stored_md5(client, f"{run}/{name}") for name in payloads}
        todo = [name for name in files if stored[name] != digests[name]]
        result.skipped = [f"{run}/{n}" for n in files if n not in todo]
        marker_fresh = not todo and stored[MARKER] == digests[MARKER]
        if marker_fresh:
            result.skipped.append(f"{run}/{MARKER}")
        if dry_run:
            # Counted as the real upload counts: the marker and LATEST are blobs it sends or leaves.
            moves = point_latest and _moves_forward(_read_latest(client)[0], run)
            if point_latest and not moves:
                result.skipped.append(LATEST_BLOB)
            sends = [*todo, *([] if marker_fresh else [MARKER]), *([LATEST_BLOB] if moves else [])]
            log.info(
                "dry run: would upload %s to %s; %d unchanged",
                ", ".join(sends) or "nothing",
                where,
                len(result.skipped),
            )
            return result
        if todo and stored[MARKER] is not None:
            # The run is about to change: it must not look complete until the new marker lands.
            client.delete_blob(f"{run}/{MARKER}", retry_hook=_say_retrying)
        for name in todo:
            _put(client, f"{run}/{name}", payloads[name], digests[name])
            result.uploaded.append(f"{run}/{name}")
        if not marker_fresh:
            _put(client, f"{run}/{MARKER}", payloads[MARKER], digests[MARKER])
            result.uploaded.append(f"{run}/{MARKER}")
        if point_latest:  # only now that the run is complete
            errors.note = f"; run {run} is complete, but {LATEST_BLOB} was not moved to it"
            (result.uploaded if _move_latest(client, run, where) else result.skipped).append(LATEST_BLOB)
    log.info("uploaded run %s to %s: %d sent, %d unchanged", run, where, len(result.uploaded), len(result.skipped))
    return result


def _read_latest(client: ContainerClient) -> tuple[str | None, str | None]:
    """The run the container's LATEST blob names and the blob's ETag; (None, None) when there is none."""
    try:
        download = client.get_blob_client(LATEST_BLOB).download_blob(retry_hook=_say_retrying)
    except ResourceNotFoundError:
        return None, None
    return download.readall().decode("utf-8", "replace").strip(), download.properties.etag


def _moves_forward(current: str | None, run: str) -> bool:
    """Whether LATEST, now naming `current`, should name `run`: only forward, as run ids sort by time."""
    if current is not None and not is_run_id(current):
        # Compared as text it could sort after every run id, and LATEST would never move again.
        log.warning("the container's %s holds %r, not a run id: treated as naming none", LATEST_BLOB, current[:80])
        return True
    if current is None or current < run:
        return True
    if current > run:
        log.info("the container's %s names run %s, newer than %s: left as it is", LATEST_BLOB, current[:80], run)
    return False


def _move_latest(client: ContainerClient, run: str, where: str) -> bool:
    """Point LATEST at `run` unless it names a newer run; True when it was written.

    The write is conditional on the ETag just read (or on there being no LATEST), so a LATEST that
    another upload writes meanwhile is compared again rather than overwritten.
    """
    data = f"{run}\n".encode()
    for _ in range(_LATEST_TRIES):
        current, etag = _read_latest(client)
        if not _moves_forward(current, run):
            return False
        if etag:
            condition = {"etag": etag, "match_condition": MatchConditions.IfNotModified}
        else:
            condition = {"match_condition": MatchConditions.IfMissing}
        try:
            _put(client, LATEST_BLOB, data, hashlib.md5(data).digest(), **condition)
            return True
        except (ResourceModifiedError, ResourceExistsError):  # 412 / 409: written by someone else meanwhile
            log.debug("%s changed while being moved to %s; comparing again", LATEST_BLOB, run)
    raise UploadError(
        f"{where}: {LATEST_BLOB} was changed by another writer each of {_LATEST_TRIES} times it was about to be "
        f"moved to {run}; left as it is (run {run} is uploaded and complete)"
    )


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


def _say_retrying(*, retry_count: int, request: HttpRequest, response: object, error: object, **_: object) -> None:
    """The SDK's hook before each retry: a stalled or refusing endpoint is otherwise silent for
    attempts x timeout (minutes). Names what was asked by the URL's path: a SAS token is in its query."""
    path = unquote(urlsplit(request.url).path)
    status = getattr(response, "status_code", None)
    reason = f"HTTP {status}" if status else (str(error).splitlines()[0][:120] if str(error) else type(error).__name__)
    log.warning("%s %s: attempt %d failed (%s); retrying", request.method, path, retry_count + 1, reason)


def _stored_md5(client: ContainerClient, blob: str) -> bytes | None:
    try:
        props = client.get_blob_client(blob).get_blob_properties(retry_hook=_say_retrying)
    except ResourceNotFoundError:
        return None
    md5 = props.content_settings.content_md5
    return bytes(md5) if md5 else None


def _put(client: ContainerClient, blob: str, data: bytes, md5: bytes, **conditions: object) -> None:
    content_type = CONTENT_TYPES.get(Path(blob).suffix, "text/plain; charset=utf-8")
    # LATEST changes with every run: a cache in front of the container (a CDN, a proxy) must ask again
    # each time, or readers would be sent to an old run. A run's own blobs never change once complete.
    cache_control = "no-cache" if blob == LATEST_BLOB else None
    log.debug("upload %s (%d bytes, %s, md5 %s)", blob, len(data), content_type, base64.b64encode(md5).decode())
    client.get_blob_client(blob).upload_blob(
        data,
        overwrite=True,
        content_settings=ContentSettings(content_type=content_type, content_md5=md5, cache_control=cache_control),
        validate_content=True,  # the service checks the bytes it received against this MD5
        retry_hook=_say_retrying,
        **conditions,
    )


class _translate_errors:
    """Turn the SDK's exceptions into the stage's, with one line each and no secrets.

    `note` ends each message with what the failure left undone; the caller updates it as it goes.
    """

    def __init__(self, where: str, note: str) -> None:
        self.where = where
        self.note = note

    def __enter__(self) -> _translate_errors:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None or not isinstance(exc, AzureError):
            return False
        note = self.note
        if type(exc).__name__ == "AzureSigningError":  # raised before sending: the key is not base64
            raise CredentialsError(f"{self.where}: cannot sign requests: the account key is malformed{note}") from None
        if isinstance(exc, ClientAuthenticationError) or (
            isinstance(exc, HttpResponseError) and exc.status_code == 403
        ):
            code = _code(exc) or "403"
            raise CredentialsError(
                f"{self.where} refused the credentials ({code}): check {CONNECTION_STRING_ENV} or {KEY_ENV}{note}"
            ) from None
        if isinstance(exc, HttpResponseError):
            code = _code(exc) or exc.reason
            raise UploadError(f"{self.where} answered HTTP {exc.status_code} {code}{note}") from None
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise UploadError(f"{self.where} failed after retries: {reason}{note}") from None


def _code(exc: AzureError) -> str | None:
    """Azure's error code as the service sends it (AuthorizationFailure), not the SDK enum's repr."""
    code = getattr(exc, "error_code", None)
    return getattr(code, "value", code)
