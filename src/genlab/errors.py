"""Errors that the user can fix. The CLI prints them as one line and exits with code 2."""


class GenlabError(Exception):
    """Bad input: a file, a field or a value that is not what genlab expects.

    The message must name the problem (the file, the field, the expected value); the CLI
    prints it as ``genlab: error: <message>`` and exits with status 2, without a traceback.
    """


class ConfigError(GenlabError):
    """A configuration field is unknown or has a value of the wrong type or range."""


class DataError(GenlabError):
    """A data set is missing, unreadable or not of the expected shape."""


class RunError(GenlabError):
    """A run directory is missing, incomplete or inconsistent."""
