"""Errors that the user can fix. The CLI prints them as one line and exits with code 2."""


class GenlabError(Exception):
    """Bad input: a file, a field or a value that is not what genlab expects.

    The message must name the problem (the file, the field, the expected value); the CLI
    prints it as ``genlab: error: <message>`` and exits with status 2, without a traceback.
    The message is always one line: a line break inside it (say, in a key typed by the user)
    is shown escaped, as ``\\n``.
    """

    def __str__(self) -> str:
        return super().__str__().translate(_LINE_BREAKS)


# every character str.splitlines() breaks at, written as its escape
_LINE_BREAKS = {ord(c): repr(c)[1:-1] for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"}


class ConfigError(GenlabError):
    """A configuration field is unknown or has a value of the wrong type or range."""


class DataError(GenlabError):
    """A data set is missing, unreadable or not of the expected shape."""


class RunError(GenlabError):
    """A run directory is missing, incomplete or inconsistent."""
