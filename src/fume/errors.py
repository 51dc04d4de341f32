"""One exception family, so the CLI can print a clear message instead of a traceback."""


class FumeError(Exception):
    """A user-facing error: the message names the file, key or shape at fault and what was expected."""


class DataError(FumeError):
    """Bad input data: a missing or unreadable file, a wrong shape, an unknown label."""


class ConfigError(FumeError):
    """A configuration key that is unknown, of the wrong type or out of range."""


class WriteError(FumeError):
    """A file or folder could not be written (disk full, read-only folder, a file where a folder
    should be, ...): names the final path (never a temporary name) and the system's reason."""

    def __init__(self, path: object, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(f"cannot write {path}: {reason}")
