"""Transfer exponents measured by a study, not assumed: the horizon exponent alpha_data of a
steps study and the batch exponent of a batch study.

A steps study trains one model at several lengths (tokens D, at a fixed batch) over an lr grid;
the transfer analysis (sizeup.sweep.transfer) gives the optimal lr at each length. Bjorck et
al. 2024 ("Scaling optimal LR across token horizons", ICLR 2025, eq. 1) find LR*(D) = B D^-beta,
so the slope of log2 LR* against log2 D is the exponent the planner's horizon rule
lr x (D / D0)^alpha_data needs (alpha_data = -beta; sizeup.optim.transfer_horizon). A batch
study (fixed tokens, several batches) measures the slope of log2 LR* against log2 B, which the
square-root rule (Malladi et al. 2022; sizeup.optim.transfer_batch) assumes is 1/2.

The slope is a least-squares line through the optima whose optimum lies inside the lr grid;
a group whose trials already moved their lr by a rule (base_tokens with a data_exponent, or
base_batch_size) measured the optimum of the *base* lr, so the rule's own exponent is added
back. The interval comes from the same seed bootstrap as the optima's (every resample's optima
give a slope; sizeup.sweep.estimate.t_interval turns their spread into a Student-t interval).

The measured exponent is stored with the study (its store's meta "exponents", with the number
of finished trials it was measured from) and read back from there while the study is unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sizeup.errors import ConfigError
from sizeup.optim.transfer import SQRT_RULE
from sizeup.sweep.estimate import Estimate, t_interval
from sizeup.sweep.store import FINISHED, Store
from sizeup.sweep.transfer import LEVEL, analyze_transfer

# axis -> (the exponent's name, the rule it measures)
MEASURED = {
    "steps": ("horizon", "lr x (D / D0)^alpha_data"),
    "batch_size": ("batch", "lr x (B / B0)^e (square-root rule: e = 1/2)"),
}
META_KEY = "exponents"


@dataclass(frozen=True)
class MeasuredExponent:
    """A transfer exponent a study measured: its estimate (with the seed interval), the axis
    values it was fitted over and where it comes from."""

    name: str  # "horizon" or "batch"
    axis: str  # the study's axis: "steps" or "batch_size"
    estimate: Estimate
    values: tuple[float, ...]  # axis values whose optimum lies inside the grid
    group: str  # the study's group it was measured on
    source: str  # the study file
    n_finished: int = 0  # finished trials it was measured from

    @property
    def value(self) -> float:
        """The measured exponent."""
        return self.estimate.value

    def text(self, replaces: float) -> str:
        """'horizon exponent -0.33 [-0.45, -0.21] (measured, steps study s.db) instead of 0'."""
        return (
            f"{self.name} exponent {self.estimate.text('{:.3g}')} (measured, {self.axis} study "
            f"{self.source}, {self.group}) instead of {replaces:g}"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe."""
        return {
            "name": self.name,
            "axis": self.axis,
            "estimate": self.estimate.to_dict(),
            "values": list(self.values),
            "group": self.group,
            "source": self.source,
            "n_finished": self.n_finished,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MeasuredExponent:
        """Read back what to_dict wrote."""
        return cls(
            d["name"],
            d["axis"],
            Estimate.from_dict(d["estimate"]),
            tuple(float(v) for v in d["values"]),
            d["group"],
            d["source"],
            int(d.get("n_finished", 0)),
        )


def slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of y on x over the finite y (NaN with fewer than 2)."""
    ok = np.isfinite(y)
    if ok.sum() < 2:
        return math.nan
    xs, ys = x[ok], y[ok]
    xm = xs.mean()
    return float(((xs - xm) * (ys - ys.mean())).sum() / ((xs - xm) ** 2).sum())


def measure_exponent(
    path: str | Path, axis: str, group: dict[str, Any] | None = None, level: float = LEVEL
) -> MeasuredExponent:
    """The exponent the study at ``path`` measured along ``axis`` ("steps": the horizon
    exponent; "batch_size": the batch exponent), on ``group`` (default: the only group, else
    the one with the rule off). Refuses a study with fewer than 2 axis values whose optimum is
    inside the lr grid."""
    if axis not in MEASURED:
        raise ConfigError("axis", axis, "one of " + ", ".join(MEASURED))
    p = Path(path)
    if not p.exists():
        raise ConfigError("study", str(p), "an existing study file written by `sizeup sweep`")
    with Store(p, readonly=True) as st:
        report = analyze_transfer(st, axis=axis, level=level)
        trials = st.trials()
    g, applied = _pick(report.groups, trials, axis, group)
    opt = g.resampled_optima
    values = np.array([float(pt.value) for pt in g.points])
    inside = np.isfinite(opt[0])
    if inside.sum() < 2:
        raise ConfigError(
            "study",
            str(p),
            f"a {axis} study with at least 2 {axis} values whose optimal lr lies inside the lr "
            f"grid ({g.label}: {int(inside.sum())} of {len(values)}); extend the grid",
        )
    x = np.log2(values)
    # every resample's slope over the values whose optimum the estimate has inside the grid
    slopes = np.array([slope(x[inside], row[inside]) for row in opt]) + applied
    value = float(slopes[0])
    lo, hi, _, _ = t_interval(value, slopes[1:], g.n_seeds, level)
    name, _ = MEASURED[axis]
    finished = sum(t.status in FINISHED for t in trials)
    return MeasuredExponent(
        name,
        axis,
        Estimate(value, "=", lo, hi),
        tuple(float(v) for v in values[inside]),
        g.label,
        p.name,
        finished,
    )


def _pick(groups: list[Any], trials: list[Any], axis: str, group: dict[str, Any] | None) -> Any:
    """(group, the exponent its trials' rule already applied): the asked-for group, else the
    only one, else the one with the rule off."""
    applied = [(g, _applied(g.group, trials, axis)) for g in groups]
    if group is not None:
        found = [
            a for a in applied if all(str(a[0].group.get(k)) == str(v) for k, v in group.items())
        ]
    elif len(applied) == 1:
        found = applied
    else:
        found = [a for a in applied if a[1] == 0.0]
    if len(found) != 1:
        raise ConfigError(
            "group", group, "one group of the study: " + "; ".join(g.label for g in groups)
        )
    return found[0]


def _applied(group: dict[str, Any], trials: list[Any], axis: str) -> float:
    """The exponent the group's trials moved their lr by along the axis (0: none)."""
    mine = [t for t in trials if all(str(t.config.get(k)) == str(v) for k, v in group.items())]
    if not mine:
        return 0.0
    o = mine[0].config.optimizer
    if axis == "steps":
        return float(o.data_exponent) if o.base_tokens is not None else 0.0
    return SQRT_RULE if o.base_batch_size is not None else 0.0


def save_exponent(
    path: str | Path, axis: str, group: dict[str, Any] | None = None
) -> MeasuredExponent:
    """Measure the study's exponent and store it with the study (its meta "exponents")."""
    m = measure_exponent(path, axis, group)
    with Store(path) as st:
        stored = st.get_meta(META_KEY, {}) or {}
        stored[axis] = m.to_dict()
        st.set_meta(META_KEY, stored)
    return m


def study_exponent(path: str | Path, axis: str) -> MeasuredExponent:
    """The study's exponent along ``axis``: the one stored with it while the study is unchanged
    (the same number of finished trials), else measured now."""
    p = Path(path)
    if p.exists():
        with Store(p, readonly=True) as st:
            stored = (st.get_meta(META_KEY, {}) or {}).get(axis)
            finished = sum(st.counts().get(k, 0) for k in FINISHED)
        if stored and int(stored.get("n_finished", -1)) == finished:
            return MeasuredExponent.from_dict(stored)
    return measure_exponent(p, axis)
