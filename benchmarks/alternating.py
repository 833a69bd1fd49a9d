"""What the step-time benchmarks share: random byte batches and variants timed alternately in
one process (round-robin blocks of steps, the order reversed every other round), so machine
noise hits every variant alike; each variant's median seconds per step."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

Loss = Callable[[Any, torch.Tensor, torch.Tensor], torch.Tensor]


def byte_batches(steps: int, batch: int = 8, seq: int = 128, seed: int = 0) -> list[tuple]:
    """``steps`` (inputs, targets) pairs of random bytes, targets shifted by one."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(steps):
        t = torch.randint(0, 256, (batch, seq + 1), generator=g)
        out.append((t[:, :-1], t[:, 1:]))
    return out


def _steps(loss_fn: Loss, model: Any, opt: torch.optim.Optimizer, batches: list) -> float:
    t0 = time.perf_counter()
    for x, y in batches:
        loss_fn(model, x, y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return (time.perf_counter() - t0) / len(batches)


def median_step_times(
    variants: dict[str, tuple[Any, torch.optim.Optimizer]],
    batches: list,
    rounds: int,
    loss_fn: Loss,
) -> dict[str, float]:
    """Median seconds per step of each (model, optimizer) variant, after a 2-step warm-up."""
    for m, o in variants.values():
        m.train()
        _steps(loss_fn, m, o, batches[:2])
    times: dict[str, list[float]] = {k: [] for k in variants}
    for r in range(rounds):
        order = list(variants) if r % 2 == 0 else list(reversed(variants))
        for k in order:
            times[k].append(_steps(loss_fn, *variants[k], batches))
    return {k: statistics.median(v) for k, v in times.items()}
