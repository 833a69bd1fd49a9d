"""Chinchilla scaling laws: the parametric law L(N, D) = E + A/N^alpha + B/D^beta and its
compute-optimal allocation (Hoffmann et al. 2022)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from sizeup.choices import RESAMPLES
from sizeup.errors import ConfigError, DataError, check_choice, check_positive
from sizeup.laws.forms import PowerLaw, group_budgets
from sizeup.laws.intervals import (
    check_resampling,
    line_prediction_interval,
    noise_draws,
    noise_scale,
    normalized_weights,
    percentile_interval,
)
from sizeup.laws.optimize import batched_lbfgs, batched_newton


@dataclass(frozen=True)
class ChinchillaLaw:
    """L(N, D) = E + A / N^alpha + B / D^beta, with training compute C = k N D (k = 6)."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    flops_per_param_token: float = 6.0  # k in C = k N D

    def __post_init__(self) -> None:
        for name in ("A", "B", "alpha", "beta", "flops_per_param_token"):
            check_positive(name, getattr(self, name))
        if not self.E >= 0:
            raise ConfigError("E", self.E, "an irreducible loss >= 0")

    def loss(self, N: float | np.ndarray, D: float | np.ndarray) -> float | np.ndarray:
        """Predicted loss for N parameters trained on D tokens (broadcasts over arrays)."""
        N, D = np.asarray(N, dtype=float), np.asarray(D, dtype=float)
        if np.any(N <= 0) or np.any(D <= 0):
            raise ConfigError("N/D", "non-positive", "parameters and tokens > 0")
        out = self.E + self.A / N**self.alpha + self.B / D**self.beta
        return float(out) if out.ndim == 0 else out

    @property
    def a(self) -> float:
        """Exponent of N_opt in C: beta / (alpha + beta)."""
        return self.beta / (self.alpha + self.beta)

    @property
    def b(self) -> float:
        """Exponent of D_opt in C: alpha / (alpha + beta)."""
        return self.alpha / (self.alpha + self.beta)

    @property
    def G(self) -> float:
        """Hoffmann et al. 2022 eq. (4): G = (alpha A / (beta B))^(1 / (alpha + beta))."""
        return (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))

    def optimal(self, C: float | np.ndarray) -> tuple[float | np.ndarray, float | np.ndarray]:
        """Compute-optimal (N_opt, D_opt) for budget C: N_opt = G (C/k)^a, D_opt = (C/k)^b / G."""
        C = np.asarray(C, dtype=float)
        if np.any(C <= 0):
            raise ConfigError("C", "non-positive", "a compute budget > 0 FLOPs")
        x = C / self.flops_per_param_token
        n, d = self.G * x**self.a, x**self.b / self.G
        if n.ndim == 0:
            return float(n), float(d)
        return n, d

    def tokens_per_param(self, C: float | np.ndarray) -> float | np.ndarray:
        """Compute-optimal D_opt / N_opt at budget C."""
        n, d = self.optimal(C)
        return d / n

    def optimal_loss(self, C: float | np.ndarray) -> float | np.ndarray:
        """Loss of the compute-optimal model at budget C."""
        n, d = self.optimal(C)
        return self.loss(n, d)

    def tokens_for(self, N: float | np.ndarray, C: float | np.ndarray) -> float | np.ndarray:
        """Tokens D = C / (k N) that spend budget C on a model of N parameters."""
        return np.asarray(C, dtype=float) / (
            self.flops_per_param_token * np.asarray(N, dtype=float)
        )

    def to_dict(self) -> dict[str, float]:
        """Plain dict of the five constants (and k)."""
        return asdict(self)


# --------------------------------------------------------------------------------------------
# shared input checks
# --------------------------------------------------------------------------------------------


def _check_points(
    N: np.ndarray, D: np.ndarray, L: np.ndarray, min_points: int
) -> tuple[np.ndarray, ...]:
    """Validate (N, D, L) as equal-length finite positive 1-D arrays with enough points."""
    arrs = [np.asarray(a, dtype=float).ravel() for a in (N, D, L)]
    names = ("params", "tokens", "loss")
    if len({a.size for a in arrs}) != 1:
        raise DataError(
            f"params/tokens/loss lengths {[a.size for a in arrs]} are not allowed: equal lengths"
        )
    for name, a in zip(names, arrs):
        bad = ~np.isfinite(a) | (a <= 0)
        if bad.any():
            raise DataError(
                f"{name}={a[bad][:3].tolist()} (at rows {np.flatnonzero(bad)[:3].tolist()}) "
                "is not allowed: finite values > 0 (drop those rows first)"
            )
    if arrs[0].size < min_points:
        raise DataError(f"points={arrs[0].size} is not allowed: at least {min_points} for this fit")
    return tuple(arrs)


def drop_highest(
    N: np.ndarray, D: np.ndarray, L: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Remove the k highest-loss points (an explicit outlier rule); returns N, D, L, dropped rows."""
    if k < 0 or int(k) != k:
        raise ConfigError("drop_highest", k, "an integer >= 0")
    L = np.asarray(L, dtype=float)
    if k >= L.size:
        raise ConfigError("drop_highest", k, f"fewer than the {L.size} points")
    order = np.argsort(L, kind="stable")
    dropped = np.sort(order[L.size - k :]) if k else np.array([], dtype=np.int64)
    keep = np.sort(order[: L.size - k])
    return np.asarray(N, dtype=float)[keep], np.asarray(D, dtype=float)[keep], L[keep], dropped


# --------------------------------------------------------------------------------------------
# approach 3: L(N, D) = E + A/N^alpha + B/D^beta by Huber regression on log loss
# --------------------------------------------------------------------------------------------

PARAM_NAMES = ("E", "A", "B", "alpha", "beta")


def default_grid() -> np.ndarray:
    """Besiroglu et al. 2024 grid of 4,500 starts over (a, b, e, alpha, beta), A = e^a, B = e^b, E = e^e."""
    a = np.arange(0, 30, 5.0)
    e = np.arange(-1, 1.5, 0.5)
    al = np.arange(0, 2.5, 0.5)
    g = np.stack(np.meshgrid(a, a, e, al, al, indexing="ij"), axis=-1).reshape(-1, 5)
    return g


def huber(r: np.ndarray, delta: float) -> np.ndarray:
    """Huber loss: r^2/2 inside |r| <= delta, delta (|r| - delta/2) outside (scipy.special.huber)."""
    ar = np.abs(r)
    return np.where(ar <= delta, 0.5 * r * r, delta * (ar - 0.5 * delta))


def approach3_objective(
    theta: np.ndarray,
    logN: np.ndarray,
    logD: np.ndarray,
    logL: np.ndarray,
    weights: np.ndarray | None = None,
    delta: float = 1e-3,
) -> tuple[np.ndarray, np.ndarray]:
    """Summed Huber loss of log-space residuals and its analytic gradient, for K parameter rows.

    theta is (K, 5) in the order (a, b, e, alpha, beta); the model is
    log L = LSE(a - alpha log N, b - beta log D, e); weights are (n,) or (K, n) point weights
    and logL is (n,) or (K, n) (one data set per row: bootstrap resamples, simulated draws).
    """
    K = theta.shape[0]
    f = np.empty(K)
    g = np.empty((K, 5))
    # blocks of ~32k elements keep the temporaries in cache (3x faster than one big block)
    step = max(1, 32768 // max(1, logN.size))
    per_row_w = weights is not None and weights.ndim == 2
    per_row_l = logL.ndim == 2
    # an iterate far outside the data's range can overflow exp: its row gets f = inf (or nan),
    # which the line search rejects
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for lo in range(0, K, step):
            hi = min(K, lo + step)
            f[lo:hi], g[lo:hi] = _objective_block(
                theta[lo:hi],
                logN,
                logD,
                logL[lo:hi] if per_row_l else logL,
                weights[lo:hi] if per_row_w else weights,
                delta,
            )
    return f, g


def _objective_block(
    theta: np.ndarray,
    logN: np.ndarray,
    logD: np.ndarray,
    logL: np.ndarray,
    weights: np.ndarray | None,
    delta: float,
) -> tuple[np.ndarray, np.ndarray]:
    """One block of rows. The three terms are summed directly (A N^-alpha + B D^-beta + E)
    rather than through a max-shifted log-sum-exp: E = e^e is then one number per row, and
    every exp that could overflow does so only at iterates no line search accepts."""
    p1 = np.multiply.outer(-theta[:, 3], logN)
    p1 += theta[:, :1]
    np.exp(p1, out=p1)  # A / N^alpha
    p2 = np.multiply.outer(-theta[:, 4], logD)
    p2 += theta[:, 1:2]
    np.exp(p2, out=p2)  # B / D^beta
    E = np.exp(theta[:, 2])
    s = p1 + p2
    s += E[:, None]
    r = np.log(s)
    r -= logL
    c = np.minimum(r, delta)
    np.maximum(c, -delta, out=c)  # dh/dr of the Huber loss
    cw = c if weights is None else c * weights
    # Huber: h = c (r - c/2) = r^2/2 inside |r| <= delta, delta (|r| - delta/2) outside
    f = np.einsum("kn,kn->k", cw, r) - 0.5 * np.einsum("kn,kn->k", cw, c)
    q = np.divide(cw, s, out=cw)  # dh/dlog s / s: the weight of each term's derivative
    g = np.empty((theta.shape[0], 5))
    g[:, 2] = E * q.sum(axis=1)
    p1 *= q
    p2 *= q
    g[:, 0] = p1.sum(axis=1)
    g[:, 1] = p2.sum(axis=1)
    # einsum, not a matrix-vector product: BLAS gemv on these shapes is 15x slower here
    g[:, 3] = -np.einsum("kn,n->k", p1, logN)
    g[:, 4] = -np.einsum("kn,n->k", p2, logD)
    return f, g


def approach3_hessian(
    theta: np.ndarray,
    logN: np.ndarray,
    logD: np.ndarray,
    logL: np.ndarray,
    weights: np.ndarray | None = None,
    delta: float = 1e-3,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """approach3_objective's value and gradient plus its analytic Hessian (K, 5, 5).

    With r = log s - log L and s = sum_j exp(u_j) over the three linear terms u_j(theta),
    grad r = J = sum_j pi_j v_j (pi the softmax weights, v_j = grad u_j) and
    hess r = sum_j pi_j v_j v_j' - J J' (the Hessian of a log-sum-exp of linear functions), so
    hess f = sum_i w_i [(h''(r_i) - h'(r_i)) J_i J_i' + h'(r_i) sum_j pi_ij v_j v_j'],
    with h' = clip(r, -delta, delta) and h'' = 1 inside |r| <= delta, 0 outside.
    """
    K = theta.shape[0]
    f, g, H = np.empty(K), np.empty((K, 5)), np.empty((K, 5, 5))
    step = max(1, 8192 // max(1, logN.size))
    per_row_w = weights is not None and weights.ndim == 2
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for lo in range(0, K, step):
            hi = min(K, lo + step)
            f[lo:hi], g[lo:hi], H[lo:hi] = _hessian_block(
                theta[lo:hi],
                logN,
                logD,
                logL[lo:hi] if logL.ndim == 2 else logL,
                weights[lo:hi] if per_row_w else weights,
                delta,
            )
    return f, g, H


def _hessian_block(
    theta: np.ndarray,
    logN: np.ndarray,
    logD: np.ndarray,
    logL: np.ndarray,
    weights: np.ndarray | None,
    delta: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p1 = np.exp(theta[:, :1] - theta[:, 3:4] * logN)
    p2 = np.exp(theta[:, 1:2] - theta[:, 4:5] * logD)
    p3 = np.exp(theta[:, 2:3])
    s = p1 + p2 + p3
    r = np.log(s) - logL
    c = np.clip(r, -delta, delta)
    w = 1.0 if weights is None else weights
    f = (w * c * (r - 0.5 * c)).sum(axis=1)
    pi1, pi2, pi3 = p1 / s, p2 / s, np.broadcast_to(p3 / s, p1.shape)
    J = np.stack([pi1, pi2, pi3, -pi1 * logN, -pi2 * logD], axis=-1)  # grad r, (k, n, 5)
    b = w * c  # h'(r): weight of hess r
    a = w * (np.abs(r) <= delta) - b  # h''(r) - h'(r): weight of J J'
    g = np.einsum("kn,kni->ki", b, J)
    H = np.einsum("kn,kni,knj->kij", a, J, J)
    # sum_j pi_j v_j v_j' with v_1 = (1, 0, 0, -log N, 0), v_2 = (0, 1, 0, 0, -log D), v_3 = e_3
    b1, b2 = b * pi1, b * pi2
    s1, s2 = np.einsum("kn,n->k", b1, logN), np.einsum("kn,n->k", b2, logD)
    H[:, 0, 0] += b1.sum(axis=1)
    H[:, 1, 1] += b2.sum(axis=1)
    H[:, 2, 2] += (b * pi3).sum(axis=1)
    H[:, 3, 3] += np.einsum("kn,n->k", b1, logN * logN)
    H[:, 4, 4] += np.einsum("kn,n->k", b2, logD * logD)
    H[:, 0, 3] -= s1
    H[:, 3, 0] -= s1
    H[:, 1, 4] -= s2
    H[:, 4, 1] -= s2
    return f, g, H


def _theta_to_params(theta: np.ndarray) -> np.ndarray:
    """(a, b, e, alpha, beta) rows -> (E, A, B, alpha, beta) rows."""
    return np.stack(
        [np.exp(theta[:, 2]), np.exp(theta[:, 0]), np.exp(theta[:, 1]), theta[:, 3], theta[:, 4]],
        axis=1,
    )


def _params_to_theta(p: np.ndarray) -> np.ndarray:
    return np.stack([np.log(p[:, 1]), np.log(p[:, 2]), np.log(p[:, 0]), p[:, 3], p[:, 4]], axis=1)


def _polish(fun, hess, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tighten a few solutions together at strict tolerances: Newton's method with the analytic
    Hessian (a handful of iterations to a regular optimum), then the quasi-Newton method, which
    keeps moving along the near-flat valleys (E -> 0, say) where Newton steps stall. Rows
    stalled well above the best stop early (`behind`)."""
    x, f, _ = batched_newton(hess, starts, max_iter=30, behind=(1e-3, 1e-7))
    x, f, _ = batched_lbfgs(fun, x, max_iter=1000, ftol=1e-15, gtol=1e-13, behind=(1e-3, 1e-7))
    return x, np.where(np.isfinite(f), f, np.inf)


# (a, b, e, alpha) -> (a, b, e, alpha, beta = alpha)
_TIE = np.array([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1]])


def _tied(fun5):
    """Wrap a 5-parameter objective (returning f, g or f, g, H) as a 4-parameter one with
    beta = alpha (Gadre et al. 2024): theta5 = T theta4, so g4 = T' g5 and H4 = T' H5 T."""

    def fun4(x: np.ndarray, *args) -> tuple[np.ndarray, ...]:
        out = fun5(np.einsum("ij,kj->ki", _TIE, x), *args)
        g4 = np.einsum("ki,ij->kj", out[1], _TIE)
        if len(out) == 2:
            return out[0], g4
        return out[0], g4, np.einsum("ai,kab,bj->kij", _TIE, out[2], _TIE)

    return fun4


# Successive elimination of grid starts: (iterations, fraction kept) per stage; the survivors
# of the last cut are polished to convergence. Stage (0, 0.1) keeps the tenth of the starts
# with the lowest objective before any step. On the Chinchilla points the fit evaluates the
# objective about twice per start instead of about 70; on every reference data set in
# ../shared/data (Chinchilla, Gadre, Porian, datablations, with and without their largest
# runs, tied and free exponents) it ends at least as low as running every start to convergence.
PRUNE_STAGES: tuple[tuple[int, float], ...] = ((0, 0.1), (2, 0.2), (6, 0.2), (12, 0.25))


def fit_theta_grid(
    logN: np.ndarray,
    logD: np.ndarray,
    logL: np.ndarray,
    grid: np.ndarray,
    delta: float = 1e-3,
    polish_top: int = 3,
    max_iter: int = 200,
    tie: bool = False,
    prune: tuple[tuple[int, float], ...] | None = PRUNE_STAGES,
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """Run the batched quasi-Newton fit from every grid start and polish the best; returns
    (best theta, best objective, all final thetas, all final objectives). With tie=True the
    fit has beta = alpha (rows of grid keep 5 columns; the fifth is ignored).

    prune: stages (k, q): every surviving start takes k more iterations, then only the best
    fraction q of them goes on (multi-start with successive elimination); the others keep
    their state at elimination, and the last survivors are polished at strict tolerances.
    prune=None runs every start to convergence (the published procedure) and polishes the
    `polish_top` best distinct endpoints.
    """

    def fun5(x: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return approach3_objective(x, logN, logD, logL, weights, delta)

    def hess5(x: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return approach3_hessian(x, logN, logD, logL, weights, delta)

    fun, hess = (_tied(fun5), _tied(hess5)) if tie else (fun5, hess5)
    starts = np.unique(grid[:, :4], axis=0) if tie else np.asarray(grid, dtype=float)
    xs, fs, alive = _staged(fun, starts, prune, max_iter)
    if prune is None or alive.size < polish_top:
        alive = _distinct_best(xs, fs, polish_top, 1e-3)
    xp, fp = _polish(fun, hess, xs[alive])
    better = fp < fs[alive]
    xs[alive[better]], fs[alive[better]] = xp[better], fp[better]
    if tie:
        xs = np.concatenate([xs, xs[:, 3:4]], axis=1)
    i = int(np.argmin(fs))
    return xs[i], float(fs[i]), xs, fs


def _staged(
    fun, starts: np.ndarray, prune: tuple[tuple[int, float], ...] | None, max_iter: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batched fits from every start with successive elimination (see fit_theta_grid); returns
    (thetas, objectives, rows still alive). Without prune, every start runs to a loose stop."""
    xs = np.array(starts, dtype=float, copy=True)
    fs = np.full(len(xs), np.inf)
    alive = np.arange(len(xs))
    for k, q in prune or ((max_iter, 1.0),):
        x, f, _ = batched_lbfgs(fun, xs[alive], max_iter=k, ftol=1e-7)
        xs[alive], fs[alive] = x, np.where(np.isfinite(f), f, np.inf)
        alive = alive[np.argsort(fs[alive], kind="stable")[: max(1, int(np.ceil(q * alive.size)))]]
    return xs, fs, alive


def _distinct_best(xs: np.ndarray, fs: np.ndarray, k: int, tol: float) -> np.ndarray:
    """Indices of the k best rows of xs (by fs) that differ from each other by more than tol."""
    picked: list[int] = []
    for i in np.argsort(fs, kind="stable"):
        if len(picked) >= k or not np.isfinite(fs[i]):
            break
        if all(np.max(np.abs(xs[i] - xs[j])) > tol for j in picked):
            picked.append(int(i))
    return np.array(picked if picked else [int(np.argmin(fs))], dtype=np.int64)


@dataclass
class Approach3Fit:
    """Result of fit_approach3: the law, its objective, bootstrap samples and intervals.

    Two kinds of interval: `loss_interval` (where the law's prediction lies: the parameters'
    bootstrap only) and `prediction_interval` (where a run you train will land: the bootstrap
    predictions plus the observation noise, see sizeup.laws.intervals)."""

    law: ChinchillaLaw
    objective: float
    n_points: int
    dropped: list[int]
    delta: float
    samples: np.ndarray | None = None  # (n_boot, 5): E, A, B, alpha, beta
    level: float = 0.9
    warnings: list[str] = field(default_factory=list)  # weakly identified parameters
    sigma: float = 0.0  # residual scale of log loss, sqrt(sum w r^2 / dof)
    dof: int = 0  # residual degrees of freedom, points - parameters
    noise: np.ndarray | None = None  # (n_boot,) noise draws sigma * T(dof), paired with samples
    resample: str = ""  # how the bootstrap resampled: "points" or "parametric"
    weighted: bool = False
    # the ranges of the fitted points (after dropping): N, D and C = 6ND, each [min, max]; a
    # plan past them says by how much it extrapolates (sizeup.plan.stages.extrapolation)
    ranges: dict[str, list[float]] = field(default_factory=dict)

    def interval(self, values: np.ndarray) -> tuple[float, float]:
        """Central `level` percentile interval of bootstrap values."""
        lo, hi = percentile_interval(np.asarray(values), self.level)
        return float(lo), float(hi)

    def param_intervals(self) -> dict[str, tuple[float, float]]:
        """Bootstrap interval for every parameter and the compute exponents a, b."""
        if self.samples is None:
            return {}
        out = {n: self.interval(self.samples[:, i]) for i, n in enumerate(PARAM_NAMES)}
        al, be = self.samples[:, 3], self.samples[:, 4]
        out["a"] = self.interval(be / (al + be))
        out["b"] = self.interval(al / (al + be))
        return out

    def _valid(self) -> tuple[np.ndarray, np.ndarray]:
        """Bootstrap parameter rows and their noise draws, without degenerate laws (a resample
        can land on alpha or beta <= 0)."""
        E, A, B, al, be = self.samples.T
        ok = (A > 0) & (B > 0) & (al > 0) & (be > 0)
        noise = np.zeros(ok.sum()) if self.noise is None else self.noise[ok]
        return self.samples[ok], noise

    def _sample_optima(self, C: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Compute-optimal N, D, loss at C and the noise draw, per bootstrap sample (eq. 4)."""
        s, noise = self._valid()
        E, A, B, al, be = s.T
        G = (al * A / (be * B)) ** (1.0 / (al + be))
        x = C / self.law.flops_per_param_token
        n, d = G * x ** (be / (al + be)), x ** (al / (al + be)) / G
        return n, d, E + A / n**al + B / d**be, noise

    def derived(self, compute: list[float] | np.ndarray) -> list[dict[str, object]]:
        """N_opt, D_opt, tokens/param and loss at each budget C, with bootstrap intervals and
        the prediction interval of the loss a compute-optimal run would measure."""
        rows = []
        for C in np.atleast_1d(np.asarray(compute, dtype=float)):
            n, d = self.law.optimal(C)
            row: dict[str, object] = {
                "C": float(C),
                "N_opt": n,
                "D_opt": d,
                "tokens_per_param": d / n,
                "loss": float(self.law.loss(n, d)),
            }
            if self.samples is not None:
                sn, sd, sl, noise = self._sample_optima(float(C))
                row["N_opt_interval"] = self.interval(sn)
                row["D_opt_interval"] = self.interval(sd)
                row["tokens_per_param_interval"] = self.interval(sd / sn)
                row["loss_interval"] = self.interval(sl)
                row["loss_prediction_interval"] = self.interval(sl * np.exp(noise))
            rows.append(row)
        return rows

    def _sample_losses(self, N: np.ndarray, D: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n_valid, m) law losses at the points for every valid sample, and the noise draws."""
        s, noise = self._valid()
        E, A, B, al, be = (c[:, None] for c in s.T)
        return E + A / N[None] ** al + B / D[None] ** be, noise

    def prediction_interval(
        self, N: float | np.ndarray, D: float | np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) of the `level` prediction interval for a run's measured loss at (N, D):
        each bootstrap law's loss times exp(its noise draw), percentiles over the samples."""
        if self.samples is None:
            raise ConfigError(
                "bootstrap", 0, "at least 1 resample (prediction intervals need the bootstrap)"
            )
        N, D = np.broadcast_arrays(np.atleast_1d(N).astype(float), np.atleast_1d(D).astype(float))
        sl, noise = self._sample_losses(N, D)
        iv = percentile_interval(sl * np.exp(noise)[:, None], self.level, axis=0)
        return iv[..., 0], iv[..., 1]

    def predict(self, N: float, D: float) -> dict[str, object]:
        """Predicted loss at (N, D) with the law's interval and a run's prediction interval."""
        out: dict[str, object] = {"N": float(N), "D": float(D), "loss": float(self.law.loss(N, D))}
        if self.samples is not None:
            sl, _ = self._sample_losses(np.array([float(N)]), np.array([float(D)]))
            out["loss_interval"] = self.interval(sl[:, 0])
            lo, hi = self.prediction_interval(N, D)
            out["prediction_interval"] = (float(lo[0]), float(hi[0]))
        return out

    def to_dict(self, compute: list[float] | None = None) -> dict[str, object]:
        """The fit.json payload: parameters, objective, noise, intervals and derived quantities."""
        law = self.law
        d: dict[str, object] = {
            "kind": "chinchilla",
            "approach": 3,
            "E": law.E,
            "A": law.A,
            "B": law.B,
            "alpha": law.alpha,
            "beta": law.beta,
            "objective": self.objective,
            "delta": self.delta,
            "a": law.a,
            "b": law.b,
            "G": law.G,
            "n_points": self.n_points,
            "dropped_rows": self.dropped,
            "weighted": self.weighted,
            "n_opt": {"coef": law.G / 6**law.a, "exponent": law.a},
            "d_opt": {"coef": 1 / (law.G * 6**law.b), "exponent": law.b},
            "compute": "6ND",
            "level": self.level,
            # the observation noise that prediction intervals add (log-loss residual scale)
            "noise": {"sigma_log_loss": self.sigma, "dof": self.dof, "distribution": "student_t"},
            "warnings": list(self.warnings),
            "fit_ranges": dict(self.ranges),
        }
        if self.samples is not None:
            d["bootstrap"] = int(len(self.samples))
            d["resample"] = self.resample
            d["intervals"] = self.param_intervals()
            d["samples"] = self.samples.tolist()
        if compute is not None:
            d["derived"] = self.derived(compute)
        return d


def identifiability(N: np.ndarray, D: np.ndarray) -> list[str]:
    """Refuse data that cannot identify approach 3's parameters, warn where they are weak.

    L = E + A/N^alpha + B/D^beta: with one model size, A, alpha and E trade off freely (and
    likewise B, beta with one token count); with two, the curve in N has as many free
    parameters as points and its exponent is fixed by noise alone.
    """
    out = []
    for name, x, part in (("params", N, "A and alpha"), ("tokens", D, "B and beta")):
        k = np.unique(np.round(np.log(x), 6)).size
        if k < 2:
            raise DataError(
                f"{name}: {k} distinct value is not allowed: approach 3 needs at least 2 (better "
                f"5 or more) distinct {name} to identify {part}; add runs of other sizes"
            )
        if k < 3:
            out.append(
                f"only {k} distinct {name} values: {part} are weakly identified (their intervals "
                "and any extrapolation in this direction mean little); add runs of other sizes"
            )
    return out


# Below this many points per parameter, resampling points leaves too few distinct runs to
# refit (5 runs resampled often keep only 3 model sizes), so "auto" resamples the noise instead.
POINTS_PER_PARAM_FOR_CASES = 10


def resample_kind(resample: str, n_points: int, n_params: int) -> str:
    """The bootstrap actually used: "points" (resample runs with replacement: no model for the
    noise, robust to a misfit law, needs many runs) or "parametric" (new losses drawn from the
    fitted law with the measured noise: works with few runs). "auto" picks by data size."""
    check_choice("resample", resample, RESAMPLES)
    if resample != "auto":
        return resample
    return "points" if n_points >= POINTS_PER_PARAM_FOR_CASES * n_params else "parametric"


def _check_approach3_options(
    delta: float, bootstrap: int, seed: int, level: float, resample: str, n: int, starts: int
) -> None:
    check_choice("resample", resample, RESAMPLES)
    if not 0 < delta < np.inf:
        raise ConfigError("delta", delta, "a finite Huber threshold > 0")
    # each resample x start holds its weights, log losses and L-BFGS state over the n points
    check_resampling(bootstrap, seed, level, bytes_each=8.0 * max(1, starts) * (12 * n + 64))


def _prepare_points(
    N: np.ndarray, D: np.ndarray, L: np.ndarray, weights: np.ndarray | None, k: int, n_par: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray, list[str]]:
    """Checked points without the k highest losses, their weights (mean 1), the dropped rows
    and the identifiability warnings."""
    N, D, L = _check_points(N, D, L, min_points=5)
    w = normalized_weights(weights, N.size)
    N, D, L, dropped = drop_highest(N, D, L, k)
    if w is not None:
        w = normalized_weights(np.delete(w, dropped), N.size)
    warns = identifiability(N, D)
    if N.size <= n_par:
        raise DataError(
            f"points={N.size} is not allowed: more points than the {n_par} parameters of approach 3"
        )
    return N, D, L, w, dropped, warns


def point_ranges(N: np.ndarray, D: np.ndarray) -> dict[str, list[float]]:
    """[min, max] of the fitted points' N, D and compute C = 6ND (Hoffmann et al. 2022's
    convention): the range a law was fitted on, which a plan compares its target with."""
    C = 6.0 * N * D
    return {k: [float(v.min()), float(v.max())] for k, v in (("N", N), ("D", D), ("C", C))}


def fit_approach3(
    N: np.ndarray,
    D: np.ndarray,
    L: np.ndarray,
    *,
    delta: float = 1e-3,
    drop_highest_k: int = 0,
    grid: np.ndarray | None = None,
    bootstrap: int = 0,
    boot_starts: int = 4,
    seed: int = 0,
    level: float = 0.9,
    tie_exponents: bool = False,
    weights: np.ndarray | None = None,
    resample: str = "auto",
) -> Approach3Fit:
    """Fit L(N, D) = E + A/N^alpha + B/D^beta (Hoffmann et al. 2022 approach 3, with the
    Besiroglu et al. 2024 procedure: Huber on log residuals, L-BFGS from a 4,500-start grid).

    weights: one per point (frequency weights, see sizeup.laws.intervals.normalized_weights).
    Bootstrap refits `bootstrap` resamples, all stepped together from the `boot_starts` best
    distinct full-data optima; `resample` says how (resample_kind). The measured noise is kept
    for prediction intervals either way.
    """
    _check_approach3_options(delta, bootstrap, seed, level, resample, np.size(L), boot_starts)
    n_par = 4 if tie_exponents else 5
    N, D, L, w, dropped, warns = _prepare_points(N, D, L, weights, drop_highest_k, n_par)
    logN, logD, logL = np.log(N), np.log(D), np.log(L)
    grid = default_grid() if grid is None else np.asarray(grid, dtype=float)
    theta, obj, xs, fs = fit_theta_grid(logN, logD, logL, grid, delta, tie=tie_exponents, weights=w)
    sigma, dof = noise_scale(logL - _log_model(theta[None], logN, logD)[0], w, n_par)
    fit = Approach3Fit(
        ChinchillaLaw(*_theta_to_params(theta[None])[0]),
        obj,
        int(N.size),
        dropped.tolist(),
        delta,
        level=level,
        warnings=warns,
        sigma=float(sigma),
        dof=dof,
        weighted=w is not None,
        ranges=point_ranges(N, D),
    )
    if bootstrap:
        fit.resample = resample_kind(resample, N.size, n_par)
        sim = float(sigma) if fit.resample == "parametric" else None
        fit.samples = _bootstrap(
            theta,
            xs,
            fs,
            logN,
            logD,
            logL,
            delta,
            bootstrap,
            boot_starts,
            seed,
            tie_exponents,
            weights=w,
            parametric_sigma=sim,
        )
        fit.noise = noise_draws(sigma, dof, bootstrap, np.random.default_rng([seed, 1]))
    return fit


def _log_model(theta: np.ndarray, logN: np.ndarray, logD: np.ndarray) -> np.ndarray:
    """log L at every point for each parameter row: LSE(a - alpha log N, b - beta log D, e)."""
    a, b, e, al, be = (theta[:, i : i + 1] for i in range(5))
    return np.logaddexp(np.logaddexp(a - al * logN, b - be * logD), e)


def _bootstrap(
    theta: np.ndarray,
    xs: np.ndarray,
    fs: np.ndarray,
    logN: np.ndarray,
    logD: np.ndarray,
    logL: np.ndarray,
    delta: float,
    n_boot: int,
    n_starts: int,
    seed: int,
    tie: bool = False,
    *,
    weights: np.ndarray | None = None,
    parametric_sigma: float | None = None,
) -> np.ndarray:
    """Refit on `n_boot` resamples, all resamples x starts at once; returns (n_boot, 5) laws.

    Without parametric_sigma the points are resampled (multinomial counts times the weights);
    with it, every resample keeps the points and draws new log losses from the fitted law plus
    Gaussian noise of that scale (over sqrt(weight)): the parametric bootstrap."""
    rng = np.random.default_rng(seed)
    kind = "points" if parametric_sigma is None else "parametric"
    Y, W = _resamples(
        kind, theta[None], logN, logD, logL[None], weights, parametric_sigma, n_boot, rng
    )
    starts = _boot_starts(theta, xs, fs, n_starts)
    return _theta_to_params(_refit_many(starts, logN, logD, Y[0], W[0], delta, tie))


def _resamples(
    kind: str,
    theta: np.ndarray,
    logN: np.ndarray,
    logD: np.ndarray,
    logL: np.ndarray,
    weights: np.ndarray | None,
    sigma: float | np.ndarray | None,
    n_boot: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap data sets (Y, W), each (R, n_boot, n), for R fitted data sets (theta (R, 5),
    logL (R, n), sigma (R,)): resampled points (multinomial counts times the weights) or new
    losses from each fitted law with its measured noise (parametric)."""
    R, n = logL.shape
    w = np.ones(n) if weights is None else weights
    if kind == "points":
        W = rng.multinomial(n, np.full(n, 1.0 / n), size=(R, n_boot)).astype(float) * w
        return np.broadcast_to(logL[:, None, :], (R, n_boot, n)), W
    Y = _simulate(theta, logN, logD, sigma, weights, n_boot, rng)
    return Y, np.broadcast_to(w, (R, n_boot, n))


def _boot_starts(theta: np.ndarray, xs: np.ndarray, fs: np.ndarray, k: int) -> np.ndarray:
    """The optimum and the best grid endpoints distinct from it and each other (by 1e-2)."""
    starts = [theta]
    for i in np.argsort(fs):
        if len(starts) >= k:
            break
        if np.isfinite(fs[i]) and all(np.max(np.abs(xs[i] - s)) > 1e-2 for s in starts):
            starts.append(xs[i])
    return np.array(starts)


def _simulate(
    theta: np.ndarray,
    logN: np.ndarray,
    logD: np.ndarray,
    sigma: float | np.ndarray,
    weights: np.ndarray | None,
    n_draws: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """(R, n_draws, n) log losses: the law of each theta row plus N(0, sigma^2 / weight) noise
    (a weight-0 point gets none: it does not enter the objective)."""
    R, n = theta.shape[0], logN.size
    scale = np.broadcast_to(np.asarray(sigma, dtype=float), (R,))[:, None, None]
    z = rng.standard_normal((R, n_draws, n)) * scale
    if weights is not None:
        z *= np.where(weights > 0, 1.0 / np.sqrt(np.where(weights > 0, weights, 1.0)), 0.0)
    return _log_model(theta, logN, logD)[:, None, :] + z


def _refit_many(
    starts: np.ndarray,
    logN: np.ndarray,
    logD: np.ndarray,
    Y: np.ndarray,
    W: np.ndarray,
    delta: float,
    tie: bool,
) -> np.ndarray:
    """Fit every data set (rows of Y, W: (R, n)) from every start ((S, 5), or (R, S, 5) per data
    set), all R x S problems stepped together; returns the best theta per data set (R, 5)."""
    R = Y.shape[0]
    S = np.broadcast_to(starts, (R,) + starts.shape[-2:])
    k = S.shape[1]
    rep = np.repeat(np.arange(R), k)

    def fun(x: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return approach3_objective(x, logN, logD, Y[rep[rows]], W[rep[rows]], delta)

    x0 = S.reshape(-1, 5)
    if tie:
        xb, fb, _ = batched_lbfgs(_tied(fun), x0[:, :4], max_iter=300, ftol=1e-10)
        xb = np.concatenate([xb, xb[:, 3:4]], axis=1)
    else:
        xb, fb, _ = batched_lbfgs(fun, x0, max_iter=300, ftol=1e-10)
    fb = np.where(np.isfinite(fb), fb, np.inf).reshape(R, k)
    return xb.reshape(R, k, 5)[np.arange(R), np.argmin(fb, axis=1)]


# --------------------------------------------------------------------------------------------
# approaches 1 and 2: compute-optimal power laws from the data's minima
# --------------------------------------------------------------------------------------------


@dataclass
class AllocationFit:
    """N_opt(C) = n_opt(C), D_opt(C) = d_opt(C) from approach 1 or 2, with the points behind it."""

    approach: int
    n_opt: PowerLaw
    d_opt: PowerLaw
    C: np.ndarray  # budgets of the optima
    N: np.ndarray  # optimal N per budget
    D: np.ndarray  # optimal D per budget
    L: np.ndarray  # loss at the optimum
    curves: list[dict[str, object]]  # approach 2: per-budget points and interpolant
    a_interval: tuple[float, float] | None = None
    b_interval: tuple[float, float] | None = None
    level: float = 0.9
    method: str = ""
    # approach 2: budgets left out of the power laws, each {"C", "N", "loss", "reason"}
    skipped: list[dict[str, object]] = field(default_factory=list)

    @property
    def a(self) -> float:
        """Exponent of N_opt in C."""
        return self.n_opt.exponent

    @property
    def b(self) -> float:
        """Exponent of D_opt in C."""
        return self.d_opt.exponent

    def optimal(self, C: float) -> tuple[float, float]:
        """(N_opt, D_opt) at budget C."""
        return float(self.n_opt(C)), float(self.d_opt(C))

    def derived(self, compute: list[float] | np.ndarray) -> list[dict[str, object]]:
        """N_opt, D_opt and tokens per parameter at each budget; with 3+ budgets, also the
        prediction interval of the optimum a new budget's isoFLOP profile would show (the
        log-log line's interval plus the optima's own scatter)."""
        out: list[dict[str, object]] = []
        for C in np.atleast_1d(np.asarray(compute, dtype=float)):
            n, d = self.optimal(C)
            row: dict[str, object] = {
                "C": float(C),
                "N_opt": n,
                "D_opt": d,
                "tokens_per_param": d / n,
            }
            if self.C.size >= 3:
                for key, y in (("N_opt", self.N), ("D_opt", self.D)):
                    _, lo, hi = line_prediction_interval(
                        np.log(self.C), np.log(y), np.log(C), self.level
                    )
                    row[f"{key}_prediction_interval"] = (float(np.exp(lo)), float(np.exp(hi)))
            out.append(row)
        return out

    def to_dict(self, compute: list[float] | None = None) -> dict[str, object]:
        """The fit.json payload for approaches 1 and 2."""
        d: dict[str, object] = {
            "kind": "chinchilla",
            "approach": self.approach,
            "method": self.method,
            "n_opt": self.n_opt.to_dict(),
            "d_opt": self.d_opt.to_dict(),
            "a": self.a,
            "b": self.b,
            "compute": "6ND",
            "level": self.level,
            "optima": [
                {"C": float(c), "N_opt": float(n), "D_opt": float(dd), "loss": float(lo)}
                for c, n, dd, lo in zip(self.C, self.N, self.D, self.L)
            ],
        }
        if self.a_interval is not None:
            d["intervals"] = {"a": self.a_interval, "b": self.b_interval}
        if self.skipped:
            d["skipped_budgets"] = [{"C": b["C"], "reason": b["reason"]} for b in self.skipped]
        if compute is not None:
            d["derived"] = self.derived(compute)
        return d


# Bytes per resample and point of _bootstrap_exponent: its indices, both logs, their
# deviations and products (float64), with temporaries.
_EXPONENT_BYTES = 8 * 8


def _bootstrap_exponent(
    C: np.ndarray, y: np.ndarray, n_boot: int, seed: int, level: float
) -> tuple[float, float] | None:
    """Percentile interval of the log-log slope when the (C, y) optima are resampled."""
    if n_boot <= 0 or C.size < 3:
        return None
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, C.size, size=(n_boot, C.size))
    x, z = np.log(C)[idx], np.log(y)[idx]
    xm, zm = x.mean(1, keepdims=True), z.mean(1, keepdims=True)
    var = ((x - xm) ** 2).sum(1)
    ok = var > 0  # a resample that repeats one budget has no slope
    slopes = ((x - xm) * (z - zm)).sum(1)[ok] / var[ok]
    q = (1 - level) / 2
    return float(np.quantile(slopes, q)), float(np.quantile(slopes, 1 - q))


def fit_approach1(
    N: np.ndarray,
    D: np.ndarray,
    L: np.ndarray,
    *,
    C: np.ndarray | None = None,
    n_bins: int | None = None,
    bootstrap: int = 0,
    seed: int = 0,
    level: float = 0.9,
) -> AllocationFit:
    """Hoffmann et al. approach 1: fit N_opt(C), D_opt(C) to the lower envelope of loss vs FLOPs.

    The envelope keeps each point whose loss beats every point of lower compute (the frontier
    of the loss-vs-FLOPs curves); with n_bins, only the lowest loss per log-spaced bin is kept.
    """
    N, D, L = _check_points(N, D, L, min_points=3)
    check_resampling(bootstrap, seed, level, bytes_each=_EXPONENT_BYTES * N.size)
    C = 6.0 * N * D if C is None else np.asarray(C, dtype=float)
    order = np.argsort(C, kind="stable")
    best = np.inf
    keep = []
    for i in order:
        if L[i] < best:
            keep.append(i)
            best = L[i]
    idx = np.array(keep)
    if n_bins:
        edges = np.linspace(np.log(C[idx]).min(), np.log(C[idx]).max() + 1e-12, n_bins + 1)
        which = np.digitize(np.log(C[idx]), edges)
        idx = np.array([idx[which == w][np.argmin(L[idx[which == w]])] for w in np.unique(which)])
    if np.unique(N[idx]).size < 2:
        raise DataError(
            f"envelope model sizes={np.unique(N[idx]).tolist()} is not allowed: "
            "approach 1 needs the loss envelope to span at least 2 model sizes"
        )
    Cs, Ns, Ds = C[idx], N[idx], D[idx]
    return AllocationFit(
        approach=1,
        n_opt=PowerLaw.fit(Cs, Ns),
        d_opt=PowerLaw.fit(Cs, Ds),
        C=Cs,
        N=Ns,
        D=Ds,
        L=L[idx],
        curves=[],
        a_interval=_bootstrap_exponent(Cs, Ns, bootstrap, seed, level),
        b_interval=_bootstrap_exponent(Cs, Ds, bootstrap, seed, level),
        level=level,
        method="envelope",
    )


APPROACH2_METHODS = ("parabola", "akima")


# Model sizes an isoFLOP profile needs for a minimum (approach 2): a parabola in log N has
# three coefficients, so three sizes, the lowest loss between the other two. The one number
# every check and suggestion of approach 2 reads (`sizeup wsd` suggests this many widths).
PROFILE_SIZES = 3


def fit_approach2(
    N: np.ndarray,
    D: np.ndarray,
    L: np.ndarray,
    *,
    C: np.ndarray | None = None,
    method: str = "parabola",
    window: int | None = None,
    log_loss: bool = False,
    budget_rtol: float = 0.05,
    bootstrap: int = 0,
    seed: int = 0,
    level: float = 0.9,
) -> AllocationFit:
    """Hoffmann et al. approach 2: the minimum of each isoFLOP profile, then power laws in C.

    method="parabola" fits L (or log L with log_loss) as a parabola in log N, over all points of
    a budget or the `window` points either side of its lowest one; method="akima" minimises an
    Akima interpolant of log L in log N (Porian et al. 2024's choice). A budget with no minimum
    (fewer than 3 sizes, lowest loss at the smallest or largest model, a downward parabola) is
    left out of the power laws and kept in ``skipped`` with the reason.
    """

    check_choice("method", method, APPROACH2_METHODS)
    if window is not None and (
        isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1
    ):
        raise ConfigError(
            "window", window, "an integer >= 1: points either side of the lowest (3+ in all)"
        )
    N, D, L = _check_points(N, D, L, min_points=3)
    check_resampling(bootstrap, seed, level, bytes_each=_EXPONENT_BYTES * N.size)
    if np.unique(N).size < 2:
        raise DataError(
            f"model sizes={np.unique(N).tolist()} is not allowed: approach 2 needs several model "
            "sizes per compute budget (one size gives no isoFLOP profile)"
        )
    C = 6.0 * N * D if C is None else np.asarray(C, dtype=float)
    labels = group_budgets(C, budget_rtol)
    curves, skipped = [], []
    for lab in np.unique(labels):
        sel = np.flatnonzero(labels == lab)
        sel = sel[np.argsort(N[sel])]
        budget = float(np.exp(np.log(C[sel]).mean()))
        curve = _isoflop_minimum(N[sel], L[sel], method, window, log_loss)
        if isinstance(curve, str):
            skipped.append(
                {"C": budget, "N": N[sel].tolist(), "loss": L[sel].tolist(), "reason": curve}
            )
        else:
            curves.append({"C": budget, **curve})
    Cs = [c["C"] for c in curves]
    Ns = [c["N_opt"] for c in curves]
    Ls = [c["loss_opt"] for c in curves]
    if len(Cs) < 2:
        raise DataError(
            f"isoFLOP budgets with a bracketed minimum={len(Cs)} is not allowed: at least 2 "
            f"(each needs {PROFILE_SIZES}+ model sizes with the lowest loss in the interior)"
        )
    Cn, Nn = np.array(Cs), np.array(Ns)
    Dn = Cn / (6.0 * Nn)
    return AllocationFit(
        approach=2,
        n_opt=PowerLaw.fit(Cn, Nn),
        d_opt=PowerLaw.fit(Cn, Dn),
        C=Cn,
        N=Nn,
        D=Dn,
        L=np.array(Ls),
        curves=curves,
        a_interval=_bootstrap_exponent(Cn, Nn, bootstrap, seed, level),
        b_interval=_bootstrap_exponent(Cn, Dn, bootstrap, seed, level),
        level=level,
        method=method,
        skipped=skipped,
    )


def _isoflop_minimum(
    n: np.ndarray, loss: np.ndarray, method: str, window: int | None, log_loss: bool
) -> dict[str, object] | str:
    """One budget's profile (its runs sorted by N): the fitted curve and its minimum, or why
    the budget gives none (the reason, said for people: the fit records and plots it)."""
    from scipy.interpolate import Akima1DInterpolator

    x = np.log(n)
    y = np.log(loss) if (log_loss or method == "akima") else loss
    if np.unique(x).size < PROFILE_SIZES:
        return f"{np.unique(x).size} model sizes (a profile needs {PROFILE_SIZES})"
    i = int(np.argmin(y))
    if i in (0, x.size - 1):
        end = "smallest" if i == 0 else "largest"
        return f"lowest loss at the {end} model: the minimum is not bracketed"
    if method == "akima":
        xx = np.linspace(x[0], x[-1], 4001)
        yy = Akima1DInterpolator(x, y)(xx)
        j = int(np.argmin(yy))
        x_opt, y_opt, coef, span = xx[j], float(np.exp(yy[j])), None, (n[0], n[-1])
    else:
        lo, hi = (
            (0, x.size) if window is None else (max(0, i - window), min(x.size, i + window + 1))
        )
        coef = np.polyfit(x[lo:hi], y[lo:hi], 2)
        if coef[0] <= 0:
            return "the parabola through its runs opens downward (no minimum)"
        x_opt = -coef[1] / (2 * coef[0])
        y_opt = float(np.polyval(coef, x_opt))
        y_opt = float(np.exp(y_opt)) if log_loss else y_opt
        coef, span = coef.tolist(), (n[lo], n[hi - 1])
    return {
        "N": n.tolist(),
        "loss": loss.tolist(),
        "parabola": coef,
        "fit_span": (float(span[0]), float(span[1])),
        "log_loss": bool(log_loss or method == "akima"),
        "N_opt": float(np.exp(x_opt)),
        "loss_opt": y_opt,
    }


def isoflop_from_curves(
    N: np.ndarray,
    D: np.ndarray,
    L: np.ndarray,
    budgets: np.ndarray | None = None,
    n_budgets: int = 8,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Turn loss-vs-tokens curves (e.g. WSD cooldown branches: several D per model size N) into
    isoFLOP points (N, D, L, C) for approach 2, interpolating each model's log L linearly in log D
    at D = C / (6N) and never extrapolating past the tokens it was trained on."""
    N, D, L = _check_points(N, D, L, min_points=3)
    sizes = np.unique(N)
    if sizes.size < 2:
        raise DataError(
            f"model sizes={sizes.tolist()} is not allowed: at least 2 for isoFLOP profiles"
        )
    C_all = 6.0 * N * D
    if budgets is None:
        budgets = np.geomspace(C_all.min(), C_all.max(), n_budgets)
    out = []
    for n in sizes:
        sel = N == n
        d, lo = D[sel], L[sel]
        order = np.argsort(d)
        d, lo = d[order], lo[order]
        for C in np.asarray(budgets, dtype=float):
            dc = C / (6.0 * n)
            if d[0] <= dc <= d[-1] and d.size >= 2:
                ld = np.interp(np.log(dc), np.log(d), np.log(lo))
                out.append((n, dc, float(np.exp(ld)), C))
            elif d.size == 1 and np.isclose(dc, d[0], rtol=1e-6):
                out.append((n, dc, lo[0], C))
    if not out:
        raise DataError(
            "budgets are not allowed: none falls inside any model's trained token range"
        )
    arr = np.array(out)
    return arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3]
