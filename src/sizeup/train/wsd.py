"""WSD cooldown branches: many (N, D, loss) points from one run per model size.

A warmup-stable-decay schedule holds the lr flat, so a checkpoint from the stable phase can be
cooled down at any time: a branch that starts at step s = (1 - f) T and decays for f T steps is
exactly the WSD run of length T (Hägele et al. 2024, "Scaling Laws and Compute-Optimal Training
Beyond Fixed Training Durations"). One stable trunk per model size and a branch per token count
gives loss-vs-tokens curves for the cost of a single run; sizeup.laws turns them into isoFLOP
profiles (``isoflop_from_curves``) and approach-2 fits.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from sizeup.config import RunConfig
from sizeup.errors import ConfigError
from sizeup.models import num_params
from sizeup.progress import Progress
from sizeup.schedules import make_schedule
from sizeup.train.build import build
from sizeup.train.loop import evaluate


@dataclass
class BranchPoint:
    """One cooldown branch: the model, how long it trained in total, and its final loss."""

    width: int
    depth: int
    params: int  # non-embedding parameters, as RunResult.params
    branch_step: int  # stable-phase step the cooldown started from
    steps: int  # total steps (trunk + cooldown)
    tokens: int
    flops: float
    loss: float  # validation loss after the cooldown (NaN if it diverged)

    def to_dict(self) -> dict:
        """Plain dict (one row of a points table)."""
        return asdict(self)


def _train_step(model, opt, x, y) -> float:
    _, loss = model(x, y)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return float(loss.detach())


def wsd_branches(
    cfg: RunConfig,
    total_steps: Sequence[int],
    *,
    decay_frac: float | None = None,
    cooldown: str | None = None,
    progress: bool = False,
) -> list[BranchPoint]:
    """Train one stable trunk of ``cfg`` and a cooldown branch ending at each of ``total_steps``.

    Branch T starts from the trunk at step round((1 - decay_frac) T) and follows the WSD schedule
    of a run of length T (same warmup, cooldown shape ``cooldown``) on the same data stream.
    """
    totals = sorted({int(t) for t in total_steps})
    if not totals or totals[0] < 1:
        raise ConfigError("total_steps", list(total_steps), "one or more positive step counts")
    f = cfg.decay_frac if decay_frac is None else decay_frac
    shape = cfg.cooldown if cooldown is None else cooldown
    if not 0.0 < f <= 1.0:
        raise ConfigError("decay_frac", f, "a fraction in (0, 1] (the cooldown needs some steps)")
    scheds = {
        T: make_schedule("wsd", T, warmup=min(cfg.warmup, T), decay_frac=f, cooldown=shape)
        for T in totals
    }
    trunk_cfg = cfg.replace(schedule="constant", steps=max(totals))
    built = build(trunk_cfg)
    model, opt, data = built.model, built.optimizer, built.data
    peak = [g["initial_lr"] for g in opt.param_groups]
    val = data.val_batches()
    n_params = num_params(model, non_embedding=True)
    total = sum(T - scheds[T].decay_start for T in totals) + max(
        scheds[T].decay_start for T in totals
    )
    bar = Progress(f"WSD branches w={cfg.width}", total, enabled=progress).__enter__()

    def set_lr(o: torch.optim.Optimizer, mult: float) -> None:
        for g, p in zip(o.param_groups, peak):
            g["lr"] = p * mult

    points: list[BranchPoint] = []
    step = 0
    trunk_ok = True
    for T in sorted(totals, key=lambda t: scheds[t].decay_start):
        sched = scheds[T]
        s = sched.decay_start
        while step < s and trunk_ok:  # stable phase (with warmup) on the shared trunk
            set_lr(opt, sched(step))
            x, y = data.batch_at(step)
            trunk_ok = math.isfinite(_train_step(model, opt, x, y))
            step += 1
            bar.advance(1)
        loss = math.nan
        if trunk_ok:
            # One deepcopy of (model, optimizer) keeps the optimizer state tied to the copy.
            bm, bopt = copy.deepcopy((model, opt))
            ok = True
            for t in range(s, T):
                set_lr(bopt, sched(t))
                x, y = data.batch_at(t)
                ok = math.isfinite(_train_step(bm, bopt, x, y))
                bar.advance(1)
                if not ok:
                    break
            if ok:
                loss = evaluate(bm, val, cfg.device) if val else math.nan
        tokens = T * cfg.tokens_per_step
        points.append(
            BranchPoint(
                width=cfg.width,
                depth=cfg.depth,
                params=n_params,
                branch_step=s,
                steps=T,
                tokens=tokens,
                flops=6.0 * n_params * tokens,
                loss=loss,
            )
        )
    bar.__exit__(None, None, None)
    return sorted(points, key=lambda p: p.steps)


def wsd_study(
    cfg: RunConfig,
    widths: Sequence[int],
    total_steps: Sequence[int],
    *,
    decay_frac: float | None = None,
    cooldown: str | None = None,
    progress: bool = False,
) -> list[BranchPoint]:
    """WSD branches for each width: the (N, D, loss) grid an isoFLOP analysis needs."""
    if len(widths) < 1:
        raise ConfigError("widths", list(widths), "one or more model widths")
    out: list[BranchPoint] = []
    for w in widths:
        out += wsd_branches(
            cfg.replace(width=int(w)),
            total_steps,
            decay_frac=decay_frac,
            cooldown=cooldown,
            progress=progress,
        )
    return out
