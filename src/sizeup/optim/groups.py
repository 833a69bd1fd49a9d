"""Param groups from a parametrization's per-tensor Scaling, and the optimizer built on them.

Every tensor's learning rate is eta * lr_mult (the rules table); tensors with identical settings
share one group, so torch's foreach kernels still batch them and any torch LR scheduler
(LambdaLR, ...) scales every group's lr together. Groups also carry "names", "role", "lr_mult"
and "wd_mult" for tables and diagnostics.

Weight decay has torch.optim.AdamW's meaning at the base width, and sizeup keeps it the same at
every width: with base lr eta_t (the lr passed in, times the schedule), each step

    W <- W - eta_t * lambda * wd_mult * W

whatever the tensor's own lr multiplier. torch's decoupled kernels apply W <- W - lr_group_t *
wd_group * W with lr_group_t = eta_t * lr_mult, so each group gets wd_group = lambda * wd_mult /
lr_mult. At the base width (every lr_mult 1 under muP) this is torch's AdamW(weight_decay=lambda)
exactly. Were the decay to follow each tensor's own muP lr (eta/m for hidden matrices), the
weights' averaging timescale 1/(lr x lambda) would grow m-fold with width and the lambda tuned on
the proxy would not transfer (Wang & Aitchison 2024, "How to set AdamW's weight decay as you
scale model and dataset size": keep lr x lambda fixed as muP shrinks lr).
Muon groups read their base lr from ``muon_lr`` when given (torch.optim.Muon's meaning: decay
muon_lr x lambda per step). Batch transfer moves the base lr, so the decay follows the
transferred lr, as it would in torch. Vectors (gains, biases) have wd_mult 0.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import torch
from torch import nn

from sizeup.choices import MUON_SCALES, OPTIMIZERS
from sizeup.errors import ConfigError, check_choice
from sizeup.optim.muon import Muon, muon_scale
from sizeup.optim.transfer import transfer_batch
from sizeup.wrapping import canonical_name

# A decay that removes more than this fraction of a weight per step at peak is almost always a
# unit mistake (e.g. an lr-independent lambda such as Wortsman's read as torch's, with a large
# lr): warn, naming both numbers.
MAX_DECAY_PER_STEP = 0.01


class DecayWarning(UserWarning):
    """lr x weight_decay removes more than MAX_DECAY_PER_STEP of every matrix per step."""


class BatchTransferWarning(UserWarning):
    """The batch transfer moved lr, betas, eps (and momentum) away from the values given: the
    message names each one before and after, so a changed beta is never a surprise."""


def transfer_message(
    before: Mapping[str, Any], after: Mapping[str, Any], batch_size: int, base_batch_size: int
) -> str | None:
    """'batch transfer 64 -> 256 (square-root rule): lr 0.003 -> 0.006, betas (0.9, 0.95) ->
    (0.6, 0.8), ...' for the values that moved, or None when none did."""
    moved = [
        f"{k} {_show(before[k])} -> {_show(after[k])}"
        for k in before
        if after.get(k) is not None and _show(before[k]) != _show(after[k])
    ]
    if not moved:
        return None
    return (
        f"batch transfer from base_batch_size={base_batch_size} to batch_size={batch_size} "
        f"(square-root rule: lr x b^1/2, beta -> 1 - b(1 - beta), eps x b^-1/2 with "
        f"b={batch_size / base_batch_size:g}): " + ", ".join(moved)
    )


def _show(v: Any) -> str:
    if isinstance(v, (tuple, list)):
        return "(" + ", ".join(f"{x:.4g}" for x in v) + ")"
    return f"{v:.4g}"


def decay_per_step(lr: float, weight_decay: float) -> float:
    """The fraction of every matrix removed per step at peak: lr x weight_decay (torch's AdamW
    meaning at the base width; sizeup keeps it the same at every width)."""
    return lr * weight_decay


def decay_warning(lr: float, weight_decay: float) -> str | None:
    """A one-line warning when lr x weight_decay exceeds MAX_DECAY_PER_STEP, else None."""
    d = decay_per_step(lr, weight_decay)
    if d <= MAX_DECAY_PER_STEP:
        return None
    return (
        f"weight_decay={weight_decay:g} at lr={lr:g} removes {100 * d:.3g}% of every matrix "
        f"per step at peak (lr x weight_decay, as in torch.optim.AdamW); more than "
        f"{100 * MAX_DECAY_PER_STEP:g}% per step is rarely intended"
    )


class TensorScaling(Protocol):
    """What the param groups read from a tensor's record (sizeup.parametrization.Scaling has
    it): optim needs the numbers, not the rules that made them."""

    role: str
    fan_in: int
    fan_out: int
    lr_mult: float
    wd_mult: float
    eps_mult: float
    muon: bool


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


def param_groups(
    model: nn.Module,
    scalings: Mapping[str, TensorScaling],
    lr: float,
    weight_decay: float = 0.0,
    use_muon: bool = False,
    muon_lr: float | None = None,
    muon_scale_mode: str = "spectral",
) -> list[dict[str, Any]]:
    """Group model's trainable parameters by (role, lr_mult, wd_mult, muon, scale, eps_mult).

    Each group: params, names, role, lr_mult, wd_mult, eps_mult, lr = eta*lr_mult, weight_decay =
    lambda*wd_mult/lr_mult (decay eta_t*lambda per step at every width, see module doc), and
    with use_muon "use_muon" plus "update_scale" (eta is then muon_lr when given). Raises
    ConfigError naming any parameter without a Scaling.
    """
    table = {canonical_name(k): v for k, v in scalings.items()}
    groups: dict[tuple, dict[str, Any]] = {}
    missing = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue  # frozen tensors have no update and no decay
        s = table.get(canonical_name(name))
        if s is None:
            missing.append(name)
            continue
        muon = bool(use_muon and s.muon)
        if muon and p.ndim not in (2, 3):
            raise ConfigError(
                f"scalings[{name!r}].muon",
                True,
                f"only for matrices (2-D) or stacks of expert matrices (3-D); {name} has "
                f"shape {tuple(p.shape)}",
            )
        scale = muon_scale(muon_scale_mode, s.fan_out, s.fan_in) if muon else None
        key = (s.role, s.lr_mult, s.wd_mult, muon, scale, s.eps_mult)
        if key not in groups:
            eta = (muon_lr if muon and muon_lr is not None else lr) * s.lr_mult
            wd = weight_decay * s.wd_mult / s.lr_mult if s.lr_mult > 0 else 0.0
            g: dict[str, Any] = dict(
                params=[],
                names=[],
                role=s.role,
                lr_mult=s.lr_mult,
                wd_mult=s.wd_mult,
                eps_mult=s.eps_mult,
                lr=eta,
                weight_decay=wd,
            )
            if use_muon:
                g.update(use_muon=muon, update_scale=scale)
            groups[key] = g
        groups[key]["params"].append(p)
        groups[key]["names"].append(name)
    if missing:
        shown = ", ".join(missing[:8]) + (
            f", ... ({len(missing)} in all)" if len(missing) > 8 else ""
        )
        raise ConfigError(
            "scalings",
            f"{len(scalings)} entries",
            f"a Scaling for every trainable parameter; missing: {shown}",
        )
    return list(groups.values())


def _check_args(
    name: str,
    lr: float,
    weight_decay: float,
    betas: Sequence[float],
    eps: float,
    momentum: float,
    muon_scale_mode: str,
    batch_size: int | None,
    base_batch_size: int | None,
) -> None:
    check_choice("optimizer", name, OPTIMIZERS)
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ConfigError("lr", lr, "a finite positive number")
    if not (isinstance(weight_decay, (int, float)) and weight_decay >= 0):
        raise ConfigError("weight_decay", weight_decay, "a number >= 0")
    if len(betas) != 2:
        raise ConfigError("betas", betas, "a pair (beta1, beta2)")
    for i, b in enumerate(betas):
        if not 0.0 <= b < 1.0:
            raise ConfigError(f"beta{i + 1}", b, "a number in [0, 1)")
    if not eps > 0:
        raise ConfigError("eps", eps, "a positive number")
    if not 0.0 <= momentum < 1.0:
        raise ConfigError("momentum", momentum, "a number in [0, 1)")
    check_choice("muon_scale", muon_scale_mode, MUON_SCALES)
    if base_batch_size is not None and batch_size is None:
        raise ConfigError(
            "batch_size",
            batch_size,
            f"a positive integer when base_batch_size={base_batch_size} is given",
        )


def _warn_decay(lr: float, muon_lr: float | None, weight_decay: float) -> None:
    """Warn (DecayWarning, one line) for each base lr whose decay per step exceeds 1%."""
    for base_lr in dict.fromkeys(x for x in (lr, muon_lr) if x is not None):
        msg = decay_warning(base_lr, weight_decay)
        if msg is not None:
            warnings.warn(msg, DecayWarning, stacklevel=3)


def _transfer(
    name: str,
    lr: float,
    betas: tuple[float, float],
    eps: float,
    momentum: float,
    muon_lr: float | None,
    batch_size: int,
    base_batch_size: int,
) -> tuple[float, tuple[float, ...], float, float, float | None]:
    """Move lr, betas, eps, momentum (and Muon's lr) from base_batch_size to batch_size, and say
    so (BatchTransferWarning) when anything the optimizer uses moved."""
    new_lr, new_betas, new_eps = transfer_batch(lr, betas, eps, batch_size, base_batch_size)
    new_muon = muon_lr * new_lr / lr if muon_lr is not None else None
    new_mom = momentum
    if momentum > 0:
        _, (new_mom,), _ = transfer_batch(1.0, (momentum,), 1.0, batch_size, base_batch_size)
    before: dict[str, Any] = {"lr": lr}
    after: dict[str, Any] = {"lr": new_lr}
    if name != "sgd":
        before.update(betas=tuple(betas), eps=eps)
        after.update(betas=new_betas, eps=new_eps)
    if name in ("sgd", "muon"):
        before["momentum"], after["momentum"] = momentum, new_mom
    if name == "muon" and muon_lr is not None:
        before["muon_lr"], after["muon_lr"] = muon_lr, new_muon
    msg = transfer_message(before, after, batch_size, base_batch_size)
    if msg is not None:
        warnings.warn(msg, BatchTransferWarning, stacklevel=3)
    return new_lr, new_betas, new_eps, new_mom, new_muon


def build_optimizer(
    model: nn.Module,
    scalings: Mapping[str, TensorScaling],
    name: str,
    lr: float,
    weight_decay: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.95),
    eps: float = 1e-8,
    momentum: float = 0.9,
    nesterov: bool = True,
    muon_scale: str = "spectral",
    batch_size: int | None = None,
    base_batch_size: int | None = None,
    *,
    muon_lr: float | None = None,
    foreach: bool | None = None,
    fused: bool | None = None,
    ns_dtype: torch.dtype | None = torch.bfloat16,
    warmup_steps: int = 0,
) -> torch.optim.Optimizer:
    """A torch optimizer ("adamw", "sgd", "muon" or "adamw_schedulefree") whose groups carry each
    tensor's lr/wd multipliers.

    lr is the base model's eta; each group gets eta * lr_mult. weight_decay is lambda in
    torch.optim.AdamW's sense at the base width: every matrix loses eta_t * lambda of itself per
    step, at every width (module doc); a DecayWarning says when that exceeds 1% at peak. With
    both batch sizes, lr, betas, eps (and SGD/Muon momentum, by the beta rule) are first moved
    from base_batch_size to batch_size (transfer_batch), and the decay follows the moved lr.
    "muon" updates the tensors whose Scaling says muon=True with Muon (lr ``muon_lr`` if given,
    else lr) and everything else with AdamW, in one optimizer. "adamw_schedulefree" is
    schedule-free AdamW (Defazio et al. 2024, the ``schedulefree`` package; its decay, lr x
    lambda per step at y, has AdamW's meaning), with its own linear warmup over
    ``warmup_steps``; it is returned in train mode (call ``.eval()`` before evaluating).
    ``fused``: torch's fused AdamW kernel (AdamW, and Muon's AdamW groups; the train stage asks
    for it on CUDA); SGD and schedule-free AdamW ignore it. ``ns_dtype``: Muon's Newton-Schulz
    precision (bf16 as torch.optim.Muon).
    """
    _check_args(
        name, lr, weight_decay, betas, eps, momentum, muon_scale, batch_size, base_batch_size
    )
    if batch_size is not None and base_batch_size is not None:
        lr, betas, eps, momentum, muon_lr = _transfer(
            name, lr, betas, eps, momentum, muon_lr, batch_size, base_batch_size
        )
    _warn_decay(lr, muon_lr if name == "muon" else None, weight_decay)
    betas = (float(betas[0]), float(betas[1]))
    groups = param_groups(
        model,
        scalings,
        lr,
        weight_decay,
        use_muon=(name == "muon"),
        muon_lr=muon_lr,
        muon_scale_mode=muon_scale,
    )
    if name != "sgd":  # Adam's eps follows each tensor's gradient scale (rules.eps_mult)
        for g in groups:
            g["eps"] = eps * g["eps_mult"]
    if name == "adamw":
        return torch.optim.AdamW(
            groups, lr=lr, betas=betas, eps=eps, weight_decay=0.0, foreach=foreach, fused=fused
        )
    if name == "adamw_schedulefree":
        return schedule_free_adamw(groups, lr, betas, eps, warmup_steps)
    if name == "sgd":
        # torch refuses nesterov without momentum; plain SGD is what momentum=0 asks for.
        return SGDW(
            groups,
            lr=lr,
            momentum=momentum,
            nesterov=nesterov and momentum > 0,
            weight_decay=0.0,
            foreach=foreach,
        )
    return Muon(
        groups,
        lr=lr,
        momentum=momentum,
        nesterov=nesterov,
        scale_mode=muon_scale,
        betas=betas,
        eps=eps,
        foreach=foreach,
        fused=fused,
        ns_dtype=ns_dtype,
    )


def schedule_free_adamw(
    groups: list[dict[str, Any]],
    lr: float,
    betas: tuple[float, float],
    eps: float,
    warmup_steps: int = 0,
) -> torch.optim.Optimizer:
    """schedulefree.AdamWScheduleFree over sizeup's param groups, in train mode. The package is
    an optional extra: without it, a ConfigError says how to get it."""
    try:
        from schedulefree import AdamWScheduleFree
    except ImportError:
        raise ConfigError(
            "optimizer",
            "adamw_schedulefree",
            "available once the schedulefree package is installed (pip install "
            "'sizeup[schedulefree]')",
        ) from None
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise ConfigError("warmup_steps", warmup_steps, "an integer >= 0")
    opt = AdamWScheduleFree(
        groups, lr=lr, betas=betas, eps=eps, weight_decay=0.0, warmup_steps=warmup_steps
    )
    opt.train()
    return opt


def group_table(optimizer: torch.optim.Optimizer) -> list[dict[str, Any]]:
    """One row per param group: role, names, lr, weight_decay, lr_mult, wd_mult, eps (for display)."""
    rows = []
    for g in optimizer.param_groups:
        rows.append(
            {
                k: g.get(k)
                for k in (
                    "role",
                    "lr",
                    "weight_decay",
                    "lr_mult",
                    "wd_mult",
                    "eps",
                    "use_muon",
                    "update_scale",
                )
            }
            | {"names": list(g.get("names", []))}
        )
    return rows
