"""Parametrizations: roles inferred from a base model, one rules table, init + multipliers +
per-tensor lr/wd multipliers applied to any torch model."""

from sizeup.parametrization.core import (
    Parametrization,
    base_shapes,
    canonical_name,
    get_parametrization,
    parametrize,
    save_base_shapes,
    unwrap,
)
from sizeup.parametrization.rules import ROLES, RULES, Scaling

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
