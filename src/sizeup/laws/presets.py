"""Published scaling laws as ready-made presets, and loading a `sizeup fit` result as one.

A LawPreset bundles what a planner needs: a loss law L(N, D), compute-optimal allocation laws,
and hyperparameter laws for the peak learning rate and the batch size, all in one compute
convention ("6ND": C = 6 N D with N parameters; "MD": C = M D with M the non-embedding
training FLOPs per token, as in DeepSeek LLM).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sizeup.choices import COMPUTE_CONVENTIONS
from sizeup.errors import ConfigError, DataError, check_choice
from sizeup.laws.chinchilla import ChinchillaLaw
from sizeup.laws.forms import PowerLaw


@dataclass
class LawPreset:
    """A named set of laws: loss L(N, D), allocation N_opt(C)/D_opt(C), lr(C) and batch(C)."""

    name: str
    source: str
    loss_law: ChinchillaLaw | None = None
    lr_law: PowerLaw | None = None  # peak learning rate as a function of C
    batch_law: PowerLaw | None = None  # batch size in tokens as a function of C
    compute: str = "6ND"
    n_opt_law: PowerLaw | None = None  # model size at C: N (6ND) or M FLOPs/token (MD)
    d_opt_law: PowerLaw | None = None  # tokens at C
    samples: np.ndarray | None = None  # bootstrap (E, A, B, alpha, beta) rows, for intervals
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_choice("compute", self.compute, COMPUTE_CONVENTIONS)

    def optimal(self, C: float) -> tuple[float, float]:
        """Compute-optimal (size, tokens) at C from the allocation laws, else from the loss law."""
        if self.n_opt_law is not None and self.d_opt_law is not None:
            return float(self.n_opt_law(C)), float(self.d_opt_law(C))
        if self.loss_law is not None:
            n, d = self.loss_law.optimal(C)
            return float(n), float(d)
        raise ConfigError("preset", self.name, "a preset with a loss law or allocation laws")

    def lr(self, C: float) -> float:
        """Peak learning rate at compute C from the lr law."""
        if self.lr_law is None:
            raise ConfigError(
                "preset", self.name, "a preset with a learning-rate law (e.g. 'deepseek-v1')"
            )
        return float(self.lr_law(C))

    def batch_tokens(self, C: float) -> float:
        """Batch size in tokens at compute C from the batch law."""
        if self.batch_law is None:
            raise ConfigError(
                "preset", self.name, "a preset with a batch-size law (e.g. 'deepseek-v1')"
            )
        return float(self.batch_law(C))

    def loss_interval(self, N: float, D: float, level: float = 0.9) -> tuple[float, float, float]:
        """(point, low, high) predicted loss; low = high = point when there are no samples."""
        if self.loss_law is None:
            raise ConfigError("preset", self.name, "a preset with a loss law")
        point = float(self.loss_law.loss(N, D))
        if self.samples is None or len(self.samples) < 2:
            return point, point, point
        E, A, B, al, be = (self.samples[:, i] for i in range(5))
        losses = E + A / N**al + B / D**be
        q = (1 - level) / 2
        return point, float(np.quantile(losses, q)), float(np.quantile(losses, 1 - q))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (samples left out)."""

        def law(x: Any) -> Any:
            return None if x is None else x.to_dict()

        return {
            "name": self.name,
            "source": self.source,
            "compute": self.compute,
            "loss_law": law(self.loss_law),
            "lr_law": law(self.lr_law),
            "batch_law": law(self.batch_law),
            "n_opt_law": law(self.n_opt_law),
            "d_opt_law": law(self.d_opt_law),
            "notes": self.notes,
        }


def _chinchilla() -> LawPreset:
    # Hoffmann et al. 2022, approach 3 (section 3.3, eq. 2 and Table A3)
    return LawPreset(
        name="chinchilla",
        source="Hoffmann et al. 2022, Training Compute-Optimal LLMs, approach 3",
        loss_law=ChinchillaLaw(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28),
        notes="Approach-3 fit as published; C = 6ND.",
    )


def _epoch() -> LawPreset:
    # Besiroglu, Erdil, Barnett, You 2024, "Chinchilla Scaling: A replication attempt", eq. (2)
    return LawPreset(
        name="epoch",
        source="Besiroglu et al. 2024, Chinchilla Scaling: A replication attempt",
        loss_law=ChinchillaLaw(E=1.82, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658),
        notes="Refit of Hoffmann et al.'s Figure 4 data; C = 6ND.",
    )


def _deepseek() -> LawPreset:
    # DeepSeek LLM (Bi et al. 2024): eq. (1) hyperparameters, eq. (4) allocation, C = M D
    return LawPreset(
        name="deepseek-v1",
        source="DeepSeek-AI (Bi et al.) 2024, DeepSeek LLM: Scaling Open-Source LMs with Longtermism",
        lr_law=PowerLaw(0.3118, -0.1250),
        batch_law=PowerLaw(0.2920, 0.3271),
        compute="MD",
        n_opt_law=PowerLaw(0.1715, 0.5243),  # M_opt in non-embedding FLOPs per token
        d_opt_law=PowerLaw(5.8316, 0.4757),
        notes="C = M D with M = 72 n_layer d^2 + 12 n_layer d l_seq; batch in tokens.",
    )


_PRESETS = {"chinchilla": _chinchilla, "epoch": _epoch, "deepseek-v1": _deepseek}
PRESET_NAMES = tuple(_PRESETS)


def get_preset(name: str) -> LawPreset:
    """A published law by name: 'chinchilla', 'epoch' or 'deepseek-v1'."""
    check_choice("preset", name, PRESET_NAMES)
    return _PRESETS[name]()


def _law(d: Any) -> PowerLaw | None:
    if not isinstance(d, dict):
        return None
    return PowerLaw(float(d["coef"]), float(d["exponent"]))


def load_fit(path: str | Path) -> LawPreset:
    """Turn a `sizeup fit ... --out DIR` result (DIR or DIR/fit.json) into a LawPreset."""
    p = Path(path)
    if p.is_dir():
        p = p / "fit.json"
    if not p.exists():
        raise DataError(
            f"fit={str(p)!r} is not allowed: an existing fit.json written by `sizeup fit`"
        )
    try:
        d = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"fit={str(p)!r} is not allowed: valid JSON ({e})") from None
    if not isinstance(d, dict):
        raise DataError(
            f"fit={str(p)!r} is not allowed: a fit.json object written by `sizeup fit` "
            f"(this one holds a {type(d).__name__})"
        )
    loss_law = None
    if all(k in d and d[k] is not None for k in ("E", "A", "B", "alpha", "beta")):
        loss_law = ChinchillaLaw(d["E"], d["A"], d["B"], d["alpha"], d["beta"])
    samples = np.asarray(d["samples"], dtype=float) if d.get("samples") else None
    preset = LawPreset(
        name=d.get("name", p.parent.name or "fit"),
        source=f"sizeup fit ({d.get('kind', 'chinchilla')}, approach {d.get('approach', '-')}) from {p}",
        loss_law=loss_law,
        lr_law=_law(d.get("lr_law")),
        batch_law=_law(d.get("batch_law")),
        compute=d.get("compute", "6ND"),
        n_opt_law=_law(d.get("n_opt")),
        d_opt_law=_law(d.get("d_opt")),
        samples=samples,
        extra={k: v for k, v in d.items() if k not in ("samples",)},
    )
    return preset
