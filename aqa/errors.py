"""One exception family for everything a user can get wrong.

Every message says which file or key, what was expected, and what to do. The CLI prints
``str(exc)`` on one line and exits non-zero; the app shows it in an ``st.error`` box.
"""


class AQAError(Exception):
    """Base class: a failure a person can act on (never a bug in this project)."""

    exit_code = 2


class ConfigError(AQAError):
    """An unknown or mistyped config key, or a value that does not parse."""


class VideoError(AQAError):
    """A video file that is missing, empty, corrupt, unsupported or too short."""


class DatasetError(AQAError):
    """A dataset root or annotation file that is missing or malformed."""


class CheckpointError(AQAError):
    """A checkpoint that is missing, truncated, or incompatible with the model."""


class RunError(AQAError):
    """A run directory that does not exist or is in the wrong state for the request."""


class JobError(AQAError):
    """A job that could not be started, stopped or found."""


class ExportError(AQAError):
    """A run that cannot be exported: a missing library, or a place it was already exported to."""


class PluginError(AQAError):
    """An installed plugin (an ``aqa.methods``/``aqa.backbones``/``aqa.datasets`` entry point)
    that fails to load."""
