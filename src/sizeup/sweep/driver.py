"""run_sweep: queue a spec's trials in the store, run what is left, record every outcome."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sizeup.choices import SWEEP_ORDERS
from sizeup.config import RunConfig
from sizeup.errors import ConfigError, check_choice
from sizeup.progress import Progress
from sizeup.sweep.executors import Runner, default_runner, make_executor
from sizeup.sweep.spec import SweepSpec, load_spec
from sizeup.sweep.store import Store


@dataclass
class SweepReport:
    """What one call of run_sweep did: trials run this call, and the store's final counts."""

    ran: int = 0
    requeued: int = 0
    skipped: int = 0  # already finished before this call
    counts: dict[str, int] = field(default_factory=dict)
    wall_time: float = 0.0


def run_sweep(
    spec: SweepSpec | dict | str | Path | list[RunConfig],
    store: Store | str | Path,
    *,
    executor: Any = "local",
    workers: int = 1,
    runner: Runner | None = None,
    progress: bool = True,
    retry_failed: bool = False,
    order: str = "spec",
    **executor_kwargs: Any,
) -> SweepReport:
    """Run (or resume) a sweep: every trial ends done, diverged or failed in the store.

    spec: a SweepSpec, a mapping, a sweep file path, or a plain list of RunConfigs.
    executor: 'local' | 'ray' | an executor object with .run(configs, runner).
    order: 'spec' (as listed) or 'largest_first' (by estimated cost, so that with N workers
    the sweep does not end waiting on one big straggler).
    Finished trials are never rerun; trials left 'running' by a dead driver run again.
    """
    check_choice("order", order, SWEEP_ORDERS)
    t0 = time.perf_counter()
    configs = spec if isinstance(spec, list) else load_spec(spec).trials()
    if not all(isinstance(c, RunConfig) for c in configs):
        raise ConfigError("spec", type(spec).__name__, "a SweepSpec, a sweep file or RunConfigs")
    own_store = not isinstance(store, Store)
    st = Store(store) if own_store else store
    try:
        if not isinstance(spec, list):
            st.set_meta("spec", load_spec(spec).to_dict())
        st.add(configs)
        requeued = st.requeue_interrupted(retry_failed=retry_failed)
        # only this spec's trials: a store may also hold queued trials of an older, wider spec
        wanted = {c.trial_id() for c in configs}
        todo = [c for c in st.queued() if c.trial_id() in wanted]
        if order == "largest_first":
            todo.sort(key=estimated_cost, reverse=True)
        ex = (
            make_executor(executor, workers=workers, **executor_kwargs)
            if isinstance(executor, str)
            else executor
        )
        report = SweepReport(requeued=requeued, skipped=len(wanted) - len(todo))
        tally = {"done": 0, "diverged": 0, "failed": 0}
        with Progress("sweep", len(wanted), report.skipped, enabled=progress) as bar:
            for event in ex.run(todo, runner or default_runner):
                kind, cfg = event[0], event[1]
                if kind == "start":
                    st.mark_running(cfg.trial_id())
                elif kind == "end":
                    result, error, seconds = event[2], event[3], event[4]
                    status = st.record(cfg.trial_id(), result, error, seconds)
                    report.ran += 1
                    tally[status] = tally.get(status, 0) + 1
                    bar.advance(1, info=" ".join(f"{k} {v}" for k, v in tally.items()))
        report.counts = st.counts()
        report.wall_time = time.perf_counter() - t0
        return report
    finally:
        if own_store:
            st.close()


def estimated_cost(c: RunConfig) -> float:
    """Relative cost of a trial: ~ parameters x tokens (width^2 * depth * steps * batch)."""
    return float(c.width) ** 2 * c.depth * c.steps * c.tokens_per_step
