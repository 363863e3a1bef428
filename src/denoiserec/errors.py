"""The errors denoiserec raises at its boundaries: one line, naming the thing and the problem."""

from __future__ import annotations


class DenoiserecError(Exception):
    """Base class: every error the CLI turns into a one-line message."""


class DataError(DenoiserecError):
    """A data file or log is missing, empty, malformed or inconsistent."""


class ConfigError(DenoiserecError):
    """A configuration key is unknown, or a value has the wrong type or range."""


class CheckpointError(DenoiserecError):
    """A checkpoint is missing, corrupt, or belongs to another model or dataset."""


class ProtocolError(DenoiserecError):
    """An evaluation protocol is unknown or cannot be applied to this data."""


class TrainingError(DenoiserecError):
    """Training diverged (NaN/inf loss) or cannot continue."""


class OutputError(DenoiserecError):
    """A result cannot be written (read-only folder, full disk, ...)."""
