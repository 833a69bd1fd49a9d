"""Data-constrained scaling (Muennighoff et al. 2023, "Scaling Data-Constrained Language Models").

Repeating data helps less than fresh data: after U_D unique tokens, R_D repetitions count as
U_D R_D* (1 - exp(-R_D / R_D*)) effective tokens, and parameters beyond the compute-optimal
size for U_D decay the same way with R_N*. The loss is the Chinchilla form in the effective
quantities: L = E + A / N'^alpha + B / D'^beta.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from sizeup.errors import ConfigError, DataError
from sizeup.laws.chinchilla import ChinchillaLaw, _check_points, fit_approach3, huber


@dataclass(frozen=True)
class DataConstrainedLaw:
    """Muennighoff et al. 2023 eq. (5)-(7): Chinchilla loss with effective tokens and params."""

    # Muennighoff et al.'s fitted values at full precision (their log-space a, b, e = 6.255414,
    # 7.3049974, 0.6254804), i.e. A = 520.6, B = 1488, E = 1.869, alpha = beta = 0.3527 rounded.
    E: float = 1.8691436784054858
    A: float = 520.8249516599187
    B: float = 1487.716093782861
    alpha: float = 0.3526596
    beta: float = 0.3526596
    rd_star: float = (
        15.387756  # R_D*: repetitions after which repeated tokens are ~worth 1/e as much
    )
    rn_star: float = 5.309743  # R_N*: the same decay for excess parameters

    def __post_init__(self) -> None:
        for name in ("A", "B", "alpha", "beta", "rd_star", "rn_star"):
            if not getattr(self, name) > 0:
                raise ConfigError(name, getattr(self, name), "a positive number")

    @property
    def base(self) -> ChinchillaLaw:
        """The underlying single-epoch Chinchilla law."""
        return ChinchillaLaw(self.E, self.A, self.B, self.alpha, self.beta)

    def unique_params(self, U_D: float | np.ndarray) -> np.ndarray:
        """U_N: the compute-optimal parameter count for U_D tokens under the base law."""
        law = self.base
        # invert D_opt = (C/6)^b / G for C/6, then N_opt = G (C/6)^a
        x = (np.asarray(U_D, dtype=float) * law.G) ** (1.0 / law.b)
        return law.G * x**law.a

    def effective(
        self, N: np.ndarray, D: np.ndarray, U: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Effective (N', D') for N params trained on D tokens drawn from U unique tokens."""
        N, D, U = (np.asarray(v, dtype=float) for v in (N, D, U))
        U_D = np.minimum(U, D)
        R_D = D / U_D - 1.0
        D_eff = U_D + U_D * self.rd_star * (1.0 - np.exp(-R_D / self.rd_star))
        U_N = np.minimum(self.unique_params(U_D), N)
        R_N = N / U_N - 1.0
        N_eff = U_N + U_N * self.rn_star * (1.0 - np.exp(-R_N / self.rn_star))
        return N_eff, D_eff

    def loss(
        self, N: float | np.ndarray, D: float | np.ndarray, U: float | np.ndarray
    ) -> float | np.ndarray:
        """Predicted loss with repeated data (U >= D reduces to the base law)."""
        N_eff, D_eff = self.effective(N, D, U)
        out = self.E + self.A / N_eff**self.alpha + self.B / D_eff**self.beta
        return float(out) if np.ndim(out) == 0 else out

    def optimal(
        self, C: float, U: float, flops_per_param_token: float = 6.0
    ) -> tuple[float, float, float]:
        """(N, D, loss) minimising the loss at compute C = 6 N D with only U unique tokens."""
        from scipy.optimize import minimize_scalar

        if not (C > 0 and U > 0):
            raise ConfigError("C/U", (C, U), "a compute budget and unique tokens > 0")
        n0, _ = self.base.optimal(C)

        def f(logn: float) -> float:
            n = np.exp(logn)
            return float(self.loss(n, C / (flops_per_param_token * n), U))

        lo, hi = np.log(n0) - 8.0, np.log(n0) + 3.0
        grid = np.linspace(lo, hi, 221)
        j = int(np.argmin([f(x) for x in grid]))  # bracket first: the curve can be flat and skewed
        res = minimize_scalar(
            f,
            bounds=(grid[max(j - 1, 0)], grid[min(j + 1, grid.size - 1)]),
            method="bounded",
            options={"xatol": 1e-8},
        )
        n = float(np.exp(res.x))
        return n, C / (flops_per_param_token * n), float(res.fun)

    def to_dict(self) -> dict[str, float]:
        """Plain dict of the seven constants."""
        return asdict(self)


def fit_data_constrained(
    N: np.ndarray,
    D: np.ndarray,
    U: np.ndarray,
    L: np.ndarray,
    *,
    base: ChinchillaLaw | None = None,
    delta: float = 1e-3,
) -> DataConstrainedLaw:
    """Fit R_D* and R_N* (Muennighoff et al.'s procedure): the base law comes from `base`, or
    from approach 3 on the single-epoch runs (D <= U); then a Huber fit on log loss of the rest."""
    from scipy.optimize import minimize

    N, D, L = _check_points(N, D, L, min_points=3)
    U = np.asarray(U, dtype=float).ravel()
    if U.shape != N.shape or np.any(~np.isfinite(U) | (U <= 0)):
        raise DataError("unique_tokens: is not allowed: finite values > 0, one per run")
    if base is None:
        single = D <= U * (1 + 1e-9)
        if single.sum() < 6:
            raise DataError(
                f"single-epoch runs={int(single.sum())} is not allowed: at least 6 to fit "
                "the base law (or pass base=)"
            )
        base = fit_approach3(N[single], D[single], L[single]).law
    if not np.any(D > U * (1 + 1e-9)):
        raise DataError(
            "runs with repeated data=0 is not allowed: at least one run with tokens > unique_tokens"
        )
    logL = np.log(L)

    def obj(x: np.ndarray) -> float:
        law = DataConstrainedLaw(
            base.E, base.A, base.B, base.alpha, base.beta, np.exp(x[0]), np.exp(x[1])
        )
        return float(huber(np.log(law.loss(N, D, U)) - logL, delta).sum())

    best = None
    for x0 in np.stack(np.meshgrid(np.log([1, 5, 20, 100]), np.log([1, 5, 20, 100])), -1).reshape(
        -1, 2
    ):
        res = minimize(
            obj, x0, method="Nelder-Mead", options={"xatol": 1e-8, "fatol": 1e-14, "maxiter": 4000}
        )
        if best is None or res.fun < best.fun:
            best = res
    return DataConstrainedLaw(
        base.E,
        base.A,
        base.B,
        base.alpha,
        base.beta,
        float(np.exp(best.x[0])),
        float(np.exp(best.x[1])),
    )
