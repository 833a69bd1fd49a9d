"""Optimizers under the scaling rules: param groups with per-tensor lr/wd multipliers, AdamW and
SGD with torch's decoupled weight decay (lr x lambda per step, the same at every width), Muon
(Newton-Schulz) with AdamW for the rest, batch-size transfer of lr, betas and eps, and the
per-tensor table read back from the groups."""

from sizeup.optim.agd import AGD, automatic_step
from sizeup.optim.builders import SGDW
from sizeup.optim.groups import (
    BatchTransferWarning,
    BuildContext,
    DecayWarning,
    TensorScaling,
    batch_transferred,
    build_optimizer,
    decay_per_step,
    decay_warning,
    group_table,
    optimizer_spec,
    param_groups,
)
from sizeup.optim.muon import NS_COEFFICIENTS, Muon, muon_scale, newton_schulz
from sizeup.optim.table import collapse, group_values, tensor_class, tensor_table
from sizeup.optim.transfer import transfer_batch, transfer_horizon

__all__ = [
    "NS_COEFFICIENTS",
    "SGDW",
    "BatchTransferWarning",
    "BuildContext",
    "DecayWarning",
    "Muon",
    "batch_transferred",
    "build_optimizer",
    "collapse",
    "decay_per_step",
    "decay_warning",
    "TensorScaling",
    "group_table",
    "group_values",
    "muon_scale",
    "newton_schulz",
    "optimizer_spec",
    "param_groups",
    "tensor_class",
    "tensor_table",
    "transfer_batch",
    "transfer_horizon",
    # AGD
    "AGD",
    "automatic_step",
]
