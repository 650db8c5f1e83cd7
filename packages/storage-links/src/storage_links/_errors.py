"""The storage_links exception tree: one base class, one subclass per kind of failure."""


class StorageLinksError(Exception):
    """Base of every error storage_links raises on purpose; the CLI prints it as one line."""

    exit_code = 1


class ContractError(StorageLinksError):
    """A [tool.storage-links] table is missing, malformed or names a path outside its package."""


class ShareError(StorageLinksError):
    """The share root is missing, not a directory, not a mount point, or not writable."""


class ConflictError(StorageLinksError):
    """The plan cannot be carried out without risking data; nothing was changed."""

    exit_code = 3

    def __init__(self, conflicts: list[str]) -> None:
        self.conflicts = list(conflicts)
        super().__init__(f"{len(self.conflicts)} conflict(s), nothing changed: " + "; ".join(self.conflicts))


class LockHeldError(StorageLinksError):
    """Another process holds the share's migration lock (or left it behind)."""

    exit_code = 4


class ValidationError(StorageLinksError):
    """One or more links are not as the contract says."""

    exit_code = 2

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__(f"{len(self.problems)} link problem(s): " + "; ".join(self.problems))
