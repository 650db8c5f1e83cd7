"""Whether a process still runs on this host (for locks and for temporaries left by a killed writer)."""

from __future__ import annotations

import os


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True
