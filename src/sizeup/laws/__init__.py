"""Scaling laws: FLOPs per token, Chinchilla approaches 1-3 with bootstrap and prediction
intervals, holdout checks, hyperparameter laws, critical batch size, downstream accuracy,
data-constrained scaling and data mixing laws."""

from sizeup.flops import (
    GPU_PEAK_FLOPS,
    flops_per_token,
    gpt_exact_flops_per_token,
    gpt_params,
    mfu,
)
from sizeup.laws.chinchilla import (
    AllocationFit,
    Approach3Fit,
    ChinchillaLaw,
    fit_approach1,
    fit_approach2,
    fit_approach3,
    isoflop_from_curves,
)
from sizeup.laws.critical_batch import (
    CriticalBatchLaw,
    fit_critical_batch,
    fit_critical_batch_from_steps,
)
from sizeup.laws.data_constrained import DataConstrainedLaw, fit_data_constrained
from sizeup.laws.downstream import SigmoidLaw, fit_sigmoid
from sizeup.laws.forms import LogLaw, PowerLaw
from sizeup.laws.hp import FreeFormLaw, HPLawFit, fit_free_form, fit_hp_laws
from sizeup.laws.mixing import MixingFit, MixingLaw, fit_mixing
from sizeup.laws.presets import LawPoint, LawPreset, Setup, get_preset, load_fit
from sizeup.laws.validate import (
    Holdout,
    holdout_allocation,
    holdout_approach3,
    prediction_coverage,
)

__all__ = [
    "GPU_PEAK_FLOPS",
    "AllocationFit",
    "Approach3Fit",
    "ChinchillaLaw",
    "CriticalBatchLaw",
    "DataConstrainedLaw",
    "FreeFormLaw",
    "HPLawFit",
    "LawPoint",
    "LawPreset",
    "LogLaw",
    "Holdout",
    "MixingFit",
    "MixingLaw",
    "PowerLaw",
    "Setup",
    "SigmoidLaw",
    "fit_approach1",
    "fit_approach2",
    "fit_approach3",
    "fit_critical_batch",
    "fit_critical_batch_from_steps",
    "fit_data_constrained",
    "fit_free_form",
    "fit_hp_laws",
    "fit_mixing",
    "fit_sigmoid",
    "flops_per_token",
    "get_preset",
    "gpt_exact_flops_per_token",
    "gpt_params",
    "holdout_allocation",
    "holdout_approach3",
    "isoflop_from_curves",
    "load_fit",
    "mfu",
    "prediction_coverage",
]
