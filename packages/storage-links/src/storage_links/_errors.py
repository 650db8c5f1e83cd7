"""The storage_links exception tree: one base class, one subclass per kind of failure.

Each class carries the exit code the CLI returns for it, and `lines`: the one-line
messages the CLI prints, one per problem.
"""


class StorageLinksError(Exception):
    """Base of every error storage_links raises on purpose; the CLI prints it as one line."""

    exit_code = 1

    @property
    def lines(self) -> list[str]:
        return [str(self)]


class ContractError(StorageLinksError):
    """A [tool.storage-links] table is missing, malformed or names a path outside its package."""

    exit_code = 5


class ShareError(StorageLinksError):
    """The share root is missing, not a directory, not a mount point, or not writable."""

    exit_code = 6

    def __init__(self, problems: str | list[str]) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))

    @property
    def lines(self) -> list[str]:
        return self.problems


class ConflictError(StorageLinksError):
    """The plan cannot be carried out without risking data; nothing was changed."""

    exit_code = 3

    def __init__(self, conflicts: list[str]) -> None:
        self.conflicts = list(conflicts)
        super().__init__(f"{len(self.conflicts)} conflict(s), nothing changed: " + "; ".join(self.conflicts))

    @property
    def lines(self) -> list[str]:
        return [f"conflict: {c}" for c in self.conflicts] + [f"{len(self.conflicts)} conflict(s); nothing was changed"]


class LockHeldError(StorageLinksError):
    """Another process holds the share's migration lock (or left it behind)."""

    exit_code = 4


class ValidationError(StorageLinksError):
    """One or more links are not as the contract says."""

    exit_code = 2

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__(f"{len(self.problems)} link problem(s): " + "; ".join(self.problems))

    @property
    def lines(self) -> list[str]:
        return self.problems


class SettingsError(StorageLinksError):
    """A stage's settings file cannot be read (the stage reports it as its own config error)."""

    exit_code = 1


class UsageError(StorageLinksError):
    """The command line itself is wrong (unknown command or option, missing value)."""

    exit_code = 64  # EX_USAGE from sysexits.h
