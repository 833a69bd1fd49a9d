"""Approach-3 fitting speed: sizeup's batched L-BFGS against a plain scipy L-BFGS-B loop over the
same 4,500-start grid (Besiroglu et al. 2024) on the Chinchilla points, plus 1,000 bootstrap refits.

Both sides use the same objective with the same analytic gradient. sizeup steps every start
together (batched quasi-Newton), eliminates the poor starts in stages and polishes the
survivors; the scipy side runs every start to convergence one after another, as a user would.
One process prints both times, the ratio and both objectives. Run on a quiet machine:
python benchmarks/bench_laws.py [--stride K] [--boot N] [--repeats R]
(--stride K uses every K-th start on both sides, for a quick look).
"""

from __future__ import annotations

import os

# One BLAS thread, set before numpy loads: on a shared machine OpenBLAS's spin-waiting threads
# make every small call inside scipy's L-BFGS-B about 20x slower, which would flatter the ratio.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.optimize import minimize  # noqa: E402

from sizeup.laws.chinchilla import (  # noqa: E402
    _bootstrap,
    approach3_objective,
    default_grid,
    drop_highest,
    fit_theta_grid,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "chinchilla_fig4_points.csv"


def scipy_loop(
    grid: np.ndarray, logN: np.ndarray, logD: np.ndarray, logL: np.ndarray, delta: float
) -> tuple[float, np.ndarray]:
    """The baseline: one scipy.optimize.minimize(L-BFGS-B) per start, default tolerances, keep the best."""

    def fg(x: np.ndarray) -> tuple[float, np.ndarray]:
        f, g = approach3_objective(x[None], logN, logD, logL, None, delta)
        return float(f[0]), g[0]

    best_f, best_x = np.inf, None
    for x0 in grid:
        res = minimize(fg, x0, jac=True, method="L-BFGS-B")
        if np.isfinite(res.fun) and res.fun < best_f:
            best_f, best_x = float(res.fun), res.x
    return best_f, best_x


def _time_batched(logN, logD, logL, grid, repeats: int) -> tuple[list[float], float]:
    """Wall times of `repeats` full fits (4,500 starts, elimination, polish) and the objective."""
    times, f = [], np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        _, f, _, _ = fit_theta_grid(logN, logD, logL, grid, 1e-3)
        times.append(time.perf_counter() - t)
    return times, f


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--stride", type=int, default=1, help="use every K-th grid start (1: all 4,500)"
    )
    ap.add_argument("--boot", type=int, default=1000, help="bootstrap refits to time")
    ap.add_argument("--repeats", type=int, default=5, help="timed batched fits (before + after)")
    args = ap.parse_args()
    df = pd.read_csv(DATA)
    N = df.params.to_numpy()
    N, D, L, _ = drop_highest(N, df.flops.to_numpy() / (6 * N), df.loss.to_numpy(), 5)
    logN, logD, logL = np.log(N), np.log(D), np.log(L)
    grid = default_grid()[:: args.stride]
    print(f"{N.size} points, {len(grid)} starts")

    # the batched fit is timed before and after the long scipy loop (the machine may be shared)
    before, f_batched = _time_batched(logN, logD, logL, grid, max(1, args.repeats // 2))
    t = time.perf_counter()
    f_scipy, _ = scipy_loop(grid, logN, logD, logL, 1e-3)
    t_scipy = time.perf_counter() - t
    after, _ = _time_batched(logN, logD, logL, grid, max(1, args.repeats - len(before)))
    times = before + after
    t_med, t_max = float(np.median(times)), max(times)
    print(f"scipy L-BFGS-B loop    : {t_scipy:8.3f} s   objective {f_scipy:.15g}")
    print(
        f"sizeup batched         : {t_med:8.3f} s   objective {f_batched:.15g}   "
        f"(median of {len(times)}; slowest {t_max:.3f} s)"
    )
    rel = (f_batched - f_scipy) / f_scipy
    print(
        f"speed-up {t_scipy / t_med:.1f}x (median), {t_scipy / t_max:.1f}x (slowest); "
        f"objective relative difference (sizeup - scipy) {rel:+.3e} "
        f"({'at least as low' if f_batched <= f_scipy * (1 + 1e-12) else 'HIGHER'})"
    )
    t = time.perf_counter()
    _, f_full, _, _ = fit_theta_grid(logN, logD, logL, grid, 1e-3, prune=None)
    t_full = time.perf_counter() - t
    print(
        f"sizeup, every start to convergence (prune=None): {t_full:.3f} s, "
        f"objective {f_full:.15g}, speed-up {t_scipy / t_full:.1f}x"
    )

    if args.boot:
        # the refits alone: every resample from the 4 best distinct optima, all stepped together
        theta, _, xs, fs = fit_theta_grid(logN, logD, logL, grid, 1e-3)
        t = time.perf_counter()
        samples = _bootstrap(theta, xs, fs, logN, logD, logL, 1e-3, args.boot, 4, 0)
        t_boot = time.perf_counter() - t
        print(
            f"{args.boot} bootstrap refits: {t_boot:.2f} s  (alpha 90% interval "
            f"[{np.quantile(samples[:, 3], 0.05):.4f}, {np.quantile(samples[:, 3], 0.95):.4f}])"
        )


if __name__ == "__main__":
    main()
