"""What the step-time benchmarks share: the reference GPT, random byte batches and variants
timed alternately in one process (round-robin blocks of steps, the order reversed every other
round), so machine noise hits every variant alike; each variant's median seconds per step, or
the median over rounds of its ratio to a baseline timed in the same round."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

Loss = Callable[[Any, torch.Tensor, torch.Tensor], torch.Tensor]


def reference_gpt(width: int = 256, n_layer: int = 4, head_dim: int = 64, seq_len: int = 128):
    """The benchmarks' reference GPT (d_model 256, 4 layers, heads of 64, byte vocabulary,
    128-token sequences unless told), plain init."""
    from sizeup.models import GPT, GPTConfig

    cfg = GPTConfig(
        d_model=width, n_layer=n_layer, head_dim=head_dim, vocab_size=256, seq_len=seq_len
    )
    return GPT(cfg)


def byte_batches(steps: int, batch: int = 8, seq: int = 128, seed: int = 0) -> list[tuple]:
    """``steps`` (inputs, targets) pairs of random bytes, targets shifted by one."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(steps):
        t = torch.randint(0, 256, (batch, seq + 1), generator=g)
        out.append((t[:, :-1], t[:, 1:]))
    return out


def _steps(
    loss_fn: Loss,
    model: Any,
    opt: torch.optim.Optimizer,
    batches: list,
    sync: Callable[[], None] = lambda: None,
) -> float:
    sync()
    t0 = time.perf_counter()
    for x, y in batches:
        loss_fn(model, x, y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    sync()
    return (time.perf_counter() - t0) / len(batches)


def step_times(
    variants: dict[str, tuple[Any, torch.optim.Optimizer]],
    batches: list,
    rounds: int,
    loss_fn: Loss,
    sync: Callable[[], None] = lambda: None,
) -> dict[str, list[float]]:
    """Seconds per step of each (model, optimizer) variant in each round, after a 2-step
    warm-up. ``sync`` waits for the device (torch.cuda.synchronize on a GPU)."""
    for m, o in variants.values():
        m.train()
        _steps(loss_fn, m, o, batches[:2], sync)
    times: dict[str, list[float]] = {k: [] for k in variants}
    for r in range(rounds):
        order = list(variants) if r % 2 == 0 else list(reversed(variants))
        for k in order:
            times[k].append(_steps(loss_fn, *variants[k], batches, sync))
    return times


def median_step_times(
    variants: dict[str, tuple[Any, torch.optim.Optimizer]],
    batches: list,
    rounds: int,
    loss_fn: Loss,
) -> dict[str, float]:
    """Median seconds per step of each (model, optimizer) variant, after a 2-step warm-up."""
    times = step_times(variants, batches, rounds, loss_fn)
    return {k: statistics.median(v) for k, v in times.items()}


def median_ratio(times: dict[str, list[float]], variant: str, baseline: str) -> float:
    """The median over rounds of variant's step time / baseline's in the same round."""
    return statistics.median(a / b for a, b in zip(times[variant], times[baseline]))
