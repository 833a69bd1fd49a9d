"""One training run: RunConfig in, RunResult out.

The loop is deliberately plain (nanoGPT-style): build model and base, parametrize, build the
optimizer and schedule, then step, log, evaluate. A run that blows up (NaN/inf, or a loss far
above where it started) stops early and is recorded as diverged rather than raised. On CPU
one torch thread per run by default, and a fixed seed reproduces a run bit for bit.

Under ``torchrun`` each rank takes its slice of the global batch and DDP (gloo on CPU) averages
the gradients, so N processes follow the same trajectory as one process on the whole batch.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from sizeup.config import RunConfig, RunResult
from sizeup.errors import ConfigError
from sizeup.parametrization import Parametrization, parametrize

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}


class Callback(Protocol):
    """Called after every optimizer step; a returned dict is logged under diagnostics[name]."""

    name: str

    def on_step(self, step: int, model: nn.Module, loss: float) -> dict | None: ...


@dataclass
class Built:
    """The pieces of a run, for tools (coord checks, monitors) that drive training themselves."""

    model: nn.Module
    parametrization: Parametrization
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    data: Any


def sigma_for(cfg: RunConfig) -> float | str:
    """The base init std the parametrization uses (fixed sigma, or 'fan_in')."""
    mode = cfg.init_mode
    if mode == "auto":
        mode = "fixed" if cfg.model == "gpt" else "fan_in"
    return cfg.init_std if mode == "fixed" else "fan_in"


def build_models(cfg: RunConfig) -> tuple[nn.Module, nn.Module, nn.Module]:
    """The model (on cfg.device, in cfg.dtype), its base and a delta (shapes only, on meta)."""
    from sizeup.models import build_model

    base_depth = cfg.base_depth if cfg.base_depth is not None else cfg.depth
    with torch.device("meta"):
        base = build_model(cfg, width=cfg.base_width, depth=base_depth)
        # A second width tells which dimensions are width even when the model is at the base
        # width (where nothing differs from the base), so roles - and so Muon - are the same
        # at every width.
        delta = build_model(cfg, width=2 * cfg.base_width, depth=base_depth)
    model = build_model(cfg).to(device=cfg.device, dtype=DTYPES[cfg.dtype])
    return model, base, delta


def build(cfg: RunConfig, rank: int = 0, world_size: int = 1) -> Built:
    """Seed, build model + base, parametrize, optimizer, schedule and data for ``cfg``."""
    from sizeup.data import make_data
    from sizeup.schedules import make_schedule

    if cfg.device == "cpu":
        torch.set_num_threads(cfg.threads)
    elif cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device", cfg.device, "'cpu' (no CUDA device is available here)")
    torch.manual_seed(cfg.seed)
    model, base, delta = build_models(cfg)
    p = parametrize(model, base, delta=delta, rule=cfg.rule, sigma=sigma_for(cfg),
                    zero_readout=cfg.zero_readout, zero_query=cfg.zero_query,
                    base_depth=cfg.base_depth, depth=cfg.depth if cfg.base_depth else None,
                    depth_exponent=cfg.depth_exponent, optimizer=cfg.optimizer,
                    scale_eps=cfg.scale_eps)
    opt = p.optimizer(cfg.optimizer, lr=cfg.lr, weight_decay=cfg.weight_decay,
                      betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, momentum=cfg.momentum,
                      muon_scale=cfg.muon_scale, batch_size=cfg.batch_size,
                      base_batch_size=cfg.base_batch_size, muon_lr=cfg.muon_lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, make_schedule(cfg.schedule, cfg.steps, warmup=cfg.warmup,
                           decay_frac=cfg.decay_frac, cooldown=cfg.cooldown))
    data = make_data(cfg, rank=rank, world_size=world_size)
    return Built(model, p, opt, sched, data)


@torch.no_grad()
def evaluate(model: nn.Module, batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
             device: str = "cpu") -> float:
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


def _flops(cfg: RunConfig, model: nn.Module, tokens: int) -> tuple[int, float]:
    """(non-embedding parameter count, training FLOPs ~ 6 N D) for the run."""
    n = sum(p.numel() for name, p in model.named_parameters()
            if not (cfg.model == "gpt" and name.startswith("wte")))
    return n, 6.0 * n * tokens


def run(cfg: RunConfig, *, rank: int = 0, world_size: int = 1,
        callbacks: Sequence[Callback] | None = None, progress: bool = False,
        on_built: Callable[[Built], None] | None = None) -> RunResult:
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
    res.params, _ = _flops(cfg, model, 0)
    res.initial_val_loss = _all_mean(evaluate(model, val, cfg.device), world_size) if val else math.nan
    reference = res.initial_val_loss
    diag: dict[str, list] = {}
    bar = _progress(cfg, progress and rank == 0)
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
                    {"step": step, **out})
        if not math.isfinite(lv) or lv > cfg.diverge_factor * reference:
            res.diverged, res.diverged_step = True, step
            if res.steps[-1] != step:
                res.steps.append(step)
                res.train_loss.append(lv)
            break
        if cfg.eval_every and (step + 1) % cfg.eval_every == 0 and step + 1 < cfg.steps:
            res.val_steps.append(step + 1)
            res.val_loss.append(_all_mean(evaluate(model, val, cfg.device), world_size))
        if bar is not None:
            bar.update(1, loss=lv)
    if bar is not None:
        bar.close()
    done_steps = step + 1
    res.tokens = done_steps * cfg.tokens_per_step
    res.params, res.flops = _flops(cfg, model, res.tokens)
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

        mon = SpectralMonitor(built.model, every=cfg.spectral_every,
                              probe=val[0][0].to(cfg.device) if val else None,
                              parametrization=built.parametrization)
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


class _Bar:
    def __init__(self, total: int, desc: str):
        from tqdm.auto import tqdm

        self.t = tqdm(total=total, desc=desc, dynamic_ncols=True, leave=True)

    def update(self, n: int, loss: float) -> None:
        self.t.set_postfix(loss=f"{loss:.4f}", refresh=False)
        self.t.update(n)

    def close(self) -> None:
        self.t.close()


def _progress(cfg: RunConfig, enabled: bool) -> _Bar | None:
    if not enabled:
        return None
    return _Bar(cfg.steps, f"{cfg.model} w={cfg.width} d={cfg.depth} {cfg.rule} lr={cfg.lr:g}")


def run_distributed(cfg: RunConfig) -> RunResult:
    """Entry for ``torchrun``: init the process group from the environment (gloo on CPU) and run."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("gloo" if cfg.device == "cpu" else "nccl")
    if cfg.batch_size % world:
        raise ConfigError("batch_size", cfg.batch_size, f"a multiple of the world size {world}")
    try:
        return run(cfg, rank=rank, world_size=world)
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()
