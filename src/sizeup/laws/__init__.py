"""Scaling laws: FLOPs per token, Chinchilla approaches 1-3 with bootstrap intervals,
hyperparameter laws, critical batch size, downstream accuracy and data-constrained scaling."""

from sizeup.laws.chinchilla import ChinchillaLaw
from sizeup.laws.flops import (
    GPU_PEAK_FLOPS,
    flops_per_token,
    gpt_exact_flops_per_token,
    gpt_params,
    mfu,
)
from sizeup.laws.hp import PowerLaw
from sizeup.laws.presets import LawPreset, get_preset, load_fit

__all__ = [
    "GPU_PEAK_FLOPS", "ChinchillaLaw", "LawPreset", "PowerLaw", "flops_per_token",
    "get_preset", "gpt_exact_flops_per_token", "gpt_params", "load_fit", "mfu",
]
