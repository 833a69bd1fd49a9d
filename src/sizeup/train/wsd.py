"""WSD cooldown branches: many (N, D, loss) points from one run per model size.

A warmup-stable-decay schedule holds the lr flat, so a checkpoint from the stable phase can be
cooled down at any time: a branch that starts at step s = (1 - f) T and decays for f T steps is
exactly the WSD run of length T (Hägele et al. 2024, "Scaling Laws and Compute-Optimal Training
Beyond Fixed Training Durations"). One stable trunk per model size and a branch per token count
gives loss-vs-tokens curves for the cost of a single run; sizeup.laws turns them into isoFLOP
profiles (``isoflop_from_curves``) and approach-2 fits.

Trunk and branches are Trainers (sizeup.train.step) and take `sizeup train`'s one step, with its
gradient clipping and divergence test, on the same batches (``batch_at(step)``): branch T *is*
``run(cfg.replace(schedule="wsd", steps=T, decay_frac=f, cooldown=c))``, bit for bit.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from sizeup.config import RunConfig, RunResult
from sizeup.errors import CheckpointError, ConfigError
from sizeup.models import num_params
from sizeup.progress import Progress
from sizeup.schedules import Schedule, make_schedule
from sizeup.train.build import build
from sizeup.train.checkpoint import SCHEDULE_FIELDS
from sizeup.train.step import Trainer


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


def branch_schedules(
    cfg: RunConfig, total_steps: Sequence[int], decay_frac: float, cooldown: str
) -> list[Schedule]:
    """The WSD schedule of each branch, in the order the trunk reaches their cooldowns.

    Every branch shares the trunk's warmup, so a total shorter than cfg.schedule.warmup has no WSD run to
    equal (`sizeup train` rejects warmup > steps too) and is refused.
    """
    totals = sorted({int(t) for t in total_steps})
    if not totals or totals[0] < 1:
        raise ConfigError("total_steps", list(total_steps), "one or more positive step counts")
    if not 0.0 < decay_frac <= 1.0:
        raise ConfigError(
            "decay_frac", decay_frac, "a fraction in (0, 1] (the cooldown needs some steps)"
        )
    if totals[0] < cfg.schedule.warmup:
        raise ConfigError(
            "total_steps", totals, f"step counts of at least warmup={cfg.schedule.warmup} each"
        )
    scheds = [
        make_schedule(
            "wsd", T, warmup=cfg.schedule.warmup, decay_frac=decay_frac, cooldown=cooldown
        )
        for T in totals
    ]
    return sorted(scheds, key=lambda s: s.decay_start)


def wsd_branches(
    cfg: RunConfig,
    total_steps: Sequence[int],
    *,
    decay_frac: float | None = None,
    cooldown: str | None = None,
    progress: bool = False,
    save_dir: str | Path | None = None,
) -> list[BranchPoint]:
    """Train one stable trunk of ``cfg`` and a cooldown branch ending at each of ``total_steps``.

    Branch T forks the trunk at step round((1 - decay_frac) T) and follows the WSD schedule of a
    run of length T (same warmup, cooldown shape ``cooldown``) on the same data stream, with the
    run's clipping and divergence test: its loss is that run's final validation loss (NaN when
    the trunk or the branch diverged). With ``save_dir`` the trunk is checkpointed at each
    branch point (``branch_from_checkpoint`` starts a branch from one later).
    """
    f = cfg.schedule.decay_frac if decay_frac is None else decay_frac
    shape = cfg.schedule.cooldown if cooldown is None else cooldown
    scheds = branch_schedules(cfg, total_steps, f, shape)
    # The trunk: the stable phase (with cfg's warmup) of every branch, at the peak lr.
    trunk_cfg = cfg.replace(schedule="constant", steps=max(s.steps for s in scheds))
    trunk = Trainer.from_built(trunk_cfg, build(trunk_cfg))
    trunk.start()
    n_params = num_params(trunk.model, non_embedding=True)
    total = sum(s.steps - s.decay_start for s in scheds) + scheds[-1].decay_start
    points = []
    with Progress(f"WSD branches w={cfg.model.width}", total, enabled=progress) as bar:
        for sched in scheds:
            loss = _branch(trunk, sched, bar, trunk_cfg, save_dir)
            points.append(_point(cfg, n_params, sched, loss))
    return sorted(points, key=lambda p: p.steps)


def _branch(
    trunk: Trainer,
    sched: Schedule,
    bar: Progress,
    trunk_cfg: RunConfig | None = None,
    save_dir: str | Path | None = None,
) -> float:
    """Advance the trunk to the branch's cooldown (checkpoint it there with ``save_dir``), fork
    it onto WSD(T), cool down, evaluate."""
    tick = lambda _step, _loss: bar.advance(1)  # noqa: E731
    trunk.advance(sched.decay_start, on_step=tick)
    if save_dir is not None and trunk_cfg is not None and not trunk.diverged:
        trunk.save(save_dir, trunk_cfg)
    branch = trunk.fork(sched)
    branch.advance(sched.steps, on_step=tick)
    return branch.finish()


def branch_from_checkpoint(
    cfg: RunConfig,
    path: str | Path,
    total_steps: int,
    *,
    decay_frac: float | None = None,
    cooldown: str | None = None,
) -> BranchPoint:
    """The WSD branch ending at ``total_steps``, started from a saved stable-phase checkpoint
    (``wsd_branches(save_dir=...)``, or `sizeup train --checkpoint-every` of a constant or WSD
    run, saved before its cooldown) of a run of ``cfg``: the trunk is restored, advanced to the
    branch's cooldown start if the checkpoint is earlier, forked onto WSD(total_steps) and
    cooled down. Bit for bit the branch ``wsd_branches`` takes in memory. A checkpoint past the
    cooldown start, or outside a stable phase, is a CheckpointError."""
    f = cfg.schedule.decay_frac if decay_frac is None else decay_frac
    (sched,) = branch_schedules(
        cfg, [total_steps], f, cfg.schedule.cooldown if cooldown is None else cooldown
    )
    trunk_cfg = cfg.replace(schedule="constant", steps=sched.steps)
    trunk = Trainer.from_built(trunk_cfg, build(trunk_cfg))
    state = trunk.load(path, trunk_cfg, ignore=SCHEDULE_FIELDS)
    _check_stable(state, trunk.step, sched, path)
    trunk.advance(sched.decay_start)
    branch = trunk.fork(sched)
    branch.advance(sched.steps)
    return _point(cfg, num_params(trunk.model, non_embedding=True), sched, branch.finish())


def _point(cfg: RunConfig, n_params: int, sched: Schedule, loss: float) -> BranchPoint:
    """A branch's point: its tokens (through the run's batch ramp) and C = 6 N D."""
    tokens = cfg.tokens_for(sched.steps)
    return BranchPoint(
        width=cfg.model.width,
        depth=cfg.model.depth,
        params=n_params,
        branch_step=sched.decay_start,
        steps=sched.steps,
        tokens=tokens,
        flops=6.0 * n_params * tokens,
        loss=loss,
    )


def _check_stable(state: dict, step: int, sched: Schedule, path: str | Path) -> None:
    """The checkpoint is in a stable phase (constant lr, or WSD before its cooldown) and not
    past the branch's cooldown start."""
    saved = state["config"]
    stable_until = saved["steps"]
    if saved["schedule"] == "wsd":
        stable_until = make_schedule(
            "wsd", saved["steps"], warmup=saved["warmup"], decay_frac=saved["decay_frac"]
        ).decay_start
    elif saved["schedule"] != "constant":
        raise CheckpointError(
            f"checkpoint {path} is from a {saved['schedule']!r} schedule: a WSD branch starts "
            "from a stable phase (a constant or WSD run before its cooldown)"
        )
    if step > min(stable_until, sched.decay_start):
        raise CheckpointError(
            f"checkpoint {path} is at step {step}, past the stable phase the branch needs (its "
            f"cooldown starts at step {sched.decay_start}; the run's stable phase ended at "
            f"{stable_until})"
        )


def wsd_study(
    cfg: RunConfig,
    widths: Sequence[int],
    total_steps: Sequence[int],
    *,
    decay_frac: float | None = None,
    cooldown: str | None = None,
    progress: bool = False,
    save_dir: str | Path | None = None,
) -> list[BranchPoint]:
    """WSD branches for each width: the (N, D, loss) grid an isoFLOP analysis needs. With
    ``save_dir`` each trunk is checkpointed at its branch points into save_dir/width_<w>."""
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
            save_dir=None if save_dir is None else Path(save_dir) / f"width_{int(w)}",
        )
    return out


def branch_run(
    cfg: RunConfig,
    total_steps: Sequence[int],
    decay_frac: float | None = None,
    cooldown: str | None = None,
    save_root: str | Path | None = None,
) -> RunResult:
    """``wsd_branches`` for one config, as a RunResult (its branch points under
    ``diagnostics["wsd_points"]``): the shape a sweep executor runs, so the widths of a WSD
    study train in parallel worker processes (sizeup.sweep.executors)."""
    t0 = time.perf_counter()
    save_dir = None if save_root is None else Path(save_root) / f"width_{cfg.model.width}"
    points = wsd_branches(
        cfg, total_steps, decay_frac=decay_frac, cooldown=cooldown, save_dir=save_dir
    )
    res = RunResult(config=cfg.to_dict(), params=points[0].params)
    res.diagnostics["wsd_points"] = [p.to_dict() for p in points]
    res.final_val_loss = points[-1].loss
    res.tokens, res.flops = points[-1].tokens, points[-1].flops
    res.wall_time = time.perf_counter() - t0
    return res
