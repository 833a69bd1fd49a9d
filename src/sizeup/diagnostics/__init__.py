"""Diagnostics: coordinate checks with a verdict (of a RunConfig, or a width -> model factory),
their figures, and the check of a transformers family. The monitors a run logs while it trains
are the trainer's (sizeup.train.monitors)."""

from sizeup.diagnostics.coord_check import (
    CheckSpec,
    CoordCheckResult,
    ModelFactory,
    ModuleCurve,
    coord_check,
    coord_modules,
    log_slope,
)

__all__ = [
    "CheckSpec",
    "CoordCheckResult",
    "ModelFactory",
    "ModuleCurve",
    "coord_check",
    "coord_modules",
    "log_slope",
]
