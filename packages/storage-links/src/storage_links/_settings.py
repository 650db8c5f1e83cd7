"""A stage's settings file: which one is read, and the one-line errors when it cannot be.

Every stage follows the same rule, kept here once: its --config if given, else the file its
environment variable names (SCRAPING_CONFIG, MODELLING_CONFIG, FORECASTING_CONFIG), else the
file packaged with it.
"""

from __future__ import annotations

import os
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
        with source.open("rb") as fh:
            return source, tomllib.load(fh)
    except FileNotFoundError:
        raise SettingsError(f"{source}{where}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{source}{where}: invalid TOML: {exc}") from None
    except UnicodeDecodeError:  # TOML is UTF-8; an editor's UTF-16 save is not
        raise SettingsError(f"{source}{where}: not UTF-8 text") from None
    except OSError as exc:  # a directory, no permission, ...
        raise SettingsError(f"{source}{where}: cannot read: {exc.strerror}") from None
