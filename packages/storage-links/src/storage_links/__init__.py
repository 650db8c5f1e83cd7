"""storage_links: the project's data-directory contracts and the symlinks onto the share.

Stages ask `data_dir(package, name)` for their directories and use the run-time
helpers (run id, atomic writes, logging, progress) so they behave alike.
"""

from storage_links._contract import Link, data_dir, links, logs_dir, project_root, share_root
from storage_links._errors import (
    ConflictError,
    ContractError,
    LockHeldError,
    ShareError,
    StorageLinksError,
    ValidationError,
)
from storage_links._runtime import (
    LOG_LEVELS,
    Progress,
    atomic_path,
    atomic_write,
    configure_logging,
    run_id,
)

__all__ = [
    "LOG_LEVELS",
    "ConflictError",
    "ContractError",
    "Link",
    "LockHeldError",
    "Progress",
    "ShareError",
    "StorageLinksError",
    "ValidationError",
    "atomic_path",
    "atomic_write",
    "configure_logging",
    "data_dir",
    "links",
    "logs_dir",
    "project_root",
    "run_id",
    "share_root",
]
