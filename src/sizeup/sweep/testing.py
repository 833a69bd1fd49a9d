"""A synthetic stand-in for the trainer, for tests and benchmarks of the sweep machinery.

synthetic_run(config) needs no torch and takes microseconds, yet behaves like an lr sweep:
loss is a parabola in log2(lr) whose minimum sits at 2**-8 for muP (every width) and moves
one octave lower per doubling of width for SP, wider is better, and lr far above the optimum
diverges. Knobs (environment, so they reach worker processes):
  SIZEUP_SYNTH_SLEEP  seconds each trial sleeps (default 0)
  SIZEUP_SYNTH_LOG    a file that gets "start <id>" / "end <id>" lines (to count executions)
and config.data.source == "crash" raises, config.data.source == "die" kills the worker process
(exit code 3), "kill" SIGKILLs it (as the out-of-memory killer does), "kill_once" SIGKILLs it on
the trial's first start only (SIZEUP_SYNTH_LOG counts the starts).
NoisySynthetic adds seed noise of a known size (tests of the seed axis and its intervals).
"""

from __future__ import annotations

import math
import os
import signal
import time
from dataclasses import dataclass

from sizeup.config import RunConfig, RunResult


def synthetic_opt_log2(config: RunConfig) -> float:
    """log2 of the synthetic optimal lr: fixed under muP, 1/width under SP."""
    shift = (
        0.0
        if config.parametrization.rule != "sp"
        else math.log2(config.model.width / config.parametrization.base_width)
    )
    return -8.0 - shift


def synthetic_loss(config: RunConfig) -> float:
    """Loss of the synthetic model: 2 + 0.1*(octaves from optimum)^2 + 4/width + seed noise."""
    d = math.log2(config.optimizer.lr) - synthetic_opt_log2(config)
    noise = 1e-4 * ((config.run.seed * 7919) % 13 - 6)  # deterministic, tiny
    return 2.0 + 0.1 * d * d + 4.0 / config.model.width + noise


def _log(line: str) -> None:
    path = os.environ.get("SIZEUP_SYNTH_LOG")
    if path:
        # O_APPEND: concurrent workers' lines never interleave within a line
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)


def _starts(tid: str) -> int:
    """How many times trial ``tid`` has started (SIZEUP_SYNTH_LOG; 0 without the log)."""
    path = os.environ.get("SIZEUP_SYNTH_LOG")
    if not path or not os.path.exists(path):
        return 0
    with open(path, encoding="utf-8") as f:
        return sum(line.split() == ["start", tid] for line in f)


def synthetic_run(config: RunConfig) -> RunResult:
    """A fake training run with the shape of a real lr sweep (see the module docstring)."""
    tid = config.trial_id()
    _log(f"start {tid}")
    if config.data.source == "crash":
        raise RuntimeError("synthetic crash")
    if config.data.source == "die":
        os._exit(3)
    if config.data.source == "kill" or (config.data.source == "kill_once" and _starts(tid) < 2):
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(float(os.environ.get("SIZEUP_SYNTH_SLEEP", "0")))
    final = synthetic_loss(config)
    diverged = math.log2(config.optimizer.lr) - synthetic_opt_log2(config) > 3.0
    n = 5
    init = 5.5
    curve = [init + (final - init) * (i + 1) / n for i in range(n)]
    if diverged:
        curve[-1] = math.nan
    _log(f"end {tid}")
    return RunResult(
        config=config.to_dict(),
        steps=list(range(n)),
        train_loss=curve,
        val_steps=[0, n],
        val_loss=[init, math.nan if diverged else final],
        initial_val_loss=init,
        final_train_loss=math.nan if diverged else final,
        final_val_loss=math.nan if diverged else final,
        tokens=config.tokens_for(config.schedule.steps),
        diverged=diverged,
        diverged_step=n - 1 if diverged else None,
        error="loss diverged" if diverged else None,
    )


def _gauss(*key: object) -> float:
    """A standard normal draw that is a pure function of ``key`` (the same in every process)."""
    import hashlib
    import random

    digest = hashlib.sha256(repr(key).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "little")).gauss(0.0, 1.0)


@dataclass(frozen=True)
class NoisySynthetic:
    """synthetic_run with seed noise of known size, for the seed axis and its intervals.

    Each trial's loss gets ``noise`` x N(0, 1) of its own (it moves the optimum) plus
    ``offset`` x N(0, 1) shared by every lr of one (seed, rule, width, ...) curve (a seed that
    is better everywhere; it does not move the optimum). Both draws are pure functions of the
    trial's config, so reruns and worker processes agree. The truth is synthetic_opt_log2.
    """

    noise: float = 0.02
    offset: float = 0.0

    def __call__(self, config: RunConfig) -> RunResult:
        res = synthetic_run(config)
        if res.diverged:
            return res
        curve = {k: v for k, v in config.to_dict().items() if k != "lr"}
        shift = self.noise * _gauss("trial", config.trial_id()) + self.offset * _gauss(
            "curve", sorted(curve.items())
        )
        final = res.final_val_loss + shift
        res.final_val_loss = res.final_train_loss = final
        res.val_loss[-1] = final
        res.train_loss[-1] = final
        return res


@dataclass(frozen=True)
class StackedSynthetic:
    """synthetic_run that also takes stacks (the executor's ``stack`` path): each member's
    result is its synthetic_run, marked with the stack's size in diagnostics["stack"], so a
    test sees which trials ran stacked. Picklable, so pools take it."""

    def __call__(self, config: RunConfig) -> RunResult:
        return synthetic_run(config)

    def stack(self, configs: list[RunConfig]) -> list[RunResult]:
        out = [synthetic_run(c) for c in configs]
        for r in out:
            r.diagnostics["stack"] = {"size": len(configs)}
        return out
