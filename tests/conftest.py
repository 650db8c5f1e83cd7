"""The Samba share, served on loopback and mounted through FUSE, for tests marked `smb`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._smb import SmbShare, SmbUnavailable, fresh_dir


@pytest.fixture(scope="session")
def smb_server() -> Iterator[SmbShare]:
    """One server and mount for the whole session; skipped with the reason where impossible."""
    share = SmbShare()
    try:
        share.start()
    except SmbUnavailable as exc:
        pytest.skip(f"no SMB share on this machine: {exc}")
    try:
        yield share
    finally:
        share.stop()


@pytest.fixture
def smb_share(smb_server: SmbShare, request: pytest.FixtureRequest) -> Path:
    """A fresh, empty, writable directory on the mounted share, one per test."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)
    return fresh_dir(smb_server.root, name)
