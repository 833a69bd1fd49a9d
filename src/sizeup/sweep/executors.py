"""Executors run trials and report back to the driver; the driver alone writes the store.

Each executor is an iterator of events over a list of configs:
    ("start", config)                              a trial was handed to a worker
    ("retry", config, cause)                       its worker died (cause, in words); it runs again
    ("end", config, result | None, error | None, seconds)
so the driver (sizeup.sweep.run_sweep) can keep the store and the progress bar up to date the
same way for every executor. A runner is any picklable `Callable[[RunConfig], RunResult]`;
it defaults to sizeup.train.run, so everything here can be tested with a stand-in runner.

Stacked trials (``LocalExecutor(stack=N)``): trials that share a ``stack_key`` (the same model
and step; lr, seed, betas, decay, schedule may differ: sizeup.config.stacking) are grouped, as
they come, into stacks of up to N that train together in one process (sizeup.train.stacked).
Each member is still its own trial, with its own start and end events and its own store row.
A stack the trainer refuses (an optimizer without a batched update) or that fails runs its
members one at a time instead, so every trial claimed for a stack runs.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import signal
import socket
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sizeup.config import RunConfig, RunResult
from sizeup.config.stacking import stack_key
from sizeup.errors import ConfigError

Runner = Callable[[RunConfig], RunResult]
StackRunner = Callable[[list[RunConfig]], list[RunResult]]
Event = tuple
Outcome = tuple[RunResult | None, str | None, float]
# Trials claimed and waiting for their stack to fill, at most this many stacks' worth: a stack
# whose shape comes no more is started part-full rather than holding its trials back.
OPEN_STACKS = 2


def default_runner(config: RunConfig) -> RunResult:
    """The real trainer, imported lazily so the sweep machinery loads without torch."""
    from sizeup.train import run

    return run(config)


@dataclass(frozen=True)
class LoggedRunner:
    """The real trainer, each trial logging to its own destination: ``logs`` are `--log`
    specs (jsonl:DIR, tensorboard:DIR, wandb:PROJECT); a trial writes DIR/<trial id>.jsonl,
    DIR/<trial id>/ or the W&B run named by its id in group ``group`` (sizeup.train.loggers).
    Picklable, so every executor can ship it to its workers."""

    logs: tuple[str, ...]
    group: str | None = None

    def __call__(self, config: RunConfig) -> RunResult:
        from sizeup.train import run
        from sizeup.train.loggers import make_logger, trial_log

        tid = config.trial_id()
        loggers = [
            make_logger(trial_log(spec, tid), config, name=tid, group=self.group)
            for spec in self.logs
        ]
        try:
            return run(config, loggers=loggers)
        finally:
            for lg in loggers:
                lg.close()


def default_stack_runner(configs: list[RunConfig]) -> list[RunResult]:
    """The real trainer for a stack (sizeup.train.stacked.run_stack), imported lazily as
    ``default_runner`` imports the trainer."""
    from sizeup.train.stacked import run_stack

    return run_stack(configs)


def auto_stack_size(config: RunConfig) -> int:
    """The stack size for trials of ``config``'s shape chosen from the memory free on its
    device (sizeup.train.stacked.auto_stack_size: a member's memory_estimate)."""
    from sizeup.train.stacked import auto_stack_size as from_memory

    return from_memory(config)


def stack_runner_for(runner: Runner) -> StackRunner | None:
    """How ``runner``'s trials train stacked: the real trainer's ``default_stack_runner``, a
    runner's own ``stack`` attribute (a callable taking a list of configs), else None (its
    trials run one at a time)."""
    if runner is default_runner:
        return default_stack_runner
    stack = getattr(runner, "stack", None)
    return stack if callable(stack) else None


def stacks(
    source: Iterable[RunConfig], size: int, size_for: Callable[[RunConfig], int] = auto_stack_size
) -> Iterator[list[RunConfig]]:
    """The configs of ``source``, as they come, grouped into stacks of up to ``size`` that
    share a ``stack_key`` (``size`` 0: ``size_for`` the stack's first config). A stack is
    handed on when full, when more than OPEN_STACKS stacks wait (the fullest goes), and at the
    end. A source that claims trials as it is read thus never holds many back."""
    open_: dict[str, list[RunConfig]] = {}
    limit: dict[str, int] = {}
    for cfg in source:
        key = stack_key(cfg)
        if key not in open_:
            open_[key] = []
            limit[key] = size or max(1, size_for(cfg))
        open_[key].append(cfg)
        if len(open_[key]) >= limit[key]:
            yield open_.pop(key)
        elif len(open_) > OPEN_STACKS:
            yield open_.pop(max(open_, key=lambda k: len(open_[k])))
    yield from open_.values()


def _call_stack(
    stack_runner: StackRunner, runner: Runner, configs: list[RunConfig]
) -> list[Outcome]:
    """Run ``configs`` as one stack: each member's (result, error, seconds), its seconds and
    CPU seconds its share of the stack's. A stack refused or failed runs each member alone
    (``_call``), the stack's error kept in each result's diagnostics["sweep"]."""
    if len(configs) == 1:
        return [_call(runner, configs[0])]
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        results = stack_runner(configs)
        if len(results) != len(configs) or not all(isinstance(r, RunResult) for r in results):
            raise TypeError(f"stack runner returned {results!r:.80}, expected a RunResult each")
    except Exception as e:  # noqa: BLE001 - the members still run, alone
        why = first_line(_format_error(e))
        outs = [_call(runner, c) for c in configs]
        for result, _, _ in outs:
            if result is not None:
                result.diagnostics.setdefault("sweep", {})["unstacked"] = why
        return outs
    share = (time.perf_counter() - t0) / len(configs)
    cpu = (time.process_time() - c0) / len(configs)
    for result in results:
        result.diagnostics.setdefault("sweep", {})["cpu_s"] = cpu
    return [(r, None, share) for r in results]


def _format_error(e: BaseException) -> str:
    tb = traceback.format_exception(type(e), e, e.__traceback__)
    # the message first (what a user reads), then the last frames (where it happened)
    return f"{type(e).__name__}: {e}\n" + "".join(tb[-3:])


def first_line(error: str | None) -> str:
    """The first line of a recorded error (the message; the frames follow it)."""
    return (error or "").strip().splitlines()[0] if (error or "").strip() else ""


def exit_cause(code: int | None) -> str:
    """A dead worker's exit status in words: 'signal 9 (SIGKILL)' or 'code 3'."""
    if code is None:
        return "cause unknown"
    if code < 0:
        try:
            return f"signal {-code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"


def _death_cause(pool: ProcessPoolExecutor, alone: bool = False) -> str:
    """Why a pool broke: the exit status of its worker(s) that died (``alone``: the trial's
    own worker; else any worker of the pool it shared). The pool terminates its other workers
    (SIGTERM) once one dies, so those are left out unless nothing else is there.
    ``_processes`` is the pool's own table (CPython; the pool forgets it only at shutdown)."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    codes = [p.exitcode for p in procs if p.exitcode is not None]
    dead = [c for c in codes if c != -signal.SIGTERM] or codes
    who = "its worker" if alone else "a worker of its pool"
    if not dead:
        return f"{who} died (cause unknown)"
    return f"{who} exited with " + ", ".join(sorted({exit_cause(c) for c in dead}))


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
    _show_sizeup_warnings_once()
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a dependency; stand-in runners need none
        pass


def _show_sizeup_warnings_once() -> None:
    """In a worker, print each of sizeup's own warning kinds (a BatchTransferWarning, a
    DecayWarning) for its first trial only: a sweep of 200 trials would otherwise print 200
    near-identical lines between the progress lines. Every trial's config still records what
    the rule did; other libraries' warnings are left alone. Idempotent (Ray calls it per task)."""
    show = warnings.showwarning
    if getattr(show, "_sizeup_once", False):
        return
    seen: set[type] = set()

    def once(message: Any, category: type, *args: Any, **kw: Any) -> None:
        if category.__module__.startswith("sizeup."):
            if category in seen:
                return
            seen.add(category)
            message = f"{message} [first of its kind in this worker; later trials' not repeated]"
        show(message, category, *args, **kw)

    once._sizeup_once = True  # type: ignore[attr-defined]
    warnings.showwarning = once


def _check_main_is_guarded(workers: int) -> None:
    """Worker processes start by re-importing the main script; a script that calls run_sweep
    at module level then starts sweeps inside every worker, and Python answers with a screen of
    tracebacks per worker. Say it once, before any worker starts."""
    import __main__

    path = getattr(__main__, "__file__", None)
    name = getattr(getattr(__main__, "__spec__", None), "name", None) or ""
    if name == "__main__" or name.endswith(".__main__"):
        return  # `python -m pkg`: multiprocessing does not run pkg/__main__.py again
    if mp.parent_process() is not None or not path or not os.path.isfile(path):
        return  # a worker, `python -c`, a notebook
    try:
        source = open(path, encoding="utf-8").read()
    except (OSError, UnicodeDecodeError):
        return
    if "__name__" not in source or "__main__" not in source:
        raise ConfigError(
            "workers",
            workers,
            f"1, or a script whose entry point is guarded: put the sweep in {path} under "
            '`if __name__ == "__main__":` (worker processes re-import the main script)',
        )


class LocalExecutor:
    """Run trials in this process (workers=1) or in N spawned worker processes; with
    ``stack`` N > 1 up to N trials of one shape at a time as one stacked model (module doc;
    0: as many as the memory holds, ``auto_stack_size``)."""

    def __init__(
        self, workers: int = 1, context: str = "forkserver", retries: int = 1, stack: int = 1
    ):
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise ConfigError("workers", workers, "a positive integer")
        if not isinstance(stack, int) or isinstance(stack, bool) or stack < 0:
            raise ConfigError(
                "stack", stack, "an integer >= 0 (1: one trial at a time; 0: from memory)"
            )
        if context not in ("spawn", "forkserver"):
            # fork would copy the driver's torch thread pools and SQLite handle into workers
            raise ConfigError("context", context, "'spawn' or 'forkserver'")
        if context == "forkserver" and "forkserver" not in mp.get_all_start_methods():
            context = "spawn"  # e.g. Windows
        if workers > 1:
            _check_main_is_guarded(workers)
        self.workers, self.context, self.retries = workers, context, retries
        self.stack = stack

    def run(self, configs: Iterable[RunConfig], runner: Runner) -> Iterator[Event]:
        """Yield start/end events while running every config. ``configs`` is consumed lazily,
        one config (or one stack's) each time a worker is free (a driver claims a trial as it
        hands it over)."""
        stack_runner = stack_runner_for(runner) if self.stack != 1 else None
        units = ([c] for c in configs) if stack_runner is None else stacks(configs, self.stack)
        if self.workers == 1:
            for unit in units:
                for cfg in unit:
                    yield ("start", cfg)
                outs = (
                    [_call(runner, unit[0])]
                    if len(unit) == 1
                    else _call_stack(stack_runner, runner, unit)
                )
                for cfg, out in zip(unit, outs):
                    yield ("end", cfg, *out)
            return
        yield from self._run_pool(iter(units), runner, stack_runner)

    def _pool(self, ctx: Any, n: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            n,
            mp_context=ctx,
            initializer=_pool_worker_init,
            initargs=(dict(os.environ), os.getpid()),
        )

    def _run_pool(
        self,
        source: Iterator[list[RunConfig]],
        runner: Runner,
        stack_runner: StackRunner | None = None,
    ) -> Iterator[Event]:
        ctx = mp.get_context(self.context)
        if self.context == "forkserver":
            # workers fork from a server that has torch imported already: fast worker start
            ctx.set_forkserver_preload(["torch", "sizeup.config"])
        while True:
            broken: list[tuple[RunConfig, str]] = []
            yield from self._fill_pool(ctx, source, runner, broken, stack_runner)
            # a worker died (killed, segfault, out of memory) and took the pool down: we cannot
            # tell which trial did it, so each trial that was in flight runs again alone; the
            # one that kills its worker again is recorded failed, the innocent ones finish
            for cfg, cause in broken:
                yield from self._run_alone(ctx, cfg, runner, cause)
            if not broken:
                return  # the source ran dry with nothing in flight

    def _fill_pool(
        self,
        ctx: Any,
        source: Iterator[list[RunConfig]],
        runner: Runner,
        broken: list[tuple[RunConfig, str]],
        stack_runner: StackRunner | None = None,
    ) -> Iterator[Event]:
        """Keep exactly ``workers`` trials (or stacks) in flight on one pool until the source
        is empty or the pool breaks (the trials it took down are appended to ``broken``, each
        with why the pool broke; a stack's every member)."""
        pool = self._pool(ctx, self.workers)
        inflight: dict[Future, list[RunConfig]] = {}
        try:
            while True:
                while len(inflight) < self.workers and not broken:
                    unit = next(source, None)
                    if unit is None:
                        break
                    if len(unit) == 1:
                        fut = pool.submit(_call, runner, unit[0])
                    else:
                        fut = pool.submit(_call_stack, stack_runner, runner, unit)
                    inflight[fut] = unit
                    for cfg in unit:
                        yield ("start", cfg)
                if not inflight:
                    return
                done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                for fut in done:
                    unit = inflight.pop(fut)
                    try:
                        out = fut.result()
                    except BrokenProcessPool:
                        broken.extend((cfg, _death_cause(pool)) for cfg in unit)
                        continue
                    outs = [out] if len(unit) == 1 else out
                    for cfg, one in zip(unit, outs):
                        yield ("end", cfg, *one)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _run_alone(self, ctx: Any, cfg: RunConfig, runner: Runner, cause: str) -> Iterator[Event]:
        """``cfg`` again in a pool of its own (``cause``: why its pool broke), while retries
        last; a trial whose worker dies every time is recorded failed with the last cause
        (alone in its pool, the dead worker is its own)."""
        for _ in range(self.retries):
            pool = self._pool(ctx, 1)
            try:
                yield ("retry", cfg, cause)
                out = pool.submit(_call, runner, cfg).result()
                yield ("end", cfg, *out)
                return
            except BrokenProcessPool:
                cause = _death_cause(pool, alone=True)  # died again: retry, then fail
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
        yield (
            "end",
            cfg,
            None,
            f"worker process died (tried {self.retries + 1}x, the last time alone): {cause}",
            0.0,
        )


def _ray_call(runner: Runner, config: RunConfig) -> tuple[RunResult | None, str | None, float]:
    _worker_init()
    return _call(runner, config)


# Ray's single-node mode: every server of a local cluster (GCS, raylet, workers, the runtime-env
# agent) listens on the loopback address instead of every interface (ray.init resolves
# "127.0.0.1" to the external address otherwise; checked on Ray 2.60).
_RAY_LOCAL_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


# How long `--address` may take to accept a TCP connection before the sweep is refused (a
# cluster's head answers in milliseconds; Ray itself would retry for 20 s, then raise).
CONNECT_TIMEOUT_S = 3.0
ADDRESSES = "auto, HOST:PORT of a running Ray cluster's head, or ray://HOST:PORT (Ray Client)"


class RayExecutor:
    """Run trials as Ray tasks, on a running cluster (``address=...``) or a local one.

    A local cluster listens on 127.0.0.1 only, unless ``host`` names the address to use. A trial
    whose Ray worker dies is run again up to ``max_retries`` times (each counted as an attempt).
    Every setting is checked when the executor is made (a run_sweep makes it before it opens its
    store): the numbers, that ``host`` is an address of this machine and that ``address``
    accepts a connection, without starting Ray; then the cluster is joined (or started), and a
    resource request no node of it can satisfy is refused (Ray itself would wait forever).
    Errors name the settings as `sizeup sweep` does (cpus_per_trial for ``num_cpus``, ...).
    """

    def __init__(
        self,
        address: str | None = None,
        num_cpus: float = 1,
        num_gpus: float = 0,
        max_retries: int = 1,
        local_cpus: int | None = None,
        max_in_flight: int | None = None,
        host: str | None = None,
    ):
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ConfigError(
                "executor", "ray", 'an installed extra: pip install "sizeup[ray]"'
            ) from None
        _check_share("cpus_per_trial", num_cpus)
        _check_share("gpus_per_trial", num_gpus)
        if num_cpus == 0 and num_gpus == 0:
            raise ConfigError(
                "cpus_per_trial", num_cpus, "a positive number (or gpus_per_trial > 0)"
            )
        _check_count("max_retries", max_retries, 0)
        _check_count("workers", local_cpus, 1)  # `sizeup sweep --workers` sizes a local cluster
        _check_count("max_in_flight", max_in_flight, 1)
        if host is not None and address:
            raise ConfigError(
                "ray_host", host, "only without --address (where a local cluster listens)"
            )
        self.host = None if host is None else local_address(host)
        if address:
            check_address(address)
        self.address, self.num_cpus, self.num_gpus = address, num_cpus, num_gpus
        self.max_retries, self.local_cpus = max_retries, local_cpus
        self.max_in_flight = max_in_flight
        self._init()
        self._check_resources()

    def _init(self) -> None:
        import ray

        if ray.is_initialized():
            return
        kw: dict[str, Any] = dict(
            include_dashboard=False, log_to_driver=False, ignore_reinit_error=True
        )
        if self.address:
            try:
                ray.init(address=self.address, **kw)
            except (ConnectionError, RuntimeError, ValueError) as e:
                reason = " ".join(str(e).split())[:200]
                raise ConfigError("address", self.address, f"{ADDRESSES} ({reason})") from None
            return
        if self.host:
            kw["_node_ip_address"] = self.host
        else:
            _ray_loopback_only()
        ray.init(num_cpus=self.local_cpus or os.cpu_count() or 1, **kw)

    def _check_resources(self) -> None:
        """Refuse a per-trial request larger than every node of the cluster."""
        import ray

        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        for key, want, flag in (
            ("CPU", self.num_cpus, "cpus_per_trial"),
            ("GPU", self.num_gpus, "gpus_per_trial"),
        ):
            most = max((n.get(key, 0.0) for n in nodes), default=0.0)
            if want > most:
                raise ConfigError(
                    flag,
                    want,
                    f"at most {most:g}: no node of this Ray cluster has {want:g} {key} "
                    f"(Ray would leave the trials pending forever; nodes: "
                    f"{[{k: v for k, v in n.items() if k in ('CPU', 'GPU')} for n in nodes]})",
                )

    def run(self, configs: Iterable[RunConfig], runner: Runner) -> Iterator[Event]:
        """Yield start/retry/end events while Ray runs every config (consumed lazily)."""
        import ray

        self._init()
        self._check_resources()
        # Ray's own retries are off: a dead worker comes back here as an exception and the
        # trial is resubmitted, so each attempt is seen (and counted) by the driver.
        task = ray.remote(_ray_call).options(
            num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_retries=0, retry_exceptions=False
        )
        limit = self.max_in_flight or self._slots()
        runner_ref = ray.put(runner)
        source = iter(configs)
        inflight: dict[Any, tuple[RunConfig, int]] = {}
        while True:
            while len(inflight) < limit and (cfg := next(source, None)) is not None:
                inflight[task.remote(runner_ref, cfg)] = (cfg, 0)
                yield ("start", cfg)
            if not inflight:
                return
            ready, _ = ray.wait(list(inflight), num_returns=1)
            yield from self._collect(ready[0], inflight, task, runner_ref)

    def _slots(self) -> int:
        import ray

        have = ray.cluster_resources()
        if self.num_cpus > 0:
            return max(1, int(have.get("CPU", 1) // self.num_cpus))
        return max(1, int(have.get("GPU", 1) // self.num_gpus))

    def _collect(self, ref: Any, inflight: dict, task: Any, runner_ref: Any) -> Iterator[Event]:
        import ray

        cfg, tries = inflight.pop(ref)
        try:
            out = ray.get(ref)
        except Exception as e:  # noqa: BLE001 - the worker died, or Ray failed the task
            if tries < self.max_retries:
                inflight[task.remote(runner_ref, cfg)] = (cfg, tries + 1)
                yield ("retry", cfg, first_line(_format_error(e)))
                return
            yield (
                "end",
                cfg,
                None,
                f"ray task failed (tried {tries + 1}x): {_format_error(e)}",
                0.0,
            )
        else:
            yield ("end", cfg, *out)


def _check_share(field: str, value: Any) -> None:
    """A finite number >= 0 of a resource per trial (Ray's fractions allowed)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not (ok and math.isfinite(value) and value >= 0):
        raise ConfigError(field, value, "a finite number >= 0 (a fraction shares a device)")


def _check_count(field: str, value: Any, least: int) -> None:
    """None (the default) or an integer >= least."""
    ok = value is None or (
        isinstance(value, int) and not isinstance(value, bool) and value >= least
    )
    if not ok:
        raise ConfigError(field, value, f"an integer >= {least}")


def local_address(host: str) -> str:
    """The IP address of this machine that ``host`` (an IP address or a host name) names, for a
    local Ray cluster to listen on: checked by resolving it and binding a socket to it, without
    starting Ray (which, given an address no interface here has, waits past a minute)."""
    try:
        found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError) as e:
        raise ConfigError(
            "ray_host",
            host,
            f"an IP address or host name of this machine (it does not resolve: {e})",
        ) from None
    for family, _, _, _, where in found:
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.bind((where[0], 0))
            return str(where[0])
        except OSError:
            continue
    ips = ", ".join(sorted({str(w[0]) for *_, w in found}))
    raise ConfigError(
        "ray_host", host, f"an address of this machine: {ips} is not one of its interfaces'"
    )


def check_address(address: str) -> None:
    """``address`` is 'auto' or 'local' (Ray finds or starts the cluster itself), or HOST:PORT /
    ray://HOST:PORT that accepts a TCP connection within CONNECT_TIMEOUT_S: an address nothing
    answers at is refused at once, not after Ray's 20 s of retries and warnings."""
    if address in ("auto", "local"):
        return
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if parts.scheme not in ("tcp", "ray") or not host or port is None:
        raise ConfigError("address", address, ADDRESSES)
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except (OSError, UnicodeError, ValueError) as e:
        raise ConfigError(
            "address",
            address,
            f"a running Ray cluster's address: nothing accepted a connection at {host}:{port} "
            f"within {CONNECT_TIMEOUT_S:g} s ({getattr(e, 'strerror', None) or e}); start the "
            "cluster (ray start --head) or check the address",
        ) from None


def _ray_loopback_only() -> None:
    """Put Ray in single-node mode for a local cluster: loopback addresses only (read by this
    process's Ray at call time and by the processes it starts, through the environment)."""
    os.environ[_RAY_LOCAL_ENV] = "0"
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


def make_executor(kind: str = "local", workers: int = 1, **kwargs: Any) -> Any:
    """An executor by name: 'local' (sequential or process pool) or 'ray'."""
    if kind == "local":
        return LocalExecutor(workers=workers, **kwargs)
    stack = kwargs.pop("stack", 1)
    if stack != 1:
        raise ConfigError("stack", stack, "1 with executor='ray' (stacks run locally)")
    if kind == "ray":
        # --workers sizes a local Ray cluster (1, the default: every CPU); checked there
        kwargs.setdefault("local_cpus", None if workers == 1 else workers)
        return RayExecutor(**kwargs)
    raise ConfigError("executor", kind, "one of 'local', 'ray'")
