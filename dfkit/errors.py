"""User-facing errors: the CLI prints them as one line and exits with their code (never a traceback)."""


class DfkitError(Exception):
    """An error caused by the user's input (a path, a name, a layout). Printed as one line."""

    exit_code = 2

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


class LayoutError(DfkitError):
    """A dataset root does not look like the dataset: says what was expected and what was found."""


class CorpusLockedError(DfkitError):
    """Another process is writing the corpus."""


class SettingsError(DfkitError, ValueError):
    """A setting (a command-line option, a ``--config`` key) out of range or unknown: a usage error, refused
    before anything runs. Also a ``ValueError`` for callers of the Python API."""
