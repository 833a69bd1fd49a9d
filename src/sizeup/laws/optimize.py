"""A batched L-BFGS: many independent smooth minimisations advanced together in numpy.

Scaling-law fits run the same small problem (5 parameters) from thousands of starting points
and bootstrap resamples. Stepping all of them at once turns thousands of tiny Python-level
optimiser loops into a few hundred vectorised array operations.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# fun(x, rows) -> (f, g): values (k,) and gradients (k, p) of the problems `rows` at x (k, p)
BatchedFun = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def batched_lbfgs(
    fun: BatchedFun,
    x0: np.ndarray,
    *,
    max_iter: int = 400,
    history: int = 10,
    gtol: float = 1e-10,
    ftol: float = 1e-12,
    max_linesearch: int = 40,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimise K independent problems from x0 (K, p); returns (x, f, iterations per row).

    Each row keeps its own L-BFGS memory and backtracking (Armijo) step; a row stops when its
    gradient or its relative decrease falls below tolerance, and later iterations only
    evaluate the rows still moving.
    """
    x = np.array(x0, dtype=float, copy=True)
    K, p = x.shape
    f, g = fun(x, np.arange(K))
    S = np.zeros((K, history, p))
    Y = np.zeros((K, history, p))
    rho = np.zeros((K, history))
    count = np.zeros(K, dtype=np.int64)  # curvature pairs stored so far
    iters = np.zeros(K, dtype=np.int64)
    active = np.isfinite(f) & (np.abs(g).max(axis=1) > gtol)

    for _ in range(max_iter):
        rows = np.flatnonzero(active)
        if rows.size == 0:
            break
        gr, cr = g[rows], count[rows]
        d = -_two_loop(gr, S[rows], Y[rows], rho[rows], cr)
        slope = np.einsum("kp,kp->k", gr, d)
        # fall back to steepest descent (and forget the memory) when the direction is not downhill
        bad = ~(slope < 0) | ~np.isfinite(slope)
        if bad.any():
            d[bad] = -gr[bad] / np.maximum(np.linalg.norm(gr[bad], axis=1, keepdims=True), 1e-300)
            count[rows[bad]] = 0
            slope[bad] = np.einsum("kp,kp->k", gr[bad], d[bad])

        # backtracking line search, re-evaluating only the rows that have not yet accepted
        t = np.ones(rows.size)
        f_new = np.empty(rows.size)
        g_new = np.empty((rows.size, p))
        todo = np.arange(rows.size)
        for _ls in range(max_linesearch):
            xt = x[rows[todo]] + t[todo, None] * d[todo]
            ft, gt = fun(xt, rows[todo])
            ok = np.isfinite(ft) & (ft <= f[rows[todo]] + 1e-4 * t[todo] * slope[todo])
            f_new[todo[ok]], g_new[todo[ok]] = ft[ok], gt[ok]
            # shrink with a safeguarded quadratic interpolation of f along the step
            fail = todo[~ok]
            if fail.size == 0:
                todo = fail
                break
            ftf = ft[~ok]
            denom = 2.0 * (ftf - f[rows[fail]] - slope[fail] * t[fail])
            tq = np.where(
                np.isfinite(ftf) & (denom > 0), -slope[fail] * t[fail] ** 2 / denom, 0.1 * t[fail]
            )
            t[fail] = np.clip(tq, 0.1 * t[fail], 0.5 * t[fail])
            todo = fail
        stuck = np.zeros(rows.size, dtype=bool)
        stuck[todo] = True  # no acceptable step: this row is at its numerical optimum
        moved = ~stuck

        r_m = rows[moved]
        s = t[moved, None] * d[moved]
        y = g_new[moved] - g[r_m]
        sy = np.einsum("kp,kp->k", s, y)
        f_old = f[r_m].copy()
        x[r_m] += s
        f[r_m], g[r_m] = f_new[moved], g_new[moved]
        iters[r_m] += 1
        # store the curvature pair only when it keeps the inverse-Hessian estimate positive
        keep = sy > 1e-16 * np.einsum("kp,kp->k", y, y)
        rk = r_m[keep]
        slot = count[rk] % history
        S[rk, slot], Y[rk, slot], rho[rk, slot] = s[keep], y[keep], 1.0 / sy[keep]
        count[rk] += 1

        done = (f_old - f[r_m]) <= ftol * np.maximum(np.abs(f_old), np.abs(f[r_m]))
        done |= np.abs(g[r_m]).max(axis=1) <= gtol
        active[r_m[done]] = False
        active[rows[stuck]] = False
    return x, f, iters


def _two_loop(
    g: np.ndarray, S: np.ndarray, Y: np.ndarray, rho: np.ndarray, count: np.ndarray
) -> np.ndarray:
    """Batched L-BFGS two-loop recursion: H_k g for every row with its own memory."""
    K, m, _ = S.shape
    q = g.copy()
    ar = np.arange(K)
    n_valid = np.minimum(count, m)
    alphas = np.zeros((K, m))
    slots = np.zeros((K, m), dtype=np.int64)
    for j in range(m):  # newest to oldest
        slot = (count - 1 - j) % m
        valid = j < n_valid
        slots[:, j] = slot
        a = np.where(valid, rho[ar, slot] * np.einsum("kp,kp->k", S[ar, slot], q), 0.0)
        alphas[:, j] = a
        q -= a[:, None] * Y[ar, slot]
    # initial Hessian scale s'y / y'y from the newest pair, or a unit-length first step
    newest = (count - 1) % m
    s_n, y_n = S[ar, newest], Y[ar, newest]
    yy = np.einsum("kp,kp->k", y_n, y_n)
    gamma = np.where(
        count > 0,
        np.einsum("kp,kp->k", s_n, y_n) / np.maximum(yy, 1e-300),
        1.0 / np.maximum(np.linalg.norm(g, axis=1), 1e-300),
    )
    r = gamma[:, None] * q
    for j in reversed(range(m)):
        slot = slots[:, j]
        valid = j < n_valid
        b = rho[ar, slot] * np.einsum("kp,kp->k", Y[ar, slot], r)
        r += np.where(valid, alphas[:, j] - b, 0.0)[:, None] * S[ar, slot]
    return r
