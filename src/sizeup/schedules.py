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
    multistep the multiplier of the last milestone passed, milestones (q, m) at a fraction q
              of the run's tokens (DeepSeek LLM: 1 until 80%, 0.316 until 90%, then 0.1)
    power     min(1, a n^b / peak_lr), n the tokens seen before the step (Shen et al. 2024, "Power
              Scheduler: A Batch Size and Token Number Agnostic Learning Rate Scheduler":
              lr = min(eta_max, a n^b)), then the last decay_frac of the steps cool down from
              the value reached, in the cooldown's shape

A BatchRamp gives the batch (in tokens) by tokens seen: a doubling ramp on a token schedule
(DeepSeek-V2/V3 grow the batch over their first tokens) or where a critical-batch law says the
batch may double (MiniMax-01). A schedule given the ramp counts tokens through it, so "power" and
"multistep" follow the tokens a ramped run actually sees. Convention: a step's batch is the one
its stage gives at the tokens seen before it; the run ends with the first step that reaches
the token budget (so it may pass it by less than one batch).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sizeup.choices import COOLDOWNS, SCHEDULES
from sizeup.errors import ConfigError, check_choice, check_positive

EXP_FLOOR = 0.01  # where an exponential cooldown ends when min_ratio is 0 (it cannot reach 0)
# DeepSeek LLM's multi-step schedule (DeepSeek-AI 2024, "DeepSeek LLM: Scaling Open-Source
# Language Models with Longtermism", section 2.3): after 80% of the training tokens the lr steps
# to 31.6% of its maximum, after 90% to 10%. The default milestones of "multistep" everywhere
# (a run config, the planner, the deepseek-v1 preset's fitting setup).
DEEPSEEK_LLM_MILESTONES: tuple[tuple[float, float], ...] = ((0.8, 0.316), (0.9, 0.1))
# (fraction of the run's tokens, lr multiplier) pairs of a multistep schedule, and the stages
# (from_tokens, batch_size) of a run's batch ramp (batch in sequences, or examples for the MLP).
Milestones = tuple[tuple[float, float], ...]
RampStages = tuple[tuple[float, int], ...]


@dataclass(frozen=True)
class BatchRamp:
    """The batch in tokens by tokens seen: ``stages`` are (from_tokens, batch_tokens), the
    first from 0, in increasing order of tokens. A frozen dataclass, so runs and sweeps can
    ship it."""

    stages: tuple[tuple[float, int], ...]

    def __post_init__(self) -> None:
        st = self.stages
        allowed = "(from_tokens, batch_tokens) stages, the first from 0, tokens increasing"
        if not st or st[0][0] != 0:
            raise ConfigError("batch_ramp", st, allowed)
        if any(b[0] <= a[0] for a, b in zip(st, st[1:])):
            raise ConfigError("batch_ramp", st, allowed)
        for _, batch in st:
            check_positive("batch_tokens", batch, integer=True)

    def batch_at(self, tokens: float) -> int:
        """The batch of a step that starts after ``tokens`` tokens."""
        return next(b for t, b in reversed(self.stages) if tokens >= t)

    def _walk(self, total: float, max_steps: float = math.inf) -> tuple[int, float]:
        """(steps, tokens) after running until ``total`` tokens or ``max_steps`` steps."""
        steps, n = 0, 0.0
        for i, (_, batch) in enumerate(self.stages):
            end = self.stages[i + 1][0] if i + 1 < len(self.stages) else math.inf
            if n >= end:
                continue
            left = min(end, total) - n
            k = math.ceil(left / batch) if math.isfinite(left) else math.inf
            k = int(max(0, min(k, max_steps - steps)))
            steps, n = steps + k, n + k * batch
            if n >= total or steps >= max_steps:
                break
        return steps, n

    def steps_for(self, total_tokens: float) -> int:
        """Optimizer steps to see ``total_tokens`` tokens."""
        return self._walk(total_tokens)[0]

    def tokens_before(self, step: int) -> float:
        """Tokens seen before optimizer step ``step``."""
        return self._walk(math.inf, step)[1]

    def table(self, total_tokens: float) -> list[dict[str, float]]:
        """One row per stage the run reaches: where it starts (switch_tokens), its first step
        and the tokens seen before it, its batch, and how many steps it runs."""
        rows = []
        for t, batch in self.stages:
            first, seen = self._walk(t)
            if seen >= total_tokens and rows:
                break
            rows.append(
                {"switch_tokens": t, "from_step": first, "from_tokens": seen, "batch_tokens": batch}
            )
        ends = [r["from_step"] for r in rows[1:]] + [self.steps_for(total_tokens)]
        for row, end in zip(rows, ends):
            row["steps"] = end - row["from_step"]
        return rows

    def scaled(self, factor: int) -> BatchRamp:
        """The same ramp with every batch multiplied by ``factor`` (a run config's batches in
        sequences -> tokens: factor = seq_len)."""
        return BatchRamp(tuple((t, b * factor) for t, b in self.stages))

    @classmethod
    def doubling(cls, start: int, final: int, switches: list[float]) -> BatchRamp:
        """start, 2 start, 4 start, ... switching at the given tokens, the last stage ``final``
        (``switches`` has one entry per stage after the first)."""
        batches = [min(start * 2**k, final) for k in range(len(switches))] + [final]
        return cls(tuple(zip([0.0, *switches], batches[: len(switches) + 1])))


def _doublings(start: int, final: int) -> int:
    """How many times the batch doubles from start on its way to final (at least once)."""
    check_positive("ramp_start_batch", start, integer=True)
    if final <= start:
        raise ConfigError("ramp_start_batch", start, f"below the final batch {final}")
    return math.ceil(math.log2(final / start) - 1e-12)


def token_ramp(start: int, final: int, ramp_tokens: float) -> BatchRamp:
    """Double the batch from ``start`` at evenly spaced tokens, reaching ``final`` (which caps
    the last doubling) after ``ramp_tokens`` tokens, as DeepSeek-V2/V3 grow their batch over
    their first tokens (how they step it is theirs; sizeup doubles at even intervals)."""
    check_positive("ramp_tokens", ramp_tokens)
    k = _doublings(start, final)
    return BatchRamp.doubling(start, final, [ramp_tokens * j / k for j in range(1, k + 1)])


def loss_ramp(
    start: int, final: int, critical_batch: Callable[[float], float], total_tokens: float
) -> BatchRamp:
    """Double the batch where the critical batch of the loss reached after n tokens first
    reaches the doubled batch, as MiniMax-01 does with its critical-batch law, capped at
    ``final``. ``critical_batch(n)`` must grow with n (the loss falls); each switch is found by
    bisection in log n. A doubling the run never reaches is left out; doublings that come
    within one batch of the previous switch merge into it."""
    stages = [(0.0, start)]
    for j in range(1, _doublings(start, final) + 1):
        target = min(start * 2**j, final)
        n = _first_tokens(lambda t, b=target: critical_batch(t) >= b, start, total_tokens)
        if n is None:
            break
        if n <= stages[-1][0] + stages[-1][1]:
            stages[-1] = (stages[-1][0], target)
        else:
            stages.append((n, target))
    return BatchRamp(tuple(stages))


def _first_tokens(reached: Callable[[float], bool], lo: float, hi: float) -> float | None:
    """The smallest n in [lo, hi] (to 0.1% in log n) where ``reached(n)``; None if never."""
    if not reached(hi):
        return None
    if reached(lo):
        return lo
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if reached(mid) else (mid, hi)
        if hi / lo < 1.001:
            break
    return hi


@dataclass(frozen=True)
class Phases:
    """A schedule's steps by phase: linear warmup, at the peak (stable), decaying (a cooldown or a
    cosine). The decay is the last ``decay`` steps; a warmup longer than the stable part
    overlaps the cooldown (the multipliers then multiply)."""

    steps: int
    warmup: int
    stable: int
    decay: int

    @property
    def decay_start(self) -> int:
        """The first step of the decay (steps when nothing decays)."""
        return self.steps - self.decay


def phases(kind: str, steps: int, warmup: int = 0, decay_frac: float = 0.2) -> Phases:
    """The one computation of a schedule's phase lengths (the trainer's Schedule, the planner,
    the laws side by side): a WSD or power cooldown is the last round(decay_frac x steps) steps,
    a cosine decays over every step after warmup, constant and multistep have no decay phase
    (multistep steps down at token fractions, its ``milestones``)."""
    if kind == "cosine":
        return Phases(steps, warmup, 0, steps - warmup)
    if kind in ("wsd", "power"):
        decay = round(decay_frac * steps)
        return Phases(steps, warmup, max(0, steps - warmup - decay), decay)
    return Phases(steps, warmup, steps - warmup, 0)


@dataclass(frozen=True)
class Schedule:
    """A picklable lr multiplier f(step) (a dataclass, not a closure, so sweeps can ship it).

    "multistep" reads ``milestones``; "power" reads ``power_a``, ``power_b``, ``peak_lr`` and the
    tokens per step (``batch_tokens``, or ``ramp``). Both count tokens through ``ramp`` when
    one is given."""

    kind: str
    steps: int
    warmup: int = 0
    decay_frac: float = 0.2
    cooldown: str = "linear"
    min_ratio: float = 0.0
    milestones: tuple[tuple[float, float], ...] = ()
    power_a: float | None = None
    power_b: float | None = None
    peak_lr: float | None = None
    batch_tokens: int | None = None
    ramp: BatchRamp | None = None

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
        if self.kind == "multistep":
            check_milestones(self.milestones)
        if self.kind == "power":
            self._check_power()

    def _check_power(self) -> None:
        for name in ("power_a", "peak_lr"):
            check_positive(name, getattr(self, name))
        b = self.power_b
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not b < 0:
            raise ConfigError("power_b", b, "a negative exponent (lr falls with tokens)")
        if self.ramp is None:
            check_positive("batch_tokens", self.batch_tokens, integer=True)

    @property
    def decay_start(self) -> int:
        """First step of the cooldown (WSD and power; steps for other kinds)."""
        if self.kind not in ("wsd", "power"):
            return self.steps
        return self.phases.decay_start

    @property
    def phases(self) -> Phases:
        """Warmup, stable and decay steps (``phases``)."""
        return phases(self.kind, self.steps, self.warmup, self.decay_frac)

    def tokens_before(self, step: int) -> float:
        """Tokens seen before optimizer step ``step`` (through the ramp when there is one;
        steps when the schedule knows no batch)."""
        if self.ramp is not None:
            return self.ramp.tokens_before(step)
        return float(step * (self.batch_tokens or 1))

    def __call__(self, step: int) -> float:
        """The lr multiplier for optimizer step ``step`` (clamped to [0, steps])."""
        s = min(max(int(step), 0), self.steps)
        warm = (s + 1) / self.warmup if s < self.warmup else 1.0
        shape = {
            "constant": lambda _: 1.0,
            "cosine": self._cosine,
            "wsd": self._wsd,
            "multistep": self._multistep,
            "power": self._power,
        }[self.kind](s)
        return warm * shape

    def _cosine(self, s: int) -> float:
        lo = self.min_ratio
        p = (s - self.warmup) / max(1, self.steps - self.warmup) if s >= self.warmup else 0.0
        return lo + (1.0 - lo) * 0.5 * (1.0 + math.cos(math.pi * p))

    def _cool(self, s: int) -> float:
        """The cooldown's shape at step s >= decay_start (1 at its start)."""
        d, lo = self.decay_start, self.min_ratio
        p = (s - d) / max(1, self.steps - d)
        if self.cooldown == "linear":
            return lo + (1.0 - lo) * (1.0 - p)
        if self.cooldown == "1-sqrt":
            return lo + (1.0 - lo) * (1.0 - math.sqrt(p))
        return (lo or EXP_FLOOR) ** p

    def _wsd(self, s: int) -> float:
        return 1.0 if s < self.decay_start else self._cool(s)

    def _multistep(self, s: int) -> float:
        done = self.tokens_before(s) / self.tokens_before(self.steps)
        return next((m for q, m in reversed(self.milestones) if done >= q), 1.0)

    def _power_value(self, s: int) -> float:
        n = self.tokens_before(s)
        if n <= 0:
            return 1.0
        assert self.power_a is not None and self.power_b is not None and self.peak_lr
        return min(1.0, self.power_a * n**self.power_b / self.peak_lr)

    def _power(self, s: int) -> float:
        d = self.decay_start
        if s < d:
            return self._power_value(s)
        return self._power_value(d) * self._cool(s)

    def values(self) -> list[float]:
        """f(0) .. f(steps-1), the multipliers the run's steps actually use."""
        return [self(s) for s in range(self.steps)]


def check_milestones(milestones: tuple[tuple[float, float], ...]) -> None:
    """(fraction, multiplier) pairs: fractions in (0, 1] increasing, multipliers in (0, 1]."""
    allowed = "(fraction of tokens, multiplier) pairs, fractions in (0, 1] increasing, multipliers in (0, 1]"
    try:
        pairs = [(float(q), float(m)) for q, m in milestones]
    except (TypeError, ValueError):
        raise ConfigError("milestones", milestones, allowed) from None
    qs = [q for q, _ in pairs]
    if (
        not pairs
        or any(not 0 < q <= 1 or not 0 < m <= 1 for q, m in pairs)
        or qs != sorted(set(qs))
    ):
        raise ConfigError("milestones", milestones, allowed)


def parse_milestones(value: Any) -> tuple[tuple[float, float], ...] | None:
    """Milestones as 'q:m,q:m' (after fraction q of the tokens, lr x m) or (q, m) pairs, checked
    (``check_milestones``); None stays None. The one reader of milestones: a run config, sweep
    axes, ``--set`` and the planner's ``--milestones``."""
    if value is None:
        return None
    what = "'q:m,q:m' pairs (fraction of tokens : lr multiplier)"
    try:
        items = [part.split(":") for part in value.split(",")] if isinstance(value, str) else value
        pairs = tuple((float(q), float(m)) for q, m in items)
    except (TypeError, ValueError):
        raise ConfigError("milestones", value, what) from None
    check_milestones(pairs)
    return pairs


def parse_ramp(value: Any, field: str = "batch_ramp") -> tuple[tuple[float, int], ...] | None:
    """Ramp stages as 'from_tokens:batch,from_tokens:batch' or (from_tokens, batch) pairs, the
    first from 0, tokens increasing, batches positive integers; None stays None. A run config
    gives its batches in sequences (examples for the MLP), the tokens in tokens."""
    if value is None:
        return None
    what = (
        "'from_tokens:batch,...' stages (e.g. '0:8,2e5:16,4e5:32'), the first from 0, "
        "tokens increasing, batches positive integers"
    )
    try:
        items = [part.split(":") for part in value.split(",")] if isinstance(value, str) else value
        stages = tuple((float(t), _whole(b)) for t, b in items)
        if not all(math.isfinite(t) for t, _ in stages):
            raise ValueError(value)
        BatchRamp(stages)
    except (TypeError, ValueError, ConfigError):
        raise ConfigError(field, value, what) from None
    return stages


def _whole(x: Any) -> int:
    """An integer given as an int, a whole float or a numeric string (ValueError otherwise)."""
    if isinstance(x, bool):
        raise ValueError(x)
    v = float(x)
    if not math.isfinite(v) or v != int(v):
        raise ValueError(x)
    return int(v)


def make_schedule(
    kind: str,
    steps: int,
    warmup: int = 0,
    decay_frac: float = 0.2,
    cooldown: str = "linear",
    min_ratio: float = 0.0,
    **kinds: Any,
) -> Schedule:
    """An lr multiplier per step: "constant", "cosine", "wsd", "multistep" or "power" (see
    module doc) with linear warmup; ``kinds``: milestones, power_a, power_b, peak_lr,
    batch_tokens, ramp."""
    return Schedule(kind, steps, warmup, decay_frac, cooldown, min_ratio, **kinds)


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
        label = (
            sch.kind
            if sch.kind not in ("wsd", "power")
            else f"{sch.kind} ({sch.cooldown}, {sch.decay_frac:g})"
        )
        ax.plot(range(sch.steps + 1), [peak_lr * sch(s) for s in range(sch.steps + 1)], label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate" if peak_lr != 1.0 else "lr / peak lr")
    ax.legend()
    ax.grid(alpha=0.3)
    if path is not None:
        ax.figure.tight_layout()
        ax.figure.savefig(path, dpi=120)
    return ax
