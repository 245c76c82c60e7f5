"""Exception types raised for bad user input.

Every error a user can cause derives from :class:`PtychoPINNError`; command-line tools catch
that base class and print its message instead of a traceback.
"""


class PtychoPINNError(Exception):
    """Base class for all user-facing errors of this package."""


class ConfigError(PtychoPINNError, ValueError):
    """A configuration value, key or file is invalid."""


class DataValidationError(PtychoPINNError, ValueError):
    """A dataset (file or in-memory arrays) violates the data contract."""


class ArchiveError(PtychoPINNError, ValueError):
    """A model archive is missing, corrupt, tampered with or incompatible."""


class TrainingDiverged(PtychoPINNError, RuntimeError):
    """Training produced non-finite weights or losses (a learning rate or data scale far off)."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training was stopped by the user (Ctrl-C); the message says how to resume."""
