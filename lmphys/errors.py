"""Typed, actionable errors shared by every module: a user mistake gets one clear sentence."""


class LmphysError(Exception):
    """Base class of errors that scripts print as one line instead of a traceback."""


class ConfigError(LmphysError, ValueError):
    """A config value is invalid; the message names the dotted field and the allowed values."""


class DataError(LmphysError, ValueError):
    """Input data (a grammar file, a token array, a prompt) is malformed."""
