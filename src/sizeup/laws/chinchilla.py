"""Chinchilla scaling laws: the parametric law L(N, D) = E + A/N^alpha + B/D^beta and its
compute-optimal allocation (Hoffmann et al. 2022)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from sizeup.errors import ConfigError, check_positive


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
        return np.asarray(C, dtype=float) / (self.flops_per_param_token * np.asarray(N, dtype=float))

    def to_dict(self) -> dict[str, float]:
        """Plain dict of the five constants (and k)."""
        return asdict(self)
