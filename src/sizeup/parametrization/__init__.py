"""Parametrizations: roles inferred from a base model, one rules table, init + multipliers +
per-tensor lr/wd multipliers applied to any torch model.

The torch-dependent parts load lazily, so tools that need only the rules table (the planner)
start without importing torch.
"""

from __future__ import annotations

from typing import Any

from sizeup.parametrization.rules import ROLES, RULES, Scaling

_CORE = ("Parametrization", "base_shapes", "canonical_name", "get_parametrization",
         "parametrize", "save_base_shapes", "unwrap")

__all__ = ["ROLES", "RULES", "Scaling", *_CORE]


def __getattr__(name: str) -> Any:
    if name in _CORE:
        from sizeup.parametrization import core

        return getattr(core, name)
    raise AttributeError(f"module 'sizeup.parametrization' has no attribute {name!r}")
