"""One training run: RunConfig in, RunResult out.

The loop is deliberately plain (nanoGPT-style): build (sizeup.train.build), then step, log,
evaluate. Every step is ``Trainer.train_step`` (sizeup.train.step), the one step the WSD branches
and the coordinate check take too. A run that blows up (NaN/inf, or a loss far above where it
started) stops early and is recorded as diverged rather than raised. On CPU one torch thread per
run by default, and a fixed seed reproduces a run bit for bit.

Under ``torchrun`` each rank takes its slice of the global batch and DDP (gloo on CPU) averages
the gradients, so N processes follow the same trajectory as one process on the whole batch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from sizeup.config import RunConfig, RunResult
from sizeup.models import num_params
from sizeup.progress import Progress
from sizeup.train.build import Built, Callback, build
from sizeup.train.step import Trainer, evaluate

__all__ = ["evaluate", "run"]


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
    trainer = Trainer.from_built(cfg, built, world_size=world_size)
    trainer.callbacks = list(callbacks or ()) + _monitors(cfg, built, built.data.val_batches())
    res = RunResult(config=cfg.to_dict())
    res.params = num_params(built.model, non_embedding=True)
    res.initial_val_loss = trainer.start()
    label = f"{cfg.model} w={cfg.width} d={cfg.depth} {cfg.rule} lr={cfg.lr:g}"
    with Progress(label, cfg.steps, enabled=progress and rank == 0) as bar:
        trainer.advance(cfg.steps, on_step=_logger(cfg, trainer, res, bar))
    _finish(cfg, trainer, res)
    res.wall_time = time.perf_counter() - t0
    res.tokens_per_s = res.tokens / res.wall_time if res.wall_time > 0 else 0.0
    return res


def _logger(
    cfg: RunConfig, trainer: Trainer, res: RunResult, bar: Progress
) -> Callable[[int, float], None]:
    """What happens after each step: log the train loss, evaluate every eval_every steps."""

    def on_step(step: int, loss: float) -> None:
        last = step == cfg.steps - 1
        if step % cfg.log_every == 0 or last or (trainer.diverged and res.steps[-1] != step):
            res.steps.append(step)
            res.train_loss.append(loss)
        if trainer.diverged:
            return
        if cfg.eval_every and (step + 1) % cfg.eval_every == 0 and not last:
            res.val_steps.append(step + 1)
            res.val_loss.append(trainer.evaluate())
        bar.advance(1, info=f"loss {loss:.4f}")

    return on_step


def _finish(cfg: RunConfig, trainer: Trainer, res: RunResult) -> None:
    """Tokens and FLOPs of the steps taken, the final evaluation and the divergence record."""
    done = trainer.step  # a diverged run stops after the step that blew up
    res.tokens = done * cfg.tokens_per_step
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
