"""The project's own exceptions.

Every failure a user can cause (a bad file, a bad flag, a bad checkpoint) raises a subclass of
`CharRNNError`; the command line prints its message as one line on stderr and exits with status 2.
Anything else escaping is a bug.
"""


class CharRNNError(Exception):
    """Base class: a problem with the user's input, reported as one clear line."""


class ConfigError(CharRNNError, ValueError):
    """A flag, option, argument or hyperparameter that cannot be used. Also a ValueError, as
    Python's own functions raise for a bad argument, so that code catching that keeps working."""


class DataError(CharRNNError):
    """A text file that cannot be read or encoded, or text outside a model's vocabulary."""


class CheckpointError(CharRNNError):
    """A checkpoint or run directory that cannot be loaded or written."""
