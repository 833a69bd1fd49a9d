"""Muon: orthogonalised momentum for hidden matrices, AdamW for everything else, in ONE optimizer.

For a hidden matrix W (fan_out x fan_in) with gradient G, Muon (Jordan et al. 2024, "Muon: an
optimizer for hidden layers in neural networks") keeps a Nesterov momentum M of G and steps

    W <- W - lr * scale * NS5(M)

where NS5 runs five Newton-Schulz quintic iterations X <- aX + (bA + cA^2)X, A = XX^T, with
(a, b, c) = (3.4445, -4.7750, 2.0315). That pushes every singular value of M/||M||_F towards
[0.5, 1.5] (an approximate U V^T), so ||NS5(M)||_2 ~ 1 and ``scale`` alone sets the spectral norm
of the update:

    spectral  sqrt(fan_out / fan_in)          the spectral condition of Yang, Simon & Bernstein
                                              2023: ||dW||_2 ~ sqrt(fan_out/fan_in), width-correct
    original  sqrt(max(1, fan_out / fan_in))  Jordan's reference code (torch adjust_lr_fn="original")
    rms       0.2 * sqrt(max(fan_out, fan_in))  matches AdamW's update RMS of ~0.2 (Liu et al. 2025,
                                              "Muon is Scalable for LLM Training"; torch
                                              adjust_lr_fn="match_rms_adamw"), so AdamW's lr carries over

torch.optim.Muon provides the same matrix update but only for 2-D tensors and only the original
and rms scales; it cannot hold the embeddings, gains and readout in the same object, which a
single LR scheduler and a single state_dict need. This class adds that: param groups with
``use_muon=False`` run torch's own functional AdamW kernel (decoupled weight decay), groups with
``use_muon=True`` run the Muon update with the same operation order as torch.optim.Muon, so the
two agree bit for bit where they define the same update.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim.adam import adam as _adam_kernel
from torch.optim.optimizer import _get_scalar_dtype

from sizeup.choices import MUON_SCALES
from sizeup.errors import ConfigError, check_choice
from sizeup.wrapping import is_dtensor

# Jordan et al. 2024 (Muon post and reference code): coefficients chosen to maximise the slope at
# zero of the quintic, so that small singular values grow fast in few steps.
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
NS_STEPS = 5


def newton_schulz(
    grad: Tensor,
    steps: int = NS_STEPS,
    coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
    eps: float = 1e-7,
    dtype: torch.dtype | None = torch.bfloat16,
) -> Tensor:
    """Approximate the orthogonal factor U V^T of a 2-D ``grad`` by quintic Newton-Schulz.

    Runs in ``dtype`` (bfloat16 as in torch.optim.Muon; None keeps grad's dtype, e.g. float64 for
    exact tests) and returns a tensor of that dtype with grad's shape. A 3-D ``grad`` is a stack
    of expert matrices (experts, out, in): each is orthogonalised on its own, in one batched
    iteration (the same steps with batched matmuls), since each expert is its own layer.
    """
    if grad.ndim == 3:
        return _newton_schulz_batched(grad, steps, coefficients, eps, dtype)
    if grad.ndim != 2:
        raise ConfigError(
            "grad", tuple(grad.shape), "a 2-D matrix (or a 3-D stack of them) for Newton-Schulz"
        )
    a, b, c = coefficients
    # copy=True: never normalise the caller's tensor in place when it already has the dtype.
    x = grad.to(dtype or grad.dtype, copy=True)
    # Iterate on the wide orientation: the Gram matrix XX^T is then the smaller one.
    tall = grad.size(0) > grad.size(1)
    if tall:
        x = x.T
    # Frobenius norm >= spectral norm, so this puts every singular value in [0, 1].
    x.div_(x.norm().clamp(min=eps))
    for _ in range(steps):
        gram = x @ x.T
        poly = torch.addmm(gram, gram, gram, beta=b, alpha=c)  # b*A + c*A@A
        x = torch.addmm(x, poly, x, beta=a)  # a*X + (bA + cA^2) X
    return x.T if tall else x


def orthogonalise(
    update: Tensor,
    steps: int = NS_STEPS,
    coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
    eps: float = 1e-7,
    dtype: torch.dtype | None = torch.bfloat16,
) -> Tensor:
    """``newton_schulz`` of a matrix, also when FSDP2 shards it (a DTensor, rows split over
    ranks): Newton-Schulz needs the whole matrix (its Gram matrix mixes every row), so the
    shards are all-gathered, every rank runs the same iteration on the whole matrix, and each
    keeps the rows of its own shard (``distribute_tensor`` with ``src_data_rank=None`` slices
    locally, no second collective). The gather moves ``dtype`` (bf16: half of fp32) since
    Newton-Schulz casts to it first anyway, so the result is bit for bit the unsharded one.
    Every rank repeating the iteration costs what single-device Muon costs; the all-gather is
    the size of one FSDP forward gather of the matrix."""
    if not is_dtensor(update):
        return newton_schulz(update, steps, coefficients, eps, dtype)
    from torch.distributed.tensor import distribute_tensor

    whole = update.to(dtype or update.dtype).full_tensor()
    o = newton_schulz(whole, steps, coefficients, eps, dtype)
    return distribute_tensor(o, update.device_mesh, update.placements, src_data_rank=None)


def _newton_schulz_batched(
    grad: Tensor,
    steps: int,
    coefficients: tuple[float, float, float],
    eps: float,
    dtype: torch.dtype | None,
) -> Tensor:
    """newton_schulz over the leading dimension: every matrix normalised by its own Frobenius
    norm, then the quintic iteration with batched matmuls."""
    a, b, c = coefficients
    x = grad.to(dtype or grad.dtype, copy=True)
    tall = grad.size(-2) > grad.size(-1)
    if tall:
        x = x.mT
    x.div_(torch.linalg.vector_norm(x, dim=(-2, -1), keepdim=True).clamp(min=eps))
    for _ in range(steps):
        gram = x @ x.mT
        poly = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)  # b*A + c*A@A
        x = torch.baddbmm(x, poly, x, beta=a)  # a*X + (bA + cA^2) X
    return x.mT if tall else x


def muon_scale(mode: str, fan_out: int, fan_in: int) -> float:
    """The factor that sets ||dW||_2 of an orthogonalised update for ``mode`` (see module doc)."""
    check_choice("muon_scale", mode, MUON_SCALES)
    if mode == "spectral":
        return math.sqrt(fan_out / fan_in)
    if mode == "original":
        return math.sqrt(max(1.0, fan_out / fan_in))
    return 0.2 * math.sqrt(max(fan_out, fan_in))


def _dtype_name(dtype: torch.dtype | str | None) -> str | None:
    """A group's Newton-Schulz dtype as its name ("bfloat16"): state dicts then hold plain
    strings, which torch's distributed state-dict tools and weights_only loading accept."""
    return None if dtype is None else str(dtype).removeprefix("torch.")


def _dtype(name: torch.dtype | str | None) -> torch.dtype | None:
    return getattr(torch, name) if isinstance(name, str) else name


def momentum_buffer(state: dict[str, Any], p: Tensor, optimizer: str) -> Tensor:
    """p's momentum buffer in its optimizer ``state`` (zeros of the gradient's shape and layout
    the first time), for a dense real p (Muon, Dion and Scion average dense gradients only)."""
    if p.grad.is_sparse or torch.is_complex(p):
        raise ConfigError("params", tuple(p.shape), f"dense real tensors for {optimizer}")
    if "momentum_buffer" not in state:
        state["momentum_buffer"] = torch.zeros_like(p.grad, memory_format=torch.preserve_format)
    return state["momentum_buffer"]


class MatrixAndAdamW(torch.optim.Optimizer):
    """An optimizer of two halves, as Muon and Dion are: groups marked use_muon take the
    subclass's step on matrices (``_matrix_group``), every other group AdamW's
    (``adamw_group_step``), in one optimizer."""

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One optimisation step over every group (matrix step or AdamW by its use_muon)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            if group["use_muon"]:
                self._matrix_group(group)
            else:
                adamw_group_step(self.state, group)
        return loss

    def _matrix_group(self, group: dict[str, Any]) -> None:
        raise NotImplementedError


class Muon(MatrixAndAdamW):
    """Muon on param groups with ``use_muon=True`` (2-D matrices, or 3-D stacks of expert
    matrices orthogonalised expert by expert), AdamW on the others, as one optimizer.

    Group keys: lr, weight_decay (decoupled: W <- W(1 - lr*wd), as torch's AdamW and Muon),
    use_muon; Muon groups: momentum, nesterov, scale_mode, update_scale (a float overrides the
    per-shape scale, None computes it from (fan_out, fan_in) = W.shape), ns_steps,
    ns_coefficients, ns_eps, ns_dtype; AdamW groups: betas, eps, foreach, fused (torch's fused
    kernel, as torch.optim.AdamW(fused=True)). Parameters sharded by FSDP2 (DTensors) work as
    they are: momentum and AdamW are elementwise on the shards, Newton-Schulz gathers each
    matrix (``orthogonalise``).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.02,
        weight_decay: float = 0.0,
        momentum: float = 0.95,
        nesterov: bool = True,
        scale_mode: str = "spectral",
        betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-8,
        ns_steps: int = NS_STEPS,
        ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
        ns_eps: float = 1e-7,
        ns_dtype: torch.dtype | None = torch.bfloat16,
        use_muon: bool = True,
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        if not lr >= 0:
            raise ConfigError("lr", lr, "a number >= 0")
        if not weight_decay >= 0:
            raise ConfigError("weight_decay", weight_decay, "a number >= 0")
        if not 0.0 <= momentum < 1.0:
            raise ConfigError("momentum", momentum, "a number in [0, 1)")
        check_choice("scale_mode", scale_mode, MUON_SCALES)
        defaults = dict(
            lr=lr,
            weight_decay=weight_decay,
            momentum=momentum,
            nesterov=nesterov,
            scale_mode=scale_mode,
            update_scale=None,
            betas=tuple(betas),
            eps=eps,
            ns_steps=ns_steps,
            ns_coefficients=tuple(ns_coefficients),
            ns_eps=ns_eps,
            ns_dtype=_dtype_name(ns_dtype),
            use_muon=use_muon,
            foreach=foreach,
            fused=fused,
        )
        super().__init__(params, defaults)
        for group in self.param_groups:
            group["ns_dtype"] = _dtype_name(group["ns_dtype"])
            check_choice("scale_mode", group["scale_mode"], MUON_SCALES)
            if group["use_muon"]:
                for p in group["params"]:
                    if p.ndim not in (2, 3):
                        raise ConfigError(
                            "use_muon",
                            tuple(p.shape),
                            "2-D matrices or 3-D stacks of expert matrices only (put others "
                            "in a use_muon=False group)",
                        )

    def _matrix_group(self, group: dict[str, Any]) -> None:
        params, grads, bufs = [], [], []
        for p in group["params"]:
            if p.grad is None:
                continue
            params.append(p)
            grads.append(p.grad)
            bufs.append(momentum_buffer(self.state[p], p, "Muon"))
        if not params:
            return
        lr, wd, mu = group["lr"], group["weight_decay"], group["momentum"]
        for p, g, buf in zip(params, grads, bufs):
            # Momentum as an exponential average (torch.optim.Muon's form); the Nesterov
            # look-ahead is g + mu (M - g). The factor (1 - mu) against Jordan's M <- mu M + g is
            # removed by the normalisation inside Newton-Schulz. One tensor at a time rather than
            # foreach: the step is matmul-bound and each matrix stays in cache from momentum to NS.
            buf.lerp_(g, 1.0 - mu)
            u = g.lerp(buf, mu) if group["nesterov"] else buf
            o = orthogonalise(
                u,
                group["ns_steps"],
                group["ns_coefficients"],
                group["ns_eps"],
                _dtype(group["ns_dtype"]),
            )
            scale = group["update_scale"]
            if scale is None:
                # per matrix: the last two dims (one expert's (out, in) for a 3-D stack)
                scale = muon_scale(group["scale_mode"], p.shape[-2], p.shape[-1])
            if wd != 0:
                p.mul_(1.0 - lr * wd)
            p.add_(o, alpha=-lr * scale)


def adamw_group_step(state: Any, group: dict[str, Any]) -> None:
    """torch's functional AdamW kernel (decoupled weight decay) on one param group, with
    torch.optim.AdamW's state layout (step, exp_avg, exp_avg_sq) kept in ``state`` (an
    optimizer's per-parameter state): the AdamW side of every orthogonalised optimizer (Muon,
    Dion) that keeps its embeddings, gains and readout in the same object.

    Group keys: lr, weight_decay, betas, eps, foreach, fused."""
    params, grads, exp_avgs, exp_avg_sqs, steps = [], [], [], [], []
    for p in group["params"]:
        if p.grad is None:
            continue
        st = state[p]
        if not st:
            # The same state layout as torch.optim.AdamW, so checkpoints read alike.
            # torch.optim.AdamW's layout: the fused kernel wants the step on the device.
            fused = bool(group["fused"])
            st["step"] = torch.zeros(
                (), dtype=_get_scalar_dtype(is_fused=fused), device=p.device if fused else None
            )
            st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        params.append(p)
        grads.append(p.grad)
        exp_avgs.append(st["exp_avg"])
        exp_avg_sqs.append(st["exp_avg_sq"])
        steps.append(st["step"])
    if not params:
        return
    beta1, beta2 = group["betas"]
    _adam_kernel(
        params,
        grads,
        exp_avgs,
        exp_avg_sqs,
        [],
        steps,
        foreach=group["foreach"],
        fused=group["fused"],
        decoupled_weight_decay=True,
        amsgrad=False,
        beta1=beta1,
        beta2=beta2,
        lr=group["lr"],
        weight_decay=group["weight_decay"],
        eps=group["eps"],
        maximize=False,
        has_complex=False,
    )
