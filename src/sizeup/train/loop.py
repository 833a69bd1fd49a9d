"""One training run: RunConfig in, RunResult out.

The loop is deliberately plain (nanoGPT-style): build (sizeup.train.build), then step, log,
evaluate. A run that blows up (NaN/inf, or a loss far above where it started) stops early and is
recorded as diverged rather than raised. On CPU one torch thread per run by default, and a fixed
seed reproduces a run bit for bit.

Under ``torchrun`` each rank takes its slice of the global batch and DDP (gloo on CPU) averages
the gradients, so N processes follow the same trajectory as one process on the whole batch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from sizeup.config import RunConfig, RunResult
from sizeup.models import num_params
from sizeup.progress import Progress
from sizeup.train.build import Built, Callback, build


@torch.no_grad()
def evaluate(
    model: nn.Module, batches: Sequence[tuple[torch.Tensor, torch.Tensor]], device: str = "cpu"
) -> float:
    """Mean loss over fixed validation batches."""
    was_training = model.training
    model.eval()
    total = 0.0
    for x, y in batches:
        _, loss = model(x.to(device), y.to(device))
        total += float(loss)
    model.train(was_training)
    return total / max(1, len(batches))


def _all_mean(value: float, world_size: int) -> float:
    if world_size == 1:
        return value
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t) / world_size


def _flops(model: nn.Module, tokens: int) -> tuple[int, float]:
    """(non-embedding parameter count, training FLOPs ~ 6 N D) for the run."""
    n = num_params(model, non_embedding=True)
    return n, 6.0 * n * tokens


def run(
    cfg: RunConfig,
    *,
    rank: int = 0,
    world_size: int = 1,
    callbacks: Sequence[Callback] | None = None,
    progress: bool = False,
    on_built: Callable[[Built], None] | None = None,
) -> RunResult:
    """Train one run from ``cfg`` and return its RunResult (a diverged run is recorded, not raised)."""
    cfg.validate()
    t0 = time.perf_counter()
    built = build(cfg, rank=rank, world_size=world_size)
    if on_built is not None:
        on_built(built)
    model, opt, sched, data = built.model, built.optimizer, built.scheduler, built.data
    train_model: nn.Module = model
    if world_size > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        train_model = DDP(model)
    val = data.val_batches()
    callbacks = list(callbacks or ()) + _monitors(cfg, built, val)
    res = RunResult(config=cfg.to_dict())
    res.params, _ = _flops(model, 0)
    res.initial_val_loss = (
        _all_mean(evaluate(model, val, cfg.device), world_size) if val else math.nan
    )
    reference = res.initial_val_loss
    diag: dict[str, list] = {}
    bar = Progress(
        f"{cfg.model} w={cfg.width} d={cfg.depth} {cfg.rule} lr={cfg.lr:g}",
        cfg.steps,
        enabled=progress and rank == 0,
    )
    bar.__enter__()
    model.train()
    step = 0
    for step in range(cfg.steps):
        x, y = data.next_train()
        _, loss = train_model(x.to(cfg.device), y.to(cfg.device))
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        lv = _all_mean(float(loss.detach()), world_size)
        if not math.isfinite(reference):
            reference = lv
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            res.steps.append(step)
            res.train_loss.append(lv)
        for cb in callbacks or ():
            out = cb.on_step(step, model, lv)
            if out is not None:
                diag.setdefault(getattr(cb, "name", type(cb).__name__), []).append(
                    {"step": step, **out}
                )
        if not math.isfinite(lv) or lv > cfg.diverge_factor * reference:
            res.diverged, res.diverged_step = True, step
            if res.steps[-1] != step:
                res.steps.append(step)
                res.train_loss.append(lv)
            break
        if cfg.eval_every and (step + 1) % cfg.eval_every == 0 and step + 1 < cfg.steps:
            res.val_steps.append(step + 1)
            res.val_loss.append(_all_mean(evaluate(model, val, cfg.device), world_size))
        bar.advance(1, info=f"loss {lv:.4f}")
    bar.__exit__(None, None, None)
    done_steps = step + 1
    res.tokens = done_steps * cfg.tokens_per_step
    res.params, res.flops = _flops(model, res.tokens)
    if not res.diverged and val:
        res.final_val_loss = _all_mean(evaluate(model, val, cfg.device), world_size)
        if not math.isfinite(res.final_val_loss):
            res.diverged, res.diverged_step = True, step
        res.val_steps.append(done_steps)
        res.val_loss.append(res.final_val_loss)
    tail = [v for v in res.train_loss[-10:]]
    res.final_train_loss = sum(tail) / len(tail) if tail and not res.diverged else math.nan
    res.wall_time = time.perf_counter() - t0
    res.tokens_per_s = res.tokens / res.wall_time if res.wall_time > 0 else 0.0
    res.diagnostics = diag
    return res


def _monitors(cfg: RunConfig, built: Built, val: Sequence) -> list[Callback]:
    """The diagnostics monitors that cfg asks for (spectral norms, gradient noise scale)."""
    out: list[Any] = []
    if cfg.spectral_every:
        from sizeup.diagnostics import SpectralMonitor

        mon = SpectralMonitor(
            built.model,
            every=cfg.spectral_every,
            probe=val[0][0].to(cfg.device) if val else None,
            parametrization=built.parametrization,
        )
        mon.name = "spectral"
        out.append(mon)
    if cfg.noise_every:
        from sizeup.diagnostics import NoiseScaleMonitor

        # Draw the noise-scale batches far from the training stream's steps, so measuring
        # does not change which batches the run trains on.
        counter = iter(range(2**40, 2**41))

        def batches() -> Any:
            x, y = built.data.batch_at(next(counter))
            return x.to(cfg.device), y.to(cfg.device)

        ns = NoiseScaleMonitor(batches, every=cfg.noise_every)
        ns.name = "noise_scale"
        out.append(ns)
    return out
