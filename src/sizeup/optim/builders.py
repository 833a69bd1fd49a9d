"""The registered optimizers' builders (sizeup.registry points at them): each takes sizeup's
param groups (lr, weight_decay and, where it reads it, eps already per group), the OptimSpec and
the BuildContext, and returns the torch optimizer. A new optimizer is one more such function
(in its own module) and one registry entry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from sizeup.config.optimizer import OptimSpec
from sizeup.errors import ConfigError
from sizeup.optim.groups import BuildContext
from sizeup.optim.muon import Muon

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}


def adamw(groups: list[dict[str, Any]], spec: OptimSpec, ctx: BuildContext) -> torch.optim.AdamW:
    """torch.optim.AdamW; decay lives in each group (lambda x wd_mult / lr_mult, module doc of
    sizeup.optim.groups), so the optimizer's own default is 0."""
    return torch.optim.AdamW(
        groups,
        lr=spec.lr,
        betas=spec.betas,
        eps=spec.eps,
        weight_decay=0.0,
        foreach=ctx.foreach,
        fused=ctx.fused,
    )


def sgd(groups: list[dict[str, Any]], spec: OptimSpec, ctx: BuildContext) -> torch.optim.SGD:
    """SGD with decoupled weight decay (SGDW); torch refuses nesterov without momentum, and
    plain SGD is what momentum=0 asks for."""
    return SGDW(
        groups,
        lr=spec.lr,
        momentum=spec.momentum,
        nesterov=spec.nesterov and spec.momentum > 0,
        weight_decay=0.0,
        foreach=ctx.foreach,
    )


def muon(groups: list[dict[str, Any]], spec: OptimSpec, ctx: BuildContext) -> Muon:
    """Muon on the groups marked use_muon, AdamW on the rest, in one optimizer."""
    return Muon(
        groups,
        lr=spec.lr,
        momentum=spec.momentum,
        nesterov=spec.nesterov,
        scale_mode=spec.muon_scale,
        betas=spec.betas,
        eps=spec.eps,
        foreach=ctx.foreach,
        fused=ctx.fused,
        ns_dtype=None if spec.ns_dtype is None else DTYPES[spec.ns_dtype],
    )


def adamw_schedulefree(
    groups: list[dict[str, Any]], spec: OptimSpec, ctx: BuildContext
) -> torch.optim.Optimizer:
    """schedulefree.AdamWScheduleFree over sizeup's param groups, in train mode (Defazio et al.
    2024; its decay, lr x lambda per step at y, has AdamW's meaning). The package is an
    optional extra: without it, a ConfigError says how to get it."""
    try:
        from schedulefree import AdamWScheduleFree
    except ImportError:
        raise ConfigError(
            "optimizer",
            "adamw_schedulefree",
            "available once the schedulefree package is installed (pip install "
            "'sizeup[schedulefree]')",
        ) from None
    w = ctx.warmup_steps
    if isinstance(w, bool) or not isinstance(w, int) or w < 0:
        raise ConfigError("warmup_steps", w, "an integer >= 0")
    opt = AdamWScheduleFree(
        groups, lr=spec.lr, betas=spec.betas, eps=spec.eps, weight_decay=0.0, warmup_steps=w
    )
    opt.train()
    return opt


class SGDW(torch.optim.SGD):
    """torch.optim.SGD with decoupled weight decay: W <- W(1 - lr*wd) before the SGD step.

    torch's SGD adds wd*W to the gradient (so it also flows through momentum); the group's
    ``weight_decay`` here means the decoupled form, exactly as in AdamW.
    """

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Decay each group's parameters, then take torch's SGD step without coupled decay."""
        loss = None
        if closure is not None:
            # The gradient is taken at the current weights, as in AdamW, then the decay applies.
            with torch.enable_grad():
                loss = closure()
        saved = [g["weight_decay"] for g in self.param_groups]
        for group in self.param_groups:
            wd = group["weight_decay"]
            params = [p for p in group["params"] if p.grad is not None]
            if wd != 0 and params:
                torch._foreach_mul_(params, 1.0 - group["lr"] * wd)
            group["weight_decay"] = 0.0
        try:
            super().step()
        finally:
            for group, wd in zip(self.param_groups, saved):
                group["weight_decay"] = wd
        return loss
