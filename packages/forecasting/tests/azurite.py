"""Azurite, the Azure Storage emulator's blob service, on a loopback port: importable by any test.

The `azurite` fixture (import it into a conftest or test module) runs one for the session.
`running_azurite(location)` starts it in its own session, waits until it listens, yields its blob
endpoint (`http://127.0.0.1:<port>/devstoreaccount1`) and stops it. `AzuriteUnavailable` says why it
could not start, so a fixture can turn that into a skip (binary missing) or a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's documented, public development key: not a secret.
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
START_TIMEOUT_S = 60.0


class AzuriteUnavailable(Exception):
    """azurite-blob is not installed (the message says where it was looked for)."""


class AzuriteFailed(Exception):
    """azurite-blob is installed but did not start (the message carries the end of its output)."""


def azurite_binary() -> str | None:
    candidates = [
        os.environ.get("AZURITE_BLOB_BIN"),
        str(Path(__file__).parents[3] / ".cache" / "node" / "node_modules" / ".bin" / "azurite-blob"),
        shutil.which("azurite-blob"),
    ]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def connection_string(endpoint: str) -> str:
    """A connection string for the emulator's account at `endpoint` (as `running_azurite` yields)."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};BlobEndpoint={endpoint};"
    )


@contextlib.contextmanager
def running_azurite(location: Path) -> Iterator[str]:
    """Azurite's blob service storing under `location`; yields its blob endpoint."""
    binary = azurite_binary()
    if binary is None:
        raise AzuriteUnavailable(
            "azurite-blob not found (scripts/install-test-services.sh installs it into .cache/node)"
        )
    port = free_port()
    location.mkdir(parents=True, exist_ok=True)
    out = location / "azurite.out"
    args = ["--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(location), "--loose"]
    with out.open("wb") as log_file:
        proc = subprocess.Popen(
            [binary, *args, "--skipApiVersionCheck"],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AzuriteFailed(f"azurite did not start: {out.read_text()[-500:]}")
                time.sleep(0.2)
            yield f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Azurite's blob endpoint for the session; skipped with the reason where it is not installed."""
    try:
        with running_azurite(tmp_path_factory.mktemp("azurite")) as endpoint:
            yield endpoint
    except AzuriteUnavailable as exc:
        pytest.skip(str(exc))
    except AzuriteFailed as exc:
        pytest.fail(str(exc))
