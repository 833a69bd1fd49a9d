"""Sweep machinery benchmarks, each a ratio against a baseline measured in the same process.

1. Parallel efficiency of the local executor: 8 equal real training trials, 2 workers against
   1 (in-process) worker. efficiency = T(1 worker) / (2 * T(2 workers)); target >= 0.8.
2. Per-trial overhead of store + executor against calling the trainer in a plain loop:
   (T(run_sweep, 1 worker) - T(loop)) / T(loop); target <= 5%. Also the absolute cost per trial
   with a no-op runner (synthetic_run), which is all overhead.

Run: python benchmarks/bench_sweep.py [--quick]. Timings share the machine with whatever else
runs, so the script prints the load average next to each figure.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from sizeup.config import RunConfig
from sizeup.sweep import SweepSpec, run_sweep
from sizeup.sweep.executors import default_runner
from sizeup.sweep.testing import synthetic_run


def _spec(n: int, steps: int, width: int) -> SweepSpec:
    # equal trials: same shape and steps, different seeds (each study gets a fresh store)
    return SweepSpec(
        base={
            "width": width,
            "depth": 2,
            "seq_len": 64,
            "batch_size": 16,
            "steps": steps,
            "eval_batches": 2,
            "lr": 2.0**-8,
            "rule": "mup",
        },
        axes={"seed": list(range(n))},
    )


def _timed_sweep(spec: SweepSpec, workers: int, runner=None) -> float:
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        run_sweep(spec, Path(d) / "s.db", workers=workers, runner=runner, progress=False)
        return time.perf_counter() - t0


def _timed_loop(configs: list[RunConfig], runner) -> float:
    t0 = time.perf_counter()
    for c in configs:
        runner(c)
    return time.perf_counter() - t0


def main() -> None:
    """Print both benchmarks."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer steps (noisier)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    steps = 60 if args.quick else 150
    print(f"cpus={os.cpu_count()} load={os.getloadavg()[0]:.2f}")

    # 1. parallel efficiency: 8 equal trials
    t1 = _timed_sweep(_spec(8, steps, 128), workers=1)
    t2 = _timed_sweep(_spec(8, steps, 128), workers=2)
    print(
        f"parallel: 8 trials of {steps} steps: 1 worker {t1:.1f}s, 2 workers {t2:.1f}s, "
        f"efficiency {t1 / (2 * t2):.2f} (target >= 0.8) load={os.getloadavg()[0]:.2f}"
    )

    # 2. overhead against a plain loop, interleaved and best-of-2 to damp other load
    n = 8
    loops, sweeps = [], []
    for _ in range(2):
        spec = _spec(n, steps // 2, 32)
        loops.append(_timed_loop(spec.trials(), default_runner))
        sweeps.append(_timed_sweep(spec, workers=1))
    tl, ts = min(loops), min(sweeps)
    print(
        f"overhead: {n} trials of {steps // 2} steps: loop {tl:.2f}s, sweep {ts:.2f}s, "
        f"overhead {(ts - tl) / tl * 100:+.1f}% (target <= 5%) load={os.getloadavg()[0]:.2f}"
    )
    m = 200
    configs = SweepSpec(axes={"seed": list(range(m))}).trials()
    t_loop = _timed_loop(configs, synthetic_run)
    t_sweep = _timed_sweep(
        SweepSpec(axes={"seed": list(range(m))}), workers=1, runner=synthetic_run
    )
    print(
        f"overhead per trial with a no-op runner: {(t_sweep - t_loop) / m * 1e3:.2f} ms "
        f"({m} trials: loop {t_loop:.3f}s, sweep {t_sweep:.3f}s)"
    )


if __name__ == "__main__":
    main()
