"""Sweeps: a spec of axes over RunConfig fields, a SQLite store, local and Ray executors,
resume after a crash, and the transfer analysis (does the optimal lr hold across widths?)."""

from __future__ import annotations

from sizeup.sweep.driver import SweepReport, run_sweep
from sizeup.sweep.executors import LocalExecutor, RayExecutor, make_executor
from sizeup.sweep.spec import SweepSpec, load_spec, lr_grid
from sizeup.sweep.store import Store, Trial

__all__ = ["LocalExecutor", "RayExecutor", "Store", "SweepReport", "SweepSpec", "Trial",
           "load_spec", "lr_grid", "make_executor", "run_sweep"]
