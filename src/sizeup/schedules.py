"""Learning-rate schedules as multipliers of the peak lr, one value per step (for LambdaLR).

Convention: step s = 0 .. steps-1 is the s-th optimizer step; the multiplier f(s) applies to it.
f(steps) is the end value (0, or min_ratio), so the last real step still moves the weights.

    warmup    f(s) = (s + 1) / warmup for s < warmup (linear; multiplies the shape below)
    constant  1
    cosine    min + (1 - min) * (1 + cos(pi * p)) / 2,  p = (s - warmup) / (steps - warmup)
    wsd       1 until the last decay_frac * steps steps, then a cooldown over them with
              progress p = (s - D) / (steps - D):
                linear       min + (1 - min) * (1 - p)
                1-sqrt       min + (1 - min) * (1 - sqrt(p))      (Hagele et al. 2024, "Scaling
                             Laws and Compute-Optimal Training Beyond Fixed Training Durations")
                exponential  r^p, r = min_ratio or 0.01 (MiniCPM's exponential decay, Hu et al.
                             2024; it never reaches 0, so it ends at r)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sizeup.choices import COOLDOWNS, SCHEDULES
from sizeup.errors import ConfigError, check_choice, check_positive

EXP_FLOOR = 0.01  # where an exponential cooldown ends when min_ratio is 0 (it cannot reach 0)


@dataclass(frozen=True)
class Schedule:
    """A picklable lr multiplier f(step) (a dataclass, not a closure, so sweeps can ship it)."""

    kind: str
    steps: int
    warmup: int = 0
    decay_frac: float = 0.2
    cooldown: str = "linear"
    min_ratio: float = 0.0

    def __post_init__(self) -> None:
        check_choice("schedule", self.kind, SCHEDULES)
        check_positive("steps", self.steps, integer=True)
        if (
            isinstance(self.warmup, bool)
            or not isinstance(self.warmup, int)
            or not 0 <= self.warmup <= self.steps
        ):
            raise ConfigError("warmup", self.warmup, f"an integer between 0 and steps={self.steps}")
        if not (isinstance(self.decay_frac, (int, float)) and 0.0 <= self.decay_frac <= 1.0):
            raise ConfigError("decay_frac", self.decay_frac, "a fraction in [0, 1]")
        check_choice("cooldown", self.cooldown, COOLDOWNS)
        if not (isinstance(self.min_ratio, (int, float)) and 0.0 <= self.min_ratio < 1.0):
            raise ConfigError("min_ratio", self.min_ratio, "a number in [0, 1)")

    @property
    def decay_start(self) -> int:
        """First step of the WSD cooldown (steps for other kinds)."""
        if self.kind != "wsd":
            return self.steps
        return self.steps - round(self.decay_frac * self.steps)

    def __call__(self, step: int) -> float:
        """The lr multiplier for optimizer step ``step`` (clamped to [0, steps])."""
        s = min(max(int(step), 0), self.steps)
        warm = (s + 1) / self.warmup if s < self.warmup else 1.0
        lo = self.min_ratio
        if self.kind == "constant":
            return warm
        if self.kind == "cosine":
            p = (s - self.warmup) / max(1, self.steps - self.warmup) if s >= self.warmup else 0.0
            return warm * (lo + (1.0 - lo) * 0.5 * (1.0 + math.cos(math.pi * p)))
        d = self.decay_start
        if s < d:
            return warm
        p = (s - d) / max(1, self.steps - d)
        if self.cooldown == "linear":
            shape = lo + (1.0 - lo) * (1.0 - p)
        elif self.cooldown == "1-sqrt":
            shape = lo + (1.0 - lo) * (1.0 - math.sqrt(p))
        else:
            shape = (lo or EXP_FLOOR) ** p
        return warm * shape

    def values(self) -> list[float]:
        """f(0) .. f(steps-1), the multipliers the run's steps actually use."""
        return [self(s) for s in range(self.steps)]


def make_schedule(
    kind: str,
    steps: int,
    warmup: int = 0,
    decay_frac: float = 0.2,
    cooldown: str = "linear",
    min_ratio: float = 0.0,
) -> Schedule:
    """An lr multiplier per step: "constant", "cosine" or "wsd" (see module doc) with linear warmup."""
    return Schedule(kind, steps, warmup, decay_frac, cooldown, min_ratio)


def plot_schedule(
    schedules: Schedule | list[Schedule],
    path: str | Path | None = None,
    ax: Any = None,
    peak_lr: float = 1.0,
) -> Any:
    """Plot one or more schedules (lr = peak_lr * f(step)); save to ``path`` when given."""
    import matplotlib

    if ax is None and path is not None:
        matplotlib.use("Agg")  # headless: saving a file needs no display
    import matplotlib.pyplot as plt

    items = schedules if isinstance(schedules, list) else [schedules]
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    for sch in items:
        label = sch.kind if sch.kind != "wsd" else f"wsd ({sch.cooldown}, {sch.decay_frac:g})"
        ax.plot(range(sch.steps + 1), [peak_lr * sch(s) for s in range(sch.steps + 1)], label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate" if peak_lr != 1.0 else "lr / peak lr")
    ax.legend()
    ax.grid(alpha=0.3)
    if path is not None:
        ax.figure.tight_layout()
        ax.figure.savefig(path, dpi=120)
    return ax
