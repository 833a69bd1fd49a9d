"""Sweeps: a spec of axes over RunConfig fields, a SQLite store, local and Ray executors,
resume after a crash, and the transfer analysis (does the optimal lr hold across widths?).

Names load lazily, so `sizeup --help` (which imports sizeup.cli.sweep) stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SweepReport": "driver",
    "run_sweep": "driver",
    "LocalExecutor": "executors",
    "RayExecutor": "executors",
    "make_executor": "executors",
    "SweepSpec": "spec",
    "load_spec": "spec",
    "lr_grid": "spec",
    "Store": "store",
    "Trial": "store",
    "TransferReport": "transfer",
    "analyze_transfer": "transfer",
    "fit_optimum": "transfer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"sizeup.sweep.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'sizeup.sweep' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
