"""Shampoo with Adam grafting, written for sizeup (pytorch-optimizer's ``Shampoo`` has no
grafting, accumulates an unnormalised sum with an absolute damping and mixes its momentum into
the gradient it is given, and its ``ScalableShampoo`` keeps Python objects in its state, which
a checkpoint cannot load with torch's weights_only reader).

For a matrix W (fan_out x fan_in) with gradient G, each step (Gupta, Koren & Singer 2018,
"Shampoo: Preconditioned Stochastic Tensor Optimization", Alg. 1, with the moving averages and
grafting of Anil et al. 2020, "Scalable Second Order Optimization for Deep Learning", and
Shi et al. 2023, "A Distributed Data-Parallel PyTorch Implementation of Distributed Shampoo"):

    m <- beta1 m + (1 - beta1) G,   v <- beta2 v + (1 - beta2) G^2          (Adam's moments)
    L <- beta2 L + (1 - beta2) G G^T,   R <- beta2 R + (1 - beta2) G^T G
    every precondition_frequency steps (and the first):
        L^-e = (L + d lmax(L) I)^-e,  R^-e = (R + d lmax(R) I)^-e             (e = 1/4, Alg. 1)
    A = m_hat / (sqrt(v_hat) + eps)                                   (Adam's update, grafted)
    D = L^-e m_hat R^-e                                              (Shampoo's direction)
    W <- W (1 - lr wd) - lr ||A||_F / ||D||_F  D

m_hat, v_hat are Adam's bias-corrected moments. Layer-wise grafting (Agarwal et al. 2020,
"Disentangling Adaptive Gradient Methods from Learning Rates") takes each matrix's step size
from Adam and only its direction from Shampoo. Vectors, stacks of expert matrices (3-D) and
matrices with a side above MAX_PRECONDITION_DIM take Adam's update A itself (torch AdamW's
formula). The damping d is relative to the largest eigenvalue, so scaling the gradient by any
c leaves D's direction unchanged (the relative damping and the inverse roots move together),
and the grafted norm is Adam's: the update scales with width exactly as Adam's does, which is
why Shampoo reads the rules table's Adam column (sizeup.parametrization.rules) and Adam's
per-tensor eps. The bias corrections of L and R cancel under grafting and are not applied.

Under FSDP2 (DTensor parameters) each matrix's gradient and momentum are all-gathered and every
rank computes the same direction, keeping its own rows; L, R and their roots are whole on every
rank (not sharded). Measured (2 gloo ranks against one process, the small GPT, 4 steps): the
losses agree to 6e-5 at damping 1e-6 and to 2.4e-7 at damping 1e-2: the near-singular roots
amplify the rounding of a gradient summed in another order. A checkpoint taken under FSDP2
resumes bit for bit (measured, 2 gloo ranks, 3 steps on).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.distributed.tensor import distribute_tensor

from sizeup.config.optimizer import OptimSpec
from sizeup.optim.groups import BuildContext
from sizeup.wrapping import full_tensor, is_dtensor

# A matrix with a side longer than this takes Adam's update (an eigendecomposition of a
# 8192 x 8192 preconditioner every few steps costs more than the step it improves).
MAX_PRECONDITION_DIM = 8192
# A matrix's state besides Adam's moments: the sides' statistics and their inverse roots.
PRECONDITIONERS = ("left", "right", "left_root", "right_root")


def inverse_root(a: torch.Tensor, exponent: float, damping: float) -> torch.Tensor:
    """(a + damping x lmax(a) I)^-exponent of a symmetric positive semi-definite matrix, by
    its eigendecomposition (negative eigenvalues from rounding count as 0); the identity when
    a is 0 (no gradient yet). An eigendecomposition that does not converge in a's dtype is
    retried in float64."""
    try:
        evals, evecs = torch.linalg.eigh(a)
    except torch.linalg.LinAlgError:
        evals, evecs = (x.to(a.dtype) for x in torch.linalg.eigh(a.double()))
    evals = evals.clamp_min(0.0)
    top = evals.max()
    if top <= 0:
        return torch.eye(a.shape[0], dtype=a.dtype, device=a.device)
    scale = (evals + damping * top).pow(-exponent)
    return (evecs * scale) @ evecs.T


def _wide(p: torch.Tensor) -> torch.dtype:
    """The preconditioners' dtype: the parameter's, at least float32 (eigh has no bfloat16)."""
    return torch.promote_types(p.dtype, torch.float32)


def preconditioned(p: torch.Tensor) -> bool:
    """Whether ``p`` gets Shampoo's direction (a matrix, each side at most
    MAX_PRECONDITION_DIM) rather than Adam's update."""
    return p.ndim == 2 and max(p.shape) <= MAX_PRECONDITION_DIM


class Shampoo(torch.optim.Optimizer):
    """Shampoo (exponent e per side) with layer-wise Adam grafting and decoupled weight decay
    (W <- W (1 - lr wd), torch AdamW's meaning); every group's lr, betas, eps and weight_decay
    are its own (module doc)."""

    def __init__(
        self,
        params: Any,
        *,
        lr: float,
        betas: tuple[float, float],
        eps: float,
        weight_decay: float,
        precondition_frequency: int,
        exponent: float,
        damping: float,
    ):
        # no defaults here: they are OptimSpec's (sizeup.config.optimizer), read by ``build``
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            precondition_frequency=precondition_frequency,
            exponent=exponent,
            damping=damping,
        )
        super().__init__(params, defaults)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's load, which casts every floating state tensor to its parameter's dtype; the
        preconditioners then get back their own (float32 for bfloat16 weights: ``_wide``)."""
        super().load_state_dict(state_dict)
        ids = [i for g in state_dict["param_groups"] for i in g["params"]]
        params = [p for g in self.param_groups for p in g["params"]]
        for i, p in zip(ids, params):
            saved = state_dict["state"].get(i, {})
            for key in PRECONDITIONERS:
                if key in saved:
                    self.state[p][key] = saved[key].to(device=p.device, dtype=_wide(p))

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One step of every group (module doc)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, group)
        return loss

    def _update(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        grad = p.grad
        beta1, beta2 = group["betas"]
        lr, wd = group["lr"], group["weight_decay"]
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
            if preconditioned(p):
                # whole (not sharded) on every rank under FSDP2: a side's statistics mix all rows
                for side, n in (("left", p.shape[0]), ("right", p.shape[1])):
                    state[side] = torch.zeros(n, n, dtype=_wide(p), device=p.device)
                    state[side + "_root"] = torch.eye(n, dtype=_wide(p), device=p.device)
        state["step"] += 1
        t = state["step"]
        if wd != 0:
            p.mul_(1.0 - lr * wd)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.lerp_(grad, 1.0 - beta1)
        v.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
        bias1, bias2 = 1.0 - beta1**t, 1.0 - beta2**t
        # Adam's update, as torch.optim.AdamW computes it (single-tensor form)
        denom = (v.sqrt() / bias2**0.5).add_(group["eps"])
        if not preconditioned(p):
            p.addcdiv_(m, denom, value=-lr / bias1)
            return
        adam = m / denom / bias1
        # Under FSDP2 (DTensors) the preconditioners need whole matrices: the gradient and the
        # momentum are all-gathered, every rank computes the same direction, keeps its shard.
        whole = full_tensor(grad).to(_wide(p))
        left, right = state["left"], state["right"]
        left.lerp_(whole @ whole.T, 1.0 - beta2)
        right.lerp_(whole.T @ whole, 1.0 - beta2)
        if (t - 1) % group["precondition_frequency"] == 0:
            e, d = group["exponent"], group["damping"]
            state["left_root"] = inverse_root(left, e, d)
            state["right_root"] = inverse_root(right, e, d)
        momentum = full_tensor(m / bias1).to(_wide(p))
        direction = state["left_root"] @ momentum @ state["right_root"]
        norm = torch.linalg.vector_norm(direction)
        if norm > 0:
            direction.mul_(full_tensor(torch.linalg.vector_norm(adam.to(_wide(p)))) / norm)
        direction = direction.to(p.dtype)
        if is_dtensor(p):
            direction = distribute_tensor(
                direction, p.device_mesh, p.placements, src_data_rank=None
            )
        p.add_(direction, alpha=-lr)


def build(groups: list[dict[str, Any]], spec: OptimSpec, ctx: BuildContext) -> Shampoo:
    """The registry's build function: Shampoo over sizeup's param groups (each with its lr,
    weight_decay and eps)."""
    return Shampoo(
        groups,
        lr=spec.lr,
        betas=spec.betas,
        eps=spec.eps,
        weight_decay=0.0,
        precondition_frequency=spec.precondition_frequency,
        exponent=spec.shampoo_exponent,
        damping=spec.shampoo_damping,
    )
