"""A stage's settings file: which one is read, and the one-line errors when it cannot be.

Every stage follows the same rule, kept here once: its --config if given, else the file its
environment variable names (SCRAPING_CONFIG, MODELLING_CONFIG, FORECASTING_CONFIG), else the
file packaged with it.
"""

from __future__ import annotations

import errno
import os
import stat
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path

from storage_links._errors import SettingsError


def read_settings(
    path: Path | None, variable: str, packaged: Callable[[], Path], env: Mapping[str, str] | None = None
) -> tuple[Path, dict]:
    """The settings file chosen (see the module) and its TOML. A blank variable counts as unset (a
    CRLF .env leaves "\\r"). SettingsError names the file, and the variable when it named it."""
    env = os.environ if env is None else env
    named = env.get(variable, "").strip() if path is None else ""
    source = Path(path or named or packaged())
    where = f" (from {variable})" if named else ""
    try:
        # O_NONBLOCK: opening a named pipe would otherwise wait for a writer; regular files ignore it.
        fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise SettingsError(f"{source}{where}: config file not found") from None
    except OSError as exc:  # no permission; or ENXIO, a socket, which cannot be opened at all
        raise SettingsError(f"{source}{where}: {_not_regular(source) or f'cannot read: {exc.strerror}'}") from None
    try:
        problem = _not_regular(fd)
        if problem:
            raise SettingsError(f"{source}{where}: {problem}")
        with open(fd, "rb", closefd=False) as fh:
            return source, tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{source}{where}: invalid TOML: {exc}") from None
    except UnicodeDecodeError:  # TOML is UTF-8; an editor's UTF-16 save is not
        raise SettingsError(f"{source}{where}: not UTF-8 text") from None
    except OSError as exc:  # an I/O error mid-read
        raise SettingsError(f"{source}{where}: cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)


def _not_regular(file: Path | int) -> str | None:
    """What is wrong with `file` (a path or an open fd) as a settings file, or None for a regular file
    (or one that cannot be stat'ed, whose own error says more). A pipe never ends without its writer,
    and a device is no settings file (/dev/zero would be read without end)."""
    try:
        mode = os.stat(file).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):  # the wording open() gave it, which the stages' tests and users know
        return f"cannot read: {os.strerror(errno.EISDIR)}"
    return f"is {_KINDS.get(stat.S_IFMT(mode), 'a special file')}, not a regular file"


_KINDS = {
    stat.S_IFIFO: "a named pipe",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}
