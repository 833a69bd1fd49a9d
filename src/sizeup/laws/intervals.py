"""Prediction intervals for fitted laws: the parameters' uncertainty plus the observation noise.

A confidence interval for a law's prediction says where the *law* lies; a run you train lands
off the law by its own noise (seed, data order, evaluation), so the interval for an *observed*
loss must add that scatter. sizeup measures the scatter from the fit's residuals in log-loss,
s^2 = sum_i w_i r_i^2 / (n - p) with weights scaled to mean 1, and adds to each bootstrap
prediction a draw of s * T, T a Student t with n - p degrees of freedom: the predictive
distribution of a new observation's noise when its scale is itself estimated from n - p
residual degrees of freedom (for a linear law with Gaussian noise this reproduces the textbook
interval yhat +- t s sqrt(1 + h) of a new observation; Seber & Wild 1989, Nonlinear Regression,
give its nonlinear form).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sizeup.config import RunSpec
from sizeup.errors import ConfigError, DataError
from sizeup.flops import available_memory

# Resamples a fit's bootstrap may take: percentile intervals settle at 1,000-2,000 (Efron &
# Tibshirani 1993, ch. 19); 100,000 is fifty times that, and a fit that refits every resample
# in turn (the mixing law) would take hours beyond it.
MAX_BOOTSTRAP = 100_000


def check_resampling(bootstrap: Any, seed: Any, level: Any, bytes_each: float) -> None:
    """The options every fit's bootstrap reads, checked before any work: ``bootstrap`` an
    integer from 0 to MAX_BOOTSTRAP whose arrays (``bytes_each`` per resample) fit in the
    memory free now, ``seed`` a seed as a run's (RunSpec.seed's bounds), ``level`` in (0, 1)."""
    integer = isinstance(bootstrap, (int, np.integer)) and not isinstance(bootstrap, bool)
    if not integer or not 0 <= bootstrap <= MAX_BOOTSTRAP:
        raise ConfigError(
            "bootstrap",
            bootstrap,
            f"an integer from 0 to {MAX_BOOTSTRAP:,} (percentile intervals settle at 1,000-2,000)",
        )
    seed_field = next(i for i in RunSpec.field_info() if i.name == "seed")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ConfigError("seed", seed, "an integer")
    if seed_field.bounds is not None:
        seed_field.bounds.check("seed", int(seed), integer=True)
    if not (isinstance(level, (int, float)) and math.isfinite(level) and 0 < level < 1):
        raise ConfigError("level", level, "a fraction in (0, 1), e.g. 0.9")
    need, have = bootstrap * bytes_each, available_memory()
    if have is not None and need > have:
        raise ConfigError(
            "bootstrap",
            bootstrap,
            f"fewer resamples: {bootstrap:,} need about {need / 2**30:.1f} GiB and "
            f"{have / 2**30:.1f} GiB is free (at most {int(have // bytes_each):,})",
        )


def normalized_weights(weights: np.ndarray | None, n: int) -> np.ndarray | None:
    """Point weights checked (n finite values >= 0, some > 0) and scaled to mean 1.

    Weights count a run as several identical runs would (frequency weights): they scale its
    term in the objective, and its noise in a parametric resample as 1/sqrt(weight). Only their
    ratios matter, so they are scaled to mean 1 and the residual degrees of freedom stay n - p.
    """
    if weights is None:
        return None
    w = np.asarray(weights, dtype=float).ravel()
    if w.size != n:
        raise DataError(f"weights: {w.size} values are not allowed: one per point ({n})")
    bad = ~np.isfinite(w) | (w < 0)
    if bad.any():
        raise DataError(
            f"weights={w[bad][:3].tolist()} (at rows {np.flatnonzero(bad)[:3].tolist()}) "
            "is not allowed: finite values >= 0"
        )
    if not (w > 0).any():
        raise DataError("weights: all zero is not allowed: at least one point with weight > 0")
    return w / w.mean()


def noise_scale(resid: np.ndarray, weights: np.ndarray | None, n_params: int) -> tuple[float, int]:
    """(s, dof): the residual scale s = sqrt(sum w r^2 / dof) with dof = n - n_params.

    resid is (n,) or (R, n) (one row per data set); s is then (R,)."""
    r = np.asarray(resid, dtype=float)
    n = r.shape[-1]
    dof = n - n_params
    if dof < 1:
        raise DataError(
            f"points={n} is not allowed: more points than the {n_params} parameters, "
            "so the residuals can measure the noise"
        )
    w = 1.0 if weights is None else weights
    return np.sqrt((w * r * r).sum(axis=-1) / dof), dof


def noise_draws(
    sigma: float | np.ndarray, dof: int, size: int | tuple[int, ...], rng: np.random.Generator
) -> np.ndarray:
    """sigma * T with T ~ Student t(dof): a new observation's noise in log-loss."""
    return np.asarray(sigma)[..., None] * rng.standard_t(dof, size=size)


def percentile_interval(values: np.ndarray, level: float, axis: int = -1) -> np.ndarray:
    """Central `level` percentile interval along axis: [..., 2] (low, high)."""
    q = (1 - level) / 2
    return np.moveaxis(np.quantile(values, [q, 1 - q], axis=axis), 0, -1)


def line_prediction_interval(
    x: np.ndarray, y: np.ndarray, x0: float | np.ndarray, level: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares line through (x, y) and the prediction interval of a new y at x0:
    yhat +- t_{k-2} s sqrt(1 + 1/k + (x0 - xbar)^2 / Sxx), the Gaussian linear-model interval
    of a new observation (Seber & Lee 2003, Linear Regression Analysis). Needs k >= 3 points."""
    from scipy.stats import t as student_t

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    k = x.size
    if k < 3:
        raise DataError(f"points={k} is not allowed: at least 3 for a prediction interval")
    xm = x.mean()
    sxx = ((x - xm) ** 2).sum()
    slope = ((x - xm) * (y - y.mean())).sum() / sxx
    icpt = y.mean() - slope * xm
    s = np.sqrt(((y - icpt - slope * x) ** 2).sum() / (k - 2))
    x0 = np.asarray(x0, dtype=float)
    yhat = icpt + slope * x0
    half = student_t.ppf(0.5 + level / 2, k - 2) * s * np.sqrt(1 + 1 / k + (x0 - xm) ** 2 / sxx)
    return yhat, yhat - half, yhat + half
