"""The building blocks the law fits share: the power law y = c x^e and the grouping of runs
into compute budgets."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from sizeup.errors import ConfigError, DataError


@dataclass(frozen=True)
class PowerLaw:
    """y = coef * x^exponent (e.g. DeepSeek LLM eta_opt = 0.3118 C^-0.1250)."""

    coef: float
    exponent: float

    def __post_init__(self) -> None:
        if not self.coef > 0:
            raise ConfigError("coef", self.coef, "a positive coefficient")

    def __call__(self, x: float | np.ndarray) -> float | np.ndarray:
        """Evaluate coef * x^exponent (x > 0; broadcasts over arrays)."""
        x = np.asarray(x, dtype=float)
        if np.any(x <= 0):
            raise ConfigError("x", "non-positive", "values > 0 for a power law")
        y = self.coef * x**self.exponent
        return float(y) if y.ndim == 0 else y

    def inverse(self, y: float | np.ndarray) -> float | np.ndarray:
        """The x at which the law equals y."""
        y = np.asarray(y, dtype=float)
        x = (y / self.coef) ** (1.0 / self.exponent)
        return float(x) if x.ndim == 0 else x

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> PowerLaw:
        """Least-squares line in log-log space (optionally weighted)."""
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        if x.shape != y.shape or x.ndim != 1:
            raise DataError(
                f"x, y: shapes {x.shape} and {y.shape} are not allowed: two 1-D arrays of equal length"
            )
        if len(x) < 2 or len(np.unique(x)) < 2:
            raise DataError(
                f"x: {len(np.unique(x))} distinct values is not allowed: at least 2 to fit a power law"
            )
        if np.any(x <= 0) or np.any(y <= 0):
            raise DataError(
                "x, y: non-positive values are not allowed: a power law needs x > 0 and y > 0"
            )
        w = None if weights is None else np.sqrt(np.asarray(weights, dtype=float))
        slope, intercept = np.polyfit(np.log(x), np.log(y), 1, w=w)
        return cls(coef=float(np.exp(intercept)), exponent=float(slope))

    def to_dict(self) -> dict[str, float]:
        """Plain dict {coef, exponent}."""
        return asdict(self)


@dataclass(frozen=True)
class LogLaw:
    """y = intercept + slope ln(x) in one variable: Kaplan et al. 2020's learning rate against
    non-embedding parameters (eq. D.1). Past the x where y reaches 0 the law says nothing, and
    ``__call__`` refuses rather than hand out a negative rate."""

    intercept: float
    slope: float
    variable: str = "N"

    @property
    def variables(self) -> tuple[str, ...]:
        """The one variable the law reads."""
        return (self.variable,)

    def __call__(self, **x: float) -> float:
        """Evaluate with the variable as a keyword, e.g. law(N=1e9)."""
        if self.variable not in x:
            raise ConfigError("variables", sorted(x), f"the variable {self.variable!r}")
        v = float(x[self.variable])
        if not v > 0:
            raise ConfigError(self.variable, v, "a value > 0 for a log law")
        y = self.intercept + self.slope * float(np.log(v))
        if not y > 0:
            raise ConfigError(
                self.variable, v, f"a value below {self.zero():.3g}, where the law reaches 0"
            )
        return y

    def zero(self) -> float:
        """The x at which the law reaches 0 (its end of validity)."""
        return float(np.exp(-self.intercept / self.slope))

    def formula(self) -> str:
        """The law spelled out, e.g. '0.003239 - 0.0001395 ln N'."""
        sign = "-" if self.slope < 0 else "+"
        return f"{self.intercept:g} {sign} {abs(self.slope):g} ln {self.variable}"

    def to_dict(self) -> dict[str, float | str]:
        """Plain dict {intercept, slope, variable}."""
        return asdict(self)


def group_budgets(C: np.ndarray, rtol: float = 0.05) -> np.ndarray:
    """Label points by compute budget: sorted budgets within `rtol` of their neighbour share a label."""
    C = np.asarray(C, dtype=float)
    order = np.argsort(C)
    gaps = np.diff(np.log(C[order])) > np.log1p(rtol)
    labels = np.empty(C.size, dtype=np.int64)
    labels[order] = np.concatenate([[0], np.cumsum(gaps)])
    return labels
