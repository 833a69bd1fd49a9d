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

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Protocol

import torch
from torch import nn

from sizeup.config.optimizer import OptimSpec
from sizeup.errors import ConfigError
from sizeup.optim.muon import muon_scale
from sizeup.optim.transfer import transfer_batch
from sizeup.registry import get_optimizer
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
        # Scion: embedding tables in their own groups, marked one_hot (sizeup.optim.scion)
        one_hot = bool(getattr(s, "one_hot", False))
        key = (s.role, s.lr_mult, s.wd_mult, muon, scale, s.eps_mult, one_hot)
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
            if one_hot:
                g["one_hot"] = True
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


@dataclass(frozen=True)
class BuildContext:
    """What building an optimizer needs beyond its OptimSpec: the run's batch (the batch
    transfer moves the spec from ``spec.base_batch_size`` to it), torch's kernel choices
    (``fused`` on CUDA, ``foreach``) and schedule-free AdamW's own warmup steps."""

    batch_size: int | None = None
    fused: bool | None = None
    foreach: bool | None = None
    warmup_steps: int = 0


# build_optimizer's keyword settings that are not OptimSpec fields.
_CONTEXT = tuple(f.name for f in fields(BuildContext))


def optimizer_spec(name: str, lr: Any = None, **settings: Any) -> tuple[OptimSpec, BuildContext]:
    """(OptimSpec, BuildContext) from torch-style keyword settings: OptimSpec's fields, plus
    ``betas=(b1, b2)``, a torch dtype for ``ns_dtype``, and BuildContext's fields."""
    settings = dict(settings)
    ctx = {k: settings.pop(k) for k in _CONTEXT if k in settings}
    if "betas" in settings:
        betas = settings.pop("betas")
        if len(betas) != 2:
            raise ConfigError("betas", betas, "a pair (beta1, beta2)")
        settings["beta1"], settings["beta2"] = float(betas[0]), float(betas[1])
    dtype = settings.get("ns_dtype", "")
    if dtype is not None and not isinstance(dtype, str):
        settings["ns_dtype"] = str(dtype).removeprefix("torch.")
    if lr is None:
        raise ConfigError("lr", lr, "a finite positive number (the base model's eta)")
    spec = OptimSpec(name=name, lr=lr, **settings)
    context = BuildContext(**ctx)
    if spec.base_batch_size is not None and context.batch_size is None:
        raise ConfigError(
            "batch_size",
            None,
            f"a positive integer when base_batch_size={spec.base_batch_size} is given",
        )
    return spec, context


def _warn_decay(spec: OptimSpec, orthogonal: bool) -> None:
    """Warn (DecayWarning, one line) for each base lr whose decay per step exceeds 1%."""
    lrs = (spec.lr, spec.muon_lr if orthogonal else None)
    for base_lr in dict.fromkeys(x for x in lrs if x is not None):
        msg = decay_warning(base_lr, spec.weight_decay)
        if msg is not None:
            warnings.warn(msg, DecayWarning, stacklevel=4)


def batch_transferred(spec: OptimSpec, batch_size: int) -> OptimSpec:
    """``spec`` moved from its base_batch_size to ``batch_size`` by the square-root rule
    (sizeup.optim.transfer_batch), moving what the optimizer's registry entry says it moves
    (lr, betas, eps, momentum; Muon's lr with the lr), and saying so (BatchTransferWarning)
    when anything it reads moved. Unchanged without a base batch."""
    base = spec.base_batch_size
    if base is None:
        return spec
    entry = get_optimizer(spec.name)
    moves = entry.batch_moves or ()
    new_lr, new_betas, new_eps = transfer_batch(
        spec.lr, spec.betas if "betas" in moves else (), spec.eps, batch_size, base
    )
    before: dict[str, Any] = {"lr": spec.lr}
    after: dict[str, Any] = {"lr": new_lr}
    changes: dict[str, Any] = {"lr": new_lr}
    if "betas" in moves:
        before["betas"], after["betas"] = spec.betas, new_betas
        changes.update(beta1=new_betas[0], beta2=new_betas[1])
    if "eps" in moves:
        before["eps"], after["eps"] = spec.eps, new_eps
        changes["eps"] = new_eps
    if "momentum" in moves and spec.momentum > 0:
        _, (mom,), _ = transfer_batch(1.0, (spec.momentum,), 1.0, batch_size, base)
        before["momentum"], after["momentum"] = spec.momentum, mom
        changes["momentum"] = mom
    if entry.orthogonal and spec.muon_lr is not None:
        changes["muon_lr"] = spec.muon_lr * new_lr / spec.lr
        before["muon_lr"], after["muon_lr"] = spec.muon_lr, changes["muon_lr"]
    msg = transfer_message(before, after, batch_size, base)
    if msg is not None:
        warnings.warn(msg, BatchTransferWarning, stacklevel=4)
    return spec.replace(base_batch_size=None, **changes)


def build_optimizer(
    model: nn.Module,
    scalings: Mapping[str, TensorScaling],
    spec: OptimSpec | str,
    context: BuildContext | None = None,
    **settings: Any,
) -> torch.optim.Optimizer:
    """The torch optimizer ``spec`` names (sizeup.registry) over param groups that carry each
    tensor's lr / weight-decay / eps multipliers. ``spec``: an OptimSpec, or a registered name
    with torch-style ``settings`` (lr=..., betas=..., batch_size=...: ``optimizer_spec``).

    ``spec.lr`` is the base model's eta; each group gets eta x lr_mult. ``spec.weight_decay`` is
    lambda in torch.optim.AdamW's sense at the base width: every matrix loses eta_t x lambda of
    itself per step, at every width (module doc); a DecayWarning says when that exceeds 1% at
    peak. With a base batch (``spec.base_batch_size`` and ``context.batch_size``) the spec is
    first moved to the run's batch (``batch_transferred``), and the decay follows the moved lr.
    An optimizer whose entry is ``orthogonal`` (Muon) updates the tensors whose Scaling says
    muon=True with its orthogonalised update (lr ``muon_lr`` if given) and the rest with its
    Adam side, in one optimizer. Adam-like optimizers (they read eps) get eps per tensor
    (rules.eps_mult). Schedule-free AdamW is returned in train mode.
    """
    if isinstance(spec, str):
        spec, context = optimizer_spec(spec, **settings)
    context = context or BuildContext()
    entry = get_optimizer(spec.name)
    if context.batch_size is not None:
        spec = batch_transferred(spec, context.batch_size)
    _warn_decay(spec, entry.orthogonal)
    groups = param_groups(
        model,
        scalings,
        spec.lr,
        spec.weight_decay,
        use_muon=entry.orthogonal,
        muon_lr=spec.muon_lr,
        muon_scale_mode=spec.muon_scale,
    )
    for g in groups:
        g["update"] = spec.name if g.get("use_muon") or not entry.orthogonal else "adamw"
        if "eps" in get_optimizer(g["update"]).reads and not g.get("use_muon"):
            g["eps"] = spec.eps * g["eps_mult"]
    # --- AGD (lmo family): each tensor's (fan_out, fan_in), for the optimizer's own per-layer
    # scale sqrt(fan_out / fan_in) (sizeup.optim.agd)
    if entry.family == "lmo":
        table = {canonical_name(k): v for k, v in scalings.items()}
        for g in groups:
            rows = [table[canonical_name(n)] for n in g["names"]]
            g["fans"] = [(s.fan_out, s.fan_in) for s in rows]
    return entry.builder()(groups, spec, context)


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
