"""run_sweep: queue a spec's trials in the store, claim and run what is left, record every
outcome. Any number of drivers may share one store (sizeup.sweep.store: claims and leases)."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sizeup.choices import SWEEP_ORDERS
from sizeup.config import RunConfig
from sizeup.errors import ConfigError, check_choice
from sizeup.progress import Progress
from sizeup.sweep.executors import (
    LoggedRunner,
    Runner,
    default_runner,
    first_line,
    make_executor,
)
from sizeup.sweep.spec import SweepSpec, load_spec
from sizeup.sweep.store import FINISHED, LEASE_S, Lease, Store

POLL_S = 2.0  # how often a driver looks again while other drivers hold the last trials


@dataclass
class SweepReport:
    """What one call of run_sweep did: trials run this call, and the store's final counts."""

    ran: int = 0
    requeued: int = 0
    skipped: int = 0  # already finished before this call
    counts: dict[str, int] = field(default_factory=dict)
    wall_time: float = 0.0
    unfinished: int = 0  # this spec's trials still queued or running when the call returned
    tally: dict[str, int] = field(default_factory=lambda: {"done": 0, "diverged": 0, "failed": 0})
    # this spec's failed trials when the call returned (earlier calls' too): id -> the first
    # line of its error
    failed: dict[str, str] = field(default_factory=dict)
    # trials whose worker died this call: id -> why, each attempt (they ran again)
    deaths: dict[str, list[str]] = field(default_factory=dict)


def run_sweep(
    spec: SweepSpec | dict | str | Path | list[RunConfig],
    store: Store | str | Path,
    *,
    executor: Any = "local",
    workers: int = 1,
    runner: Runner | None = None,
    progress: bool = True,
    retry_failed: bool = False,
    requeue_running: bool = False,
    order: str = "spec",
    lease_s: float = LEASE_S,
    wait: bool = True,
    log: Sequence[str] = (),
    stack: int = 1,
    **executor_kwargs: Any,
) -> SweepReport:
    """Run (or resume) a sweep: every trial ends done, diverged or failed in the store.

    spec: a SweepSpec, a mapping, a sweep file path, or a plain list of RunConfigs.
    executor: 'local' | 'ray' | an executor object with .run(configs, runner).
    order: 'spec' (as listed) or 'largest_first' (by estimated cost, so that with N workers
    the sweep does not end waiting on one big straggler).
    Finished trials are never rerun. A running trial whose lease expired (``lease_s`` without
    a heartbeat) or whose driver exited is queued again; ``requeue_running`` forces that for
    every running trial. With ``wait`` the call returns when every trial of the spec has
    finished, also those other drivers are running; without, when nothing is left to claim.
    ``log``: `--log` specs (jsonl:DIR, tensorboard:DIR, wandb:PROJECT) every trial logs to,
    each under its trial id (``LoggedRunner``; the default trainer only).
    ``stack``: up to this many trials of one shape train together as one stacked model
    (sizeup.train.stacked; 1: one at a time; 0: as many as memory holds); each is still its own
    trial in the store. Every argument is checked before the store is touched.
    """
    check_choice("order", order, SWEEP_ORDERS)
    runner = _logged(runner, log, store)
    if not (isinstance(lease_s, (int, float)) and lease_s > 0):
        raise ConfigError("lease_s", lease_s, "a positive number of seconds")
    configs = spec if isinstance(spec, list) else load_spec(spec).trials()
    if not all(isinstance(c, RunConfig) for c in configs):
        raise ConfigError("spec", type(spec).__name__, "a SweepSpec, a sweep file or RunConfigs")
    if not isinstance(executor, str) and stack != 1:
        raise ConfigError("stack", stack, "1 with an executor object (give it its own stack)")
    ex = (
        make_executor(executor, workers=workers, stack=stack, **executor_kwargs)
        if isinstance(executor, str)
        else executor
    )
    t0 = time.perf_counter()
    own_store = not isinstance(store, Store)
    st = Store(store) if own_store else store
    try:
        report = _run(
            st,
            spec,
            configs,
            ex,
            runner or default_runner,
            progress,
            order,
            lease_s,
            wait,
            retry_failed,
            requeue_running,
        )
        report.wall_time = time.perf_counter() - t0
        return report
    finally:
        if own_store:
            st.close()


def _logged(runner: Runner | None, log: Sequence[str], store: Any) -> Runner | None:
    """The runner that logs each trial when ``log`` names destinations (checked here)."""
    if not log:
        return runner
    from sizeup.train.loggers import parse_log

    for spec in log:
        parse_log(spec)
    if runner is not None:
        raise ConfigError("log", list(log), "only with the default runner (sizeup.train.run)")
    group = Path(store.path).stem if isinstance(store, Store) else Path(store).stem
    return LoggedRunner(tuple(log), group=group)


def _run(
    st: Store,
    spec: Any,
    configs: list[RunConfig],
    ex: Any,
    runner: Runner,
    progress: bool,
    order: str,
    lease_s: float,
    wait: bool,
    retry_failed: bool,
    requeue_running: bool,
) -> SweepReport:
    if not isinstance(spec, list):
        st.set_meta("spec", load_spec(spec).to_dict())
    st.add(configs)
    report = SweepReport(
        requeued=st.requeue_stale(lease_s, force=requeue_running, retry_failed=retry_failed)
    )
    wanted = {c.trial_id() for c in configs}
    report.skipped = sum(t.id in wanted for t in st.trials(FINISHED))
    said: set[int] = set()
    with (
        Lease(st.path, lease_s),
        Progress("sweep", len(wanted), report.skipped, enabled=progress) as bar,
    ):
        while True:
            todo = [c for c in st.queued() if c.trial_id() in wanted]
            if order == "largest_first":
                todo.sort(key=estimated_cost, reverse=True)
            _round(st, ex, todo, runner, bar, report)
            left = st.unfinished(wanted)
            if not sum(left.values()) or not wait:
                break
            if not st.requeue_stale(lease_s) and not left["queued"]:
                _say_waiting(left["running"], lease_s, progress, said)
                time.sleep(POLL_S)
    report.counts = st.counts()
    report.unfinished = sum(st.unfinished(wanted).values())
    report.failed = {t.id: first_line(t.error) for t in st.trials("failed") if t.id in wanted}
    return report


def _round(
    st: Store, ex: Any, todo: list[RunConfig], runner: Runner, bar: Progress, report: SweepReport
) -> None:
    """Run the trials of ``todo`` this driver manages to claim, recording each outcome."""
    for event in ex.run(_claimed(st, todo), runner):
        kind, cfg = event[0], event[1]
        tid = cfg.trial_id()
        if kind == "retry":
            st.retried(tid)
            cause = event[2] if len(event) > 2 else "worker process died"
            report.deaths.setdefault(tid, []).append(cause)
        elif kind == "end":
            result, error = event[2], event[3]
            if result is not None and tid in report.deaths:
                # the attempt that finished says nothing of the ones whose worker died: the
                # store's error column keeps why (attempts alone would only count them)
                note = "; ".join(
                    f"attempt {i}: {c}, so it ran again"
                    for i, c in enumerate(report.deaths[tid], 1)
                )
                error = "; ".join(x for x in (result.error, note) if x)
            status = st.record(tid, result, error, event[4])
            report.ran += 1
            report.tally[status] = report.tally.get(status, 0) + 1
            bar.advance(1, info=" ".join(f"{k} {v}" for k, v in report.tally.items()))


def _claimed(st: Store, todo: list[RunConfig]) -> Iterator[RunConfig]:
    """The trials of ``todo`` this driver claims, one at a time as the executor asks for the
    next (so a trial is marked running when it starts, and other drivers take the rest)."""
    for cfg in todo:
        if st.claim(cfg.trial_id()):
            yield cfg


def _say_waiting(n: int, lease_s: float, progress: bool, said: set[int]) -> None:
    """One line each time the number of trials held by other drivers changes."""
    if progress and n not in said:
        said.add(n)
        print(
            f"waiting for {n} trial(s) run by other drivers (re-queued if their lease of "
            f"{lease_s:g} s expires)",
            file=sys.stderr,
            flush=True,
        )


def estimated_cost(c: RunConfig) -> float:
    """Relative cost of a trial: ~ parameters x tokens (width^2 * depth * steps * batch)."""
    return float(c.model.width) ** 2 * c.model.depth * c.tokens_for(c.schedule.steps)


@dataclass
class TimeEstimate:
    """A sweep's wall time, estimated from a few timed steps (``estimate_wall_time``)."""

    wall_s: float  # with ``workers`` trials at a time
    total_s: float  # every trial one after another
    workers: int
    overhead_s: float  # per trial: build, first and last evaluation
    probes: list[dict[str, Any]]  # what was timed: trial id, width, seconds per step

    def text(self) -> str:
        """One line that says it is an estimate and what it rests on."""
        timed = ", ".join(
            f"width {p['width']} {p['step_s'] * 1e3:.3g} ms/step" for p in self.probes
        )
        return (
            f"estimated wall time {_clock(self.wall_s)} with {self.workers} worker(s) "
            f"({_clock(self.total_s)} of trials in all; an estimate from timing a few steps here: "
            f"{timed}, {self.overhead_s:.2g} s per trial to build and evaluate)"
        )


def estimate_wall_time(
    configs: list[RunConfig], workers: int = 1, runner: Runner | None = None, probe_steps: int = 3
) -> TimeEstimate:
    """Time ``probe_steps`` steps of the cheapest trial (and of the costliest, when it differs)
    with ``runner``, then scale to every trial by its cost per step (``estimated_cost``; between
    the two probes a power law in that cost, since small models are slower than width^2 says),
    and spread the trials over ``workers``. An estimate: it ignores evaluations during training
    and the machine's other load."""
    if not configs:
        raise ConfigError("spec", 0, "at least one trial to estimate")
    run_one = runner or default_runner
    per_step = sorted(configs, key=lambda c: estimated_cost(c) / c.schedule.steps)
    ends = [per_step[0], per_step[-1]]
    if (
        estimated_cost(ends[0]) / ends[0].schedule.steps
        == estimated_cost(ends[1]) / ends[1].schedule.steps
    ):
        ends = ends[:1]
    _timed(run_one, _probe(ends[0], 1))  # warm up: imports, data, allocator
    probes, overhead = [], 0.0
    for c in ends:
        t1 = _timed(run_one, _probe(c, 1))
        step_s = max((_timed(run_one, _probe(c, 1 + probe_steps)) - t1) / probe_steps, 1e-9)
        overhead = max(overhead, t1 - step_s)
        probes.append({"trial": c.trial_id(), "width": c.model.width, "step_s": step_s})
    per_trial = [overhead + c.schedule.steps * _step_seconds(c, ends, probes) for c in configs]
    total = float(sum(per_trial))
    return TimeEstimate(max(total / workers, max(per_trial)), total, workers, overhead, probes)


def _probe(c: RunConfig, steps: int) -> RunConfig:
    """The trial cut to ``steps`` steps, no evaluation in between."""
    return c.replace(steps=steps, warmup=0, eval_every=0)


def _timed(runner: Runner, cfg: RunConfig) -> float:
    t0 = time.perf_counter()
    runner(cfg)
    return time.perf_counter() - t0


def _step_seconds(c: RunConfig, ends: list[RunConfig], probes: list[dict[str, Any]]) -> float:
    """Seconds per step of ``c``: a power law in cost per step through the probes."""
    unit = [estimated_cost(e) / e.schedule.steps for e in ends]
    x = estimated_cost(c) / c.schedule.steps
    if len(probes) == 1 or unit[1] == unit[0]:
        return probes[0]["step_s"] * x / unit[0]
    p = math.log(probes[1]["step_s"] / probes[0]["step_s"]) / math.log(unit[1] / unit[0])
    return probes[0]["step_s"] * (x / unit[0]) ** p


def _clock(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s // 60 % 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"
