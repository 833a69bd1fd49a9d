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
    """S = S_min (1 + B_crit / B) at one target loss: S_min, E_min = S_min B_crit and B_crit."""

    target: float
    S_min: float
    E_min: float

    @property
    def B_crit(self) -> float:
        """E_min / S_min: the batch at which one pays 2x the minimum steps and 2x the minimum data."""
        return self.E_min / self.S_min


def fit_tradeoff(batch: np.ndarray, steps: np.ndarray, target: float = float("nan")) -> TradeoffFit:
    """Fit S = S_min + E_min / B (the trade-off hyperbola, linear in 1/B) at one target loss."""
    B, S = np.asarray(batch, dtype=float), np.asarray(steps, dtype=float)
    if B.shape != S.shape or np.unique(B).size < 2:
        raise DataError(
            f"batch sizes={np.unique(B).tolist()} is not allowed: at least 2 distinct, one steps value each"
        )
    if np.any(B <= 0) or np.any(S <= 0) or not np.all(np.isfinite(S)):
        raise DataError(
            "batch/steps: non-positive values are not allowed: sizes and step counts > 0"
        )
    slope, intercept = np.polyfit(1.0 / B, S, 1)
    if not (slope > 0 and intercept > 0):
        raise DataError(
            f"steps-vs-batch (S_min={intercept:.3g}, E_min={slope:.3g}) is not allowed: steps must "
            "fall with batch size and level off (S = S_min + E_min/B with both > 0)"
        )
    return TradeoffFit(float(target), float(intercept), float(slope))


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
