"""Errors that mean bad input from a user (a model setting, a sampling option, a data set), as
opposed to a defect in genray. The CLI prints these as one line and the HTTP API answers them
with a 4xx; anything else is a bug and keeps its traceback."""


class InputError(ValueError):
    """Input a user can correct; the message says what and how, and `field` names the request
    field or setting at fault, where there is one."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class ConfigError(InputError):
    """A model's constructor arguments (a saved config, or --set overrides) are not usable."""


class OptionError(InputError):
    """A sampling option (prompt, label, ...) is not usable with this model."""


class DataError(InputError):
    """A data set cannot be used; the message says why."""


class Cancelled(Exception):
    """Sampling stopped because every caller waiting for it went away."""
