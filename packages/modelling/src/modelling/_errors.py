"""The modelling stage's exceptions: one base class, one subclass per kind of failure.

The CLI maps each to a one-line message and its own exit code (see `_cli.EXIT_CODES`).
"""

from __future__ import annotations


class ModellingError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(ModellingError):
    """The configuration file is missing, unreadable or holds a bad key or value, or --series names
    a series the manifest does not list."""


class InputError(ModellingError):
    """scraped_data/ is missing or empty, or its manifest cannot be read."""


class SeriesError(ModellingError):
    """One series cannot be modelled (too few points, malformed file, unknown frequency)."""


class OutputError(ModellingError):
    """predictions/ cannot be written."""


class WorkerDied(ModellingError):
    """A worker process was killed while fitting (most often for lack of memory); nothing was written."""
