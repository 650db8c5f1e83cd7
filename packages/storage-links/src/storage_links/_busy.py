"""Retrying a file operation while a network share reports the file busy.

Over SMB a file that was just closed can refuse a rename or unlink for a moment: the
server answers "sharing violation", which reaches us as PermissionError (EACCES/EPERM)
or, through smbnetfs, as EBUSY (seen in tests/_smb.py's share: 2 of 300 unlinks).
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable

_DELAYS = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6)  # seconds


def is_busy(exc: OSError) -> bool:
    return isinstance(exc, PermissionError) or exc.errno == errno.EBUSY


def retry_busy(func: Callable, *args: object) -> object:
    """Call func(*args), retrying briefly while the share reports the file busy."""
    for delay in _DELAYS:
        try:
            return func(*args)
        except OSError as exc:
            if not is_busy(exc):
                raise
            time.sleep(delay)
    return func(*args)
