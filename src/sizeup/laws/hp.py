"""Hyperparameter laws: power laws in compute (or N, D) for the learning rate and batch size."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sizeup.errors import ConfigError, DataError
from sizeup.laws.forms import PowerLaw, group_budgets


@dataclass
class HPLawFit:
    """eta_opt(C) and B_opt(C) fitted to the near-optimal band (DeepSeek LLM, section 3.1)."""

    lr_law: PowerLaw | None
    batch_law: PowerLaw | None
    band: float
    C: np.ndarray  # band points
    lr: np.ndarray
    batch: np.ndarray
    loss: np.ndarray
    best: list[dict[str, float]]  # the single best run per budget

    def to_dict(self) -> dict[str, object]:
        """The fit.json payload."""
        return {
            "kind": "hp",
            "band": self.band,
            "compute": "6ND",
            "lr_law": None if self.lr_law is None else self.lr_law.to_dict(),
            "batch_law": None if self.batch_law is None else self.batch_law.to_dict(),
            "n_band_points": int(self.C.size),
            "best": self.best,
            "band_points": [
                {"C": float(c), "lr": float(lr), "batch": float(b), "loss": float(lo)}
                for c, lr, b, lo in zip(self.C, self.lr, self.batch, self.loss)
            ],
        }


def near_optimal_band(
    C: np.ndarray, loss: np.ndarray, band: float = 0.0025, rtol: float = 0.05
) -> np.ndarray:
    """Boolean mask of runs whose loss is within `band` (a fraction) of the best at their budget."""

    if not band >= 0:
        raise ConfigError("band", band, "a fraction >= 0 (DeepSeek LLM used 0.0025)")
    C, loss = np.asarray(C, dtype=float), np.asarray(loss, dtype=float)
    labels = group_budgets(C, rtol)
    mask = np.zeros(C.size, dtype=bool)
    for lab in np.unique(labels):
        sel = labels == lab
        mask |= sel & (loss <= loss[sel].min() * (1.0 + band))
    return mask


def fit_hp_laws(
    C: np.ndarray,
    lr: np.ndarray | None,
    batch: np.ndarray | None,
    loss: np.ndarray,
    band: float = 0.0025,
) -> HPLawFit:
    """DeepSeek LLM's method: keep every run within `band` of its budget's best loss and fit
    power laws eta_opt = a C^p and B_opt = b C^q to all of them (log-log least squares)."""
    C = np.asarray(C, dtype=float)
    loss = np.asarray(loss, dtype=float)
    if lr is None and batch is None:
        raise ConfigError("lr/batch", None, "at least one of a learning-rate or batch column")
    cols = {"C": C, "loss": loss}
    if lr is not None:
        cols["lr"] = np.asarray(lr, dtype=float)
    if batch is not None:
        cols["batch"] = np.asarray(batch, dtype=float)
    for name, a in cols.items():
        if a.shape != C.shape:
            raise DataError(f"{name}: length {a.size} is not allowed: one value per run ({C.size})")
        if np.any(~np.isfinite(a) | (a <= 0)):
            raise DataError(
                f"{name}: non-positive or missing values are not allowed: finite values > 0"
            )
    mask = near_optimal_band(C, loss, band)

    if np.unique(group_budgets(C[mask])).size < 2:
        raise DataError("compute budgets=1 is not allowed: at least 2 budgets to fit a law in C")
    lr_b = cols["lr"][mask] if lr is not None else np.full(mask.sum(), np.nan)
    b_b = cols["batch"][mask] if batch is not None else np.full(mask.sum(), np.nan)
    best = []
    labels = group_budgets(C)
    for lab in np.unique(labels):
        i = np.flatnonzero(labels == lab)[np.argmin(loss[labels == lab])]
        best.append(
            {
                "C": float(C[i]),
                "loss": float(loss[i]),
                "lr": float(cols["lr"][i]) if lr is not None else None,
                "batch": float(cols["batch"][i]) if batch is not None else None,
            }
        )
    return HPLawFit(
        lr_law=PowerLaw.fit(C[mask], lr_b) if lr is not None else None,
        batch_law=PowerLaw.fit(C[mask], b_b) if batch is not None else None,
        band=band,
        C=C[mask],
        lr=lr_b,
        batch=b_b,
        loss=loss[mask],
        best=best,
    )


@dataclass(frozen=True)
class FreeFormLaw:
    """y = coef * prod_k x_k^p_k, e.g. eta = a N^p D^q (Porian et al. 2024, Bjorck et al. 2024)."""

    coef: float
    exponents: dict[str, float]

    def __call__(self, **x: float | np.ndarray) -> float | np.ndarray:
        """Evaluate with one keyword per variable, e.g. law(N=1e9, D=2e10)."""
        missing = set(self.exponents) - set(x)
        if missing:
            raise ConfigError("variables", sorted(x), f"all of {sorted(self.exponents)}")
        y = self.coef * np.prod(
            [np.asarray(x[k], dtype=float) ** p for k, p in self.exponents.items()], axis=0
        )
        return float(y) if np.ndim(y) == 0 else y

    @property
    def variables(self) -> tuple[str, ...]:
        """The variables the law reads, e.g. ("N", "D")."""
        return tuple(self.exponents)

    def formula(self) -> str:
        """The law spelled out, e.g. '1.79 N^-0.713 D^0.307'."""
        terms = " ".join(f"{k}^{p:g}" for k, p in self.exponents.items())
        return f"{self.coef:g} {terms}"

    def to_dict(self) -> dict[str, object]:
        """Plain dict {coef, exponents}."""
        return {"coef": self.coef, "exponents": dict(self.exponents)}


def fit_free_form(y: np.ndarray, weights: np.ndarray | None = None, **x: np.ndarray) -> FreeFormLaw:
    """Least squares in log space: log y = log coef + sum_k p_k log x_k."""
    y = np.asarray(y, dtype=float)
    if not x:
        raise ConfigError("variables", None, "at least one variable, e.g. N=..., D=...")
    cols = [np.asarray(v, dtype=float) for v in x.values()]
    for name, v in [("y", y), *zip(x, cols)]:
        if v.shape != y.shape or np.any(~np.isfinite(v) | (v <= 0)):
            raise DataError(
                f"{name}: values are not allowed: finite, > 0 and one per point ({y.size})"
            )
    X = np.column_stack([np.ones(y.size)] + [np.log(v) for v in cols])
    if y.size <= X.shape[1] or np.linalg.matrix_rank(X) < X.shape[1]:
        raise DataError(
            f"points={y.size} is not allowed: more points than the {X.shape[1]} coefficients, "
            "with each variable varying independently"
        )
    w = np.ones(y.size) if weights is None else np.sqrt(np.asarray(weights, dtype=float))
    beta, *_ = np.linalg.lstsq(X * w[:, None], np.log(y) * w, rcond=None)
    return FreeFormLaw(float(np.exp(beta[0])), {k: float(b) for k, b in zip(x, beta[1:])})
