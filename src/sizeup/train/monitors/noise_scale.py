"""Gradient noise scale (McCandlish, Kaplan, Amodei et al. 2018, "An Empirical Model of
Large-Batch Training", Appendix A.1).

A minibatch gradient G_B over B examples has E|G_B|^2 = |G|^2 + tr(Sigma)/B, where G is the
true gradient and Sigma the per-example gradient covariance. Measuring |G_B|^2 at two batch
sizes B_small < B_big gives unbiased estimates

    |G|^2     = (B_big |G_big|^2 - B_small |G_small|^2) / (B_big - B_small)
    tr(Sigma) = (|G_small|^2 - |G_big|^2) / (1/B_small - 1/B_big)

and the simple noise scale B_simple = tr(Sigma) / |G|^2, the batch size beyond which larger
batches stop paying off (the critical batch size is ~B_simple). Single estimates are noisy, and
|G|^2 can come out negative, so (as the paper advises) we keep an exponential moving average of
the numerator and the denominator separately and report their ratio.

B_big is the whole (global) batch of a step and B_small a micro-batch of it: we average
|G_small|^2 over the micro-batches (it is the same unbiased quantity, with less variance). Under
data parallelism (``world_size`` > 1) each rank takes its micro-batches of its slice of the
batch, and one all-reduce sums the micro-batch gradients and their squared norms over the ranks,
so B_big is the global batch, as the step that trains on it sees it. In a run
(``sizeup.train.loop``) the batch is a full training batch drawn from the run's stream far from
its own steps, and B_small is the run's ``micro_batch_size`` when it accumulates gradients (the
monitor's passes then need no more memory than the step's), else a quarter of a rank's batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from sizeup.errors import ConfigError, check_positive


def noise_scale_terms(
    g2_small: float, g2_big: float, b_small: float, b_big: float
) -> tuple[float, float]:
    """Unbiased (|G|^2, tr(Sigma)) from squared gradient norms at two batch sizes
    (McCandlish et al. 2018, eqs. A.2-A.3)."""
    check_positive("b_small", b_small)
    check_positive("b_big", b_big)
    if not b_big > b_small:
        raise ConfigError("b_big", b_big, f"a batch size larger than b_small={b_small}")
    g2 = (b_big * g2_big - b_small * g2_small) / (b_big - b_small)
    trace = (g2_small - g2_big) / (1.0 / b_small - 1.0 / b_big)
    return g2, trace


def gradient_sq_norms(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, Any], torch.Tensor],
    batch: Sequence[Any],
    microbatches: int,
    params: Sequence[torch.Tensor] | None = None,
    world_size: int = 1,
) -> tuple[float, float, int, int]:
    """(mean |G_small|^2 over micro-batches, |G_big|^2, B_small, B_big) for one batch.

    ``batch`` is a tuple of tensors sharing the first (example) dimension; ``loss_fn(model,
    micro_batch)`` must return the *mean* loss over its examples. Uses torch.autograd.grad, so
    the parameters' ``.grad`` (the trainer's) are left untouched. With ``world_size`` > 1 (a
    process group) ``batch`` is this rank's slice and every rank must call this: the result is
    the global batch's (B_big = world_size x this rank's batch), the same on every rank.
    """

    check_positive("microbatches", microbatches, integer=True)
    if microbatches < 2:
        raise ConfigError("microbatches", microbatches, "at least 2 (two batch sizes are needed)")
    n = int(batch[0].shape[0])
    if n % microbatches:
        raise ConfigError("microbatches", microbatches, f"a divisor of the batch size {n}")
    params = [p for p in (params or model.parameters()) if p.requires_grad]
    b_small = n // microbatches
    total = [torch.zeros_like(p, dtype=torch.float64) for p in params]
    g2_small = 0.0
    for k in range(microbatches):
        micro = tuple(t[k * b_small : (k + 1) * b_small] for t in batch)
        grads = torch.autograd.grad(loss_fn(model, micro), params, allow_unused=True)
        sq = 0.0
        for acc, g in zip(total, grads):
            if g is not None:
                acc += g.double()
                sq += float(g.double().pow(2).sum())
        g2_small += sq / microbatches
    if world_size > 1:
        g2_small = _sum_over_ranks(total, g2_small) / world_size
    # The full-batch mean gradient is the mean of the micro-batch mean gradients.
    count = microbatches * world_size
    g2_big = float(sum((t / count).pow(2).sum() for t in total))
    return g2_small, g2_big, b_small, n * world_size


def _sum_over_ranks(total: Sequence[torch.Tensor], g2_small: float) -> float:
    """Sum ``total`` (in place) and ``g2_small`` over the ranks in one all-reduce; returns the
    summed g2_small."""

    flat = torch.cat([t.reshape(-1) for t in total] + [total[0].new_tensor([g2_small])])
    dist.all_reduce(flat)
    offset = 0
    for t in total:
        t.copy_(flat[offset : offset + t.numel()].view_as(t))
        offset += t.numel()
    return float(flat[-1])


@dataclass
class NoiseScale:
    """EMA estimator of B_simple: feed it gradient norms at two batch sizes each step."""

    ema: float = 0.95
    g2: float = math.nan  # EMA of |G|^2
    trace: float = math.nan  # EMA of tr(Sigma)
    count: int = 0
    history: list[dict[str, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 0.0 <= self.ema < 1.0:
            raise ConfigError("ema", self.ema, "a number in [0, 1)")

    def update(
        self, g2_small: float, g2_big: float, b_small: float, b_big: float, step: int | None = None
    ) -> dict[str, float]:
        """Add one measurement; return {"g2", "trace", "b_simple"} (EMAs seeded with the first value)."""
        g2, trace = noise_scale_terms(g2_small, g2_big, b_small, b_big)
        self.count += 1
        if self.count == 1:
            self.g2, self.trace = g2, trace
        else:
            self.g2 = self.ema * self.g2 + (1 - self.ema) * g2
            self.trace = self.ema * self.trace + (1 - self.ema) * trace
        rec = {
            "step": self.count - 1 if step is None else step,
            "g2": self.g2,
            "trace": self.trace,
            "b_simple": self.b_simple,
            "g2_raw": g2,
            "trace_raw": trace,
        }
        self.history.append(rec)
        return rec

    @property
    def b_simple(self) -> float:
        """tr(Sigma)/|G|^2 from the EMAs (NaN before the first update or when |G|^2 <= 0)."""
        if not self.count or not self.g2 > 0:
            return math.nan
        return self.trace / self.g2


class NoiseScaleMonitor:
    """Trainer callback: every ``every`` steps draw a batch from ``batches()``, measure gradient
    norms over ``microbatches`` micro-batches and the whole batch, and log the EMA B_simple.
    With ``world_size`` > 1, ``batches()`` gives this rank's slice and B_big is the global batch
    (``gradient_sq_norms``)."""

    def __init__(
        self,
        batches: Callable[[], Sequence[Any]],
        loss_fn: Callable[[nn.Module, Any], torch.Tensor] | None = None,
        microbatches: int = 4,
        every: int = 10,
        ema: float = 0.95,
        world_size: int = 1,
    ):
        check_positive("every", every, integer=True)
        check_positive("microbatches", microbatches, integer=True)
        check_positive("world_size", world_size, integer=True)
        self.batches, self.microbatches, self.every = batches, microbatches, every
        self.world_size = world_size
        self.loss_fn = loss_fn or default_loss
        self.estimator = NoiseScale(ema=ema)

    def on_step(
        self, step: int, model: nn.Module, loss: float | None = None
    ) -> dict[str, float] | None:
        """Measure every ``every`` steps; return {"noise/g2", "noise/trace", "noise/b_simple"}."""
        if step % self.every:
            return None
        g2s, g2b, bs, bb = gradient_sq_norms(
            model, self.loss_fn, self.batches(), self.microbatches, world_size=self.world_size
        )
        rec = self.estimator.update(g2s, g2b, bs, bb, step=step)
        return {f"noise/{k}": v for k, v in rec.items() if k != "step"}

    def summary(self) -> dict[str, Any]:
        """{"noise_scale": history, "b_simple": latest} for RunResult.diagnostics."""
        return {"noise_scale": list(self.estimator.history), "b_simple": self.estimator.b_simple}


def default_loss(model: nn.Module, batch: Sequence[Any]) -> torch.Tensor:
    """Mean loss of a sizeup model on (x, y): ``model(x, targets=y)`` returns (logits, loss)."""
    x, y = batch[0], batch[1]
    return model(x, targets=y)[1]
