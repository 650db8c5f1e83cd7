"""The forecasting exception tree: one base class; the CLI prints each as one line with its own exit code."""


class ForecastingError(Exception):
    """Base of every error the stage raises on purpose."""

    exit_code = 1


class ConfigError(ForecastingError):
    """A config file, key or environment variable is missing or malformed."""

    exit_code = 3


class InputError(ForecastingError):
    """The predictions to publish are missing, unreadable, incomplete or inconsistent; nothing was written."""

    exit_code = 4


class UploadError(ForecastingError):
    """The upload did not finish; the run was not marked complete in Blob Storage."""

    exit_code = 5


class CredentialsError(UploadError):
    """Blob Storage credentials are missing (prod profile), malformed or refused."""

    exit_code = 6


class StorageError(ForecastingError):
    """data/ or logs/ cannot be written (or read): what a run had written is removed and LATEST is unchanged;
    an upload sends nothing."""

    exit_code = 7
