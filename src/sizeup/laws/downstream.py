"""Downstream accuracy from loss: a sigmoid in the style of Llama 3 (Dubey et al. 2024, sec. 3.2.1),
which chains compute -> loss (a scaling law) -> accuracy (this fit)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from sizeup.errors import DataError


@dataclass(frozen=True)
class SigmoidLaw:
    """acc(L) = floor + (ceiling - floor) / (1 + exp(k (L - L0))): falls from ceiling to floor as loss rises."""

    floor: float
    ceiling: float
    k: float
    L0: float

    def __call__(self, loss: float | np.ndarray) -> float | np.ndarray:
        """Predicted accuracy at loss L."""
        z = np.clip(self.k * (np.asarray(loss, dtype=float) - self.L0), -500, 500)
        acc = self.floor + (self.ceiling - self.floor) / (1.0 + np.exp(z))
        return float(acc) if np.ndim(acc) == 0 else acc

    def to_dict(self) -> dict[str, float]:
        """Plain dict of the four parameters."""
        return asdict(self)


def fit_sigmoid(
    loss: np.ndarray, acc: np.ndarray, floor: float | None = None, ceiling: float | None = None
) -> SigmoidLaw:
    """Least-squares sigmoid from loss to accuracy; pin `floor` (e.g. chance) or `ceiling` if known."""
    from scipy.optimize import curve_fit

    L, y = np.asarray(loss, dtype=float), np.asarray(acc, dtype=float)
    if L.shape != y.shape or np.any(~np.isfinite(L)) or np.any(~np.isfinite(y)):
        raise DataError(
            "loss/accuracy: missing or unequal-length values are not allowed: one finite pair per run"
        )
    free = 4 - (floor is not None) - (ceiling is not None)
    if L.size <= free:
        raise DataError(
            f"points={L.size} is not allowed: more than the {free} free sigmoid parameters"
        )

    def model(x: np.ndarray, *p: float) -> np.ndarray:
        it = iter(p)
        lo = floor if floor is not None else next(it)
        hi = ceiling if ceiling is not None else next(it)
        k, l0 = next(it), next(it)
        return lo + (hi - lo) / (1.0 + np.exp(np.clip(k * (x - l0), -500, 500)))

    p0: list[float] = []
    if floor is None:
        p0.append(float(y.min()))
    if ceiling is None:
        p0.append(float(y.max()))
    best = None
    for k0 in (1.0, 3.0, 10.0):  # a few slopes: curve_fit is local
        try:
            p, _ = curve_fit(model, L, y, p0=[*p0, k0, float(np.median(L))], maxfev=20000)
        except RuntimeError:
            continue
        sse = float(((model(L, *p) - y) ** 2).sum())
        if best is None or sse < best[1]:
            best = (p, sse)
    if best is None:
        raise DataError(
            "loss/accuracy is not allowed: no sigmoid fits these points (is accuracy varying?)"
        )
    it = iter(best[0])
    lo = floor if floor is not None else float(next(it))
    hi = ceiling if ceiling is not None else float(next(it))
    return SigmoidLaw(lo, hi, float(next(it)), float(next(it)))
