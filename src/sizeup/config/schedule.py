"""ScheduleSpec: the learning-rate schedule of a run (sizeup.schedules builds the multiplier).

Its phases (warmup, stable, decay) come from ``sizeup.schedules.phases``, the one place that
computes them for the trainer, the planner and the laws side by side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sizeup.choices import Cooldown, Schedule
from sizeup.config.fields import Bounds, Record, fraction, positive, spec
from sizeup.errors import ConfigError
from sizeup.schedules import (
    DEEPSEEK_LLM_MILESTONES,
    BatchRamp,
    Milestones,
    Phases,
    make_schedule,
    phases,
)
from sizeup.schedules import Schedule as LrSchedule


@dataclass(frozen=True)
class ScheduleSpec(Record):
    """Steps, warmup and the lr schedule's shape."""

    SECTION = "schedule"
    SHORTHAND = "name"

    name: Schedule = spec(
        "constant",
        "lr schedule: constant, cosine, wsd, multistep (DeepSeek LLM) or power (Shen 2024).",
        flat="schedule",
        aliases=("lr_schedule",),
    )
    steps: int = spec(200, "Optimizer steps.")
    warmup: int = spec(0, "Linear warmup steps.")
    decay_frac: float = spec(0.2, "WSD and power: fraction of the steps in the cooldown.")
    cooldown: Cooldown = spec("linear", "WSD and power cooldown: linear, 1-sqrt or exponential.")
    milestones: Milestones | None = spec(
        None,
        "multistep: 'q:m,q:m' (after fraction q of the tokens, lr x m); None: DeepSeek LLM's "
        "0.8:0.316,0.9:0.1.",
    )
    power_a: float | None = spec(
        None,
        "power: a in lr = min(lr, a n^b), n the tokens seen.",
        bounds=Bounds(0, lo_open=True, why="a learning rate's coefficient"),
    )
    power_b: float | None = spec(
        None,
        "power: the exponent b (< 0).",
        bounds=Bounds(hi=0, hi_open=True, why="the lr decays as the tokens seen grow"),
    )

    def check(self) -> None:
        """Positive steps, warmup within them, a fraction for decay_frac, power's a and b."""
        positive(self, "steps", integer=True)
        if not 0 <= self.warmup <= self.steps:
            raise ConfigError("warmup", self.warmup, f"between 0 and steps={self.steps}")
        fraction("decay_frac", self.decay_frac)
        if self.name == "power" and (self.power_a is None or self.power_b is None):
            raise ConfigError(
                "power_a" if self.power_a is None else "power_b",
                None,
                "a number with schedule='power' (lr = min(lr, power_a n^power_b), n tokens "
                "seen; Shen et al. 2024 fit both on their runs, sizeup has no default)",
            )

    def phases(self) -> Phases:
        """Warmup, stable and decay steps (sizeup.schedules.phases)."""
        return phases(self.name, self.steps, self.warmup, self.decay_frac)

    def lr_schedule(
        self, peak_lr: float, tokens_per_step: int, ramp: BatchRamp | None = None
    ) -> LrSchedule:
        """The lr multiplier per step (sizeup.schedules.Schedule): "multistep" and "power"
        count the tokens seen (through ``ramp`` when there is one), "power" reads ``peak_lr``."""
        kw: dict[str, Any] = {}
        if self.name == "multistep":
            kw["milestones"] = self.milestones or DEEPSEEK_LLM_MILESTONES
        if self.name == "power":
            kw.update(power_a=self.power_a, power_b=self.power_b, peak_lr=peak_lr)
        if self.name in ("multistep", "power"):
            kw.update(batch_tokens=tokens_per_step, ramp=ramp)
        return make_schedule(
            self.name,
            self.steps,
            warmup=self.warmup,
            decay_frac=self.decay_frac,
            cooldown=self.cooldown,
            **kw,
        )
