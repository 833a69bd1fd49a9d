"""Checking a law's predictions: hold out the largest compute budget and see whether the refit
predicts it, and measure how often prediction intervals cover fresh runs of a known law.

Both answer "can I trust the interval?": the holdout on your own runs, the coverage study on
data whose truth is known (the same fitting and bootstrap code as `fit_approach3`, batched over
simulated data sets)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sizeup.choices import RESAMPLES
from sizeup.errors import ConfigError, DataError, check_choice
from sizeup.laws.chinchilla import (
    AllocationFit,
    Approach3Fit,
    ChinchillaLaw,
    _check_points,
    _log_model,
    _params_to_theta,
    _refit_many,
    _resamples,
    default_grid,
    fit_approach3,
    resample_kind,
)
from sizeup.laws.forms import group_budgets
from sizeup.laws.intervals import line_prediction_interval, noise_scale, percentile_interval

# --------------------------------------------------------------------------------------------
# holdout: refit without the largest compute budget, predict it
# --------------------------------------------------------------------------------------------


def largest_budget_rows(C: np.ndarray, rtol: float = 0.05) -> np.ndarray:
    """Rows of the largest compute budget (budgets within rtol of a neighbour are one budget)."""
    labels = group_budgets(np.asarray(C, dtype=float), rtol)
    return np.flatnonzero(labels == labels.max())


@dataclass
class Holdout:
    """Held-out points, what the refit predicted for them and whether each fell inside its
    prediction interval. `quantity` is "loss" (approach 3) or "N_opt" (approaches 1 and 2)."""

    quantity: str
    budget: float  # compute of the held-out budget (geometric mean of its rows)
    rows: list[int]  # held-out rows of the input
    observed: np.ndarray
    predicted: np.ndarray
    low: np.ndarray
    high: np.ndarray
    level: float
    n_fit: int  # points (or optima) the refit used
    C_points: np.ndarray  # compute of each held-out point
    labels: list[str]  # each held-out point, for tables and plots
    refit: object = field(default=None, repr=False)  # the refit without the held-out budget

    @property
    def rel_error(self) -> np.ndarray:
        """(predicted - observed) / observed per held-out point."""
        return self.predicted / self.observed - 1

    @property
    def inside(self) -> np.ndarray:
        """Whether each observation lies inside its prediction interval."""
        return (self.low <= self.observed) & (self.observed <= self.high)

    def to_dict(self) -> dict[str, object]:
        """The fit.json "holdout" section."""
        return {
            "what": "largest-budget",
            "quantity": self.quantity,
            "budget": self.budget,
            "level": self.level,
            "n_fit": self.n_fit,
            "n_held_out": len(self.rows),
            "max_abs_rel_error": float(np.max(np.abs(self.rel_error))),
            "all_inside": bool(self.inside.all()),
            "points": [
                {
                    "row": r,
                    "point": lab,
                    "observed": float(o),
                    "predicted": float(p),
                    "rel_error": float(e),
                    "interval": (float(lo), float(hi)),
                    "inside": bool(i),
                }
                for r, lab, o, p, e, lo, hi, i in zip(
                    self.rows,
                    self.labels,
                    self.observed,
                    self.predicted,
                    self.rel_error,
                    self.low,
                    self.high,
                    self.inside,
                )
            ],
        }


def holdout_approach3(
    N: np.ndarray,
    D: np.ndarray,
    L: np.ndarray,
    *,
    weights: np.ndarray | None = None,
    budget_rtol: float = 0.05,
    **fit_kwargs: object,
) -> Holdout:
    """Refit approach 3 without the largest compute budget (C = 6ND) and predict its losses.

    fit_kwargs go to fit_approach3 (bootstrap must be > 0: each held-out loss is judged against
    its prediction interval). Rows dropped by drop_highest_k are chosen among the kept rows."""
    if int(fit_kwargs.get("bootstrap", 0)) < 1:
        raise ConfigError(
            "bootstrap", fit_kwargs.get("bootstrap", 0), "at least 1 with a holdout (100+ advised)"
        )
    N, D, L = _check_points(N, D, L, min_points=5)
    held = largest_budget_rows(6.0 * N * D, budget_rtol)
    keep = np.setdiff1d(np.arange(N.size), held)
    if keep.size < 6:
        raise DataError(
            f"points without the largest budget={keep.size} is not allowed: at least 6 to refit"
        )
    w = None if weights is None else np.asarray(weights, dtype=float)[keep]
    fit: Approach3Fit = fit_approach3(N[keep], D[keep], L[keep], weights=w, **fit_kwargs)
    lo, hi = fit.prediction_interval(N[held], D[held])
    return Holdout(
        quantity="loss",
        budget=float(np.exp(np.log(6.0 * N[held] * D[held]).mean())),
        rows=held.tolist(),
        observed=L[held],
        predicted=np.asarray(fit.law.loss(N[held], D[held]), dtype=float).ravel(),
        low=lo,
        high=hi,
        level=fit.level,
        n_fit=fit.n_points,
        C_points=6.0 * N[held] * D[held],
        labels=[f"N={n:.3g}, D={d:.3g}" for n, d in zip(N[held], D[held])],
        refit=fit,
    )


def holdout_allocation(fit: AllocationFit, budget_rtol: float = 0.05) -> Holdout:
    """Approaches 1 and 2: refit N_opt(C) without the optimum of the largest budget and predict
    that optimum, with the least-squares line's prediction interval in log-log space (it adds
    the optima's own scatter to the line's uncertainty). Each budget's optimum uses only its own
    runs (approach 2) or lower-compute runs (approach 1's envelope), so the other optima are
    unchanged by leaving the largest budget out."""
    held = largest_budget_rows(fit.C, budget_rtol)
    keep = np.setdiff1d(np.arange(fit.C.size), held)
    if keep.size < 3:
        raise DataError(
            f"optima without the largest budget={keep.size} is not allowed: at least 3 for "
            "a prediction interval (add budgets)"
        )
    x, y = np.log(fit.C[keep]), np.log(fit.N[keep])
    yhat, lo, hi = line_prediction_interval(x, y, np.log(fit.C[held]), fit.level)
    return Holdout(
        quantity="N_opt",
        budget=float(np.exp(np.log(fit.C[held]).mean())),
        rows=held.tolist(),
        observed=fit.N[held],
        predicted=np.exp(yhat),
        low=np.exp(lo),
        high=np.exp(hi),
        level=fit.level,
        n_fit=int(keep.size),
        C_points=fit.C[held],
        labels=[f"C={c:.3g}" for c in fit.C[held]],
    )


# --------------------------------------------------------------------------------------------
# coverage of prediction intervals on a known law
# --------------------------------------------------------------------------------------------


@dataclass
class Coverage:
    """How often `level` intervals from fits to simulated data held fresh draws of the truth."""

    level: float
    prediction: float  # the prediction interval (parameters + noise): should be about `level`
    law_only: float  # the bootstrap interval of the law alone: falls short when noise matters
    per_point: np.ndarray  # prediction-interval coverage at each query point
    reps: int
    draws: int


def prediction_coverage(
    law: ChinchillaLaw,
    N: np.ndarray,
    D: np.ndarray,
    sigma: float,
    N_new: np.ndarray,
    D_new: np.ndarray,
    *,
    reps: int = 200,
    bootstrap: int = 200,
    draws: int = 50,
    level: float = 0.9,
    resample: str = "auto",
    starts: np.ndarray | None = None,
    delta: float = 1e-3,
    seed: int = 0,
) -> Coverage:
    """Measured coverage of approach 3's prediction intervals.

    `reps` data sets are drawn at the design (N, D) from `law` with Gaussian log-loss noise of
    scale `sigma`; each is fitted (from `starts`, default every 50th grid start) and
    bootstrapped as fit_approach3 does, all data sets and resamples stepped together; then
    `draws` fresh losses at each (N_new, D_new) are checked against each fit's intervals.
    """
    check_choice("resample", resample, RESAMPLES)
    rng = np.random.default_rng(seed)
    logN, logD = np.log(np.asarray(N, dtype=float)), np.log(np.asarray(D, dtype=float))
    n = logN.size
    truth = _params_to_theta(np.array([[law.E, law.A, law.B, law.alpha, law.beta]]))
    Y = _log_model(truth, logN, logD) + sigma * rng.standard_normal((reps, n))
    grid = default_grid()[::50] if starts is None else np.asarray(starts, dtype=float)
    W = np.ones((reps, n))
    theta = _refit_many(grid, logN, logD, Y, W, delta, False)
    s, dof = noise_scale(Y - _log_model(theta, logN, logD), None, 5)
    kind = resample_kind(resample, n, 5)
    Yb, Wb = _resamples(kind, theta, logN, logD, Y, None, s, bootstrap, rng)
    tb = _refit_many(
        np.repeat(theta, bootstrap, axis=0)[:, None, :],
        logN,
        logD,
        Yb.reshape(-1, n),
        np.ascontiguousarray(Wb).reshape(-1, n),
        delta,
        False,
    ).reshape(reps, bootstrap, 5)
    qN, qD = np.log(np.asarray(N_new, dtype=float)), np.log(np.asarray(D_new, dtype=float))
    pred = _log_model(tb.reshape(-1, 5), qN, qD).reshape(reps, bootstrap, -1)
    noise = s[:, None] * rng.standard_t(dof, size=(reps, bootstrap))
    pi = percentile_interval(pred + noise[..., None], level, axis=1)  # (reps, m, 2)
    ci = percentile_interval(pred, level, axis=1)
    fresh = _log_model(truth, qN, qD)[0][None, :, None] + sigma * rng.standard_normal(
        (reps, qN.size, draws)
    )

    def covered(iv: np.ndarray) -> np.ndarray:
        return (iv[..., :1] <= fresh) & (fresh <= iv[..., 1:])

    hit = covered(pi)
    return Coverage(
        level=level,
        prediction=float(hit.mean()),
        law_only=float(covered(ci).mean()),
        per_point=hit.mean(axis=(0, 2)),
        reps=reps,
        draws=draws,
    )
