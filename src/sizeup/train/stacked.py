"""Stacked trials: K runs that share a model's shape trained together, in one process, as one
stacked model.

A study trains the same small model many times (an lr grid x seeds x variants); each run alone
spends its time on small matrix products and Python overhead. Here K runs whose configs differ
only in MEMBER_FIELDS (seed, lr, betas, weight decay, schedule, grad_clip, ...) become members
of one stack: every parameter is held once as a (K, ...) tensor, the forward pass and the loss
run under ``torch.vmap`` over ``torch.func.functional_call`` (vmap's "model ensembling" recipe,
PyTorch's torch.func tutorial), one backward takes every member's gradient (the loss summed
over members: member k's gradient is d loss_k / d theta_k exactly, the members share nothing),
and the optimizer updates every member in one batched update per tensor with each member's own
hyperparameters (``BATCHED``: AdamW, SGD and Muon, whose Newton-Schulz is batched over members).

Which trials may stack is sizeup.config.stacking's (MEMBER_FIELDS, ``stack_key``: torch-free,
so the executor groups trials before building any). What a member is made of comes from the
run's own pieces, so a member *is* its unstacked run:

- each member is built by ``sizeup.train.build`` from its config (its seed's init, its
  parametrization, its param groups with their lr / weight decay / eps per tensor, its lr
  schedule, its data order) and held by a ``Trainer`` (sizeup.train.step) whose model's
  parameters are views into the stacked tensors (the optimizer's groups and the LambdaLR
  schedule then read and move that member's hyperparameters, as in a solo run);
- the loss is ``forward_loss`` (z-loss included: the model's own; members of a GPT stack with
  different z-loss coefficients take the GPT's ``lm_loss`` with their own); the divergence
  test, the evaluations (``Trainer.evaluate``: the member's own validation batches), the
  curves and the final record are the Trainer's and ``sizeup.train.loop``'s (``_on_step``,
  ``_finish``);
- gradient clipping is torch's ``clip_grad_norm_`` formula per member (its own threshold),
  computed over the stack at once (``clip_stacked``).

A member that diverges is taken out of the stack after the step that blew up (its parameters
keep that step's values, as the unstacked run stops there); the others go on. Each member's
RunResult equals its unstacked run's to float rounding (the batched kernels reduce in another
order): tests/test_stacked.py shows it to ~1e-10 in float64 and ~1e-5 in float32 (under bf16
autocast, to bf16's rounding).
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from sizeup.config import RunConfig, RunResult
from sizeup.config.run_config import flat_diff
from sizeup.config.stacking import MEMBER_FIELDS, UNSTACKED_SETTINGS, stack_key
from sizeup.errors import ConfigError
from sizeup.models import num_params
from sizeup.models.gpt import lm_loss
from sizeup.optim.muon import _dtype, _newton_schulz_batched, muon_scale
from sizeup.progress import Progress
from sizeup.train.build import Built, _available_bytes, build, memory_estimate
from sizeup.train.loop import _finish, _flops_per_token, _Meter, _on_step
from sizeup.train.step import Trainer, autocast, forward_loss

# Most members one stack holds when the size is chosen from memory (``auto_stack_size``).
MAX_AUTO_STACK = 8
# The share of free memory a stack chosen from memory may take.
AUTO_MEMORY_SHARE = 0.5


class NotStackable(ConfigError):
    """These trials cannot train as one stack (say why); each can still train alone."""


def check_stackable(cfgs: Sequence[RunConfig]) -> None:
    """NotStackable, naming the field, unless ``cfgs`` can train as one stack: an optimizer
    with a batched update (``BATCHED``), the same shared fields (``stack_key``), one process,
    a dense model (an MoE's routing does not vmap) and none of UNSTACKED_SETTINGS."""
    if not cfgs:
        raise NotStackable("stack", 0, "at least one trial")
    first = cfgs[0]
    if first.optimizer.name not in BATCHED:
        raise NotStackable(
            "optimizer",
            first.optimizer.name,
            "one with a batched update to train stacked: " + ", ".join(BATCHED),
        )
    default = RunConfig.from_dict({})
    for name in UNSTACKED_SETTINGS:
        if first.get(name) != default.get(name):
            raise NotStackable(name, first.get(name), f"{default.get(name)!r} to train stacked")
    if first.model.n_experts:
        # token routing picks each member's tokens by value (nonzero), which vmap cannot batch
        raise NotStackable("n_experts", first.model.n_experts, "0 (a dense model) to train stacked")
    if len({c.model.z_loss for c in cfgs}) > 1 and first.model.name != "gpt":
        raise NotStackable(
            "z_loss",
            [c.model.z_loss for c in cfgs],
            "one value in a stack of a model other than sizeup's GPT",
        )
    for cfg in cfgs[1:]:
        if stack_key(cfg) != stack_key(first):
            diff = {k: v for k, v in flat_diff(first, cfg).items() if k not in MEMBER_FIELDS}
            name, (a, b) = next(iter(diff.items()))
            raise NotStackable(
                name,
                b,
                f"{a!r} as in the stack's first trial (members differ only in "
                + ", ".join(MEMBER_FIELDS)
                + ")",
            )


def auto_stack_size(cfg: RunConfig, available: float | None = None) -> int:
    """How many members of ``cfg``'s shape fit in AUTO_MEMORY_SHARE of ``available`` bytes
    (None: what is free on its device now), by a member's ``memory_estimate``
    (sizeup.train.build), between 1 and MAX_AUTO_STACK; 1 when the memory is unknown."""
    if available is None:
        available = _available_bytes(cfg.run.device)
    if available is None:
        return 1
    _, need = memory_estimate(cfg)
    return max(1, min(MAX_AUTO_STACK, int(AUTO_MEMORY_SHARE * available // max(need, 1.0))))


# --- batched updates ---------------------------------------------------------------------------
# Each takes one param group's stacked tensors and, per member, that member's group (its lr at
# this step, weight decay, betas, eps, momentum: what its own torch optimizer would read), and
# updates the stacked tensors in place. The formulas are torch's, in torch's order of
# operations, with each member's scalars computed in Python floats as torch computes them.


def _column(values: Sequence[float], like: Tensor) -> Tensor:
    """Per-member scalars as a (K, 1, ..., 1) tensor that broadcasts over ``like`` (K, ...)."""
    t = torch.tensor(list(values), dtype=like.dtype, device=like.device)
    return t.view(-1, *([1] * (like.ndim - 1)))


class _Columns:
    """``_column`` once per (name, ndim) in one group's update: a group's tensors share their
    members' scalars, so each is made once per step, not once per tensor."""

    def __init__(self) -> None:
        self.made: dict[tuple[str, int], Tensor] = {}

    def __call__(self, name: str, values: Callable[[], Sequence[float]], like: Tensor) -> Tensor:
        key = (name, like.ndim)
        if key not in self.made:
            self.made[key] = _column(values(), like)
        return self.made[key]


def _same(groups: Sequence[dict[str, Any]], key: str) -> Any:
    """A group setting every member must share (a structural one: nesterov, ns_steps, ...)."""
    values = {json.dumps(g.get(key), default=str) for g in groups}
    if len(values) > 1:
        raise NotStackable(key, [g.get(key) for g in groups], "the same for every member")
    return groups[0].get(key)


def adamw_update(
    params: list[Tensor], groups: Sequence[dict[str, Any]], state: dict[int, dict[str, Any]]
) -> None:
    """torch.optim.AdamW's step (decoupled decay; torch's _single_tensor_adam, Loshchilov &
    Hutter 2019) over the stack: W <- W (1 - lr wd); m <- lerp(m, g, 1 - b1);
    v <- b2 v + (1 - b2) g^2; W <- W - lr / (1 - b1^t) x m / (sqrt(v) / sqrt(1 - b2^t) + eps)."""
    lr = [g["lr"] for g in groups]
    wd = [g["weight_decay"] for g in groups]
    b1 = [g["betas"][0] for g in groups]
    b2 = [g["betas"][1] for g in groups]
    eps = [g["eps"] for g in groups]
    decay = any(w != 0 for w in wd)
    col = _Columns()
    for p in params:
        s = state.setdefault(id(p), {})
        if not s:
            s["step"] = 0
            s["exp_avg"] = torch.zeros_like(p)
            s["exp_avg_sq"] = torch.zeros_like(p)
        s["step"] += 1
        t = float(s["step"])
        grad = p.grad
        if decay:
            p.mul_(col("decay", lambda: [1 - a * w for a, w in zip(lr, wd)], p))
        s["exp_avg"].lerp_(grad, col("1-b1", lambda: [1 - b for b in b1], p))
        s["exp_avg_sq"].mul_(col("b2", lambda: b2, p)).add_(
            grad * grad * col("1-b2", lambda: [1 - b for b in b2], p)
        )
        # the step count is every tensor's of the group (they start together)
        step_size = col(f"step{t}", lambda t=t: [a / (1 - b**t) for a, b in zip(lr, b1)], p)
        bc2_sqrt = col(f"bc2{t}", lambda t=t: [(1 - b**t) ** 0.5 for b in b2], p)
        denom = (s["exp_avg_sq"].sqrt() / bc2_sqrt).add_(col("eps", lambda: eps, p))
        p.sub_(step_size * (s["exp_avg"] / denom))


def sgd_update(
    params: list[Tensor], groups: Sequence[dict[str, Any]], state: dict[int, dict[str, Any]]
) -> None:
    """sizeup's SGDW step (sizeup.optim.builders.SGDW: decoupled decay, then torch's SGD):
    W <- W (1 - lr wd); b <- g on the first step, then mu b + (1 - dampening) g; with Nesterov
    the step is g + mu b, else b; W <- W - lr x step."""
    lr = [g["lr"] for g in groups]
    wd = [g["weight_decay"] for g in groups]
    mu = [g["momentum"] for g in groups]
    damp = [g["dampening"] for g in groups]
    nesterov = _same(groups, "nesterov")
    decay, momentum = any(w != 0 for w in wd), any(m != 0 for m in mu)
    col = _Columns()
    for p in params:
        grad = p.grad
        if decay:
            p.mul_(col("decay", lambda: [1 - a * w for a, w in zip(lr, wd)], p))
        if momentum:
            s = state.setdefault(id(p), {})
            if "momentum_buffer" not in s:
                s["momentum_buffer"] = grad.detach().clone()
            else:
                buf = s["momentum_buffer"]
                buf.mul_(col("mu", lambda: mu, p)).add_(
                    grad * col("1-dampening", lambda: [1 - d for d in damp], p)
                )
            buf = s["momentum_buffer"]
            grad = grad + buf * col("mu", lambda: mu, p) if nesterov else buf
        p.sub_(grad * col("lr", lambda: lr, p))


def muon_update(
    params: list[Tensor], groups: Sequence[dict[str, Any]], state: dict[int, dict[str, Any]]
) -> None:
    """sizeup's Muon step (sizeup.optim.muon.Muon: Jordan et al. 2024) over the stack: on a
    ``use_muon`` group, M <- lerp(M, g, 1 - mu), the Nesterov look-ahead lerp(g, M, mu),
    Newton-Schulz on every member's matrix at once (``_newton_schulz_batched``: each matrix
    normalised by its own norm), W <- W (1 - lr wd) - lr x scale x NS(.); on the other groups
    AdamW (``adamw_update``), as Muon's own Adam side."""
    if not _same(groups, "use_muon"):
        adamw_update(params, groups, state)
        return
    g0 = groups[0]
    lr = [g["lr"] for g in groups]
    wd = [g["weight_decay"] for g in groups]
    mu = [g["momentum"] for g in groups]
    nesterov = _same(groups, "nesterov")
    steps, coefficients = _same(groups, "ns_steps"), _same(groups, "ns_coefficients")
    ns_eps, ns_dtype = _same(groups, "ns_eps"), _same(groups, "ns_dtype")
    scale_given = _same(groups, "update_scale")
    decay = any(w != 0 for w in wd)
    col = _Columns()
    for p in params:
        grad = p.grad
        s = state.setdefault(id(p), {})
        if "momentum_buffer" not in s:
            s["momentum_buffer"] = torch.zeros_like(grad)
        buf = s["momentum_buffer"]
        buf.lerp_(grad, col("1-mu", lambda: [1 - m for m in mu], p))
        u = grad.lerp(buf, col("mu", lambda: mu, p)) if nesterov else buf
        shape = u.shape
        # every member's matrix in one batch
        o = _newton_schulz_batched(
            u.reshape(-1, *shape[-2:]), steps, coefficients, ns_eps, _dtype(ns_dtype)
        ).reshape(shape)
        scale = scale_given
        if scale is None:
            scale = muon_scale(g0["scale_mode"], shape[-2], shape[-1])
        if decay:
            p.mul_(col("decay", lambda: [1 - a * w for a, w in zip(lr, wd)], p))
        p.sub_(o * _column([a * scale for a in lr], p))  # the scale is the tensor's own


# The optimizers that train stacked: registry name -> its batched update (one per group).
BATCHED: dict[str, Callable[..., None]] = {
    "adamw": adamw_update,
    "sgd": sgd_update,
    "muon": muon_update,
}


def clip_stacked(grads: Sequence[Tensor], max_norms: Sequence[float]) -> None:
    """torch.nn.utils.clip_grad_norm_ for every member at once: member k's gradient (its slice
    of every tensor) scaled by min(1, max_norm_k / (||g_k||_2 + 1e-6)), torch's formula; a
    member with max_norm 0 is not clipped (the Trainer clips only when grad_clip > 0)."""
    if not any(m > 0 for m in max_norms):
        return
    norms = torch.stack([torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads])
    total = torch.linalg.vector_norm(norms, dim=0)
    limit = torch.tensor(max_norms, dtype=total.dtype, device=total.device)
    coef = torch.clamp(limit / (total + 1e-6), max=1.0)
    coef = torch.where(limit > 0, coef, torch.ones_like(coef))
    for g in grads:
        g.mul_(coef.view(-1, *([1] * (g.ndim - 1))).to(g.dtype))


class _Loss(nn.Module):
    """``forward_loss`` as a module (so functional_call can give it a member's parameters);
    with ``z``, each member's z-loss coefficient, a GPT's logits and ``lm_loss`` (the loss
    its forward takes, with the member's coefficient)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, y: Tensor, z: Tensor | None = None) -> Tensor:
        if z is None:
            return forward_loss(self.model, x, y)[1]
        logits, _ = self.model(x)
        return lm_loss(logits, y, z)


class StackedTrainer:
    """K Trainers (one per member, each its own run's state) advanced together by one stacked
    step. ``trainers[k].model``'s parameters are views into the stacked tensors, so a member's
    model always holds its current weights (its evaluations, its final parameters)."""

    def __init__(self, cfgs: Sequence[RunConfig], built: Sequence[Built]):
        check_stackable(cfgs)
        self.cfgs = list(cfgs)
        self.trainers = [Trainer.from_built(c, b) for c, b in zip(cfgs, built)]
        self.update = BATCHED[cfgs[0].optimizer.name]
        self.loss = _Loss(self.trainers[0].model)
        self.names = [n for n, _ in self.loss.named_parameters()]  # "model.<name>"
        self.buffers = dict(self.loss.named_buffers())
        self.groups = self._group_names()
        self.alive = list(range(len(self.trainers)))  # members still in the stack
        self.state: dict[int, dict[str, Any]] = {}
        self.params: dict[str, Tensor] = {}
        self._stack(self.alive)
        z = [c.model.z_loss for c in cfgs]
        self.z_loss = None if len(set(z)) == 1 else z  # one coefficient: the model's own

    @classmethod
    def build(cls, cfgs: Sequence[RunConfig]) -> StackedTrainer:
        """Each member built by ``sizeup.train.build`` from its own config, then stacked."""
        check_stackable(cfgs)
        return cls(cfgs, [build(c) for c in cfgs])

    def _group_names(self) -> list[list[str]]:
        """Each param group's tensors by name; every member must group its tensors alike."""
        out = []
        for i, g in enumerate(self.trainers[0].optimizer.param_groups):
            for t in self.trainers[1:]:
                if t.optimizer.param_groups[i]["names"] != g["names"]:
                    raise NotStackable("param groups", i, "the same for every member")
            out.append([f"model.{n}" for n in g["names"]])
        return out

    def _member_param(self, k: int, name: str) -> nn.Parameter:
        return self.trainers[k].model.get_parameter(name.removeprefix("model."))

    def _stack(self, members: list[int], old: list[int] | None = None) -> None:
        """Stack the parameters (and optimizer state) of ``members``; ``old``: the members of
        the current stack (a member left out keeps its slice as its own tensor)."""
        for name in self.names:
            if old is None:
                data = torch.stack([self._member_param(k, name).detach() for k in members])
            else:
                prev = self.params[name].detach()
                for j, k in enumerate(old):
                    if k not in members:
                        p = self._member_param(k, name)
                        p.data = prev[j].clone()
                data = prev[[old.index(k) for k in members]]
                state = self.state.pop(id(self.params[name]), None)
            leaf = data.clone().requires_grad_(True)
            for j, k in enumerate(members):
                self._member_param(k, name).data = leaf.data[j]
            if old is not None and state is not None:
                keep = [old.index(k) for k in members]
                self.state[id(leaf)] = {
                    s: (v[keep].clone() if isinstance(v, Tensor) else v) for s, v in state.items()
                }
            self.params[name] = leaf

    # --- the step -------------------------------------------------------------------------
    def train_step(self, batches: Sequence[tuple[Tensor, Tensor]]) -> list[float]:
        """One optimizer step of every member still in the stack, member k on its batch
        ``batches[j]`` (j its place in ``alive``); returns their losses (before the update,
        as ``Trainer.train_step``), then runs each member's divergence test and schedule."""
        members = [self.trainers[k] for k in self.alive]
        device = members[0].device
        x = torch.stack([b[0] for b in batches]).to(device)
        y = torch.stack([b[1] for b in batches]).to(device)
        with autocast(device, members[0].autocast), warnings.catch_warnings():
            # torch's note that vmap runs CPU flash attention member by member (no batching
            # rule yet): a fact about speed, said once here rather than to every user
            warnings.filterwarnings("ignore", "There is a performance drop", UserWarning)
            if self.z_loss is None:
                losses = torch.vmap(self._member_loss)(self.params, x, y)
            else:
                # in the weights' dtype, as the model's Python float is taken in its forward
                dtype = next(iter(self.params.values())).dtype
                z = torch.tensor([self.z_loss[k] for k in self.alive], dtype=dtype, device=device)
                losses = torch.vmap(self._member_loss)(self.params, x, y, z)
        losses.sum().backward()
        leaves = list(self.params.values())
        clip_stacked([p.grad for p in leaves], [t.grad_clip for t in members])
        for t in members:
            t.lrs = [g["lr"] for g in t.optimizer.param_groups]  # what this step uses
        with torch.no_grad():
            for i, names in enumerate(self.groups):
                groups = [t.optimizer.param_groups[i] for t in members]
                self.update([self.params[n] for n in names], groups, self.state)
        for p in leaves:
            p.grad = None
        for t in members:
            if t.scheduler._step_count == 1:
                # torch warns at a schedule's first step when its optimizer's step() was not
                # called: here the batched update stepped in its place
                with warnings.catch_warnings():
                    warnings.filterwarnings(
                        "ignore", "Detected call of `lr_scheduler.step", UserWarning
                    )
                    t.scheduler.step()
            else:
                t.scheduler.step()
        values = [float(v) for v in losses.detach().tolist()]
        for t, v in zip(members, values):
            t._after_step(v)  # the Trainer's divergence test, and its step count
        return values

    def _member_loss(
        self, params: dict[str, Tensor], x: Tensor, y: Tensor, z: Tensor | None = None
    ) -> Tensor:
        return functional_call(self.loss, (params, self.buffers), (x, y, z))

    def advance(self, until: int, on_step: Sequence[Callable[[int, float], None]]) -> None:
        """Train every member on its own ``batch_at(step)`` up to step ``until`` (exclusive)
        or until it diverges (it then leaves the stack); ``on_step[k](step, loss)`` after
        each of member k's steps, as ``Trainer.advance`` calls it."""
        while self.alive and self.trainers[self.alive[0]].step < until:
            step = self.trainers[self.alive[0]].step
            batches = [self.trainers[k].data.batch_at(step) for k in self.alive]
            values = self.train_step(batches)
            for k, v in zip(list(self.alive), values):
                on_step[k](step, v)
            left = [k for k in self.alive if not self.trainers[k].diverged]
            if left != self.alive:
                old, self.alive = self.alive, left
                self._stack(left, old)


def run_stack(
    cfgs: Sequence[RunConfig], on_built: Callable[[StackedTrainer], None] | None = None
) -> list[RunResult]:
    """Train ``cfgs`` as one stack (``check_stackable``) and return each member's RunResult,
    the one ``sizeup.train.run`` gives it alone (its curves, evaluations, divergence and final
    losses), with wall_time its share of the stack's (diagnostics["stack"]: the stack's size
    and wall time). Callbacks, loggers and checkpoints are not taken: a stack is a study's.
    ``on_built`` sees the stack once built (as ``run``'s sees a run's pieces)."""
    check_stackable(cfgs)
    t0 = time.perf_counter()
    stack = StackedTrainer.build(cfgs)
    if on_built is not None:
        on_built(stack)
    results, steps = [], []
    for cfg, trainer in zip(cfgs, stack.trainers):
        res = RunResult(config=cfg.to_dict(), world_size=1)
        res.params = num_params(trainer.model, non_embedding=True)
        res.initial_val_loss = trainer.start()
        meter = _Meter(cfg, 1, _flops_per_token(cfg))
        bar = Progress("stack member", cfg.schedule.steps, enabled=False)
        steps.append(_on_step(cfg, trainer, res, bar, [], meter, None))
        results.append((res, meter))
    stack.advance(cfgs[0].schedule.steps, on_step=steps)
    wall = time.perf_counter() - t0
    out = []
    for cfg, trainer, (res, meter) in zip(cfgs, stack.trainers, results):
        _finish(cfg, trainer, res, [])
        res.wall_time = wall / len(cfgs)
        res.tokens_per_s = res.tokens / res.wall_time if res.wall_time > 0 else 0.0
        meter.record(res)
        res.diagnostics.setdefault("stack", {}).update(size=len(cfgs), wall_s=wall)
        out.append(res)
    return out


def member_state(stack: StackedTrainer, k: int) -> dict[str, Tensor]:
    """Member k's parameters by name, as its own model holds them (for tests and tools)."""
    return {n: p.detach() for n, p in stack.trainers[k].model.named_parameters()}


__all__ = [
    "BATCHED",
    "NotStackable",
    "StackedTrainer",
    "auto_stack_size",
    "check_stackable",
    "member_state",
    "run_stack",
]
