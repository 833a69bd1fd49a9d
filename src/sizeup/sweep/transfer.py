"""Transfer analysis: does the lr tuned on the smallest model stay optimal as the model grows?

For each group (e.g. rule=sp, rule=mup) and each value of the scaled axis (width, depth,
batch_size, steps, ...) we find the optimal lr by a quadratic fit of loss against log2(lr)
around the best grid point (diverged trials excluded), then report
  - drift_octaves: max - min of log2(optimal lr) across the axis,
  - regret: loss at the transferred lr (the smallest model's optimum, snapped to the grid)
    minus the best grid loss at that scale,
  - largest_is_best / wider_is_better: is the largest model best at the transferred lr, and is
    loss monotone non-increasing in the axis at each lr (muP's "wider is always better").
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sizeup.config import json_safe
from sizeup.errors import ConfigError, DataError

_NEVER_GROUP = {"lr", "seed", "trial", "id"}


def fit_optimum(
    lrs: list[float], losses: list[float], window: int = 2
) -> tuple[float, float, bool]:
    """Optimal lr by a least-squares parabola in log2(lr) over the best finite grid point and
    up to `window` neighbours each side. Returns (lr, loss at it, at_edge); at_edge means the
    best point is at the end of the finite range, so the grid point itself is returned.

    window=2 (five points) by default: single-seed losses are noisy, and a parabola through
    only three points moves the vertex by a third of an octave on 0.01 of loss noise.
    """
    x = np.log2(np.asarray(lrs, dtype=float))
    y = np.asarray(losses, dtype=float)
    if x.shape != y.shape:
        raise DataError(f"lrs and losses have different lengths: {len(lrs)} != {len(losses)}")
    order = np.argsort(x)
    x, y = x[order], y[order]
    ok = np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) == 0:
        return math.nan, math.nan, True
    i = int(np.argmin(y))
    if i == 0 or i == len(x) - 1 or len(x) < 3:
        return float(2.0 ** x[i]), float(y[i]), True
    lo, hi = max(0, i - window), min(len(x), i + window + 1)
    a, b, c = np.polyfit(x[lo:hi], y[lo:hi], 2)
    if a <= 0:  # no curvature (flat or noisy): trust the grid point
        return float(2.0 ** x[i]), float(y[i]), False
    # the vertex, kept inside the fitted window (a parabola says nothing beyond its points)
    xv = float(np.clip(-b / (2 * a), x[lo], x[hi - 1]))
    return float(2.0**xv), float(np.polyval([a, b, c], xv)), False


@dataclass
class ScalePoint:
    """One value of the scaled axis: its lr curve and where its optimum is."""

    value: float
    lrs: list[float]
    losses: list[float]  # NaN where the trial diverged or failed
    best_grid_lr: float
    best_grid_loss: float
    opt_lr: float  # from the quadratic fit in log2(lr)
    opt_loss: float
    at_edge: bool  # best point at the end of the grid: the optimum may lie beyond it
    loss_at_transfer: float = math.nan
    regret: float = math.nan


@dataclass
class TransferGroup:
    """Transfer figures for one group of trials (e.g. rule=mup) along the scaled axis."""

    group: dict[str, Any]
    axis: str
    points: list[ScalePoint]
    drift_octaves: float
    transferred_lr: float  # the smallest model's fitted optimum
    transfer_grid_lr: float  # the grid lr nearest to it (where losses were measured)
    largest_is_best: bool  # at transfer_grid_lr, the largest model has the lowest loss
    max_regret: float
    wider_is_better: dict[float, bool] = field(default_factory=dict)  # per grid lr
    edge_warning: bool = False

    @property
    def label(self) -> str:
        """A short name such as 'rule=mup'."""
        return ", ".join(f"{k}={v}" for k, v in self.group.items()) or "all"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (NaN becomes None, float dict keys become strings)."""
        d = asdict(self)
        d["wider_is_better"] = {repr(k): v for k, v in self.wider_is_better.items()}
        d["label"] = self.label
        return json_safe(d)


@dataclass
class TransferReport:
    """The transfer analysis of one study: one TransferGroup per group."""

    axis: str
    lr_field: str
    metric: str
    groups: list[TransferGroup]

    def group(self, **match: Any) -> TransferGroup:
        """The group whose keys match, e.g. report.group(rule='mup')."""
        for g in self.groups:
            if all(g.group.get(k) == v for k, v in match.items()):
                return g
        raise ConfigError("group", match, "one of " + "; ".join(g.label for g in self.groups))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of everything."""
        return {
            "axis": self.axis,
            "lr_field": self.lr_field,
            "metric": self.metric,
            "groups": [g.to_dict() for g in self.groups],
        }

    def table(self) -> list[dict[str, Any]]:
        """One summary row per group: drift, regret, largest-is-best."""
        return [
            {
                "group": g.label,
                "drift_octaves": g.drift_octaves,
                "transferred_lr": g.transferred_lr,
                "max_regret": g.max_regret,
                "largest_is_best": g.largest_is_best,
                "optimal_lr": {p.value: p.opt_lr for p in g.points},
                "edge_warning": g.edge_warning,
            }
            for g in self.groups
        ]


def _frame(source: Any) -> Any:
    import pandas as pd

    from sizeup.sweep.store import Store

    if isinstance(source, pd.DataFrame):
        return source
    if isinstance(source, (str, Path)):
        if not Path(source).exists():
            raise ConfigError("study", str(source), "an existing study file (.db)")
        with Store(source, readonly=True) as st:
            return st.to_dataframe()
    if isinstance(source, Store):
        return source.to_dataframe()
    raise ConfigError("study", type(source).__name__, "a Store, a .db path or a DataFrame")


def analyze_transfer(
    source: Any,
    axis: str = "width",
    lr_field: str = "lr",
    group_by: list[str] | None = None,
    metric: str = "loss",
    window: int = 2,
) -> TransferReport:
    """Optimal lr per axis value, its drift in octaves, transfer regret and largest-is-best.

    source: a Store, a study .db path or a DataFrame (Store.to_dataframe()).
    group_by: fields that split the study into separate curves (default: every field that
    varies, except the axis, the lr, the seed and fields that move with the axis).
    Seeds are averaged; a point where any seed diverged counts as diverged.
    """
    df = _frame(source)
    if len(df) == 0:
        raise DataError("the study has no trials")
    for col in (axis, lr_field, metric):
        if col not in df.columns:
            raise ConfigError(
                "axis" if col == axis else "lr_field" if col == lr_field else "metric",
                col,
                "a column of the study: " + ", ".join(map(str, df.columns)),
            )
    df = df.copy()
    # only finished trials speak about the optimum; diverged ones count as infinite loss
    bad = df["status"].isin(["diverged", "failed"]) if "status" in df else False
    df["_y"] = np.where(bad, np.nan, df[metric].astype(float))
    df = df[df["status"].isin(["done", "diverged", "failed"])] if "status" in df else df
    if group_by is None:
        group_by = _auto_groups(df, axis, lr_field)
    groups = []
    keys = (
        [
            tuple(k)
            for k in df[group_by]
            .drop_duplicates()
            .sort_values(group_by)
            .itertuples(index=False, name=None)
        ]
        if group_by
        else [()]
    )
    for key in keys:
        sub = df
        for k, v in zip(group_by, key, strict=True):
            sub = sub[sub[k] == v]
        groups.append(
            _analyze_group(
                sub, dict(zip(group_by, (_py(k) for k in key), strict=True)), axis, lr_field, window
            )
        )
    return TransferReport(axis=axis, lr_field=lr_field, metric=metric, groups=groups)


def _auto_groups(df: Any, axis: str, lr_field: str) -> list[str]:
    from sizeup.sweep.spec import FIELDS

    out = []
    for f in FIELDS:
        if f in (axis, lr_field) or f in _NEVER_GROUP or f not in df.columns:
            continue
        col = df[f].astype(str)
        if col.nunique() <= 1:
            continue
        # a field fixed by the axis value (e.g. batch_size zipped with width) is not a group
        if df.assign(_c=col).groupby(axis)["_c"].nunique().max() <= 1:
            continue
        out.append(f)
    return out


def _analyze_group(
    sub: Any, group: dict[str, Any], axis: str, lr_field: str, window: int
) -> TransferGroup:
    # mean over seeds; any non-finite seed makes the point non-finite (NaN propagates)
    agg = sub.groupby([axis, lr_field])["_y"].agg(lambda s: float(s.mean(skipna=False)))
    values = sorted(agg.index.get_level_values(0).unique())
    points = []
    for v in values:
        curve = agg.loc[v].sort_index()
        lrs, losses = [float(x) for x in curve.index], [float(y) for y in curve.values]
        finite = [(lr, y) for lr, y in zip(lrs, losses, strict=True) if math.isfinite(y)]
        if finite:
            blr, bloss = min(finite, key=lambda t: t[1])
        else:
            blr, bloss = math.nan, math.nan
        olr, oloss, edge = fit_optimum(lrs, losses, window)
        points.append(ScalePoint(_py(v), lrs, losses, blr, bloss, olr, oloss, edge))
    opts = [p.opt_lr for p in points if math.isfinite(p.opt_lr)]
    drift = float(max(np.log2(opts)) - min(np.log2(opts))) if opts else math.nan
    t_lr = points[0].opt_lr if points else math.nan
    grid = sorted({lr for p in points for lr in p.lrs})
    t_grid = (
        min(grid, key=lambda g: abs(math.log2(g) - math.log2(t_lr)))
        if grid and math.isfinite(t_lr)
        else math.nan
    )
    for p in points:
        y = dict(zip(p.lrs, p.losses, strict=True)).get(t_grid, math.nan)
        p.loss_at_transfer = y if math.isfinite(y) else math.inf
        p.regret = (
            p.loss_at_transfer - p.best_grid_loss if math.isfinite(p.best_grid_loss) else math.nan
        )
    at_t = [p.loss_at_transfer for p in points]
    largest = bool(points and math.isfinite(at_t[-1]) and at_t[-1] <= min(at_t))
    wider = {}
    for lr in grid:
        ys = [dict(zip(p.lrs, p.losses, strict=True)).get(lr, math.nan) for p in points]
        wider[lr] = bool(
            all(math.isfinite(y) for y in ys)
            and all(b <= a for a, b in zip(ys, ys[1:], strict=False))
        )
    regrets = [p.regret for p in points if not math.isnan(p.regret)]
    return TransferGroup(
        group=group,
        axis=axis,
        points=points,
        drift_octaves=drift,
        transferred_lr=t_lr,
        transfer_grid_lr=t_grid,
        largest_is_best=largest,
        max_regret=max(regrets) if regrets else math.nan,
        wider_is_better=wider,
        edge_warning=any(p.at_edge for p in points),
    )


def _py(v: Any) -> Any:
    """numpy scalars to plain Python (JSON and dict keys)."""
    return v.item() if hasattr(v, "item") else v
