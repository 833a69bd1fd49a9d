"""Errors sizeup raises on bad input: each names the field, the value and what is allowed."""

from __future__ import annotations

import math
from typing import Any


class SizeupError(Exception):
    """Base class for every error sizeup raises on purpose; the CLI prints it without a traceback."""


class ConfigError(SizeupError, ValueError):
    """A configuration field has a value that is not allowed."""

    def __init__(self, field: str, value: Any, allowed: str):
        self.field, self.value, self.allowed = field, value, allowed
        super().__init__(f"{field}={value!r} is not allowed: {allowed}")


class ShapeError(SizeupError, ValueError):
    """Model and base model do not match (different architecture, or base larger than model)."""


class ExportError(SizeupError, ValueError):
    """A forward multiplier that cannot be folded into the weights of the plain architecture."""


class DataError(SizeupError, ValueError):
    """Input data (a file, a table, a corpus) is missing, malformed or degenerate."""


class StoreError(SizeupError, RuntimeError):
    """The sweep store cannot be opened or is inconsistent."""


class CheckpointError(SizeupError, RuntimeError):
    """A checkpoint cannot be written or resumed: corrupt, from another run config, or a
    folder that already holds a run's checkpoints."""


def check_positive(field: str, value: float, integer: bool = False) -> None:
    """Raise ConfigError unless value is a positive number (an int when integer=True)."""
    if integer and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(field, value, "a positive integer")
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise ConfigError(field, value, "a positive number")


def check_choice(field: str, value: Any, choices: tuple | list) -> None:
    """Raise ConfigError unless value is one of choices."""
    if value not in choices:
        raise ConfigError(field, value, "one of " + ", ".join(repr(c) for c in choices))


def check_number_or_choice(field: str, value: Any, choices: tuple | list) -> float | str:
    """A positive finite number or one of choices, else ConfigError naming field. A numeric
    string (as YAML, a sweep axis or `--set` may give it) is read as the number."""
    raw = value
    if isinstance(value, str) and value not in choices:
        try:
            value = float(value)
        except ValueError:
            pass
    if value in choices:
        return value
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if number and math.isfinite(value) and value > 0:
        return float(value)
    allowed = "a positive number or one of " + ", ".join(repr(c) for c in choices)
    raise ConfigError(field, raw, allowed)


class StoreWarning(UserWarning):
    """A study's rows that a reader had to leave out (a damaged or hand-edited row); the CLI
    prints it as one 'warning:' line."""
