"""Errors the engine raises for bad user input.

Every message names the bad value and how to fix it; the CLI prints it as one
line and exits with code 2, the service turns it into a 4xx.
"""


class DebiasError(ValueError):
    """Base class for problems caused by the user's input, not by a bug."""


class DatasetError(DebiasError):
    """A dataset file or folder cannot be read as a dataset."""


class ModelError(DebiasError):
    """A model directory is missing, corrupt or does not fit the data."""


class NotFittedError(DebiasError, AttributeError):
    """An estimator was used before `fit` (scikit-learn's contract)."""
