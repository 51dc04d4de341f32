"""One exception family, so the CLI can print a clear message instead of a traceback."""


class FumeError(Exception):
    """A user-facing error: the message names the file, key or shape at fault and what was expected."""


class DataError(FumeError):
    """Bad input data: a missing or unreadable file, a wrong shape, an unknown label."""


class ConfigError(FumeError):
    """A configuration key that is unknown, of the wrong type or out of range."""
