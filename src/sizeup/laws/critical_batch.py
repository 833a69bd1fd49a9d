"""Critical batch size: B_crit(L) = B* / L^(1/alpha_B) (Kaplan et al. 2020, eq. 5.2), fitted from
gradient-noise-scale measurements or from steps-to-target-loss at several batch sizes via the
(S/S_min - 1)(E/E_min - 1) = 1 trade-off (McCandlish et al. 2018)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sizeup.errors import DataError
from sizeup.laws.forms import PowerLaw


@dataclass(frozen=True)
class CriticalBatchLaw:
    """B_crit(L) = B_star / L^(1/alpha_B)."""

    B_star: float
    alpha_B: float

    def __call__(self, loss: float | np.ndarray) -> float | np.ndarray:
        """Critical batch size at loss L."""
        b = self.B_star / np.asarray(loss, dtype=float) ** (1.0 / self.alpha_B)
        return float(b) if np.ndim(b) == 0 else b

    def to_dict(self) -> dict[str, float]:
        """Plain dict {B_star, alpha_B}."""
        return {"B_star": self.B_star, "alpha_B": self.alpha_B}


@dataclass
class TradeoffFit:
    """S = S_min (1 + B_crit / B) at one target loss: S_min, E_min = S_min B_crit and B_crit.

    With an interval (``fit_tradeoff(..., level=0.9)``): ``lo``/``hi`` bound B_crit by the
    profile of the fit's residual sum of squares (``hi`` = inf: the data never level off, any
    larger B_crit fits as well; ``lo`` = 0: they never fall); ``bound`` is "=" for an optimum
    inside the profiled range, ">=" when the best fit lies at its top (steps fall as 1/B at every
    batch measured: B_crit is at least ``lo``, the figure to quote), "<=" when it lies at its
    bottom (steps do not fall: B_crit is at most ``hi``)."""

    target: float
    S_min: float
    E_min: float
    lo: float = float("nan")
    hi: float = float("nan")
    level: float = float("nan")
    bound: str = "="

    @property
    def B_crit(self) -> float:
        """E_min / S_min: the batch at which one pays 2x the minimum steps and 2x the minimum data."""
        return self.E_min / self.S_min if self.S_min > 0 else float("inf")


def _check_tradeoff_data(B: np.ndarray, S: np.ndarray) -> None:
    if B.shape != S.shape or np.unique(B).size < 2:
        raise DataError(
            f"batch sizes={np.unique(B).tolist()} is not allowed: at least 2 distinct, one steps value each"
        )
    if np.any(B <= 0) or np.any(S <= 0) or not np.all(np.isfinite(S)):
        raise DataError(
            "batch/steps: non-positive values are not allowed: sizes and step counts > 0"
        )


def fit_tradeoff(
    batch: np.ndarray,
    steps: np.ndarray,
    target: float = float("nan"),
    *,
    relative: bool = False,
    level: float | None = None,
) -> TradeoffFit:
    """Fit S = S_min + E_min / B (the trade-off hyperbola, linear in 1/B) at one target loss.

    McCandlish et al. 2018 (eq. 2.11: S/S_min - 1 = (E/E_min - 1)^-1, i.e. S = S_min (1 +
    B_noise / B)). Default: least squares in S (the hyperbola is linear in 1/B). ``relative``:
    least squares in log S (the scatter of steps-to-target grows with S, so a 10% miss at the
    smallest batch counts as much as one at the largest); repeated batch sizes (seeds) are
    fine. ``level`` (e.g. 0.9): also an interval for B_crit from the profile of the residual
    sum of squares over B_crit (for each B_crit, S_min is fitted in closed form; the interval
    is {B_crit: RSS <= RSS_min (1 + F(level; 1, n - 2) / (n - 2))}, the F-test of one
    parameter, Bates & Watts 1988, section 6.1), which needs 3 points or more."""
    B, S = np.asarray(batch, dtype=float), np.asarray(steps, dtype=float)
    _check_tradeoff_data(B, S)
    if not relative and level is None:
        slope, intercept = np.polyfit(1.0 / B, S, 1)
        if not (slope > 0 and intercept > 0):
            raise DataError(
                f"steps-vs-batch (S_min={intercept:.3g}, E_min={slope:.3g}) is not allowed: steps "
                "must fall with batch size and level off (S = S_min + E_min/B with both > 0)"
            )
        return TradeoffFit(float(target), float(intercept), float(slope))
    return _profile_fit(B, S, float(target), relative, level)


# the profiled B_crit range: 1000x below the smallest batch to 1000x above the largest
_PROFILE_SPAN = 1e3
_PROFILE_POINTS = 4001


def _profile_rss(B: np.ndarray, S: np.ndarray, bn: np.ndarray, relative: bool):
    """For each B_noise in ``bn``: the closed-form best S_min and the residual sum of squares."""
    x = 1.0 + bn[:, None] / B[None, :]  # S = S_min x
    if relative:
        r = np.log(S)[None, :] - np.log(x)
        log_smin = r.mean(axis=1)
        return np.exp(log_smin), ((r - log_smin[:, None]) ** 2).sum(axis=1)
    smin = (x * S[None, :]).sum(axis=1) / (x * x).sum(axis=1)
    return smin, ((S[None, :] - smin[:, None] * x) ** 2).sum(axis=1)


def _profile_fit(
    B: np.ndarray, S: np.ndarray, target: float, relative: bool, level: float | None
) -> TradeoffFit:
    """fit_tradeoff by the profile over B_noise (see there)."""
    bn = np.geomspace(B.min() / _PROFILE_SPAN, B.max() * _PROFILE_SPAN, _PROFILE_POINTS)
    smin, rss = _profile_rss(B, S, bn, relative)
    i = int(np.argmin(rss))
    # refine between the neighbouring grid points (golden section on log B_noise)
    a, b = np.log(bn[max(i - 1, 0)]), np.log(bn[min(i + 1, bn.size - 1)])
    for _ in range(60):
        c, d = b - (b - a) / 1.618033988749895, a + (b - a) / 1.618033988749895
        rc, rd = (_profile_rss(B, S, np.exp([v]), relative)[1][0] for v in (c, d))
        a, b = (a, d) if rc < rd else (c, b)
    best = np.exp([(a + b) / 2])
    s_best, rss_best = (v[0] for v in _profile_rss(B, S, best, relative))
    bound = "=" if 0 < i < bn.size - 1 else (">=" if i == bn.size - 1 else "<=")
    lo = hi = float("nan")
    n = B.size
    if level is not None and n > 2:
        from scipy.stats import f as f_dist  # scipy.stats loads slowly; only fits need it

        cut = rss_best * (1.0 + f_dist.ppf(level, 1, n - 2) / (n - 2))
        inside = np.flatnonzero(rss <= cut * (1 + 1e-12) + 1e-300)
        if inside.size == 0:  # the refined optimum lies between grid points: the interval is it
            inside = np.array([i])
        lo = 0.0 if inside[0] == 0 else float(min(bn[inside[0]], best[0]))
        hi = float("inf") if inside[-1] == bn.size - 1 else float(max(bn[inside[-1]], best[0]))
    return TradeoffFit(
        target,
        float(s_best),
        float(s_best * best[0]),
        lo=lo,
        hi=hi,
        level=float("nan") if level is None else float(level),
        bound=bound,
    )


def fit_critical_batch(loss: np.ndarray, b_crit: np.ndarray) -> CriticalBatchLaw:
    """Fit B_crit(L) = B* / L^(1/alpha_B) to (loss, critical or noise-scale batch) pairs."""
    law = PowerLaw.fit(np.asarray(loss, dtype=float), np.asarray(b_crit, dtype=float))
    if not law.exponent < 0:
        raise DataError(
            f"slope of log B_crit on log L={law.exponent:.3g} is not allowed: B_crit must grow as loss falls"
        )
    return CriticalBatchLaw(B_star=law.coef, alpha_B=-1.0 / law.exponent)


def fit_critical_batch_from_steps(
    target: np.ndarray, batch: np.ndarray, steps: np.ndarray
) -> tuple[CriticalBatchLaw, list[TradeoffFit]]:
    """Per target loss, fit the trade-off to (batch, steps-to-target), then B_crit(L) across targets."""
    target, batch, steps = (np.asarray(v, dtype=float) for v in (target, batch, steps))
    fits = [fit_tradeoff(batch[target == t], steps[target == t], t) for t in np.unique(target)]
    if len(fits) < 2:
        raise DataError("target losses=1 is not allowed: at least 2 to fit B_crit(L)")
    law = fit_critical_batch(np.array([f.target for f in fits]), np.array([f.B_crit for f in fits]))
    return law, fits
