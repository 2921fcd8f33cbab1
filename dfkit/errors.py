"""User-facing errors: the CLI prints them as one line and exits with their code (never a traceback)."""

import errno as _errno

#: OS errors that mean "this path cannot be used" (a usage error, exit 2) rather than a failure while working
PATH_ERRNOS = frozenset({_errno.ENOENT, _errno.EACCES, _errno.EPERM, _errno.ENOTDIR, _errno.EISDIR, _errno.EROFS,
                         _errno.EEXIST, _errno.ENAMETOOLONG, _errno.ELOOP})


def one_line(text: object) -> str:
    """``text`` on one line: newlines, tabs and other control characters shown as escapes, so a file name cannot
    forge an extra line in a summary or an error message."""
    s = str(text)
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in s)


def os_error_line(e: OSError) -> str:
    """An OS error as one line naming the path: ``cannot use PATH: No such file or directory``."""
    what = e.strerror or str(e)
    if e.filename is not None:
        target = f"{e.filename!s}" + (f" -> {e.filename2!s}" if getattr(e, "filename2", None) else "")
        return one_line(f"cannot use {target}: {what}")
    return one_line(what)


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
