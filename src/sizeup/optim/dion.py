"""Dion: orthonormalised updates by amortised power iteration, at a chosen rank, with error feedback.

Dion (Ahn, Xu, Abreu, Langford et al. 2025, "Dion: A Communication-Efficient Optimizer for Large
Models", arXiv 2504.05295, Algorithm 1) replaces Muon's Newton-Schulz on the whole momentum by
ONE step of power iteration per training step, warm-started from the previous step's right
factor. For a hidden matrix W (m = fan_out rows, n = fan_in columns) with gradient G, momentum
M (m x n, zero at the start) and right factor Q (n x r, random at the start):

    B = M + G                          momentum plus the new gradient
    P = orthonormal columns of B Q     (m x r; PowerIter1 of the paper, Algorithm 2)
    R = B^T P                          (n x r): P R^T = P P^T B, B's part in span(P)
    M <- B - (1 - mu) P R^T            error feedback: what the rank-r step left out stays in M
    Q <- R with unit columns           (ColumnNormalize: drops the singular values)
    W <- W (1 - lr wd) - lr scale P Q^T

At full rank (r = min(m, n)) and with Q = V, the right singular vectors of B = U S V^T, this is
exactly Muon's target: B V = U S, so P = U, R = V S, Q = V and P Q^T = U V^T. The next step
starts from that Q, so the power iteration refines the same subspace over steps instead of
iterating to convergence within one (the paper's "amortised" power iteration). At rank r < min,
P Q^T has rank r and the rest of B is not lost: it stays in M (error feedback), as in PowerSGD
(Vogels et al. 2019), whose compressor this is, with the singular values set to one.

``mu`` is the momentum decay: at full rank P R^T = B and M <- mu B = mu (M + G), the heavy-ball
accumulation torch.optim.SGD's momentum uses (up to the factor mu, which the orthonormalisation
removes). sizeup passes OptimSpec.momentum (the paper's default is 0.95).

``scale`` is Muon's (sizeup.optim.muon.muon_scale): the paper's sqrt(fan_out / fan_in)
(Algorithm 1, line 9) is Muon's "spectral" mode, so the rules table, muon_lr and the update
scale apply to Dion unchanged. Decay is decoupled, torch's AdamW meaning (W <- W (1 - lr wd)).

Orthonormal columns by Cholesky QR (the paper's choice for the sharded algorithm, section 3.2):
with the Gram matrix K = P^T P = L L^T, P L^-T has orthonormal columns. It runs in float64 on
the r x r Gram and twice (CholeskyQR2, Fukaya et al. 2014): the second pass restores
orthogonality to float64 rounding. Each pass adds a shift of (rows + r) u tr(K) to K (shifted
CholeskyQR, Fukaya et al. 2020), so a rank-deficient B Q (a zero gradient: the key of a
zero-initialised query at step one) still factors: its missing columns come out near zero
instead of as noise, and the update has no direction B does not have. A column of R with
norm <= ``eps`` keeps its previous direction in Q, so a zero gradient never zeroes Q.

Sharded (FSDP2: W, G and M are DTensors whose rows are split over the ranks), as the paper
shards (its Algorithm 3, "Distributed Dion", with the row split alone): every rank holds the same
Q (the same seeded start, then the same R), and

    P_local = B_local Q                     local matmul
    K = all-reduce(P_local^T P_local)       r x r, twice (CholeskyQR2): P_local <- P_local L^-T
    R = all-reduce(B_local^T P_local)       n x r
    M_local <- B_local - (1 - mu) P_local R^T,  Q <- ColumnNormalize(R),  W_local -= ... P_local Q^T

so only the low-rank factors (r x r and n x r) cross ranks, never an m x n matrix, and the
result is the one-process one up to the order of the sums.

Q's start: standard normal entries from a torch.Generator seeded with ``seed`` + the parameter's
position among the optimizer's parameters (all groups, in order), drawn on the CPU in float64,
so every rank, every device and a rerun start from the same Q; a resumed run reads Q from the
checkpoint (optimizer state "Q", with "momentum_buffer" for M).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from sizeup.choices import MUON_SCALES
from sizeup.config.optimizer import OptimSpec
from sizeup.errors import ConfigError, check_choice
from sizeup.optim.groups import BuildContext
from sizeup.optim.muon import MatrixAndAdamW, momentum_buffer, muon_scale
from sizeup.wrapping import is_dtensor

# Doubles the shift of a Cholesky factorisation that still fails (rounding past the shift), at
# most this many times (a non-finite Gram matrix fails every time).
_SHIFT_RETRIES = 8


def dion_rank(fraction: float, fan_out: int, fan_in: int) -> int:
    """The rank r of a (fan_out x fan_in) matrix's update: ceil(fraction x min(fan_out, fan_in)),
    at least 1 (the paper's rank fraction, e.g. 1/4 or 1/16 of the width)."""
    if not 0.0 < fraction <= 1.0:
        raise ConfigError("dion_rank", fraction, "a fraction of min(fan_out, fan_in) in (0, 1]")
    small = min(fan_out, fan_in)
    return max(1, min(small, math.ceil(fraction * small - 1e-9)))


def initial_q(fan_in: int, rank: int, seed: int, experts: int | None = None) -> Tensor:
    """Dion's starting right factor: (fan_in x rank), or (experts x fan_in x rank) for a stack,
    standard normal from a CPU generator seeded with ``seed``, in float64 (module doc)."""
    gen = torch.Generator().manual_seed(seed)
    shape = (fan_in, rank) if experts is None else (experts, fan_in, rank)
    return torch.randn(shape, generator=gen, dtype=torch.float64)


def _all_reduce(t: Tensor, group: Any) -> Tensor:
    if group is not None:
        dist.all_reduce(t, group=group)
    return t


def orthonormal_columns(p: Tensor, rows: int, group: Any = None) -> Tensor:
    """P with orthonormal columns spanning P's column space, by shifted CholeskyQR2 on the Gram
    matrix in float64 (module doc); ``p`` (rows x r, or a batch of them) may be one rank's row
    shard of a matrix of ``rows`` rows, ``group`` the process group to all-reduce the Gram over
    (None: p is whole). Returns p's dtype."""
    x = p.to(torch.float64)
    r = x.size(-1)
    eye = torch.eye(r, dtype=torch.float64, device=x.device)
    for _ in range(2):  # CholeskyQR2
        gram = _all_reduce(x.mT @ x, group)
        trace = gram.diagonal(dim1=-2, dim2=-1).sum(-1)
        shift = (rows + r) * torch.finfo(torch.float64).eps * trace
        shift = shift.clamp(min=torch.finfo(torch.float64).tiny)[..., None, None]
        for _ in range(_SHIFT_RETRIES):
            chol, info = torch.linalg.cholesky_ex(gram + shift * eye)
            if not bool((info != 0).any()):
                break
            shift = shift * 2.0
        # still failing: a non-finite B (a diverging run). The factor is then not finite and
        # neither is the update, as with Muon's Newton-Schulz: the trainer's divergence test
        # sees the run's loss, rather than an error ending a sweep's trial.
        # x L^-T: solve X L^T = x for X, L^T upper triangular
        x = torch.linalg.solve_triangular(chol.mT, x, upper=True, left=False)
    return x.to(p.dtype)


def power_iteration(b: Tensor, q: Tensor, rows: int, group: Any = None) -> tuple[Tensor, Tensor]:
    """PowerIter1 of the paper (Algorithm 2): P = orthonormal columns of B Q, R = B^T P, for B
    whole or one rank's row shard (then R is all-reduced over ``group``)."""
    p = orthonormal_columns(b @ q, rows, group)
    r = _all_reduce(b.mT @ p, group)
    return p, r


def column_normalise(r: Tensor, previous: Tensor, eps: float) -> Tensor:
    """R with unit-norm columns (the paper's ColumnNormalize); a column of norm <= eps keeps
    ``previous``'s column (a zero gradient leaves Q where it was)."""
    norms = torch.linalg.vector_norm(r, dim=-2, keepdim=True)
    return torch.where(norms > eps, r / norms.clamp(min=eps), previous)


def _local(t: Tensor) -> Tensor:
    """A DTensor's local shard (sharing its storage), or t."""
    return t.to_local() if is_dtensor(t) else t


def _row_group(p: Tensor) -> Any:
    """The process group p's rows are split over (None: p is whole), or a ConfigError for a
    layout the sharded Dion does not take (module doc)."""
    if not is_dtensor(p):
        return None
    from torch.distributed.tensor import Replicate, Shard

    placements = tuple(p.placements)
    if all(isinstance(x, Replicate) for x in placements):
        return None
    if p.ndim != 2 or len(placements) != 1 or placements[0] != Shard(0):
        raise ConfigError(
            "dion",
            f"a {p.ndim}-D parameter placed {placements}",
            "2-D matrices sharded by rows (FSDP2's Shard(0) on one mesh dimension); put "
            "expert stacks under FSDP in Muon",
        )
    return p.device_mesh.get_group()


class Dion(MatrixAndAdamW):
    """Dion on param groups with ``use_muon=True`` (2-D matrices, or 3-D stacks of expert
    matrices, each its own matrix), AdamW on the others, as one optimizer (module doc).

    Group keys: lr, weight_decay (decoupled, torch's AdamW meaning), use_muon; Dion groups:
    momentum (mu), dion_rank (r as a fraction of min(fan_out, fan_in)), scale_mode,
    update_scale (a float overrides the per-shape scale; None computes it from
    (fan_out, fan_in) = W.shape[-2:]), dion_eps (ColumnNormalize's floor), dion_seed (Q's start);
    AdamW groups: betas, eps, foreach, fused (sizeup.optim.muon.adamw_group_step, Muon's). State
    of a Dion matrix: "momentum_buffer" (M, W's shape and layout) and "Q" (fan_in x r, the same
    on every rank)."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.01,
        weight_decay: float = 0.0,
        momentum: float = 0.95,
        dion_rank: float = 1.0,
        scale_mode: str = "spectral",
        betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-8,
        dion_eps: float = 1e-8,
        dion_seed: int = 0,
        use_muon: bool = True,
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        if not lr >= 0:
            raise ConfigError("lr", lr, "a number >= 0")
        if not weight_decay >= 0:
            raise ConfigError("weight_decay", weight_decay, "a number >= 0")
        defaults = dict(
            lr=lr,
            weight_decay=weight_decay,
            momentum=momentum,
            dion_rank=dion_rank,
            scale_mode=scale_mode,
            update_scale=None,
            betas=tuple(betas),
            eps=eps,
            dion_eps=dion_eps,
            dion_seed=dion_seed,
            use_muon=use_muon,
            foreach=foreach,
            fused=fused,
        )
        super().__init__(params, defaults)
        for group in self.param_groups:
            if not 0.0 <= group["momentum"] < 1.0:
                raise ConfigError("momentum", group["momentum"], "a number in [0, 1)")
            check_choice("scale_mode", group["scale_mode"], MUON_SCALES)
            if not group["use_muon"]:
                continue
            for p in group["params"]:
                if p.ndim not in (2, 3):
                    raise ConfigError(
                        "use_muon",
                        tuple(p.shape),
                        "2-D matrices or 3-D stacks of expert matrices only (put others in a "
                        "use_muon=False group)",
                    )
                dion_rank_of(group, p)  # the fraction is checked now, not at the first step

    def _position(self, param: Tensor) -> int:
        """param's position among all the optimizer's parameters (Q's seed, module doc)."""
        flat = (p for g in self.param_groups for p in g["params"])
        return next(i for i, p in enumerate(flat) if p is param)

    def _matrix_group(self, group: dict[str, Any]) -> None:
        lr, wd, mu = group["lr"], group["weight_decay"], group["momentum"]
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            buffer = momentum_buffer(state, p, "Dion")
            row_group = _row_group(p)
            if "Q" not in state:
                experts = p.shape[0] if p.ndim == 3 else None
                q = initial_q(
                    p.shape[-1],
                    dion_rank_of(group, p),
                    group["dion_seed"] + self._position(p),
                    experts,
                )
                state["Q"] = q.to(device=_local(p).device, dtype=p.dtype)
            b = _local(buffer)
            q = state["Q"]
            b.add_(_local(p.grad))  # B = M + G, in M's storage
            pf, rf = power_iteration(b, q, p.shape[-2], row_group)
            b.add_(pf @ rf.mT, alpha=-(1.0 - mu))  # M = B - (1 - mu) P R^T
            q.copy_(column_normalise(rf, q, group["dion_eps"]))
            scale = group["update_scale"]
            if scale is None:
                scale = muon_scale(group["scale_mode"], p.shape[-2], p.shape[-1])
            w = _local(p)
            if wd != 0:
                w.mul_(1.0 - lr * wd)
            w.add_(pf @ q.mT, alpha=-lr * scale)


def dion_rank_of(group: dict[str, Any], p: Tensor) -> int:
    """The rank of p's update in ``group`` (its dion_rank fraction of min(fan_out, fan_in))."""
    return dion_rank(group["dion_rank"], p.shape[-2], p.shape[-1])


def state_shapes(shape: tuple[int, ...], group: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """The state Dion keeps in another shape than its matrix's (sizeup.registry's
    ``OptimizerEntry.state_shapes``, read by the checkpoint check): Q, (fan_in x r) or
    (experts x fan_in x r)."""
    r = dion_rank(group["dion_rank"], shape[-2], shape[-1])
    return {"Q": (*shape[:-2], shape[-1], r)}


def build(groups: list[dict[str, Any]], spec: OptimSpec, ctx: BuildContext) -> Dion:
    """The registry's build function: Dion on the groups marked use_muon (momentum mu =
    spec.momentum, rank spec.dion_rank, Muon's scale spec.muon_scale), AdamW on the rest."""
    return Dion(
        groups,
        lr=spec.lr,
        momentum=spec.momentum,
        dion_rank=spec.dion_rank,
        scale_mode=spec.muon_scale,
        betas=spec.betas,
        eps=spec.eps,
        foreach=ctx.foreach,
        fused=ctx.fused,
    )
