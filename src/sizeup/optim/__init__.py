"""Optimizers under the scaling rules: param groups with per-tensor lr/wd multipliers, AdamW and
SGD with weight decay independent of lr and width, Muon (Newton-Schulz) with AdamW for the rest,
and batch-size transfer of lr, betas and eps."""

from sizeup.optim.groups import (
    OPTIMIZERS,
    SGDW,
    build_optimizer,
    canonical_name,
    group_table,
    param_groups,
)
from sizeup.optim.muon import NS_COEFFICIENTS, SCALE_MODES, Muon, muon_scale, newton_schulz
from sizeup.optim.transfer import transfer_batch

__all__ = [
    "NS_COEFFICIENTS",
    "OPTIMIZERS",
    "SCALE_MODES",
    "SGDW",
    "Muon",
    "build_optimizer",
    "canonical_name",
    "group_table",
    "muon_scale",
    "newton_schulz",
    "param_groups",
    "transfer_batch",
]
