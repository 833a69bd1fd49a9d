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


def _rowdot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("kp,kp->k", a, b)


class _LimitedMemory:
    """The last `history` curvature pairs per row, applied by the two-loop recursion
    (Nocedal & Wright 2006, Algorithm 7.4)."""

    def __init__(self, K: int, p: int, history: int) -> None:
        self.S = np.zeros((K, history, p))
        self.Y = np.zeros((K, history, p))
        self.rho = np.zeros((K, history))
        self.count = np.zeros(K, dtype=np.int64)  # curvature pairs stored so far

    def direction(self, rows: np.ndarray, g: np.ndarray) -> np.ndarray:
        """-H g for the given rows."""
        return -_two_loop(g, self.S[rows], self.Y[rows], self.rho[rows], self.count[rows])

    def reset(self, rows: np.ndarray) -> None:
        self.count[rows] = 0

    def update(self, rows: np.ndarray, s: np.ndarray, y: np.ndarray, sy: np.ndarray) -> None:
        slot = self.count[rows] % self.S.shape[1]
        self.S[rows, slot], self.Y[rows, slot], self.rho[rows, slot] = s, y, 1.0 / sy
        self.count[rows] += 1


class _DenseMemory:
    """The inverse-Hessian estimate as a p x p matrix per row, by the BFGS update (Nocedal &
    Wright 2006, eq. 6.17, first step scaled by eq. 6.20). For p no larger than the history it
    costs less than the two-loop recursion and keeps every curvature pair, not the last few."""

    def __init__(self, K: int, p: int) -> None:
        self.H = np.zeros((K, p, p))
        self.count = np.zeros(K, dtype=np.int64)

    def direction(self, rows: np.ndarray, g: np.ndarray) -> np.ndarray:
        d = -np.einsum("kij,kj->ki", self.H[rows], g)
        fresh = self.count[rows] == 0  # no curvature yet: a unit-length steepest-descent step
        if fresh.any():
            gf = g[fresh]
            d[fresh] = -gf / np.maximum(np.linalg.norm(gf, axis=1, keepdims=True), 1e-300)
        return d

    def reset(self, rows: np.ndarray) -> None:
        self.count[rows] = 0

    def update(self, rows: np.ndarray, s: np.ndarray, y: np.ndarray, sy: np.ndarray) -> None:
        H = self.H[rows]
        first = self.count[rows] == 0
        if first.any():
            gamma = sy[first] / _rowdot(y[first], y[first])
            H[first] = gamma[:, None, None] * np.eye(H.shape[1])
        rho = 1.0 / sy
        with np.errstate(over="ignore", invalid="ignore"):
            Hy = np.einsum("kij,kj->ki", H, y)
            c = rho * rho * _rowdot(y, Hy) + rho
            H += c[:, None, None] * (s[:, :, None] * s[:, None, :])
            H -= rho[:, None, None] * (
                s[:, :, None] * Hy[:, None, :] + Hy[:, :, None] * s[:, None, :]
            )
        self.H[rows] = H
        # an update that overflowed is forgotten: that row restarts from steepest descent
        self.count[rows] = np.where(np.isfinite(H).all(axis=(1, 2)), self.count[rows] + 1, 0)


def batched_lbfgs(
    fun: BatchedFun,
    x0: np.ndarray,
    *,
    max_iter: int = 400,
    history: int = 10,
    gtol: float = 1e-10,
    ftol: float = 1e-12,
    max_linesearch: int = 40,
    dense: bool | None = None,
    behind: tuple[float, float] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimise K independent problems from x0 (K, p); returns (x, f, iterations per row).

    Each row keeps its own quasi-Newton memory and backtracking (Armijo) step; a row stops when
    its gradient or its relative decrease falls below tolerance, and later iterations only
    evaluate the rows still moving. dense (default: p <= history) keeps each row's inverse
    Hessian as a p x p BFGS matrix instead of the last `history` pairs: with the 5 parameters
    of a scaling law that is both cheaper and no worse.

    behind=(gap, loose_ftol): a row whose objective is more than `gap` (relative) above the
    best row's stops at the loose tolerance instead of ftol. Polishing several candidates at a
    strict ftol then costs the iterations of the best ones only, not of a row creeping along a
    plateau it will never leave.
    """
    x = np.array(x0, dtype=float, copy=True)
    K, p = x.shape
    f, g = fun(x, np.arange(K))
    dense = p <= history if dense is None else dense
    mem = _DenseMemory(K, p) if dense else _LimitedMemory(K, p, history)
    iters = np.zeros(K, dtype=np.int64)
    active = np.isfinite(f) & (np.abs(g).max(axis=1) > gtol)

    for _ in range(max_iter):
        rows = np.flatnonzero(active)
        if rows.size == 0:
            break
        gr = g[rows]
        d = mem.direction(rows, gr)
        slope = _rowdot(gr, d)
        # fall back to steepest descent (and forget the memory) when the direction is not downhill
        bad = ~(slope < 0) | ~np.isfinite(slope)
        if bad.any():
            d[bad] = -gr[bad] / np.maximum(np.linalg.norm(gr[bad], axis=1, keepdims=True), 1e-300)
            mem.reset(rows[bad])
            slope[bad] = _rowdot(gr[bad], d[bad])
        t, f_new, g_new, stuck = _line_search(fun, x, f, rows, d, slope, max_linesearch)
        moved = ~stuck

        r_m = rows[moved]
        s = t[moved, None] * d[moved]
        y = g_new[moved] - g[r_m]
        sy = _rowdot(s, y)
        f_old = f[r_m].copy()
        x[r_m] += s
        f[r_m], g[r_m] = f_new[moved], g_new[moved]
        iters[r_m] += 1
        # store the curvature pair only when it keeps the inverse-Hessian estimate positive and
        # well conditioned (s'y not vanishing against |s| |y|)
        keep = sy > 1e-8 * np.sqrt(_rowdot(s, s) * _rowdot(y, y))
        mem.update(r_m[keep], s[keep], y[keep], sy[keep])

        tol = ftol
        if behind is not None:
            f_best = np.min(f[np.isfinite(f)], initial=np.inf)
            tol = np.where(f[r_m] - f_best > behind[0] * abs(f_best), behind[1], ftol)
        done = (f_old - f[r_m]) <= tol * np.maximum(np.abs(f_old), np.abs(f[r_m]))
        done |= np.abs(g[r_m]).max(axis=1) <= gtol
        active[r_m[done]] = False
        active[rows[stuck]] = False  # no acceptable step: this row is at its numerical optimum
    return x, f, iters


# fun(x, rows) -> (f, g, H): values (k,), gradients (k, p) and Hessians (k, p, p)
BatchedHessFun = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


def batched_newton(
    fun: BatchedHessFun,
    x0: np.ndarray,
    *,
    max_iter: int = 200,
    gtol: float = 1e-13,
    ftol: float = 1e-15,
    max_linesearch: int = 40,
    behind: tuple[float, float] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Newton's method with the analytic Hessian for K independent problems; returns
    (x, f, iterations per row). For polishing near an optimum: a handful of iterations where a
    quasi-Newton method takes a hundred.

    Each row's Hessian is made positive definite by replacing its eigenvalues with their
    absolute values, floored at 1e-10 of the largest (a modified Newton step, Nocedal & Wright
    2006, section 3.4), so every step is downhill; an Armijo backtracking search sets its
    length. Stops and `behind` as in batched_lbfgs.
    """
    x = np.array(x0, dtype=float, copy=True)
    K, p = x.shape
    f, g, H = fun(x, np.arange(K))

    def fg(xt: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ft, gt, Ht = fun(xt, rows)
        H_new[rows] = Ht  # keep the Hessian of every accepted trial point
        return ft, gt

    H_new = H.copy()
    iters = np.zeros(K, dtype=np.int64)
    active = np.isfinite(f) & (np.abs(g).max(axis=1) > gtol)
    for _ in range(max_iter):
        rows = np.flatnonzero(active)
        if rows.size == 0:
            break
        d = _newton_direction(H[rows], g[rows])
        slope = _rowdot(g[rows], d)
        t, f_new, g_new, stuck = _line_search(fg, x, f, rows, d, slope, max_linesearch)
        r_m = rows[~stuck]
        f_old = f[r_m].copy()
        x[r_m] += t[~stuck, None] * d[~stuck]
        f[r_m], g[r_m] = f_new[~stuck], g_new[~stuck]
        H[r_m] = H_new[r_m]
        iters[r_m] += 1
        tol = ftol
        if behind is not None:
            f_best = np.min(f[np.isfinite(f)], initial=np.inf)
            tol = np.where(f[r_m] - f_best > behind[0] * abs(f_best), behind[1], ftol)
        done = (f_old - f[r_m]) <= tol * np.maximum(np.abs(f_old), np.abs(f[r_m]))
        done |= np.abs(g[r_m]).max(axis=1) <= gtol
        active[r_m[done]] = False
        active[rows[stuck]] = False
    return x, f, iters


def _newton_direction(H: np.ndarray, g: np.ndarray) -> np.ndarray:
    """-|H|^-1 g per row, |H| the Hessian with its eigenvalues made positive (see batched_newton);
    rows with a non-finite Hessian take a unit-length steepest-descent step."""
    ok = np.isfinite(H).all(axis=(1, 2)) & np.isfinite(g).all(axis=1)
    d = -g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-300)
    if ok.any():
        lam, V = np.linalg.eigh(H[ok])
        lam = np.abs(lam)
        lam = np.maximum(lam, 1e-10 * lam.max(axis=1, keepdims=True) + 1e-300)
        d[ok] = -np.einsum("kij,kj->ki", V, np.einsum("kji,kj->ki", V, g[ok]) / lam)
    return d


def _line_search(
    fun: BatchedFun,
    x: np.ndarray,
    f: np.ndarray,
    rows: np.ndarray,
    d: np.ndarray,
    slope: np.ndarray,
    max_linesearch: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Backtracking (Armijo) line search for every row at once, re-evaluating only the rows that
    have not yet accepted a step; returns (step, f, g at the step, stuck rows)."""
    p = x.shape[1]
    t = np.ones(rows.size)
    f_new = np.empty(rows.size)
    g_new = np.empty((rows.size, p))
    todo = np.arange(rows.size)
    for _ls in range(max_linesearch):
        xt = x[rows[todo]] + t[todo, None] * d[todo]
        ft, gt = fun(xt, rows[todo])
        ok = np.isfinite(ft) & (ft <= f[rows[todo]] + 1e-4 * t[todo] * slope[todo])
        f_new[todo[ok]], g_new[todo[ok]] = ft[ok], gt[ok]
        fail = todo[~ok]
        todo = fail
        if fail.size == 0:
            break
        # shrink with a safeguarded quadratic interpolation of f along the step
        ftf = ft[~ok]
        denom = 2.0 * (ftf - f[rows[fail]] - slope[fail] * t[fail])
        tq = np.where(
            np.isfinite(ftf) & (denom > 0), -slope[fail] * t[fail] ** 2 / denom, 0.1 * t[fail]
        )
        t[fail] = np.clip(tq, 0.1 * t[fail], 0.5 * t[fail])
    stuck = np.zeros(rows.size, dtype=bool)
    stuck[todo] = True
    return t, f_new, g_new, stuck


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
