"""Optimizers from the ``pytorch-optimizer`` package (the ``optimizers`` extra): Lion, Adafactor
and SOAP, each over sizeup's param groups (every group already holds its lr, its weight_decay
and, where the entry reads eps, its eps; sizeup.optim.groups).

Each library class was read for what it does with a group's numbers (pytorch-optimizer 4.1):

- ``Lion`` (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms", Program 1):
  reads the group's lr, betas and weight_decay; with ``weight_decouple=True`` and
  ``fixed_decay=False`` each step is W <- W (1 - lr wd) - lr sign(beta1 m + (1 - beta1) g),
  then m <- beta2 m + (1 - beta2) g: torch AdamW's decay, as sizeup means it. It has no eps.
- ``AdaFactor`` (Shazeer & Stern 2018, "Adafactor: Adaptive Learning Rates with Sublinear
  Memory Cost", Alg. 4 for matrices, Alg. 2 for vectors): built with ``relative_step=False``
  (otherwise the step size is min(1e-2, 1/sqrt(t)) and the group's lr is ignored) and
  ``scale_parameter=False`` (otherwise the step is also multiplied by max(eps2, RMS(W)): see
  sizeup.parametrization.rules for why sizeup does not offer it). Then it is Adam with a
  factored second moment and update clipping, and reads the group's lr and weight_decay
  (W <- W (1 - lr wd), decoupled). Its eps1 (1e-30, added to g^2) is one number for the whole
  optimizer in the library, not per group, so sizeup does not read ``eps`` for it: 1e-30
  stays below any g^2 a float32 gradient of a model of any width can have (a gradient
  scaled by c would need eps1 x c^2 to keep its meaning; 1e-30 is negligible either way).
  Its momentum (beta1) averages the clipped, lr-scaled updates, without a bias correction (the
  library's BigVision form), kept in the parameters' dtype (the library's default: bfloat16).
- ``SOAP`` (Vyas et al. 2024, "SOAP: Improving and Stabilizing Shampoo using Adam", Alg. 3):
  Adam in the eigenbasis of Shampoo's preconditioners G G^T and G^T G (exponential moving
  averages with beta2), the eigenbasis refreshed every ``precondition_frequency`` steps (one
  power iteration and a QR, as the paper's code). Reads the group's lr, betas, eps and
  weight_decay; its decoupled decay W <- W (1 - lr wd) comes after the update, as in the
  paper's code (the difference from AdamW's order is lr^2 wd x the update, second order). Its
  eps is added to sqrt(v) in the rotated basis: scaling the gradient by c scales the rotated
  gradient by c and leaves the eigenbasis alone, so eps x c keeps the update exactly the same,
  and sizeup's per-tensor eps (rules.eps_mult: eps follows the gradient) has Adam's meaning.
  Its first step only gathers the preconditioner (the paper's code does the same).

Under FSDP2 Lion trains as on one process (measured: 2 gloo ranks follow one process to 5e-7
in 4 steps; a checkpoint resumes bit for bit); Adafactor and SOAP are refused by name (their
state is not sharded).
"""

from __future__ import annotations

from typing import Any

import torch

from sizeup.config.optimizer import OptimSpec
from sizeup.errors import ConfigError
from sizeup.optim.groups import BuildContext
from sizeup.wrapping import is_dtensor

EXTRA = "optimizers"
# SOAP: a dimension larger than this gets no rotation (identity), as the library's default; a
# vocabulary of that size would need a 10k x 10k eigenbasis.
SOAP_MAX_PRECONDITION_DIM = 10000


def library_class(name: str, optimizer: str) -> type:
    """The class ``name`` of pytorch-optimizer, or a ConfigError naming the extra to install."""
    try:
        import pytorch_optimizer
    except ImportError:
        raise ConfigError(
            "optimizer",
            optimizer,
            f"available once the pytorch-optimizer package is installed (pip install "
            f"'sizeup[{EXTRA}]')",
        ) from None
    return getattr(pytorch_optimizer, name)


def _unsharded(groups: list[dict[str, Any]], optimizer: str) -> None:
    """A ConfigError naming fsdp when a parameter is an FSDP2 shard (a DTensor): the library's
    Adafactor and SOAP keep plain-tensor state (factored moments, eigenbases) that cannot mix
    with DTensors (measured: torch refuses the mixed lerp at the first step)."""
    if any(is_dtensor(p) for g in groups for p in g["params"]):
        raise ConfigError(
            "fsdp",
            True,
            f"False for optimizer={optimizer!r} (pytorch-optimizer's class keeps unsharded "
            "state; lion, shampoo, adamw and muon train under FSDP2)",
        )


def lion(groups: list[dict[str, Any]], spec: OptimSpec, ctx: BuildContext) -> torch.optim.Optimizer:
    """pytorch_optimizer.Lion: sign(beta1 m + (1 - beta1) g), decoupled decay lr x wd."""
    return library_class("Lion", "lion")(
        groups,
        lr=spec.lr,
        betas=spec.betas,
        weight_decay=0.0,
        weight_decouple=True,
        fixed_decay=False,
        foreach=ctx.foreach,
    )


def adafactor(
    groups: list[dict[str, Any]], spec: OptimSpec, ctx: BuildContext
) -> torch.optim.Optimizer:
    """pytorch_optimizer.AdaFactor with the group's lr (relative_step=False,
    scale_parameter=False): factored second moment with beta2_t = min(beta2, 1 - t^decay_rate),
    updates clipped to RMS clip_threshold, momentum beta1 on the clipped update."""
    _unsharded(groups, "adafactor")
    return library_class("AdaFactor", "adafactor")(
        groups,
        lr=spec.lr,
        betas=spec.betas,
        decay_rate=spec.decay_rate,
        weight_decay=0.0,
        weight_decouple=True,
        fixed_decay=False,
        clip_threshold=spec.clip_threshold,
        scale_parameter=False,
        relative_step=False,
        warmup_init=False,
        momentum_dtype=_param_dtype(groups),
        foreach=ctx.foreach,
    )


def _param_dtype(groups: list[dict[str, Any]]) -> torch.dtype:
    """The parameters' floating dtype (float32 when they mix dtypes or there are none)."""
    dtypes = {p.dtype for g in groups for p in g["params"]}
    return dtypes.pop() if len(dtypes) == 1 else torch.float32


def soap(groups: list[dict[str, Any]], spec: OptimSpec, ctx: BuildContext) -> torch.optim.Optimizer:
    """pytorch_optimizer.SOAP: Adam (betas, the group's eps) in the eigenbasis of Shampoo's
    preconditioners, refreshed every precondition_frequency steps; vectors get plain Adam."""
    _unsharded(groups, "soap")
    return library_class("SOAP", "soap")(
        groups,
        lr=spec.lr,
        betas=spec.betas,
        shampoo_beta=None,  # the preconditioners' average uses beta2, as the paper's default
        weight_decay=0.0,
        precondition_frequency=spec.precondition_frequency,
        max_precondition_dim=SOAP_MAX_PRECONDITION_DIM,
        merge_dims=False,
        precondition_1d=False,
        correct_bias=True,
        normalize_gradient=False,
        eps=spec.eps,
    )
