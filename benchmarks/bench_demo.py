"""Wall time of each `sizeup demo --axis A [--quick]` study, from scratch, on this machine.

Each study runs into a fresh temporary folder with 2 worker processes (one torch thread each),
exactly as `sizeup demo --axis A [--quick]` does, and the script prints its wall time, its
trials, the load average before and after (timings shared with other jobs are slower and say
so) and the CPU seconds the trials took (the sum of their run times). Target: each quick study
under 10 minutes on 2 cores; the full ones have no target, only a figure.

Run: python benchmarks/bench_demo.py [width depth batch steps stability] [--seeds 0,1,2] [--full]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time

from sizeup.demo import AXES, run_demo, store_name


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def bench(axis: str, seeds: list[int], quick: bool = True, keep: str | None = None) -> dict:
    """One study from scratch: wall time, trials, summed trial seconds, load. ``keep``: a
    folder to run it in (KEEP/AXIS, which must not hold the study yet) instead of a temporary
    one, so its report stays."""
    from sizeup.sweep import Store

    folder = os.path.join(keep, axis) if keep else None
    if folder and os.path.exists(folder):
        raise SystemExit(f"--keep: {folder} exists; a timing starts from scratch")
    with contextlib.nullcontext(folder) if folder else tempfile.TemporaryDirectory() as tmp:
        before = _load()
        t0 = time.perf_counter()
        s = run_demo(tmp, quick=quick, workers=2, axis=axis, seeds=seeds, progress=False)
        wall = time.perf_counter() - t0
        with Store(os.path.join(tmp, store_name(axis, quick)), readonly=True) as st:
            cpu = sum(t.wall_time or 0.0 for t in st.trials())
    return {
        "axis": axis,
        "wall_s": wall,
        "trials": sum(s["trials"].values()),
        "trial_s": cpu,
        "load": f"{before} -> {_load()}",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("axes", nargs="*", default=list(AXES))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--full", action="store_true", help="The full studies, not the quick ones.")
    ap.add_argument("--keep", help="Run each study in KEEP/AXIS and keep it (default: a temp dir).")
    a = ap.parse_args()
    seeds = [int(x) for x in a.seeds.split(",")]
    print(f"{'axis':10s} {'wall s':>8s} {'trials':>7s} {'trial s':>8s}  load (1/5/15 min)")
    for axis in a.axes:
        r = bench(axis, seeds, quick=not a.full, keep=a.keep)
        print(
            f"{r['axis']:10s} {r['wall_s']:8.0f} {r['trials']:7d} {r['trial_s']:8.0f}  {r['load']}",
            flush=True,
        )


if __name__ == "__main__":
    main()
