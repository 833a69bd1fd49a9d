"""Parametrizations: roles inferred from a base model, one rules table, init + multipliers +
per-tensor lr/wd multipliers applied to any torch model."""

from sizeup.choices import ROLES, RULES
from sizeup.config.parametrization import ParamSpec
from sizeup.parametrization.core import (
    ModelHints,
    Parametrization,
    get_parametrization,
    parametrize,
)
from sizeup.parametrization.rules import Scaling
from sizeup.parametrization.shapes import base_record, base_shapes, save_base_shapes
from sizeup.wrapping import canonical_name, unwrap

__all__ = [
    "ROLES",
    "RULES",
    "ModelHints",
    "ParamSpec",
    "Parametrization",
    "Scaling",
    "base_record",
    "base_shapes",
    "canonical_name",
    "get_parametrization",
    "parametrize",
    "save_base_shapes",
    "unwrap",
]
