"""storage_links: the project's data-directory contracts and the symlinks onto the share.

Stages ask `data_dir(package, name)` for their directories and use the run-time
helpers (run id, atomic writes, the run lock, logging, progress, stopping on signals, the
settings file) so they behave alike.

Names are imported on first use (PEP 562), so that `storage-links validate`, which
imports this package first, does not pay for pathlib, logging or tomllib.
"""

from storage_links._lazy import lazy_exports

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing, which costs ~10 ms

_SOURCES = {
    "Link": "_contract",
    "data_dir": "_contract",
    "links": "_contract",
    "logs_dir": "_contract",
    "project_root": "_contract",
    "share_root": "_contract",
    "ConflictError": "_errors",
    "ContractError": "_errors",
    "LockHeldError": "_errors",
    "SettingsError": "_errors",
    "ShareError": "_errors",
    "StorageLinksError": "_errors",
    "ValidationError": "_errors",
    "LOG_LEVELS": "_runtime",
    "Interrupted": "_runtime",
    "Progress": "_runtime",
    "atomic_path": "_runtime",
    "atomic_write": "_runtime",
    "configure_logging": "_runtime",
    "fsync_directory": "_runtime",
    "is_run_id": "_runtime",
    "run_id": "_runtime",
    "stop_on_signals": "_runtime",
    "read_settings": "_settings",
    "run_lock": "_lock",
    "lazy_exports": "_lazy",
}

__all__ = [
    "LOG_LEVELS",
    "ConflictError",
    "ContractError",
    "Interrupted",
    "Link",
    "LockHeldError",
    "Progress",
    "SettingsError",
    "ShareError",
    "StorageLinksError",
    "ValidationError",
    "atomic_path",
    "atomic_write",
    "configure_logging",
    "data_dir",
    "fsync_directory",
    "is_run_id",
    "lazy_exports",
    "links",
    "logs_dir",
    "project_root",
    "read_settings",
    "run_id",
    "run_lock",
    "share_root",
    "stop_on_signals",
]


__getattr__, __dir__ = lazy_exports(__name__, _SOURCES)


if TYPE_CHECKING:
    from storage_links._contract import Link, data_dir, links, logs_dir, project_root, share_root
    from storage_links._errors import (
        ConflictError,
        ContractError,
        LockHeldError,
        SettingsError,
        ShareError,
        StorageLinksError,
        ValidationError,
    )
    from storage_links._lock import run_lock
    from storage_links._runtime import (
        LOG_LEVELS,
        Interrupted,
        Progress,
        atomic_path,
        atomic_write,
        configure_logging,
        fsync_directory,
        is_run_id,
        run_id,
        stop_on_signals,
    )
    from storage_links._settings import read_settings
