"""Parametrizations: roles inferred from a base model, one rules table, init + multipliers +
per-tensor lr/wd multipliers applied to any torch model."""

from sizeup.choices import ROLES, RULES
from sizeup.parametrization.core import (
    Parametrization,
    base_shapes,
    get_parametrization,
    parametrize,
    save_base_shapes,
)
from sizeup.parametrization.rules import Scaling
from sizeup.wrapping import canonical_name, unwrap

__all__ = [
    "ROLES",
    "RULES",
    "Parametrization",
    "Scaling",
    "base_shapes",
    "canonical_name",
    "get_parametrization",
    "parametrize",
    "save_base_shapes",
    "unwrap",
]
