"""Executors run trials and report back to the driver; the driver alone writes the store.

Each executor is an iterator of events over a list of configs:
    ("start", config)                              a trial was handed to a worker
    ("end", config, result | None, error | None, seconds)
so the driver (sizeup.sweep.run_sweep) can keep the store and the progress bar up to date the
same way for every executor. A runner is any picklable `Callable[[RunConfig], RunResult]`;
it defaults to sizeup.train.run, so everything here can be tested with a stand-in runner.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from sizeup.config import RunConfig, RunResult
from sizeup.errors import ConfigError

Runner = Callable[[RunConfig], RunResult]
Event = tuple


def default_runner(config: RunConfig) -> RunResult:
    """The real trainer, imported lazily so the sweep machinery loads without torch."""
    from sizeup.train import run

    return run(config)


def _format_error(e: BaseException) -> str:
    tb = traceback.format_exception(type(e), e, e.__traceback__)
    # the message first (what a user reads), then the last frames (where it happened)
    return f"{type(e).__name__}: {e}\n" + "".join(tb[-3:])


def _call(runner: Runner, config: RunConfig) -> tuple[RunResult | None, str | None, float]:
    """Run one trial, turning any exception into an error string (a crash never stops a sweep)."""
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        result = runner(config)
        if not isinstance(result, RunResult):
            raise TypeError(f"runner returned {type(result).__name__}, expected RunResult")
        # CPU seconds tell the cost of a trial even on a busy machine, where wall time lies
        result.diagnostics.setdefault("sweep", {})["cpu_s"] = time.process_time() - c0
        return result, None, time.perf_counter() - t0
    except Exception as e:  # noqa: BLE001 - recorded as a failed trial, the sweep goes on
        return None, _format_error(e), time.perf_counter() - t0


def _exit_with_driver(driver_pid: int) -> None:
    """A daemon thread that ends this worker once the sweep driver is gone, so a killed sweep
    leaves no orphan still training (its trial is re-queued on resume anyway). Workers are
    children of the forkserver, which can outlive the driver, so we watch the driver itself."""

    def watch() -> None:
        while True:
            time.sleep(1.0)
            try:
                os.kill(driver_pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:  # alive, owned by someone else (cannot happen for a parent)
                pass

    threading.Thread(target=watch, daemon=True, name="sizeup-driver-watch").start()


def _pool_worker_init(env: dict[str, str], driver_pid: int) -> None:
    _exit_with_driver(driver_pid)
    _worker_init(env)


def _worker_init(env: dict[str, str] | None = None) -> None:
    """Worker processes train with one torch thread each: N workers share N cores cleanly."""
    if env:
        # a forkserver keeps the environment of its first use; workers must see today's
        os.environ.update(env)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a dependency; stand-in runners need none
        pass


class LocalExecutor:
    """Run trials in this process (workers=1) or in N spawned worker processes."""

    def __init__(self, workers: int = 1, context: str = "forkserver", retries: int = 1):
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise ConfigError("workers", workers, "a positive integer")
        if context not in ("spawn", "forkserver"):
            # fork would copy the driver's torch thread pools and SQLite handle into workers
            raise ConfigError("context", context, "'spawn' or 'forkserver'")
        if context == "forkserver" and "forkserver" not in mp.get_all_start_methods():
            context = "spawn"  # e.g. Windows
        self.workers, self.context, self.retries = workers, context, retries

    def run(self, configs: list[RunConfig], runner: Runner) -> Iterator[Event]:
        """Yield start/end events while running every config."""
        if self.workers == 1:
            for cfg in configs:
                yield ("start", cfg)
                yield ("end", cfg, *_call(runner, cfg))
            return
        yield from self._run_pool(configs, runner)

    def _pool(self, ctx: Any, n: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            n,
            mp_context=ctx,
            initializer=_pool_worker_init,
            initargs=(dict(os.environ), os.getpid()),
        )

    def _run_pool(self, configs: list[RunConfig], runner: Runner) -> Iterator[Event]:
        ctx = mp.get_context(self.context)
        if self.context == "forkserver":
            # workers fork from a server that has torch imported already: fast worker start
            ctx.set_forkserver_preload(["torch", "sizeup.config"])
        todo = list(configs)
        while todo:
            pool = self._pool(ctx, self.workers)
            inflight: dict[Future, RunConfig] = {}
            broken: list[RunConfig] = []
            try:
                # keep exactly `workers` trials in flight, so 'running' in the store is true
                while (todo and not broken) or inflight:
                    while todo and len(inflight) < self.workers and not broken:
                        cfg = todo.pop(0)
                        inflight[pool.submit(_call, runner, cfg)] = cfg
                        yield ("start", cfg)
                    done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                    for fut in done:
                        cfg = inflight.pop(fut)
                        try:
                            yield ("end", cfg, *fut.result())
                        except BrokenProcessPool:
                            broken.append(cfg)
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
            # a worker died (killed, segfault, out of memory) and took the pool down: we cannot
            # tell which trial did it, so each trial that was in flight runs again alone; the
            # one that kills its worker again is recorded failed, the innocent ones finish
            for cfg in broken:
                yield from self._run_alone(ctx, cfg, runner)

    def _run_alone(self, ctx: Any, cfg: RunConfig, runner: Runner) -> Iterator[Event]:
        for _ in range(self.retries):
            pool = self._pool(ctx, 1)
            try:
                yield ("retry", cfg)
                out = pool.submit(_call, runner, cfg).result()
                yield ("end", cfg, *out)
                return
            except BrokenProcessPool:
                pass  # died again: try again while retries last, then record it failed
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
        yield (
            "end",
            cfg,
            None,
            f"worker process died (tried {self.retries + 1}x, the last "
            "time alone): BrokenProcessPool",
            0.0,
        )


def _ray_call(runner: Runner, config: RunConfig) -> tuple[RunResult | None, str | None, float]:
    _worker_init()
    return _call(runner, config)


class RayExecutor:
    """Run trials as Ray tasks, on a running cluster (address=...) or a local one."""

    def __init__(
        self,
        address: str | None = None,
        num_cpus: float = 1,
        num_gpus: float = 0,
        max_retries: int = 1,
        local_cpus: int | None = None,
        max_in_flight: int | None = None,
    ):
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ConfigError(
                "executor", "ray", 'an installed extra: pip install "sizeup[ray]"'
            ) from None
        if num_cpus <= 0 and num_gpus <= 0:
            raise ConfigError("num_cpus", num_cpus, "a positive number (or num_gpus > 0)")
        self.address, self.num_cpus, self.num_gpus = address, num_cpus, num_gpus
        self.max_retries, self.local_cpus, self.max_in_flight = (
            max_retries,
            local_cpus,
            max_in_flight,
        )

    def _init(self) -> None:
        import ray

        if ray.is_initialized():
            return
        kw: dict[str, Any] = dict(
            include_dashboard=False, log_to_driver=False, ignore_reinit_error=True
        )
        if self.address:
            ray.init(address=self.address, **kw)
        else:
            ray.init(num_cpus=self.local_cpus or os.cpu_count() or 1, **kw)

    def run(self, configs: list[RunConfig], runner: Runner) -> Iterator[Event]:
        """Yield start/end events while Ray runs every config."""
        import ray

        self._init()
        # max_retries: Ray re-runs a task whose worker process died; exceptions inside the
        # runner are caught in _call and come back as an error string, never retried
        task = ray.remote(_ray_call).options(
            num_cpus=self.num_cpus,
            num_gpus=self.num_gpus,
            max_retries=self.max_retries,
            retry_exceptions=False,
        )
        limit = self.max_in_flight
        if limit is None:
            cpus = ray.cluster_resources().get("CPU", 1)
            limit = max(1, int(cpus // self.num_cpus)) if self.num_cpus > 0 else len(configs)
        runner_ref = ray.put(runner)
        todo = list(configs)
        inflight: dict[Any, RunConfig] = {}
        while todo or inflight:
            while todo and len(inflight) < limit:
                cfg = todo.pop(0)
                inflight[task.remote(runner_ref, cfg)] = cfg
                yield ("start", cfg)
            ready, _ = ray.wait(list(inflight), num_returns=1)
            for ref in ready:
                cfg = inflight.pop(ref)
                try:
                    out = ray.get(ref)
                except Exception as e:  # noqa: BLE001 - worker died twice, or Ray failed
                    yield (
                        "end",
                        cfg,
                        None,
                        f"ray task failed after {self.max_retries} retry: {_format_error(e)}",
                        0.0,
                    )
                else:
                    yield ("end", cfg, *out)


def make_executor(kind: str = "local", workers: int = 1, **kwargs: Any) -> Any:
    """An executor by name: 'local' (sequential or process pool) or 'ray'."""
    if kind == "local":
        return LocalExecutor(workers=workers, **kwargs)
    if kind == "ray":
        kwargs.setdefault("local_cpus", workers if workers > 1 else None)
        return RayExecutor(**kwargs)
    raise ConfigError("executor", kind, "one of 'local', 'ray'")
