"""What a run watches while it trains, each every k steps (MonitorSpec): spectral norms and
alignment of every Linear, the gradient noise scale, and the stability proxies (attention and
output logits). They are the trainer's callbacks, so they live with it (below the diagnostics,
which build on training)."""

from sizeup.train.monitors.noise_scale import (
    NoiseScale,
    NoiseScaleMonitor,
    gradient_sq_norms,
    noise_scale_terms,
)
from sizeup.train.monitors.spectral import SpectralMonitor, spectral_norm
from sizeup.train.monitors.stability import AttentionLogitMonitor, OutputLogitMonitor

__all__ = [
    "AttentionLogitMonitor",
    "NoiseScale",
    "NoiseScaleMonitor",
    "OutputLogitMonitor",
    "SpectralMonitor",
    "gradient_sq_norms",
    "noise_scale_terms",
    "spectral_norm",
]
