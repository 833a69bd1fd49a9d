"""Diagnostics: coordinate checks with a verdict, spectral-norm and alignment monitors, the
gradient noise scale and the stability monitors (attention and output logits). Torch loads
lazily inside the functions, so importing this is cheap."""

from sizeup.diagnostics.coord_check import (
    CoordCheckResult,
    ModuleCurve,
    coord_check,
    coord_modules,
    depth_check,
    log_slope,
)
from sizeup.diagnostics.noise_scale import (
    NoiseScale,
    NoiseScaleMonitor,
    gradient_sq_norms,
    noise_scale_terms,
)
from sizeup.diagnostics.spectral import SpectralMonitor, spectral_norm
from sizeup.diagnostics.stability import AttentionLogitMonitor, OutputLogitMonitor

__all__ = [
    "AttentionLogitMonitor",
    "CoordCheckResult",
    "ModuleCurve",
    "NoiseScale",
    "NoiseScaleMonitor",
    "OutputLogitMonitor",
    "SpectralMonitor",
    "coord_check",
    "coord_modules",
    "depth_check",
    "gradient_sq_norms",
    "log_slope",
    "noise_scale_terms",
    "spectral_norm",
]
