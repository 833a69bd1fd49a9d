"""Scion: a norm-constrained linear minimisation oracle (LMO) per layer, with the norm chosen by
the layer's role (Pethick, Xie, Erdogan, Antonakopoulos, Silveti-Falls & Cevher 2025, "Training
Deep Learning Models with Norm-Constrained LMOs", arXiv:2502.07529).

Algorithm (the paper's uSCG, Algorithm 1, and SCG, Algorithm 2), for every tensor W with
gradient g at step k:

    d <- (1 - alpha) d + alpha g                  averaged gradient, d_0 = 0
    unconstrained (uSCG)   W <- W + lr * lmo(d)
    constrained (SCG)      W <- (1 - lr) W + lr * lmo(d)      (Frank-Wolfe; iterates stay in
                                                               the ball: ||W|| <= rho)

with lmo(d) = argmin_{||X|| <= rho} <d, X>, the extreme point of a norm ball of radius rho.
sizeup's ``momentum`` is 1 - alpha (the reference code's ``momentum`` argument is alpha itself,
0.1 by default, i.e. sizeup's 0.9); ``lr`` is the paper's gamma, the base model's eta, the same
for every tensor (rules family "lmo": the ball's per-role scale carries the width). The
unconstrained form also applies the group's decoupled weight decay, W <- W (1 - lr * wd) first,
with torch AdamW's meaning (sizeup.optim.groups); the constrained form's (1 - lr) shrink is its
decay (W <- W - lr (W - lmo(d)): decoupled decay of rate 1, the connection the paper's Section 3
and the reference README draw), so it takes no other.

The norms per role (the paper's operator norms and LMOs, its Table 2; the reference code
github.com/LIONS-EPFL/scion names them as below). Each LMO is -rho times a direction:

    role     norm (operator norm of the layer)          lmo(d) / rho
    hidden   Spectral  RMS -> RMS = sqrt(in/out)||.||_2  -sqrt(fan_out/fan_in) U V^T   (d = U S V^T;
                                                          Newton-Schulz, sizeup.optim.muon)
    input    ColNorm   1 -> RMS (one-hot inputs, an      column j (the weights of input index j):
             embedding table): max_j ||col_j||_RMS        -sqrt(fan_out) d_j / ||d_j||_2
             Spectral, max scale (a dense input, the     -max(1, sqrt(fan_out/fan_in)) U V^T
             paper's image/MLP first layer)
    readout  Sign      (max-norm ball scaled by fan_in,  -(1/fan_in) sign(d)
             bounding ||W||_{inf -> inf} <= rho)
    vector   BiasRMS   (RMS ball; the reference code's   -d / RMS(d) = -sqrt(n) d / ||d||_2
             choice for norm gains and biases)

(1/fan_in sign(d) is the reference code's ``Sign(normalized=True)``; ColNorm without the
normalising 1/fan_in is its ``ColNorm(normalized=False, transpose=True)`` for an embedding stored
(vocab, width).) The radii are the paper's GPT settings: rho = 50 for input, hidden and vector
tensors (``scion_radius``) and a readout radius tuned separately, 60 x 50 = 3000
(``scion_readout_radius``), as muP tunes its output multiplier. In the unconstrained form only
lr x rho matters; in the constrained form rho is the ball the weights stay in.

Sharding (FSDP2, parameters are DTensors split on dim 0): the spectral LMO needs the whole matrix
(``sizeup.optim.muon.orthogonalise`` gathers it, as Muon does); ColNorm normalises each row of an
embedding table (rows are whole on a shard, no communication), Sign is elementwise with the
global fan_in, and the RMS of a vector is a reduction over every shard (DTensor's norm
all-reduces it), so every rank takes the unsharded step's values on its own shard.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from sizeup.config.optimizer import OptimSpec
from sizeup.errors import ConfigError, check_choice
from sizeup.optim.builders import DTYPES
from sizeup.optim.groups import BuildContext
from sizeup.optim.muon import NS_COEFFICIENTS, NS_STEPS, momentum_buffer, orthogonalise

# The LMOs this module knows, and the one each role takes (module doc).
LMOS = ("spectral", "spectral_max", "colnorm", "sign", "rms")
# The settings' defaults are OptimSpec's (one place): momentum 0.9 = 1 - alpha, the radii.
_SPEC = OptimSpec()
# The reference code's guard against a zero column / vector in ColNorm and BiasRMS.
LMO_EPS = 1e-8


def lmo_kind(role: str, ndim: int, one_hot: bool = False) -> str:
    """The LMO a tensor of ``role`` takes (module doc's table): hidden matrices spectral, an
    embedding table ColNorm, a dense input matrix spectral with the max(1, .) scale, the readout
    Sign, vectors (and any 1-D tensor) the RMS ball."""
    if ndim <= 1:
        return "rms"
    if role == "hidden":
        return "spectral"
    if role == "input":
        return "colnorm" if one_hot else "spectral_max"
    if role == "readout":
        return "sign"
    return "rms"


def fans(shape: tuple[int, ...], one_hot: bool = False) -> tuple[int, int]:
    """(fan_out, fan_in) of a weight as sizeup stores it (sizeup.parametrization.layout):
    (out, in) for a Linear, (experts, out, in) per expert, (vocab, width) = (fan_in, fan_out)
    for an embedding table."""
    if len(shape) <= 1:
        return (shape[0] if shape else 1), 1
    if one_hot:
        return shape[1], shape[0]
    return shape[-2], shape[-1]


def spectral_direction(
    d: Tensor,
    scale: float,
    ns_steps: int = NS_STEPS,
    ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
    ns_eps: float = 1e-7,
    ns_dtype: torch.dtype | None = torch.bfloat16,
) -> Tensor:
    """scale x U V^T of ``d`` (Newton-Schulz, expert by expert for a 3-D stack; a DTensor is
    gathered, sizeup.optim.muon.orthogonalise), in d's dtype: -rho x this is the spectral LMO."""
    o = orthogonalise(d, ns_steps, ns_coefficients, ns_eps, ns_dtype)
    return o.to(d.dtype).mul_(scale)


def colnorm_direction(d: Tensor, eps: float = LMO_EPS) -> Tensor:
    """An embedding table (vocab, width)'s ColNorm direction: each input index's weights (a row
    here, a column of the (width, vocab) operator) to RMS 1, sqrt(width) d_j / ||d_j||_2."""
    rms = torch.linalg.vector_norm(d, dim=-1, keepdim=True) / math.sqrt(d.shape[-1])
    return d / (rms + eps)


def sign_direction(d: Tensor, fan_in: int) -> Tensor:
    """(1/fan_in) sign(d): every entry at the max-norm ball's corner rho / fan_in."""
    return torch.sign(d).mul_(1.0 / fan_in)


def rms_direction(d: Tensor, eps: float = LMO_EPS) -> Tensor:
    """d / RMS(d), the RMS ball's direction (a vector: sqrt(n) d / ||d||_2)."""
    rms = torch.linalg.vector_norm(d) / math.sqrt(d.numel())
    return d / (rms + eps)


def direction(d: Tensor, kind: str, one_hot: bool = False, **ns: Any) -> Tensor:
    """-lmo(d) / rho for the LMO ``kind`` (LMOS) of a tensor stored as sizeup stores it."""
    check_choice("lmo", kind, LMOS)
    fan_out, fan_in = fans(tuple(d.shape), one_hot)
    if kind == "spectral":
        return spectral_direction(d, math.sqrt(fan_out / fan_in), **ns)
    if kind == "spectral_max":
        return spectral_direction(d, max(1.0, math.sqrt(fan_out / fan_in)), **ns)
    if kind == "colnorm":
        if not one_hot:
            raise ConfigError("lmo", kind, "colnorm only for an embedding table (one_hot)")
        return colnorm_direction(d)
    if kind == "sign":
        return sign_direction(d, fan_in)
    return rms_direction(d)


def _dtype_name(dtype: torch.dtype | str | None) -> str | None:
    """A dtype as its name in the state dict (plain strings load with weights_only)."""
    return None if dtype is None else str(dtype).removeprefix("torch.")


def _check_group(group: dict[str, Any], radius: float) -> None:
    """Fill a group's radius (its role's) and dtype name; refuse decay with the constrained
    form and a spectral LMO on anything but a matrix, by name."""
    group["ns_dtype"] = _dtype_name(group["ns_dtype"])
    if group["radius"] is None:
        group["radius"] = radius
    if group["constrained"] and group["weight_decay"] != 0:
        raise ConfigError(
            "weight_decay",
            group["weight_decay"],
            "0 with scion_constrained=True (the Frank-Wolfe step (1 - lr) W is the decay)",
        )
    role, one_hot = group.get("role", "hidden"), bool(group.get("one_hot", False))
    for p in group["params"]:
        kind = group["lmo"] or lmo_kind(role, p.ndim, one_hot)
        check_choice("lmo", kind, LMOS)
        if kind.startswith("spectral") and p.ndim not in (2, 3):
            raise ConfigError(
                "lmo", kind, f"2-D matrices or 3-D expert stacks; got {tuple(p.shape)}"
            )


class Scion(torch.optim.Optimizer):
    """Scion over sizeup's param groups (module doc): one LMO per group, chosen by its ``role``
    (and ``one_hot`` for an embedding table) unless the group names an ``lmo``.

    Group keys: lr (the paper's gamma), weight_decay (decoupled, unconstrained form only),
    momentum (1 - alpha), constrained, radius (rho; a readout group gets ``readout_radius``
    unless it sets its own), lmo (None: by role), ns_steps, ns_coefficients, ns_eps, ns_dtype
    (Newton-Schulz of the spectral LMO, as sizeup.optim.muon).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        weight_decay: float = 0.0,
        momentum: float = _SPEC.momentum,
        constrained: bool = _SPEC.scion_constrained,
        radius: float = _SPEC.scion_radius,
        readout_radius: float = _SPEC.scion_readout_radius,
        ns_steps: int = NS_STEPS,
        ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
        ns_eps: float = 1e-7,
        ns_dtype: torch.dtype | str | None = torch.bfloat16,
    ) -> None:
        if not lr >= 0:
            raise ConfigError("lr", lr, "a number >= 0")
        if not weight_decay >= 0:
            raise ConfigError("weight_decay", weight_decay, "a number >= 0")
        if not 0.0 <= momentum < 1.0:
            raise ConfigError("momentum", momentum, "a number in [0, 1) (1 - the paper's alpha)")
        for name, r in (("scion_radius", radius), ("scion_readout_radius", readout_radius)):
            if not (r > 0 and math.isfinite(r)):
                raise ConfigError(name, r, "a finite number > 0 (a norm ball's radius)")
        defaults = dict(
            lr=lr,
            weight_decay=weight_decay,
            momentum=momentum,
            constrained=bool(constrained),
            radius=None,
            lmo=None,
            ns_steps=ns_steps,
            ns_coefficients=tuple(ns_coefficients),
            ns_eps=ns_eps,
            ns_dtype=_dtype_name(ns_dtype),
        )
        super().__init__(params, defaults)
        for group in self.param_groups:
            _check_group(group, readout_radius if group.get("role") == "readout" else radius)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One step of every group: average the gradient, take the LMO, move (module doc)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, wd, mu = group["lr"], group["weight_decay"], group["momentum"]
            rho, role = group["radius"], group.get("role", "hidden")
            one_hot = bool(group.get("one_hot", False))
            dtype = group["ns_dtype"]
            ns = dict(
                ns_steps=group["ns_steps"],
                ns_coefficients=tuple(group["ns_coefficients"]),
                ns_eps=group["ns_eps"],
                ns_dtype=getattr(torch, dtype) if isinstance(dtype, str) else dtype,
            )
            for p in group["params"]:
                if p.grad is None:
                    continue
                buf = momentum_buffer(self.state[p], p, "Scion")
                buf.lerp_(p.grad, 1.0 - mu)  # d <- (1 - alpha) d + alpha g, alpha = 1 - mu
                kind = group["lmo"] or lmo_kind(role, p.ndim, one_hot)
                u = direction(buf, kind, one_hot, **ns)
                if group["constrained"]:
                    p.mul_(1.0 - lr)
                elif wd != 0:
                    p.mul_(1.0 - lr * wd)
                p.add_(u, alpha=-lr * rho)
        return loss


def build(groups: list[dict[str, Any]], spec: OptimSpec, ctx: BuildContext) -> Scion:
    """The registry's builder: Scion over sizeup's groups (each with its role, lr = eta and
    weight_decay), the form and radii from the spec's Scion settings, momentum = 1 - alpha, and
    Muon's Newton-Schulz precision ``ns_dtype``."""
    del ctx  # Scion has no fused kernels or schedule-free warmup
    return Scion(
        groups,
        lr=spec.lr,
        momentum=spec.momentum,
        constrained=spec.scion_constrained,
        radius=spec.scion_radius,
        readout_radius=spec.scion_readout_radius,
        ns_dtype=None if spec.ns_dtype is None else DTYPES[spec.ns_dtype],
    )
