"""The one training step every stage takes, and the small Trainer that takes it.

`sizeup train` (sizeup.train.loop), the WSD trunk and its cooldown branches (sizeup.train.wsd)
and the coordinate check (sizeup.diagnostics.coord_check) all advance a model through
``Trainer.train_step``: forward through ``forward_loss`` and backward (once, or once per
micro-batch with gradient accumulation), gradient clipping, optimizer step, scheduler step,
zero_grad, the world-size mean of the loss, callbacks and the divergence test. One step means a
WSD branch *is* the `sizeup train` run of its length (clipping and divergence included), and the
coordinate check measures the run you are about to start.

Gradient accumulation (``micro_batch_size``): a step's batch is cut into k equal micro-batches,
each forward/backward pass is weighted by 1/k (its share of the batch), and the gradients add up
in ``.grad``. Every loss sizeup trains on is a mean over the batch's tokens (examples), so with
equal micro-batches the weighted sum of their means is the batch's mean, and the step (clipping,
optimizer, schedule: once) is the one-pass step to float rounding (tested in float64 to ~1e-12).
Under DDP (``no_sync``) and FSDP2 (``set_requires_gradient_sync(False)``) only the last pass
reduces gradients over the ranks, so a step costs one collective however many passes it takes.
This is the standard recipe: PyTorch's DDP ``no_sync`` and FSDP2 ``set_requires_gradient_sync``
docs, and nanoGPT's ``gradient_accumulation_steps`` (loss / k, sync on the last micro-step).

A Trainer holds the state of a run (model, optimizer, scheduler, data, step). It can advance,
be forked (model, optimizer and scheduler copied together, optionally onto a new schedule from
the current step) and finish (evaluate): a WSD branch is "fork the trunk at step s, give it the
WSD(T) schedule, advance to T, finish". ``save``/``load`` put the same state in a checkpoint
file (sizeup.train.checkpoint), so a branch can also start from a saved stable-phase trunk.
Every evaluation sees the weights ``averaged_weights`` gives (schedule-free AdamW's average).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from sizeup.train import checkpoint
from sizeup.wrapping import is_fully_sharded

if TYPE_CHECKING:  # pragma: no cover
    from sizeup.config import RunConfig
    from sizeup.train.build import Built, Callback

Batch = tuple[torch.Tensor, torch.Tensor]


def forward_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, Any]:
    """(logits, loss) from a sizeup-style ``forward(x, targets) -> (logits, loss)`` (z-loss and
    any other term are the model's own) or a plain ``forward(x)`` returning logits, a tuple
    whose first item they are, or a transformers ``ModelOutput`` (then mean cross-entropy over
    the last dimension, plus an MoE's router load-balancing loss when the model returns one:
    ``aux_loss`` x ``config.router_aux_loss_coef``, as transformers adds it). y holds the next
    tokens already, so a transformers model is not given ``labels`` (it would shift them
    again). A wrapper (DDP) is looked through for the signature, called as is."""
    inner = getattr(model, "module", model)  # DDP keeps the user's model in .module
    if "targets" in inspect.signature(inner.forward).parameters:
        logits, loss = model(x, targets=y)
        return logits, loss
    out = model(x)
    logits = output_logits(out)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1))
    aux = getattr(out, "aux_loss", None)
    coef = getattr(getattr(inner, "config", None), "router_aux_loss_coef", None)
    if isinstance(aux, torch.Tensor) and coef:
        loss = loss + coef * aux.to(loss.dtype)
    return logits, loss


def output_logits(out: Any) -> torch.Tensor:
    """The logits in a forward's output: a transformers ModelOutput's ``logits``, the first item
    of a tuple or list, or the output itself."""
    logits = getattr(out, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    return out[0] if isinstance(out, (tuple, list)) else out


def all_mean(value: float, world_size: int) -> float:
    """Mean of a float over the ranks of the process group (itself with one process)."""
    if world_size == 1:
        return value

    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t) / world_size


def autocast(device: str, enabled: bool) -> Any:
    """bf16 autocast on ``device`` (CUDA or CPU) when enabled: matmuls run in bf16, weights,
    gradients and optimizer state stay in the model's dtype and the loss is taken in fp32
    (forward_loss casts the logits). A no-op context when disabled."""
    kind = torch.device(device).type
    return torch.autocast(kind, dtype=torch.bfloat16, enabled=enabled)


def micro_batches(
    x: torch.Tensor, y: torch.Tensor, size: int | None
) -> list[tuple[torch.Tensor, torch.Tensor, float]]:
    """(x, y, share) for each pass over batch (x, y) in slices of ``size`` examples (sequences):
    consecutive slices, each weighted by its share of the batch (1/k for k equal ones), so the
    shares times the slices' mean losses sum to the batch's mean loss. One slice of share 1 when
    ``size`` is None or covers the batch."""
    n = int(x.shape[0])
    if size is None or size >= n:
        return [(x, y, 1.0)]
    return [(xs, ys, xs.shape[0] / n) for xs, ys in zip(x.split(size), y.split(size))]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Sequence[Batch],
    device: str = "cpu",
    amp: bool = False,
    micro_batch_size: int | None = None,
) -> float:
    """Mean loss over fixed validation batches (eval mode, no gradients; bf16 with ``amp``),
    each taken in passes of ``micro_batch_size`` examples (None: the whole batch at once), so a
    run that accumulates gradients also evaluates in the memory of a micro-batch."""
    was_training = model.training
    model.eval()
    total = 0.0
    for x, y in batches:
        for xs, ys, share in micro_batches(x, y, micro_batch_size):
            with autocast(device, amp):
                _, loss = forward_loss(model, xs.to(device), ys.to(device))
            total += share * float(loss)
    model.train(was_training)
    return total / max(1, len(batches))


def switches_modes(optimizer: Any) -> bool:
    """True for an optimizer with train/eval modes (schedule-free AdamW, the schedulefree
    package): it trains at one point y and evaluates at its average x."""
    return callable(getattr(optimizer, "eval", None)) and callable(
        getattr(optimizer, "train", None)
    )


@contextlib.contextmanager
def averaged_weights(model: nn.Module, optimizer: Any) -> Iterator[None]:
    """Within the block the model holds the weights an evaluation should see. For schedule-free
    AdamW that is the average x (``optimizer.eval()``, as the schedulefree package documents);
    after it the optimizer is back in train mode and the weights are the training point y
    exactly as before (restored from a copy: ``optimizer.train()``'s interpolation back would
    round, so evaluating would nudge the run). The copy lives while gradients are freed, so it
    adds nothing to the training step's peak memory. Other optimizers: nothing happens.

    The weights switched and restored are the optimizer's own parameters (under FSDP2 the
    shards, DTensors: after a forward without backward the model's root unit still lists its
    gathered full tensors), and FSDP2's gathered weights are freed after the block
    (``reshard``) so the next forward gathers y again rather than reusing the average."""
    if not switches_modes(optimizer):
        yield
        return
    params = [p for g in optimizer.param_groups for p in g["params"]]
    saved = [p.detach().clone() for p in params]
    optimizer.eval()
    try:
        yield
    finally:
        reshard(model)
        optimizer.train()
        with torch.no_grad():
            for p, y in zip(params, saved):
                p.copy_(y)


def reshard(model: nn.Module) -> None:
    """Free the full parameters FSDP2 gathered (each fully_shard unit's ``reshard``); a no-op
    for a model that is not sharded. An evaluation's forward leaves the root unit gathered
    (it reshards after backward, and an evaluation has none)."""
    for m in model.modules():
        if is_fully_sharded(m):
            m.reshard()


def _wrap(model: nn.Module, world_size: int, compile: bool = False) -> nn.Module:
    """The module the step calls: DDP (averages gradients over ranks), or the model itself on
    one process or when FSDP2 sharded it (it then reduce-scatters gradients itself); compiled
    in place with ``compile`` (``nn.Module.compile``: parameter names and state dicts are
    unchanged, so checkpoints and the parametrization table do not see it)."""

    out = model
    if world_size > 1 and not is_fully_sharded(model):
        out = DDP(model)
    if compile:
        out.compile()
    return out


@contextlib.contextmanager
def _fsdp_no_sync(model: nn.Module) -> Iterator[None]:
    """Within the block FSDP2 keeps gradients on each rank unreduced (they accumulate in its
    unsharded gradient buffers); after it the next backward reduce-scatters them with its own
    (``FSDPModule.set_requires_gradient_sync``, FSDP2's equivalent of FSDP1/DDP ``no_sync``)."""
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


@dataclass
class Trainer:
    """The state of one run and the one step that advances it.

    ``data`` serves ``batch_at(step)`` (a pure function of the step, so a fork draws the batches
    the run would have drawn) and ``val_batches()``. ``reference`` is the loss the divergence
    test compares with (the initial validation loss after ``start()``, else the first train
    loss). Callbacks are called after every step; a returned dict is logged under
    ``diagnostics[callback.name]``.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR | None = None
    data: Any = None
    grad_clip: float = 0.0
    diverge_factor: float = math.inf
    device: str = "cpu"
    world_size: int = 1
    callbacks: list[Callback] = field(default_factory=list)
    autocast: bool = False  # bf16 autocast of forward and backward
    compile: bool = False  # torch.compile the module the step calls
    micro_batch_size: int | None = None  # examples per forward/backward pass (None: the batch)
    step: int = 0
    reference: float = math.nan
    diverged_step: int | None = None
    diagnostics: dict[str, list] = field(default_factory=dict)
    train_model: nn.Module | None = None  # what the step calls (DDP on several ranks)
    last: dict[str, Any] = field(default_factory=dict)  # the callbacks' output at the last step
    lrs: list[float] = field(default_factory=list)  # each param group's lr at the last step

    def __post_init__(self) -> None:
        if self.train_model is None:
            self.train_model = _wrap(self.model, self.world_size, self.compile)

    @classmethod
    def from_built(cls, cfg: RunConfig, built: Built, world_size: int = 1) -> Trainer:
        """A Trainer at step 0 for a run built by ``sizeup.train.build(cfg)``."""
        return cls(
            model=built.model,
            optimizer=built.optimizer,
            scheduler=built.scheduler,
            data=built.data,
            grad_clip=cfg.optimizer.grad_clip,
            diverge_factor=cfg.run.diverge_factor,
            device=cfg.run.device,
            world_size=world_size,
            autocast=cfg.run.autocast,
            compile=cfg.run.compile,
            micro_batch_size=cfg.data.micro_batch_size,
        )

    @property
    def diverged(self) -> bool:
        """True once a step's loss was not finite or above diverge_factor x reference."""
        return self.diverged_step is not None

    # --- the step ----------------------------------------------------------------------------
    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """One optimizer step on batch (x, y); returns its loss (mean over ranks).

        The loss is the forward pass *before* the update, as every trainer logs it: with
        ``micro_batch_size`` the micro-batches' losses weighted by their shares, the mean over
        the whole batch. A step whose loss is not finite, or above diverge_factor x reference,
        marks the run diverged.
        """
        self.model.train()
        parts = micro_batches(x, y, self.micro_batch_size)
        losses = []
        for i, (xs, ys, share) in enumerate(parts):
            with self._sync(last=i == len(parts) - 1):
                with autocast(self.device, self.autocast):
                    _, loss = forward_loss(self.train_model, xs.to(self.device), ys.to(self.device))
                (loss if share == 1.0 else loss * share).backward()
            losses.append((share, loss.detach()))  # read after the loop: no sync in it
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.lrs = [g["lr"] for g in self.optimizer.param_groups]  # what this step uses
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        value = all_mean(sum(share * float(loss) for share, loss in losses), self.world_size)
        self._after_step(value)
        return value

    def _sync(self, last: bool) -> contextlib.AbstractContextManager:
        """Where a micro-batch's backward runs: the last pass of a step reduces the gradients
        over the ranks as usual; the earlier ones keep them local (DDP ``no_sync``, FSDP2
        ``set_requires_gradient_sync(False)``) to be reduced, summed, with the last."""
        if last:
            return contextlib.nullcontext()

        if isinstance(self.train_model, DDP):
            return self.train_model.no_sync()
        if is_fully_sharded(self.model):
            return _fsdp_no_sync(self.model)
        return contextlib.nullcontext()

    @torch.no_grad()
    def loss_on(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """The loss on (x, y) without a step (no gradients; the model stays as it is)."""
        total = 0.0
        for xs, ys, share in micro_batches(x, y, self.micro_batch_size):
            with autocast(self.device, self.autocast):
                _, loss = forward_loss(self.model, xs.to(self.device), ys.to(self.device))
            total += share * float(loss)
        return total

    def _after_step(self, value: float) -> None:
        """Callbacks, then the divergence test, then count the step."""
        if not math.isfinite(self.reference):
            self.reference = value
        self.last = {}
        for cb in self.callbacks:
            out = cb.on_step(self.step, self.model, value)
            if out is not None:
                name = getattr(cb, "name", type(cb).__name__)
                self.diagnostics.setdefault(name, []).append({"step": self.step, **out})
                self.last[name] = out
        if not math.isfinite(value) or value > self.diverge_factor * self.reference:
            self.diverged_step = self.step
        self.step += 1

    # --- stages ------------------------------------------------------------------------------
    def evaluate(self) -> float:
        """Mean validation loss (over ranks); NaN without validation batches. A schedule-free
        optimizer is switched to its averaged weights for it and back (``averaged_weights``)."""
        val = self.data.val_batches() if self.data is not None else []
        if not val:
            return math.nan
        with averaged_weights(self.model, self.optimizer):
            loss = evaluate(self.model, val, self.device, self.autocast, self.micro_batch_size)
        return all_mean(loss, self.world_size)

    def start(self) -> float:
        """The validation loss at init, which becomes the divergence test's reference."""
        self.reference = self.evaluate()
        return self.reference

    def advance(self, until: int, on_step: Callable[[int, float], None] | None = None) -> bool:
        """Train on batch_at(step) up to step ``until`` (exclusive) or until the run diverges;
        ``on_step(step, loss)`` after each. True when it got there without diverging."""
        while self.step < until and not self.diverged:
            step = self.step
            x, y = self.data.batch_at(step)
            value = self.train_step(x, y)
            if on_step is not None:
                on_step(step, value)
        return not self.diverged

    def fork(self, schedule: Callable[[int], float] | None = None) -> Trainer:
        """An independent copy at the same step: model, optimizer and scheduler copied together
        (one deepcopy keeps the optimizer state tied to the copied parameters). ``schedule``:
        the copy's lr multiplier from the current step on (default: the same schedule). Data is
        shared (batch_at is pure); callbacks are not carried over (they watch one model)."""
        model, opt = copy.deepcopy((self.model, self.optimizer))
        sched = None
        if self.scheduler is not None or schedule is not None:
            fn = schedule if schedule is not None else self.scheduler.lr_lambdas[0]
            # last_epoch = step - 1: LambdaLR's first internal step sets the lr of this step.
            sched = torch.optim.lr_scheduler.LambdaLR(opt, fn, last_epoch=self.step - 1)
        return Trainer(
            model=model,
            optimizer=opt,
            scheduler=sched,
            data=self.data,
            grad_clip=self.grad_clip,
            diverge_factor=self.diverge_factor,
            device=self.device,
            world_size=self.world_size,
            autocast=self.autocast,
            compile=self.compile,
            micro_batch_size=self.micro_batch_size,
            step=self.step,
            reference=self.reference,
            diverged_step=self.diverged_step,
        )

    # --- checkpoints ---------------------------------------------------------------------------
    def save(
        self, directory: str | Path, config: RunConfig, result: Any = None, keep: int | None = None
    ) -> Path | None:
        """Checkpoint this trainer at its step into ``directory`` (sizeup.train.checkpoint;
        every rank calls it, rank 0 writes). Returns the checkpoint's sidecar on rank 0."""

        return checkpoint.save(self, config, directory, result, keep)

    def load(self, path: str | Path, config: RunConfig, ignore: tuple[str, ...] = ()) -> dict:
        """Restore a checkpoint (a sidecar, a .pt file or a folder's newest) written by a run
        of ``config`` (fields in ``ignore`` may differ) into this trainer, built from
        ``config``; returns the checkpoint's contents."""

        state = checkpoint.read(path, config, ignore, trainer=self)
        checkpoint.restore(self, state)
        return state

    def finish(self) -> float:
        """The final validation loss; NaN for a run that diverged (or has no validation)."""
        return math.nan if self.diverged else self.evaluate()
