"""run_sweep: queue a spec's trials in the store, claim and run what is left, record every
outcome. Any number of drivers may share one store (sizeup.sweep.store: claims and leases)."""

from __future__ import annotations

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
from sizeup.sweep.executors import LoggedRunner, Runner, default_runner, make_executor
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
    Every argument is checked before the store is touched.
    """
    check_choice("order", order, SWEEP_ORDERS)
    runner = _logged(runner, log, store)
    if not (isinstance(lease_s, (int, float)) and lease_s > 0):
        raise ConfigError("lease_s", lease_s, "a positive number of seconds")
    configs = spec if isinstance(spec, list) else load_spec(spec).trials()
    if not all(isinstance(c, RunConfig) for c in configs):
        raise ConfigError("spec", type(spec).__name__, "a SweepSpec, a sweep file or RunConfigs")
    ex = (
        make_executor(executor, workers=workers, **executor_kwargs)
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
    return report


def _round(
    st: Store, ex: Any, todo: list[RunConfig], runner: Runner, bar: Progress, report: SweepReport
) -> None:
    """Run the trials of ``todo`` this driver manages to claim, recording each outcome."""
    for event in ex.run(_claimed(st, todo), runner):
        kind, cfg = event[0], event[1]
        if kind == "retry":
            st.retried(cfg.trial_id())
        elif kind == "end":
            status = st.record(cfg.trial_id(), event[2], event[3], event[4])
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
    return float(c.width) ** 2 * c.depth * c.tokens_for(c.steps)
