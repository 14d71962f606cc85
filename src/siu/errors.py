"""Errors that the CLI reports as one clear line (and a non-zero exit) instead of a traceback."""


class SiuError(Exception):
    """A problem with the user's input or environment, explained in the message."""


class BenchmarkError(SiuError):
    """A benchmark directory, concept record or image that cannot be used as it is."""


class ModelError(SiuError):
    """A model or processor that cannot be loaded or does not fit the request."""
