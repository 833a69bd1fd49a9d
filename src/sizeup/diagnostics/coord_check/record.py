"""Recording a coordinate check: which modules are recorded, the forward hooks that measure
their outputs (and their update out_t - out_0), and the loop that trains each subject at each
size and seed by the one training step (sizeup.train.step.Trainer)."""

from __future__ import annotations

import copy
import fnmatch
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from sizeup.diagnostics.coord_check.constants import LOGITS, RESIDUAL
from sizeup.diagnostics.coord_check.judge import Sweep
from sizeup.errors import ConfigError
from sizeup.models.hf import hints as model_hints
from sizeup.parametrization.layout import is_conv1d
from sizeup.progress import Progress
from sizeup.train.step import Trainer, forward_loss, output_logits
from sizeup.wrapping import select_names


def _is_norm(m: nn.Module) -> bool:
    # RMSNorm/LayerNorm of any origin (torch's or a model's own class) count as norms.
    return "norm" in type(m).__name__.lower()


def _is_layer(name: str, m: nn.Module, hints: dict[str, Any]) -> bool:
    """A module whose output a check records: Linear, Embedding, norms, transformers' Conv1D,
    MoE experts (3-D weights) and routers (hints["router"]; their first output, the logits)."""
    if isinstance(m, (nn.Linear, nn.Embedding)) or _is_norm(m) or is_conv1d(m):
        return True
    if any(fnmatch.fnmatchcase(name, p) for p in hints.get("router", [])):
        return True
    return any(p.ndim == 3 for p in m.parameters(recurse=False))


def _match_segment(name: str, pattern: str) -> bool:
    # fnmatch's * also matches dots; a block pattern "blocks.*" must match "blocks.3" only,
    # not its sub-modules "blocks.3.mlp" (a branch, not the residual stream).
    return fnmatch.fnmatchcase(name, pattern) and name.count(".") == pattern.count(".")


def coord_modules(model: nn.Module, include: Sequence[str] | None = None) -> dict[str, str]:
    """Map module name -> kind for every module a coordinate check records.

    Default: every Linear, Embedding and norm, the attention-logits Identities (``*.logits``),
    and each block (``model.sizeup_hints["block"]`` patterns), plus the pseudo-module "logits"
    (the model output). ``include`` (fnmatch patterns) narrows that set; a pattern that matches
    nothing raises ConfigError naming the modules there are.
    """
    hints = model_hints(model)
    blocks = list(hints.get("block", []))
    readouts = list(hints.get("readout", [])) + ["lm_head", "readout"]
    found: dict[str, str] = {}
    for name, m in model.named_modules():
        if not name:
            continue
        if name.split(".")[-1] == "logits":
            found[name] = "attn_logits"
        elif _is_layer(name, m, hints):
            found[name] = (
                "logits" if any(fnmatch.fnmatchcase(name, p) for p in readouts) else "hidden"
            )
        elif any(_match_segment(name, p) for p in blocks):
            found[name] = "residual"
    found[LOGITS] = "logits"
    if include is None:
        return found
    return {n: found[n] for n in select_names(list(found), include, "modules", "recorded modules")}


class CoordRecorder:
    """Forward hooks that store, while ``active``, mean |x| and RMS of chosen module outputs, and
    of their update x - x_ref against reference outputs (``ref``, captured on a pass started
    with ``keep_ref``: the forward pass at init on the same inputs). ``LOGITS`` among the names
    hooks the model itself (its output, or the first tensor of it)."""

    def __init__(self, model: nn.Module, names: Sequence[str], causal: Sequence[str] = ()):
        self.stats: dict[str, tuple[float, float]] = {}
        self.delta: dict[str, tuple[float, float]] = {}
        self.ref: dict[str, torch.Tensor] = {}
        self.active = False
        self.keep_ref = False
        # Causal attention scores: only the entries the model uses (key position <= query
        # position) are activations; the future ones are masked to -inf right after the hook.
        self.causal = set(causal)
        mods = dict(model.named_modules())
        self._handles = [mods[n].register_forward_hook(self._hook(n)) for n in names if n in mods]
        if LOGITS in names:
            self._handles.append(model.register_forward_hook(self._hook(LOGITS)))

    def _hook(self, name: str) -> Callable:
        def hook(_module: Any, _inp: Any, out: Any) -> None:
            if self.active:
                self.record(name, out, causal=name in self.causal)

        return hook

    def start(self, keep_ref: bool = False) -> None:
        """Record the next forward pass; ``keep_ref``: its outputs become the reference."""
        self.stats.clear()
        self.delta.clear()
        if keep_ref:
            self.ref = {}
        self.keep_ref = keep_ref
        self.active = True

    def record(self, name: str, out: Any, causal: bool = False) -> None:
        """Store the stats of a tensor (or the first tensor of a tuple output); ``causal``: the
        tensor is (..., T, T) attention scores and only its lower triangle counts."""
        if isinstance(getattr(out, "logits", None), torch.Tensor):  # a transformers ModelOutput
            out = output_logits(out)
        if isinstance(out, (tuple, list)):
            out = next((o for o in out if isinstance(o, torch.Tensor)), None)
        if not isinstance(out, torch.Tensor):
            return
        with torch.no_grad():
            x = out.detach().float()
            if causal and x.dim() >= 2 and x.shape[-1] == x.shape[-2]:
                T = x.shape[-1]
                x = x[..., torch.ones(T, T, dtype=torch.bool, device=x.device).tril()]
            self.stats[name] = _sizes(x)
            if self.keep_ref:
                self.ref[name] = x.clone()  # a copy: a later in-place op may reuse `out`
            ref = self.ref.get(name)
            ok = ref is not None and ref.shape == x.shape
            self.delta[name] = _sizes(x - ref) if ok else (math.nan, math.nan)

    def remove(self) -> None:
        """Detach every hook."""
        for h in self._handles:
            h.remove()
        self._handles = []


def _sizes(x: torch.Tensor) -> tuple[float, float]:
    """(mean |x|, RMS of x)."""
    return x.abs().mean().item(), x.pow(2).mean().sqrt().item()


@dataclass
class Subject:
    """One model under check: its Trainer (the one training step of sizeup.train.step), the
    batch it trains on at step t, and whether its attention scores are causal (only their lower
    triangle is recorded). ``vary``: the batches differ between steps, so the update out_t -
    out_0 is measured against a frozen copy of the model at init on each step's batch."""

    trainer: Trainer
    batch: Callable[[int], tuple[torch.Tensor, torch.Tensor]]
    vary: bool = False
    causal: bool = False


@dataclass
class Records:
    """What the check recorded: stats[name] (4, T+1, S, seeds) = mean |out|, RMS(out),
    mean |out - out_0|, RMS(out - out_0); loss (T+1, S, seeds)."""

    kinds: dict[str, str]
    stats: dict[str, np.ndarray]
    loss: np.ndarray

    @classmethod
    def empty(cls, sweep: Sweep) -> Records:
        shape = (sweep.check.steps + 1, len(sweep.sizes), sweep.check.seeds)
        return cls({}, {}, np.full(shape, np.nan))

    def store(self, rec: CoordRecorder, names: dict[str, str], rename: dict[str, str], at: tuple):
        """The recorder's stats of one forward pass, at (t, size index, seed index)."""
        t, i, k = at
        for n, (l1, rms) in rec.stats.items():
            key = rename[n]
            if key not in self.stats:
                if k or i:  # a module that the first model lacked
                    raise ConfigError("model", key, "the same modules at every size")
                self.stats[key] = np.full((4, *self.loss.shape), np.nan)
                self.kinds[key] = names[n]
            self.stats[key][:, t, i, k] = (l1, rms, *rec.delta.get(n, (math.nan, math.nan)))


def recorded_names(model: nn.Module, sweep: Sweep) -> tuple[dict[str, str], dict[str, str]]:
    """(module -> kind to record, module -> the name it is stored under). Width mode records
    every module (or ``modules``); depth mode only what every depth shares: the last block's
    output (the residual stream) and the logits."""
    names = coord_modules(model, None if sweep.axis == "depth" else sweep.check.modules)
    if sweep.axis == "width":
        return names, {n: n for n in names}
    last = max(
        (n for n, k in names.items() if k == "residual"),
        key=lambda n: [int(p) if p.isdigit() else p for p in n.split(".")],
        default=None,
    )
    if last is None:
        raise ConfigError(
            "model", type(model).__name__, "a model with residual blocks (sizeup_hints['block'])"
        )
    return {last: "residual", LOGITS: "logits"}, {last: RESIDUAL, LOGITS: LOGITS}


def run(make: Callable[[int, int], Subject], sweep: Sweep, seed: int, progress: bool) -> Records:
    """Train every (seed, size) subject ``make(size, seed)`` (seeds ``seed`` onwards) and
    record each forward pass."""
    recs = Records.empty(sweep)
    total = sweep.check.seeds * len(sweep.sizes)
    with Progress("coord check", total, enabled=progress, transient=True) as prog:
        for k in range(sweep.check.seeds):
            for i, size in enumerate(sweep.sizes):
                _record(make(size, seed + k), sweep, recs, (i, k))
                prog.advance(1)
    return recs


def _record(subject: Subject, sweep: Sweep, recs: Records, at: tuple[int, int]) -> None:
    """Train one subject for the check's steps, recording the forward pass of every step (t =
    0..steps-1, each the step's own forward) and one more after the last update (t = steps)."""
    model, steps = subject.trainer.model, sweep.check.steps
    names, rename = recorded_names(model, sweep)
    attn = [n for n, k in names.items() if k == "attn_logits"]
    if attn and hasattr(model, "record_attn_logits"):
        model.record_attn_logits = True  # route scores through blocks.i.attn.logits
    causal = attn if subject.causal else []
    init = _InitCopy(model, list(names), causal) if subject.vary else None
    rec = CoordRecorder(model, list(names), causal)
    try:
        for t in range(steps + 1):
            x, y = subject.batch(t)
            if init is not None:
                rec.ref = init.outputs(x, y, subject.trainer.device)
            rec.start(keep_ref=init is None and t == 0)
            if t < steps:
                recs.loss[(t, *at)] = subject.trainer.train_step(x, y)
            else:  # the last pass only measures
                recs.loss[(t, *at)] = subject.trainer.loss_on(x, y)
            rec.active = False
            recs.store(rec, names, rename, (t, *at))
    finally:
        rec.remove()
        if init is not None:
            init.rec.remove()


class _InitCopy:
    """A frozen copy of a model at init whose outputs on each step's batch are the reference of
    the update out_t - out_0 when the batches vary between steps."""

    def __init__(self, model: nn.Module, names: list[str], causal: list[str]):
        self.model = copy.deepcopy(model)
        self.rec = CoordRecorder(self.model, names, causal)

    def outputs(self, x: torch.Tensor, y: torch.Tensor, device: str) -> dict[str, torch.Tensor]:
        self.rec.start(keep_ref=True)
        with torch.no_grad():
            forward_loss(self.model, x.to(device), y.to(device))
        self.rec.active = False
        return self.rec.ref
