"""One training run: RunConfig in, RunResult out.

The loop is deliberately plain (nanoGPT-style): build (sizeup.train.build), then step, log,
evaluate. Every step is ``Trainer.train_step`` (sizeup.train.step), the one step the WSD branches
and the coordinate check take too. A run that blows up (NaN/inf, or a loss far above where it
started) stops early and is recorded as diverged rather than raised. On CPU one torch thread per
run by default, and a fixed seed reproduces a run bit for bit.

Under ``torchrun`` each rank takes its slice of the global batch and DDP (gloo on CPU) averages
the gradients, so N processes follow the same trajectory as one process on the whole batch; with
``cfg.fsdp`` FSDP2 shards the model as well (sizeup.train.fsdp). With a ``Checkpointing`` the run
saves its whole state every few steps and at the end, and resumes from the newest checkpoint
(sizeup.train.checkpoint); loggers get the metrics (sizeup.train.loggers). RunResult records the
median step time and the MFU against the device's peak.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sizeup.config import RunConfig, RunResult
from sizeup.models import num_params
from sizeup.progress import Progress
from sizeup.train import checkpoint as ckpt
from sizeup.train.build import Built, Callback, build
from sizeup.train.loggers import MetricsLogger
from sizeup.train.step import Trainer, evaluate

__all__ = ["Checkpointing", "evaluate", "run"]


@dataclass
class Checkpointing:
    """Where and how often a run saves its state: every ``every`` steps (0: only at the end)
    and at the end, into ``directory``, keeping the newest ``keep`` (None: all). ``resume``
    continues from the newest checkpoint there (a fresh start when there is none); without it
    a folder that already holds checkpoints is refused before anything runs."""

    directory: str | Path
    every: int = 0
    resume: bool = False
    keep: int | None = 1


def run(
    cfg: RunConfig,
    *,
    rank: int = 0,
    world_size: int = 1,
    callbacks: Sequence[Callback] | None = None,
    progress: bool = False,
    on_built: Callable[[Built], None] | None = None,
    loggers: Sequence[MetricsLogger] = (),
    checkpoint: Checkpointing | None = None,
) -> RunResult:
    """Train one run from ``cfg`` and return its RunResult (a diverged run is recorded, not
    raised). ``loggers`` get the metrics (pass them on rank 0 only); ``checkpoint`` saves and
    resumes (see Checkpointing)."""
    cfg.validate()
    if checkpoint is not None and not checkpoint.resume:
        ckpt.check_fresh(checkpoint.directory)  # before any work: nothing is overwritten
    t0 = time.perf_counter()
    built = build(cfg, rank=rank, world_size=world_size)
    if on_built is not None:
        on_built(built)
    trainer = Trainer.from_built(cfg, built, world_size=world_size)
    trainer.callbacks = list(callbacks or ()) + _monitors(cfg, built, built.data.val_batches())
    res = RunResult(config=cfg.to_dict(), world_size=world_size)
    res.params = num_params(built.model, non_embedding=True)
    if not _resume(cfg, trainer, res, checkpoint):
        res.initial_val_loss = trainer.start()
    meter = _Meter(cfg, world_size, _flops_per_token(cfg, built.model))
    label = f"{cfg.model} w={cfg.width} d={cfg.depth} {cfg.rule} lr={cfg.lr:g}"
    with Progress(label, cfg.steps, enabled=progress and rank == 0) as bar:
        bar.advance(trainer.step)
        step_fn = _on_step(cfg, trainer, res, bar, list(loggers), meter, checkpoint)
        trainer.advance(cfg.steps, on_step=step_fn)
    if checkpoint is not None and res.resumed_from != trainer.step:
        # Before the final evaluation, which a resumed finished run then takes again.
        ckpt.save(trainer, cfg, checkpoint.directory, res, checkpoint.keep)
    _finish(cfg, trainer, res)
    res.wall_time = time.perf_counter() - t0
    res.tokens_per_s = res.tokens / res.wall_time if res.wall_time > 0 else 0.0
    meter.record(res)
    return res


def _resume(
    cfg: RunConfig, trainer: Trainer, res: RunResult, checkpoint: Checkpointing | None
) -> bool:
    """Load the newest checkpoint into trainer and res when asked to and one exists."""
    if checkpoint is None or not checkpoint.resume:
        return False
    side = ckpt.latest(checkpoint.directory)
    if side is None:
        return False
    state = ckpt.read(side, cfg)
    ckpt.restore(trainer, state)
    before = RunResult.from_dict(state["result"])
    for k in ("steps", "train_loss", "val_steps", "val_loss", "initial_val_loss"):
        setattr(res, k, getattr(before, k))
    res.resumed_from = trainer.step
    return True


def _flops_per_token(cfg: RunConfig, model: torch.nn.Module) -> float:
    """Training FLOPs per token (or example): the GPT's exact matmul count (attention and LM
    head included), 6 x parameters for the MLP."""
    from sizeup.laws.flops import gpt_exact_flops_per_token

    if cfg.model == "gpt":
        return gpt_exact_flops_per_token(cfg)
    return 6.0 * num_params(model)


def device_name(device: str) -> str:
    """The accelerator's name (torch.cuda.get_device_name) or "cpu"."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return torch.device(device).type


def peak_of(cfg: RunConfig) -> float:
    """One device's peak FLOP/s: cfg.peak_flops, else from the device's name (NaN: unknown)."""
    from sizeup.laws.flops import device_peak_flops

    if cfg.peak_flops is not None:
        return float(cfg.peak_flops)
    peak = device_peak_flops(device_name(cfg.device))
    return math.nan if peak is None else peak


class _Meter:
    """Step times, tokens/s over each logging window, and MFU against the devices' peak."""

    def __init__(self, cfg: RunConfig, world_size: int, flops_per_token: float):
        self.cfg, self.world, self.fpt = cfg, world_size, flops_per_token
        self.peak = peak_of(cfg)
        self.times: list[float] = []
        self.tokens: list[int] = []  # per step (a ramped run's steps differ)
        self.last = self.window = time.perf_counter()
        self.window_tokens = 0

    def tick(self, tokens: int) -> None:
        """Called after every step, with the tokens it took."""
        now = time.perf_counter()
        self.times.append(now - self.last)
        self.tokens.append(tokens)
        self.last = now
        self.window_tokens += tokens

    def mfu(self, tokens_per_s: float) -> float:
        """Achieved training FLOP/s over the peak of all devices."""
        return tokens_per_s * self.fpt / (self.peak * self.world)

    def metrics(self) -> dict[str, float]:
        """perf/tokens_per_s (and perf/mfu) since the previous call."""
        dt = self.last - self.window
        tps = self.window_tokens / dt if dt > 0 else math.nan
        self.window, self.window_tokens = self.last, 0
        return {"perf/tokens_per_s": tps, "perf/mfu": self.mfu(tps)}

    def record(self, res: RunResult) -> None:
        """Median step time (the first step, warm-up and compilation, left out) and MFU: at the
        full batch, tokens per step / median step time; a ramped run's steps take different
        batches, so its MFU is their tokens over their time."""
        times = self.times[1:] or self.times
        res.device_name = device_name(self.cfg.device)
        res.peak_flops = self.peak
        if times:
            res.step_time = statistics.median(times)
            rate = self.cfg.tokens_per_step / res.step_time
            if self.cfg.batch_ramp is not None:
                rate = sum(self.tokens[-len(times) :]) / sum(times)
            res.mfu = self.mfu(rate)


def _lrs(trainer: Trainer) -> dict[str, float]:
    """lr/<i>.<role>: the lr each param group used at the trainer's last step."""
    groups = trainer.optimizer.param_groups
    return {
        f"lr/{i}.{g.get('role', 'group')}": lr for i, (g, lr) in enumerate(zip(groups, trainer.lrs))
    }


def _flat(outputs: dict[str, dict]) -> dict[str, Any]:
    """Monitor outputs {"spectral": {"q/w": ..}} -> {"spectral/q/w": ..} (step left out)."""
    return {
        f"{name}/{k}": v for name, out in outputs.items() for k, v in out.items() if k != "step"
    }


def _on_step(
    cfg: RunConfig,
    trainer: Trainer,
    res: RunResult,
    bar: Progress,
    loggers: list[MetricsLogger],
    meter: _Meter,
    checkpoint: Checkpointing | None,
) -> Callable[[int, float], None]:
    """What happens after each step: record and log the train loss, evaluate every eval_every
    steps, checkpoint every checkpoint.every steps."""

    def on_step(step: int, loss: float) -> None:
        seen = cfg.tokens_for(step + 1)
        meter.tick(seen - cfg.tokens_for(step))
        last = step == cfg.steps - 1
        metrics = _flat(trainer.last)
        if step % cfg.log_every == 0 or last or (trainer.diverged and res.steps[-1] != step):
            res.steps.append(step)
            res.train_loss.append(loss)
            lrs = _lrs(trainer)
            metrics.update({"train/loss": loss, "train/tokens": seen, **lrs, **meter.metrics()})
        _log(loggers, step, metrics)
        if trainer.diverged:
            return
        if cfg.eval_every and (step + 1) % cfg.eval_every == 0 and not last:
            res.val_steps.append(step + 1)
            res.val_loss.append(trainer.evaluate())
            _log(loggers, step + 1, {"val/loss": res.val_loss[-1]})
        bar.advance(1, info=f"loss {loss:.4f}")
        every = checkpoint.every if checkpoint is not None else 0
        if every and trainer.step % every == 0 and not last:
            ckpt.save(trainer, cfg, checkpoint.directory, res, checkpoint.keep)

    return on_step


def _log(loggers: list[MetricsLogger], step: int, metrics: dict[str, Any]) -> None:
    if metrics:
        for lg in loggers:
            lg.log(step, metrics)


def _finish(cfg: RunConfig, trainer: Trainer, res: RunResult) -> None:
    """Tokens and FLOPs of the steps taken, the final evaluation and the divergence record."""
    done = trainer.step  # a diverged run stops after the step that blew up
    res.tokens = cfg.tokens_for(done)  # through the batch ramp when there is one
    res.flops = 6.0 * res.params * res.tokens
    res.diagnostics = trainer.diagnostics
    if not trainer.diverged and trainer.data.val_batches():
        res.final_val_loss = trainer.finish()
        if not math.isfinite(res.final_val_loss):
            trainer.diverged_step = done - 1
        res.val_steps.append(done)
        res.val_loss.append(res.final_val_loss)
    res.diverged, res.diverged_step = trainer.diverged, trainer.diverged_step
    tail = res.train_loss[-10:]
    res.final_train_loss = sum(tail) / len(tail) if tail and not res.diverged else math.nan


def _monitors(cfg: RunConfig, built: Built, val: Sequence) -> list[Callback]:
    """The diagnostics monitors that cfg asks for (spectral norms, gradient noise scale,
    attention and output logits)."""
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
    return out + _stability_monitors(cfg, built, val)


def _stability_monitors(cfg: RunConfig, built: Built, val: Sequence) -> list[Callback]:
    """Attention- and output-logit monitors (Wortsman et al. 2023) on the first val batch."""
    from sizeup.diagnostics import AttentionLogitMonitor, OutputLogitMonitor

    probe = val[0][0].to(cfg.device) if val else None
    out: list[Any] = []
    if cfg.attn_logits_every:
        out.append(AttentionLogitMonitor(built.model, cfg.attn_logits_every, probe))
    if cfg.output_logits_every:
        out.append(OutputLogitMonitor(cfg.output_logits_every, probe))
    return out
