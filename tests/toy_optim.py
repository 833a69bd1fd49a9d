"""A toy optimizer added the way any optimizer is added to sizeup: this one module (its build
function) plus one registry entry (tests/test_registry.py registers it).

Signum (Bernstein et al. 2018, "signSGD: compressed optimisation for non-convex problems"):
m <- beta1 m + (1 - beta1) g, W <- W (1 - lr wd) - lr sign(m). Its update is sign-like, as
Adam's is, so it reads the rules table's Adam column (family "adam").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


class Signum(torch.optim.Optimizer):
    """Sign of the momentum, with decoupled weight decay; per-group lr and weight_decay."""

    def __init__(self, groups: list[dict[str, Any]], lr: float, beta1: float):
        super().__init__(groups, dict(lr=lr, beta1=beta1, weight_decay=0.0))

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One step of every group."""
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    continue
                m = self.state[p].setdefault("m", torch.zeros_like(p))
                m.mul_(g["beta1"]).add_(p.grad, alpha=1 - g["beta1"])
                p.mul_(1 - g["lr"] * g["weight_decay"]).add_(m.sign(), alpha=-g["lr"])
        return None


def build(groups: list[dict[str, Any]], spec: Any, context: Any) -> Signum:
    """The registry's build function: sizeup's param groups (each with its lr and decay),
    the OptimSpec, the BuildContext."""
    return Signum(groups, lr=spec.lr, beta1=spec.beta1)
