"""Approach-3 fitting speed: sizeup's batched L-BFGS against a plain scipy L-BFGS-B loop over the
same 4,500-start grid (Besiroglu et al. 2024) on the Chinchilla points, plus 1,000 bootstrap refits.

Both sides use the same objective with the same analytic gradient, so the ratio measures the
batching, not a gradient trick. Run: python benchmarks/bench_laws.py [--stride K] [--boot N]
(--stride K uses every K-th start on both sides, for a quick look).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from sizeup.laws.chinchilla import (
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--stride", type=int, default=1, help="use every K-th grid start (1: all 4,500)"
    )
    ap.add_argument("--boot", type=int, default=1000, help="bootstrap refits to time")
    args = ap.parse_args()
    df = pd.read_csv(DATA)
    N = df.params.to_numpy()
    N, D, L, _ = drop_highest(N, df.flops.to_numpy() / (6 * N), df.loss.to_numpy(), 5)
    logN, logD, logL = np.log(N), np.log(D), np.log(L)
    grid = default_grid()[:: args.stride]
    print(f"{N.size} points, {len(grid)} starts")

    t = time.perf_counter()
    theta, f_batched, _, _ = fit_theta_grid(logN, logD, logL, grid, 1e-3)
    t_batched = time.perf_counter() - t
    print(f"sizeup batched L-BFGS : {t_batched:8.2f} s   objective {f_batched:.12g}")

    t = time.perf_counter()
    f_scipy, _ = scipy_loop(grid, logN, logD, logL, 1e-3)
    t_scipy = time.perf_counter() - t
    print(f"scipy L-BFGS-B loop    : {t_scipy:8.2f} s   objective {f_scipy:.12g}")
    # time the batched fit again after the long loop: the machine is shared, so use the slower of the two
    t = time.perf_counter()
    fit_theta_grid(logN, logD, logL, grid, 1e-3)
    t_batched = max(t_batched, time.perf_counter() - t)
    t = time.perf_counter()
    _, f_full, _, _ = fit_theta_grid(logN, logD, logL, grid, 1e-3, prune=None)
    t_full = time.perf_counter() - t
    print(
        f"sizeup, every start to convergence (prune=None): {t_full:.2f} s, objective {f_full:.12g}, "
        f"speed-up {t_scipy / t_full:.1f}x"
    )
    rel = (f_batched - f_scipy) / f_scipy
    print(
        f"speed-up {t_scipy / t_batched:.1f}x (slower of two batched timings, {t_batched:.2f} s); objective relative difference (sizeup - scipy) {rel:+.3e} "
        f"({'at least as low' if f_batched <= f_scipy * (1 + 1e-9) else 'HIGHER'})"
    )

    if args.boot:
        # the refits alone: every resample from the 4 best distinct optima, all stepped together
        _, _, xs, fs = fit_theta_grid(logN, logD, logL, grid, 1e-3)
        t = time.perf_counter()
        samples = _bootstrap(theta, xs, fs, logN, logD, logL, 1e-3, args.boot, 4, 0)
        t_boot = time.perf_counter() - t
        print(
            f"{args.boot} bootstrap refits: {t_boot:.2f} s  (alpha 90% interval "
            f"[{np.quantile(samples[:, 3], 0.05):.4f}, {np.quantile(samples[:, 3], 0.95):.4f}])"
        )


if __name__ == "__main__":
    main()
