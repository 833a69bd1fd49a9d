"""One training run: RunConfig in, RunResult out.

The loop is deliberately plain (nanoGPT-style): build (sizeup.train.build), then step, log,
evaluate. Every step is ``Trainer.train_step`` (sizeup.train.step), the one step the WSD branches
and the coordinate check take too. A run that blows up (NaN/inf, or a loss far above where it
started) stops early and is recorded as diverged rather than raised; a run that ends collapsed
to the uniform predictor's loss is recorded diverged too (``collapsed``). On CPU one torch
thread per run by default, and a fixed seed reproduces a run bit for bit.

Under ``torchrun`` each rank takes its slice of the global batch and DDP (gloo on CPU) averages
the gradients, so N processes follow the same trajectory as one process on the whole batch; with
``run.fsdp`` FSDP2 shards the model as well (sizeup.train.fsdp). With ``data.micro_batch_size``
each step accumulates gradients over micro-batches (sizeup.train.step); tokens, FLOPs, MFU and
the noise-scale monitor still count the full batch of a step. With a ``Checkpointing`` the run
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
from sizeup.data import TEACHER_CLASSES
from sizeup.flops import device_peak_flops
from sizeup.models import num_params
from sizeup.progress import Progress
from sizeup.registry import get_model
from sizeup.train import checkpoint as ckpt
from sizeup.train.build import Built, Callback, build
from sizeup.train.loggers import MetricsLogger
from sizeup.train.monitors.noise_scale import NoiseScaleMonitor
from sizeup.train.monitors.spectral import SpectralMonitor
from sizeup.train.monitors.stability import AttentionLogitMonitor, OutputLogitMonitor
from sizeup.train.step import Trainer, evaluate

__all__ = ["Checkpointing", "collapsed", "evaluate", "run", "uniform_loss"]

# A run that ends at the loss of the uniform predictor has collapsed (e.g. lr 1e6: every output
# saturates, and the model answers every input with the same uniform distribution): its loss is
# ln(classes) on every batch, to float32 rounding (9.7e-7 nats from ln 256 measured on the byte
# corpus). A model whose output still depends on its input scores differently on different
# batches, by orders of magnitude more (~1e-2 nats at init in the tests' tiny GPTs; 1e-5 nats
# after five steps at lr 1e-6 even from a zero readout, which starts at exactly ln 256). So:
# within COLLAPSE_TOL of ln(classes) on the final evaluation and on each of the last
# COLLAPSE_TAIL train batches after the first update, whether it came up (the byte corpus' init,
# 5.537) or down (an SP fan_in init, 6.01) to it. Recorded as diverged (sizeup.sweep: not a point
# of the lr curve). A zero-readout run whose loss moves less than COLLAPSE_TOL in its whole run
# learned nothing measurable and cannot be told from a collapsed one: it counts as collapsed.
COLLAPSE_TOL = 1e-5
COLLAPSE_TAIL = 3


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
    if checkpoint is not None and not checkpoint.resume:
        ckpt.check_fresh(checkpoint.directory)  # before any work: nothing is overwritten
    t0 = time.perf_counter()
    built = build(cfg, rank=rank, world_size=world_size)
    if on_built is not None:
        on_built(built)
    trainer = Trainer.from_built(cfg, built, world_size=world_size)
    monitors = _monitors(cfg, built, built.data.val_batches(), world_size)
    trainer.callbacks = list(callbacks or ()) + monitors
    res = RunResult(config=cfg.to_dict(), world_size=world_size)
    res.params = num_params(built.model, non_embedding=True)
    if not _resume(cfg, trainer, res, checkpoint):
        res.initial_val_loss = trainer.start()
    sinks = list(loggers)
    _log_validations(sinks, trainer, res)
    meter = _Meter(cfg, world_size, _flops_per_token(cfg))
    m = cfg.model
    label = f"{m.name} w={m.width} d={m.depth} {cfg.parametrization.rule} lr={cfg.optimizer.lr:g}"
    with Progress(label, cfg.schedule.steps, enabled=progress and rank == 0) as bar:
        bar.advance(trainer.step)
        step_fn = _on_step(cfg, trainer, res, bar, sinks, meter, checkpoint)
        trainer.advance(cfg.schedule.steps, on_step=step_fn)
    if checkpoint is not None and res.resumed_from != trainer.step:
        # Before the final evaluation, which a resumed finished run then takes again.
        _save(trainer, cfg, checkpoint, res, sinks)
    _finish(cfg, trainer, res, sinks)
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
    state = ckpt.read(side, cfg, trainer=trainer)  # every part checked before any is applied
    ckpt.restore(trainer, state)
    for k, v in ckpt.history(state).items():
        setattr(res, k, v)
    res.resumed_from = trainer.step
    return True


def _flops_per_token(cfg: RunConfig) -> float:
    """Training FLOPs per token (or example) of the run's model: its family's count
    (sizeup.registry; the GPT's exact matmul count, attention and LM head included; 6 x
    parameters for the MLP)."""
    return get_model(cfg.model.name).flops(cfg.model)


def device_name(device: str) -> str:
    """The accelerator's name (torch.cuda.get_device_name) or "cpu"."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return torch.device(device).type


def peak_of(cfg: RunConfig) -> float:
    """One device's peak FLOP/s: cfg.run.peak_flops, else from the device's name (NaN: unknown)."""
    if cfg.run.peak_flops is not None:
        return float(cfg.run.peak_flops)
    peak = device_peak_flops(device_name(cfg.run.device))
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
        res.device_name = device_name(self.cfg.run.device)
        res.peak_flops = self.peak
        if times:
            res.step_time = statistics.median(times)
            rate = self.cfg.tokens_per_step / res.step_time
            if self.cfg.data.batch_ramp is not None:
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
        last = step == cfg.schedule.steps - 1
        metrics = _flat(trainer.last)
        if (
            step % cfg.monitor.log_every == 0
            or last
            or (trainer.diverged and res.steps[-1] != step)
        ):
            res.steps.append(step)
            res.train_loss.append(loss)
            lrs = _lrs(trainer)
            metrics.update({"train/loss": loss, "train/tokens": seen, **lrs, **meter.metrics()})
        _log(loggers, step, metrics)
        if trainer.diverged:
            return
        if cfg.data.eval_every and (step + 1) % cfg.data.eval_every == 0 and not last:
            res.val_steps.append(step + 1)
            res.val_loss.append(trainer.evaluate())
            _log(loggers, step + 1, {"val/loss": res.val_loss[-1]})
        bar.advance(1, info=f"loss {loss:.4f}")
        every = checkpoint.every if checkpoint is not None else 0
        if every and trainer.step % every == 0 and not last:
            _save(trainer, cfg, checkpoint, res, loggers)

    return on_step


def _log(loggers: list[MetricsLogger], step: int, metrics: dict[str, Any]) -> None:
    if metrics:
        for lg in loggers:
            lg.log(step, metrics)


def _log_validations(loggers: list[MetricsLogger], trainer: Trainer, res: RunResult) -> None:
    """Log the validation losses the loggers do not hold yet at the start: a fresh run's initial
    one (step 0); a resumed run's at its checkpoint step, taken before the checkpoint was saved,
    whose line or event the resumed loggers dropped (they keep only the steps before it)."""
    if not trainer.data.val_batches():
        return
    start = res.resumed_from or 0
    taken = [(0, res.initial_val_loss), *zip(res.val_steps, res.val_loss)]
    for step, loss in taken:
        if step >= start:
            _log(loggers, step, {"val/loss": loss})


def _save(
    trainer: Trainer,
    cfg: RunConfig,
    checkpoint: Checkpointing,
    res: RunResult,
    loggers: list[MetricsLogger],
) -> None:
    """Checkpoint the run, and flush the loggers that can (TensorBoard buffers its events): a
    killed run's logs then hold everything up to its newest checkpoint, where a resume logs on."""
    ckpt.save(trainer, cfg, checkpoint.directory, res, checkpoint.keep)
    for lg in loggers:
        flush = getattr(lg, "flush", None)
        if callable(flush):
            flush()


def _finish(cfg: RunConfig, trainer: Trainer, res: RunResult, loggers: list[MetricsLogger]) -> None:
    """Tokens and FLOPs of the steps taken, the final evaluation (logged, as every evaluation
    is) and the divergence record."""
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
        _log(loggers, done, {"val/loss": res.final_val_loss})
    onset = None if trainer.diverged else collapsed(res, uniform_loss(cfg))
    if onset is not None:
        trainer.diverged_step = onset
        res.final_val_loss = math.nan  # a diverged run has no final loss (the curve keeps it)
        res.error = (
            f"collapsed to the uniform predictor's loss ln {_classes(cfg)} = "
            f"{uniform_loss(cfg):.4f} from step {onset} (its output no longer depends on "
            "its input): counted as diverged"
        )
    res.diverged, res.diverged_step = trainer.diverged, trainer.diverged_step
    tail = res.train_loss[-10:]
    res.final_train_loss = sum(tail) / len(tail) if tail and not res.diverged else math.nan


def _classes(cfg: RunConfig) -> int:
    """How many outcomes the model predicts among: the vocabulary, or the teacher's classes."""
    return cfg.model.vocab_size if get_model(cfg.model.name).data == "tokens" else TEACHER_CLASSES


def uniform_loss(cfg: RunConfig) -> float:
    """The cross-entropy of the uniform predictor, ln(classes): what a collapsed model scores."""
    return math.log(_classes(cfg))


def collapsed(res: RunResult, uniform: float, tol: float = COLLAPSE_TOL) -> int | None:
    """The step from which the run sits at the ``uniform`` loss when it ended there (module
    comment at COLLAPSE_TOL: the final evaluation, when there is one, and the last
    COLLAPSE_TAIL train losses after the first update all within ``tol`` of it); None
    otherwise."""
    after = [(s, v) for s, v in zip(res.steps, res.train_loss, strict=False) if s >= 1]
    ends = [v for _, v in after[-COLLAPSE_TAIL:]]
    if math.isfinite(res.final_val_loss):
        ends.append(res.final_val_loss)
    if not ends or not all(abs(v - uniform) <= tol for v in ends):
        return None
    onset = after[-1][0] + 1 if after else 1
    for s, v in reversed(after):
        if abs(v - uniform) > tol:
            break
        onset = s
    return onset


def _probe(cfg: RunConfig, val: Sequence) -> Any:
    """The monitors' probe inputs: the first val batch, cut to one micro-batch when the run
    accumulates gradients (a probe pass then needs no more memory than a training pass)."""
    return val[0][0][: cfg.data.micro_batch_size].to(cfg.run.device) if val else None


def _monitors(cfg: RunConfig, built: Built, val: Sequence, world_size: int = 1) -> list[Callback]:
    """The diagnostics monitors that cfg asks for (spectral norms, gradient noise scale,
    attention and output logits)."""
    out: list[Any] = []
    if cfg.monitor.spectral_every:
        mon = SpectralMonitor(
            built.model,
            every=cfg.monitor.spectral_every,
            probe=_probe(cfg, val),
            parametrization=built.parametrization,
        )
        mon.name = "spectral"
        out.append(mon)
    if cfg.monitor.noise_every:
        out.append(_noise_monitor(cfg, built, world_size))
    return out + _stability_monitors(cfg, built, val)


def _noise_monitor(cfg: RunConfig, built: Built, world_size: int) -> Callback:
    """The gradient-noise-scale monitor (sizeup.train.monitors.noise_scale) on full training
    batches: B_big is the global batch of a step (each rank measures its slice, one all-reduce
    joins them) and B_small the run's micro-batch when it accumulates gradients (k passes per
    rank, each the size of a training pass), else a quarter of a rank's batch."""
    # Draw the noise-scale batches far from the training stream's steps, so measuring does not
    # change which batches the run trains on.
    counter = iter(range(2**40, 2**41))
    device = cfg.run.device

    def batches() -> Any:
        x, y = built.data.batch_at(next(counter))
        return x.to(device), y.to(device)

    local = cfg.data.batch_size // world_size
    micro = cfg.data.micro_batch_size
    passes = local // micro if micro else 1
    ns = NoiseScaleMonitor(
        batches,
        microbatches=passes if passes > 1 else 4,
        every=cfg.monitor.noise_every,
        world_size=world_size,
    )
    ns.name = "noise_scale"
    return ns


def _stability_monitors(cfg: RunConfig, built: Built, val: Sequence) -> list[Callback]:
    """Attention- and output-logit monitors (Wortsman et al. 2023) on the first val batch (one
    micro-batch of it when the run accumulates gradients)."""
    probe = _probe(cfg, val)
    out: list[Any] = []
    if cfg.monitor.attn_logits_every:
        out.append(AttentionLogitMonitor(built.model, cfg.monitor.attn_logits_every, probe))
    if cfg.monitor.output_logits_every:
        out.append(OutputLogitMonitor(cfg.monitor.output_logits_every, probe))
    return out
