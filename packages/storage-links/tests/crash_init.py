"""Run `storage-links init`, dying with os._exit(137) at its Nth file-system step.

CRASH_AT=N kills at step N (a deterministic stand-in for SIGKILL at that moment);
CRASH_AT=0 kills nowhere and writes the number of steps to CRASH_COUNT_FILE.
Steps are the calls that change the file system or make it durable, and each
1 MiB chunk written, so a kill can also land in the middle of a file's copy.
"""

import os
import sys

from storage_links import _migrate
from storage_links._cli import main

KILL_AT = int(os.environ["CRASH_AT"])
steps = 0


def counted(owner: object, name: str) -> None:
    real = getattr(owner, name)

    def step(*args, **kwargs):
        global steps
        steps += 1
        if steps == KILL_AT:
            os._exit(137)
        return real(*args, **kwargs)

    setattr(owner, name, step)


for name in ("write", "fsync", "rename", "replace", "unlink", "rmdir", "mkdir", "symlink", "utime", "chmod"):
    counted(os, name)
counted(_migrate, "exchange")

code = main(["init"])
if KILL_AT == 0:
    with open(os.environ["CRASH_COUNT_FILE"], "w") as fh:
        fh.write(str(steps))
sys.exit(code)
