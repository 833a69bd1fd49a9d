"""The target-run planner: from a tuned proxy (or a sweep study) and fitted or published laws to a
complete plan, built as stages whose per-layer table is what ``sizeup.parametrize`` does.

Names load lazily, so the command line can read the option records (``sizeup.plan.records``,
``sizeup.plan.options``) without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Plan": "planner",
    "plan": "planner",
    "compare_laws": "compare",
    "BatchOptions": "records",
    "Checks": "records",
    "Hardware": "records",
    "Laws": "records",
    "Proxy": "records",
    "ShapeRule": "records",
    "Target": "records",
    "shape_for": "records",
    "layer_table": "table",
    "read_study": "study",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"sizeup.plan.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'sizeup.plan' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
