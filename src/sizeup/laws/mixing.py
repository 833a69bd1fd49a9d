"""Data mixing laws (Ye et al. 2024, "Data Mixing Laws: Optimizing Data Mixtures by Predicting
Language Modeling Performance"): the validation loss of domain i after training on the mixture
r (proportions r_j of M training domains, summing to 1) is

    L_i(r) = c_i + k_i exp(sum_j t_ij r_j)        (their eq. for M domains)

for a model of fixed size trained for a fixed number of steps. Fitted on a few small runs with
different mixtures, it predicts the loss of any mixture, and the mixture that minimises the
total sum_i s_i L_i (s_i the weight of validation domain i) at that size and budget.

Because the proportions sum to 1, k_i and t_ij are identified only up to k_i e^a, t_ij - a.
sizeup reports the gauge sum_j t_ij = 0, in which k_i is the reducible loss of domain i at the
uniform mixture. Each L_i is convex in r (an exponential of a linear function), so the weighted
total is convex on the simplex and its minimum, found by SLSQP, is the global one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sizeup.errors import ConfigError, DataError
from sizeup.laws.intervals import check_resampling, noise_scale, percentile_interval


@dataclass(frozen=True)
class MixingLaw:
    """L_i(r) = c_i + k_i exp(t_i . r) for validation domains i and training domains j."""

    domains: tuple[str, ...]  # training domains j (the mixture's components)
    targets: tuple[str, ...]  # validation domains i (the losses)
    c: np.ndarray  # (n_targets,) irreducible part
    k: np.ndarray  # (n_targets,) reducible loss at the uniform mixture (gauge sum_j t_ij = 0)
    t: np.ndarray  # (n_targets, n_domains) interaction coefficients

    def loss(self, r: np.ndarray) -> np.ndarray:
        """Per-target losses for mixtures r: (M,) -> (n_targets,), (R, M) -> (R, n_targets)."""
        r = np.asarray(r, dtype=float)
        return self.c + self.k * np.exp(r @ self.t.T)

    def total(self, r: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """sum_i s_i L_i(r) for target weights s."""
        return self.loss(r) @ np.asarray(weights, dtype=float)

    def to_dict(self) -> dict[str, object]:
        """c, k and t per target, keyed by domain names."""
        return {
            name: {
                "c": float(self.c[i]),
                "k": float(self.k[i]),
                "t": {d: float(self.t[i, j]) for j, d in enumerate(self.domains)},
            }
            for i, name in enumerate(self.targets)
        }


# --------------------------------------------------------------------------------------------
# fitting one target's law
# --------------------------------------------------------------------------------------------


def _fit_one(P: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray, float]:
    """c and u = t + log k (no gauge yet) for one target: log y = log(c + exp(P u)) + noise.

    For a fixed c the model is linear in log(y - c) (P has an intercept: its rows sum to 1), so
    a scan over c in [0, min y) by least squares gives the start; scipy's least_squares then
    refines (c, u) on the log-loss residuals with the analytic Jacobian."""
    from scipy.optimize import least_squares

    logy = np.log(y)
    best = (np.inf, 0.0, np.zeros(P.shape[1]))
    for c in np.min(y) * (1 - np.geomspace(1e-3, 1.0, 40)):
        u, *_ = np.linalg.lstsq(P, np.log(y - c), rcond=None)
        sse = float(((logy - np.log(c + np.exp(P @ u))) ** 2).sum())
        if sse < best[0]:
            best = (sse, c, u)

    def resid(x: np.ndarray) -> np.ndarray:
        return np.log(x[0] + np.exp(P @ x[1:])) - logy

    def jac(x: np.ndarray) -> np.ndarray:
        e = np.exp(P @ x[1:])
        s = x[0] + e
        return np.column_stack([1.0 / s, P * (e / s)[:, None]])

    x0 = np.r_[best[1], best[2]]
    res = least_squares(
        resid,
        x0,
        jac=jac,
        bounds=(np.r_[0.0, np.full(P.shape[1], -np.inf)], np.inf),
        x_scale="jac",
        xtol=1e-12,
        ftol=1e-12,
        gtol=1e-12,
    )
    x = res.x if 2 * res.cost <= best[0] else x0
    return float(x[0]), x[1:], float(((resid(x)) ** 2).sum())


# --------------------------------------------------------------------------------------------
# the best mixture
# --------------------------------------------------------------------------------------------


def optimal_mixture(
    law: MixingLaw,
    weights: np.ndarray,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
) -> np.ndarray:
    """The mixture r on the simplex (within lower <= r <= upper) that minimises the weighted
    total loss. The problem is convex, so SLSQP from the uniform mixture finds its minimum."""
    from scipy.optimize import minimize

    M = len(law.domains)
    lo = np.zeros(M) if lower is None else np.asarray(lower, dtype=float)
    hi = np.ones(M) if upper is None else np.asarray(upper, dtype=float)
    if lo.sum() > 1 + 1e-12 or hi.sum() < 1 - 1e-12 or np.any(lo > hi):
        raise ConfigError(
            "min-share/max-share",
            f"lower {lo.tolist()}, upper {hi.tolist()}",
            "bounds that leave a mixture summing to 1 (sum of minima <= 1 <= sum of maxima)",
        )
    s = np.asarray(weights, dtype=float)
    r0 = np.clip(np.full(M, 1.0 / M), lo, hi)
    r0 = _project_sum(r0, lo, hi)

    def f(r: np.ndarray) -> tuple[float, np.ndarray]:
        e = law.k * np.exp(law.t @ r)  # (n_targets,)
        return float(law.c @ s + e @ s), (s * e) @ law.t

    res = minimize(
        f,
        r0,
        jac=True,
        method="SLSQP",
        bounds=list(zip(lo, hi)),
        constraints=[{"type": "eq", "fun": lambda r: r.sum() - 1.0, "jac": lambda r: np.ones(M)}],
        options={"ftol": 1e-14, "maxiter": 500},
    )
    return _project_sum(np.clip(res.x, lo, hi), lo, hi)


def _project_sum(r: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Move r within [lo, hi] until it sums to 1 (spreading the gap over the free room)."""
    for _ in range(len(r) + 1):
        gap = 1.0 - r.sum()
        room = (hi - r) if gap > 0 else (r - lo)
        if abs(gap) < 1e-15 or room.sum() <= 0:
            break
        r = np.clip(r + np.sign(gap) * room * min(1.0, abs(gap) / room.sum()), lo, hi)
    return r


def in_hull(P: np.ndarray, r: np.ndarray) -> bool:
    """Whether r is a convex combination of the runs' mixtures (rows of P): the law is
    measured there; outside it extrapolates."""
    from scipy.optimize import linprog

    R = P.shape[0]
    A = np.vstack([P.T, np.ones(R)])
    res = linprog(np.zeros(R), A_eq=A, b_eq=np.r_[r, 1.0], bounds=(0, None), method="highs")
    return bool(res.status == 0)


# --------------------------------------------------------------------------------------------
# the fit
# --------------------------------------------------------------------------------------------


@dataclass
class MixingFit:
    """fit_mixing's result: the law, the best mixture and how the runs compare."""

    law: MixingLaw
    weights: np.ndarray  # target weights s_i of the total
    optimum: np.ndarray  # best mixture (n_domains,)
    P: np.ndarray  # runs' mixtures (R, n_domains)
    losses: np.ndarray  # runs' losses (R, n_targets)
    sigma: np.ndarray  # log-loss residual scale per target
    dof: int
    lower: np.ndarray
    upper: np.ndarray
    level: float = 0.9
    samples: np.ndarray | None = None  # bootstrap optima (B, n_domains)
    warnings: list[str] = field(default_factory=list)

    def predicted(self) -> np.ndarray:
        """The law's losses at the runs' mixtures (R, n_targets)."""
        return self.law.loss(self.P)

    def best_run(self) -> int:
        """Index of the run with the lowest weighted total loss."""
        return int(np.argmin(self.losses @ self.weights))

    def to_dict(self) -> dict[str, object]:
        """The fit.json payload."""
        law, s = self.law, self.weights
        b = self.best_run()
        d: dict[str, object] = {
            "kind": "mixing",
            "law": "L_i(r) = c_i + k_i exp(sum_j t_ij r_j) (Ye et al. 2024), gauge sum_j t_ij = 0",
            "domains": list(law.domains),
            "targets": list(law.targets),
            "target_weights": dict(zip(law.targets, s.tolist())),
            "params": law.to_dict(),
            "noise": {
                "sigma_log_loss": dict(zip(law.targets, self.sigma.tolist())),
                "dof": self.dof,
            },
            "n_runs": int(self.P.shape[0]),
            "bounds": {
                dm: (float(lo), float(hi))
                for dm, lo, hi in zip(law.domains, self.lower, self.upper)
            },
            "optimum": {
                "mixture": dict(zip(law.domains, self.optimum.tolist())),
                "losses": dict(zip(law.targets, law.loss(self.optimum).tolist())),
                "total": float(law.total(self.optimum, s)),
            },
            "best_run": {
                "row": b,
                "mixture": dict(zip(law.domains, self.P[b].tolist())),
                "total": float(self.losses[b] @ s),
                "predicted_total": float(law.total(self.P[b], s)),
            },
            "level": self.level,
            "warnings": list(self.warnings),
        }
        if self.samples is not None:
            iv = percentile_interval(self.samples, self.level, axis=0)
            d["bootstrap"] = int(len(self.samples))
            d["optimum"]["intervals"] = {
                dm: (float(lo), float(hi)) for dm, (lo, hi) in zip(law.domains, iv)
            }
        return d


def _check_mixing_data(P: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Proportions (R, M) summing to 1 and positive finite losses (R, T) with enough runs."""
    P, Y = np.atleast_2d(np.asarray(P, dtype=float)), np.asarray(Y, dtype=float)
    Y = Y[:, None] if Y.ndim == 1 else Y
    R, M = P.shape
    if Y.shape[0] != R:
        raise DataError(f"losses: {Y.shape[0]} rows is not allowed: one per run ({R})")
    if not np.isfinite(P).all() or np.any(P < 0):
        raise DataError("proportions: negative or missing values are not allowed: shares >= 0")
    bad = np.flatnonzero(np.abs(P.sum(axis=1) - 1) > 1e-3)
    if bad.size:
        raise DataError(
            f"proportions: rows {bad[:5].tolist()} sum to {P.sum(axis=1)[bad[:3]].round(4).tolist()}, "
            "which is not allowed: each run's shares must sum to 1"
        )
    if not np.isfinite(Y).all() or np.any(Y <= 0):
        raise DataError("losses: missing or non-positive values are not allowed: losses > 0")
    if R <= M + 1:
        raise DataError(
            f"runs={R} is not allowed: more than {M + 1} (the law of each target has {M + 1} "
            "parameters); add runs with other mixtures"
        )
    if np.linalg.matrix_rank(P) < M:
        raise DataError(
            f"proportions: the {R} mixtures span {np.linalg.matrix_rank(P)} of {M} directions, "
            "which is not allowed: vary every domain's share across the runs"
        )
    return P / P.sum(axis=1, keepdims=True), Y


def fit_mixing(
    P: np.ndarray,
    losses: np.ndarray,
    *,
    domains: list[str] | None = None,
    targets: list[str] | None = None,
    target_weights: np.ndarray | None = None,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
    bootstrap: int = 0,
    level: float = 0.9,
    seed: int = 0,
) -> MixingFit:
    """Fit the data mixing law of every target (validation domain) to runs with mixtures P
    (R, M) and losses (R, T); find the mixture minimising sum_i s_i L_i within the bounds.

    target_weights s (default equal) say how much each validation domain matters. bootstrap > 0
    refits on parametric resamples (each run's losses redrawn from the fitted laws with their
    measured log-loss noise) and reports the spread of the best mixture."""
    P, Y = _check_mixing_data(P, losses)
    check_resampling(bootstrap, seed, level, bytes_each=8.0 * P.shape[1])  # one optimum each
    R, M = P.shape
    T = Y.shape[1]
    domains = list(domains) if domains else [f"domain{j}" for j in range(M)]
    targets = list(targets) if targets else [f"target{i}" for i in range(T)]
    if len(domains) != M or len(targets) != T:
        raise DataError(f"names: {len(domains)} domains and {len(targets)} targets for {M} x {T}")
    s = np.full(T, 1.0 / T) if target_weights is None else np.asarray(target_weights, float)
    if s.shape != (T,) or not np.isfinite(s).all() or np.any(s < 0) or s.sum() <= 0:
        raise ConfigError("target weights", s.tolist(), f"{T} finite values >= 0, not all zero")
    law = _fit_law(P, Y, domains, targets)
    sigma, dof = noise_scale((np.log(Y) - np.log(law.loss(P))).T, None, M + 1)
    lo = np.zeros(M) if lower is None else np.asarray(lower, dtype=float)
    hi = np.ones(M) if upper is None else np.asarray(upper, dtype=float)
    opt = optimal_mixture(law, s, lo, hi)
    fit = MixingFit(law, s, opt, P, Y, np.atleast_1d(sigma), dof, lo, hi, level)
    if not in_hull(P, opt):
        fit.warnings.append(
            "the best mixture lies outside the mixtures of the runs: the law extrapolates "
            "there; train a run near it to check"
        )
    if bootstrap:
        fit.samples = _bootstrap_optima(fit, bootstrap, np.random.default_rng(seed))
    return fit


def _fit_law(P: np.ndarray, Y: np.ndarray, domains: list[str], targets: list[str]) -> MixingLaw:
    cs, us = [], []
    for i in range(Y.shape[1]):
        c, u, _ = _fit_one(P, Y[:, i])
        cs.append(c)
        us.append(u)
    U = np.array(us)
    mean = U.mean(axis=1, keepdims=True)  # gauge: sum_j t_ij = 0, k_i = exp(mean_j u_ij)
    return MixingLaw(tuple(domains), tuple(targets), np.array(cs), np.exp(mean[:, 0]), U - mean)


def _bootstrap_optima(fit: MixingFit, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Best mixtures of laws refitted to parametric resamples (fitted losses x exp(noise))."""
    base = np.log(fit.predicted())
    out = np.empty((n_boot, fit.P.shape[1]))
    for b in range(n_boot):
        Yb = np.exp(base + fit.sigma * rng.standard_normal(base.shape))
        law = _fit_law(fit.P, Yb, list(fit.law.domains), list(fit.law.targets))
        out[b] = optimal_mixture(law, fit.weights, fit.lower, fit.upper)
    return out
