"""Transfer analysis: does the lr tuned on the smallest model stay optimal as the model grows?

For each group (e.g. rule=sp, rule=mup) and each value of the scaled axis (width, depth,
batch_size, steps, ...):

- **optimal lr**: a least-squares parabola in log2(lr) around the best grid point of the
  seed-mean loss curve (every seed's losses count: with every seed at every lr this is the
  least-squares fit to all of them). A point where any seed diverged counts as diverged. A best
  point at the end of the measured range is a **bound** ("<=" the lowest lr, ">=" the highest):
  the optimum lies beyond the grid, and it is never reported as a value.
- **drift** (octaves): max - min of log2(optimal lr) across the axis; with a bound among the
  optima it is a bound too (the smallest drift the bounds allow, ">=").
- **regret**: loss at the transferred lr (the smallest model's optimum, snapped to the grid)
  minus the best grid loss at that scale (">=" where that scale's optimum is beyond the grid).
- **largest_is_best / wider_is_better**: is the largest model best at the transferred lr, and is
  loss monotone non-increasing along the axis at each lr (muP's "wider is always better").
- **lr sensitivity** (Wortsman et al. 2023, "Small-scale proxies for large-scale Transformer
  training instabilities"): E over the lr grid of [min(loss(lr), initial loss) - best loss],
  a diverged run counting as the initial loss: how much is lost, on average, by not tuning.

**Intervals** come from a bootstrap over seeds (Efron & Tibshirani 1993): a seed is a replicate
of the whole study, so each resample draws seeds with replacement (the same draw for every
axis value and lr), recomputes the seed-mean curves and every figure above, and the interval is
the central ``level`` (90%) of the resamples. A resample whose optimum lands on a grid edge
makes that end of the interval open ("at most" / "at least"). With one seed there is no
interval. See docs/transfer.md for the coverage measured on synthetic studies of known noise.

A verdict needs data: a group with fewer than ``min_values`` (2) axis values that each have
``min_lrs`` (3) finished lrs gets none (``enough`` False, drift missing) rather than
"drift 0.00 octaves" from a single width.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sizeup.config import json_safe
from sizeup.errors import ConfigError, DataError
from sizeup.sweep.estimate import MISSING, Estimate, t_interval
from sizeup.sweep.spec import FIELDS
from sizeup.sweep.store import Store

_NEVER_GROUP = {"lr", "seed", "trial", "id"}
MIN_LRS = 3  # finished lrs an axis value needs for an optimum
MIN_VALUES = 2  # axis values with an optimum a group needs for a verdict
LEVEL = 0.9  # central bootstrap interval
N_BOOT = 1000  # bootstrap resamples
_LOW, _MID, _HIGH = -1, 0, 1  # where an optimum is: below the grid, inside, above


# --------------------------------------------------------------------------- the optimum
def _locate_many(
    x: np.ndarray, y: np.ndarray, window: int = 2
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row-wise optimum of loss curves ``y`` (R, J) over sorted log2 lrs ``x`` (J,).

    Returns (x_opt, y_opt, where) with where -1 (best point at the low end of the finite
    points: the optimum is at most there), +1 (high end: at least there) or 0 (inside: the
    vertex of a least-squares parabola through the best point and up to ``window`` finite
    neighbours each side, kept inside them). NaN = missing, +inf = diverged; a row with no
    finite point but a diverged one is below its lowest diverged lr; with neither, x_opt is NaN.
    Rows are grouped by which points are finite and where their best point is, so one small
    least-squares solve serves them all (a bootstrap has thousands of rows).
    """
    y = np.asarray(y, dtype=float)
    n_rows = y.shape[0]
    xo, yo = np.full(n_rows, np.nan), np.full(n_rows, np.nan)
    where = np.zeros(n_rows, dtype=int)
    fin = np.isfinite(y)
    patterns, inverse = np.unique(fin, axis=0, return_inverse=True)
    for k, pattern in enumerate(patterns):
        rows = np.flatnonzero(inverse.reshape(-1) == k)
        cols = np.flatnonzero(pattern)
        if len(cols) == 0:
            _all_lost(x, y[rows], rows, xo, where)
            continue
        _fit_rows(x[cols], y[np.ix_(rows, cols)], rows, window, (xo, yo, where))
    return xo, yo, where


def _all_lost(x: np.ndarray, y: np.ndarray, rows: np.ndarray, xo: np.ndarray, where: Any) -> None:
    """Rows without a finite loss: below the lowest diverged lr if any diverged, else missing."""
    diverged = np.isinf(y)
    for r, d in zip(rows, diverged, strict=True):
        if d.any():
            xo[r] = x[np.flatnonzero(d)[0]]
            where[r] = _LOW


def _fit_rows(xc: np.ndarray, yc: np.ndarray, rows: np.ndarray, window: int, out: tuple) -> None:
    """The optimum of each row of yc (all finite) over xc."""
    xo, yo, where = out
    n = len(xc)
    best = np.argmin(yc, axis=1)
    for i in np.unique(best):
        sel = best == i
        r = rows[sel]
        if i == 0 or i == n - 1 or n < 3:
            xo[r], yo[r] = xc[i], yc[sel, i]
            where[r] = _LOW if i == 0 else _HIGH
            continue
        lo, hi = max(0, i - window), min(n, i + window + 1)
        xs = xc[lo:hi]
        coef = yc[sel, lo:hi] @ np.linalg.pinv(np.vander(xs, 3)).T  # (k, 3): a, b, c
        a, b, c = coef[:, 0], coef[:, 1], coef[:, 2]
        curved = a > 0  # no curvature (flat or noisy): trust the grid point
        with np.errstate(divide="ignore", invalid="ignore"):
            xv = np.clip(np.where(curved, -b / (2 * a), xc[i]), xs[0], xs[-1])
        yv = np.where(curved, a * xv * xv + b * xv + c, yc[sel, i])
        xo[r], yo[r], where[r] = xv, yv, _MID


def fit_optimum(
    lrs: list[float], losses: list[float], window: int = 2
) -> tuple[float, float, bool]:
    """Optimal lr of one curve by a least-squares parabola in log2(lr) over the best finite grid
    point and up to ``window`` neighbours each side. Returns (lr, loss at it, at_edge); at_edge
    means the best point is at the end of the finite range, so the grid point itself is
    returned (a bound: the optimum may lie beyond it).

    window=2 (five points) by default: single-seed losses are noisy, and a parabola through
    only three points moves the vertex by a third of an octave on 0.01 of loss noise.
    """
    x = np.log2(np.asarray(lrs, dtype=float))
    y = np.asarray(losses, dtype=float)
    if x.shape != y.shape:
        raise DataError(f"lrs and losses have different lengths: {len(lrs)} != {len(losses)}")
    order = np.argsort(x)
    y = np.where(np.isfinite(y), y, np.nan)[order][None, :]  # one row, non-finite = lost
    xo, yo, where = _locate_many(x[order], y, window)
    if not math.isfinite(xo[0]):
        return math.nan, math.nan, True
    return float(2.0 ** xo[0]), float(yo[0]), bool(where[0] != _MID)


# --------------------------------------------------------------------------- records
@dataclass
class ScalePoint:
    """One value of the scaled axis: its seed-mean lr curve and where its optimum is."""

    value: float
    lrs: list[float]
    losses: list[float]  # seed mean; NaN where a seed diverged or nothing finished
    best_grid_lr: float
    best_grid_loss: float
    opt_lr: float  # the fitted optimum; NaN when it is a bound (see optimum)
    opt_loss: float
    at_edge: bool  # the optimum is beyond the grid: optimum is a bound
    loss_at_transfer: float = math.nan
    regret: float = math.nan
    optimum: Estimate = MISSING  # log2 of the optimal lr, a value or a bound, with its interval
    regret_est: Estimate = MISSING
    lr_sensitivity: Estimate = MISSING
    n_lrs: int = 0  # lrs with a finished trial (done or diverged)
    n_seeds: int = 0
    seed_losses: dict[Any, list[float]] = field(default_factory=dict)  # per seed, per lr

    @property
    def enough(self) -> bool:
        """Whether this point has an optimum (it has MIN_LRS finished lrs or more)."""
        return self.n_lrs >= MIN_LRS

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: the optimum as {"value", "bound", ...} in log2(lr); opt_lr null at an
        edge (a bound is never a plain number)."""
        d = {
            k: getattr(self, k)
            for k in ("value", "lrs", "losses", "best_grid_lr", "best_grid_loss", "opt_lr")
        }
        d.update(
            opt_loss=self.opt_loss,
            at_edge=self.at_edge,
            loss_at_transfer=self.loss_at_transfer,
            regret=self.regret,
            optimum_log2_lr=self.optimum.to_dict(),
            regret_estimate=self.regret_est.to_dict(),
            lr_sensitivity=self.lr_sensitivity.to_dict(),
            n_lrs=self.n_lrs,
            n_seeds=self.n_seeds,
            seed_losses={str(k): v for k, v in self.seed_losses.items()},
        )
        return json_safe(d)


@dataclass
class TransferGroup:
    """Transfer figures for one group of trials (e.g. rule=mup) along the scaled axis."""

    group: dict[str, Any]
    axis: str
    points: list[ScalePoint]
    drift_octaves: float  # the point value (a lower bound when drift.bound is ">=")
    transferred_lr: float  # the smallest model's fitted optimum (NaN when it is a bound)
    transfer_grid_lr: float  # the grid lr nearest to it (where losses were measured)
    largest_is_best: bool | None  # at transfer_grid_lr; None without a verdict
    max_regret: float
    wider_is_better: dict[float, bool] = field(default_factory=dict)  # per grid lr
    edge_warning: bool = False
    drift: Estimate = MISSING
    largest_is_best_share: float = math.nan  # share of bootstrap resamples where it holds
    n_seeds: int = 0
    enough: bool = True
    reason: str = ""
    # per seed resample (row 0: the estimate): the smallest and largest drift the bounds
    # allow, and the seeds drawn from (for paired comparisons between groups)
    resampled_drift: tuple[Any, Any] | None = field(default=None, repr=False, compare=False)
    seeds: list[Any] = field(default_factory=list, repr=False, compare=False)
    # per seed resample (row 0: the estimate) and axis value: log2 of the optimal lr, NaN where
    # it is a bound or missing (for fits across the axis: sizeup.sweep.exponents)
    resampled_optima: Any = field(default=None, repr=False, compare=False)

    @property
    def label(self) -> str:
        """A short name such as 'rule=mup'."""
        return ", ".join(f"{k}={v}" for k, v in self.group.items()) or "all"

    @property
    def regret_at_largest(self) -> Estimate:
        """Regret at the largest axis value that has an optimum."""
        ok = [p for p in self.points if p.enough]
        return ok[-1].regret_est if ok else MISSING

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (NaN becomes None, float dict keys become strings)."""
        return json_safe(
            {
                "group": self.group,
                "label": self.label,
                "axis": self.axis,
                "enough": self.enough,
                "reason": self.reason,
                "n_seeds": self.n_seeds,
                "drift_octaves": self.drift.to_dict(),
                "transferred_lr": self.transferred_lr,
                "transfer_grid_lr": self.transfer_grid_lr,
                "largest_is_best": self.largest_is_best,
                "largest_is_best_share": self.largest_is_best_share,
                "max_regret": self.max_regret,
                "regret_at_largest": self.regret_at_largest.to_dict(),
                "edge_warning": self.edge_warning,
                "wider_is_better": {repr(k): v for k, v in self.wider_is_better.items()},
                "points": [p.to_dict() for p in self.points],
            }
        )


@dataclass
class TransferReport:
    """The transfer analysis of one study: one TransferGroup per group."""

    axis: str
    lr_field: str
    metric: str
    groups: list[TransferGroup]
    counts: dict[str, int] = field(default_factory=dict)  # trials by status
    level: float = LEVEL
    n_boot: int = N_BOOT

    def group(self, **match: Any) -> TransferGroup:
        """The group whose keys match, e.g. report.group(rule='mup')."""
        for g in self.groups:
            if all(g.group.get(k) == v for k, v in match.items()):
                return g
        raise ConfigError("group", match, "one of " + "; ".join(g.label for g in self.groups))

    @property
    def enough(self) -> bool:
        """Whether every group has enough finished trials for a verdict."""
        return bool(self.groups) and all(g.enough for g in self.groups)

    def progress(self) -> str:
        """'40 of 48 trials finished (done 38, diverged 2; queued 8)'."""
        fin = {k: self.counts.get(k, 0) for k in ("done", "diverged", "failed")}
        rest = {k: v for k, v in self.counts.items() if k not in fin and v}
        total = sum(self.counts.values())
        text = f"{sum(fin.values())} of {total} trials finished (" + ", ".join(
            f"{k} {v}" for k, v in fin.items() if v or k == "done"
        )
        if rest:
            text += "; " + ", ".join(f"{k} {v}" for k, v in rest.items())
        return text + ")"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of everything."""
        return {
            "axis": self.axis,
            "lr_field": self.lr_field,
            "metric": self.metric,
            "counts": dict(self.counts),
            "enough": self.enough,
            "interval": {"level": self.level, "resamples": self.n_boot, "over": "seeds"},
            "groups": [g.to_dict() for g in self.groups],
        }

    def table(self) -> list[dict[str, Any]]:
        """One summary row per group, figures as text (bounds marked, intervals in [])."""
        return [
            {
                "group": g.label,
                "seeds": g.n_seeds,
                "drift (octaves)": g.drift.text() if g.enough else "not enough data",
                "regret at largest": g.regret_at_largest.text("{:.3f}"),
                "largest is best": g.largest_is_best,
                "log2 optimal lr": {
                    p.value: p.optimum.text("{:.2f}", interval=False) for p in g.points
                },
            }
            for g in self.groups
        ]


# --------------------------------------------------------------------------- reading a study
def _frame(source: Any) -> Any:

    if isinstance(source, pd.DataFrame):
        return source
    if isinstance(source, (str, Path)):
        if not Path(source).exists():
            raise ConfigError("study", str(source), "an existing study file (.db)")
        with Store(source, readonly=True) as st:
            return st.to_frame()
    if isinstance(source, Store):
        return source.to_frame()
    raise ConfigError("study", type(source).__name__, "a Store, a .db path or a DataFrame")


def _prepare(df: Any, axis: str, lr_field: str, metric: str, seed_field: str) -> Any:
    """Columns _y (finite loss, +inf diverged, NaN unfinished or failed), _seed and _y0 (the
    initial loss, for the lr sensitivity)."""
    for col, name in ((axis, "axis"), (lr_field, "lr_field"), (metric, "metric")):
        if col not in df.columns:
            raise ConfigError(
                name, col, "a column of the study: " + ", ".join(map(str, df.columns))
            )
    df = df.copy()
    y = df[metric].astype(float).to_numpy()
    y = np.where(np.isfinite(y), y, np.inf)
    if "status" in df:
        status = df["status"].to_numpy()
        y = np.where(status == "diverged", np.inf, y)
        y = np.where(np.isin(status, ["done", "diverged"]), y, np.nan)
    df["_y"] = y
    df["_seed"] = df[seed_field] if seed_field in df else 0
    df["_y0"] = df["initial_val_loss"].astype(float) if "initial_val_loss" in df else np.nan
    return df


def analyze_transfer(
    source: Any,
    axis: str = "width",
    lr_field: str = "lr",
    group_by: list[str] | None = None,
    metric: str = "loss",
    window: int = 2,
    *,
    seed_field: str = "seed",
    level: float = LEVEL,
    n_boot: int = N_BOOT,
    rng_seed: int = 0,
) -> TransferReport:
    """Optimal lr per axis value with its interval over seeds, its drift in octaves, transfer
    regret, largest-is-best and the lr sensitivity (see the module docstring).

    source: a Store, a study .db path or a DataFrame (Store.to_frame()).
    group_by: fields that split the study into separate curves (default: every field that
    varies, except the axis, the lr, the seed and fields that move with the axis).
    Unfinished trials are counted (``report.counts``) and left out; a group without enough
    finished trials gets no verdict (``enough`` False, with the reason).
    """
    if not 0.0 < level < 1.0:
        raise ConfigError("level", level, "a fraction between 0 and 1, e.g. 0.9")
    if not isinstance(n_boot, int) or n_boot < 0:
        raise ConfigError("n_boot", n_boot, "a whole number of resamples >= 0")
    df = _frame(source)
    if len(df) == 0:
        raise DataError("the study has no trials")
    df = _prepare(df, axis, lr_field, metric, seed_field)
    counts = (
        {str(k): int(v) for k, v in df["status"].value_counts().items()}
        if "status" in df
        else {"done": len(df)}
    )
    if group_by is None:
        group_by = _auto_groups(df, axis, lr_field)
    for col in group_by:
        if col not in df.columns:
            raise ConfigError("group_by", col, "columns of the study: " + ", ".join(df.columns))
    opts = _Options(axis, lr_field, window, level, n_boot, rng_seed)
    groups = [_analyze_group(sub, key, opts) for key, sub in _split(df, group_by)]
    return TransferReport(axis, lr_field, metric, groups, counts, level, n_boot)


@dataclass(frozen=True)
class _Options:
    axis: str
    lr_field: str
    window: int
    level: float
    n_boot: int
    rng_seed: int


def group_value(v: Any) -> Any:
    """A group value as plain Python: numpy scalars unwrapped, NaN/None as None, 2.0 as 2."""
    v = _py(v)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, float) and v.is_integer() and abs(v) < 2**53:
        return int(v)
    return v


def _split(df: Any, group_by: list[str]) -> list[tuple[dict[str, Any], Any]]:
    """(group dict, rows) per distinct combination of the group_by fields (None-safe)."""
    if not group_by:
        return [({}, df)]
    keys = [tuple(group_value(v) for v in row) for row in df[group_by].itertuples(index=False)]
    df = df.assign(_g=[repr(k) for k in keys])
    out = {}
    for k in keys:
        out.setdefault(repr(k), k)
    ordered = sorted(out.items(), key=lambda kv: tuple((v is not None, str(v)) for v in kv[1]))
    return [(dict(zip(group_by, k, strict=True)), df[df["_g"] == r]) for r, k in ordered]


def _auto_groups(df: Any, axis: str, lr_field: str) -> list[str]:

    out = []
    for f in FIELDS:
        if f in (axis, lr_field) or f in _NEVER_GROUP or f not in df.columns:
            continue
        # missing values count as one value (None next to a number is a group: a rule off and
        # on); pandas' string dtype keeps NaN missing through astype(str)
        col = df[f].astype(str)
        if col.nunique(dropna=False) <= 1:
            continue
        # a field fixed by the axis value (e.g. batch_size zipped with width) is not a group
        if df.assign(_c=col).groupby(axis)["_c"].nunique(dropna=False).max() <= 1:
            continue
        out.append(f)
    return out


# --------------------------------------------------------------------------- one group
@dataclass
class _Cube:
    """A group's trials as arrays: values (P,), seeds (S,), log2 lrs (J,), losses (P, S, J)
    with NaN unfinished and +inf diverged, and initial losses y0 (P, S, J)."""

    values: list[Any]
    seeds: list[Any]
    x: np.ndarray
    lrs: list[float]
    y: np.ndarray
    y0: np.ndarray

    @classmethod
    def of(cls, sub: Any, axis: str, lr_field: str) -> _Cube:
        values = sorted(sub[axis].unique())
        seeds = sorted(sub["_seed"].unique())
        lrs = sorted(float(v) for v in sub[lr_field].unique())
        shape = (len(values), len(seeds), len(lrs))
        y, y0 = np.full(shape, np.nan), np.full(shape, np.nan)
        iv = {v: i for i, v in enumerate(values)}
        js = {v: j for j, v in enumerate(lrs)}
        ks = {s: k for k, s in enumerate(seeds)}
        for v, s, lr, yy, yy0 in zip(
            sub[axis], sub["_seed"], sub[lr_field], sub["_y"], sub["_y0"], strict=True
        ):
            i, k, j = iv[v], ks[s], js[float(lr)]
            if not np.isnan(yy) or np.isnan(y[i, k, j]):  # a finished duplicate wins
                y[i, k, j], y0[i, k, j] = yy, yy0
        return cls(values, seeds, np.log2(lrs), lrs, y, y0)


def _resample_weights(n_seeds: int, n_boot: int, rng_seed: int) -> np.ndarray:
    """Row 0: every seed once (the estimate); rows 1..n_boot: seeds drawn with replacement."""
    w = np.ones((1, n_seeds))
    if n_seeds < 2 or n_boot == 0:
        return w
    rng = np.random.default_rng(rng_seed)
    draws = rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=n_boot)
    return np.vstack([w, draws.astype(float)])


def _mean_curves(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Seed-weighted mean curves (R, P, J): NaN where no drawn seed finished, +inf where a drawn
    seed diverged."""
    present = ~np.isnan(y)
    diverged = np.isinf(y)
    vals = np.where(present & ~diverged, y, 0.0)
    den = np.einsum("rs,psj->rpj", w, present.astype(float))
    num = np.einsum("rs,psj->rpj", w, vals)
    lost = np.einsum("rs,psj->rpj", w, diverged.astype(float)) > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        m = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return np.where(lost, np.inf, m)


def _sensitivity(cube: _Cube, w: np.ndarray) -> np.ndarray:
    """Wortsman et al.'s lr sensitivity per resample and point (R, P): the mean over lrs of
    min(loss, initial loss) - best, a diverged run counting as its initial loss."""
    y = cube.y
    capped = np.where(np.isinf(y), cube.y0, np.minimum(y, cube.y0))
    capped = np.where(np.isnan(y), np.nan, capped)
    m = _mean_curves(capped, w)
    with warnings.catch_warnings():  # a point with nothing finished is NaN, quietly
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(m - np.nanmin(m, axis=2, keepdims=True), axis=2)


def _analyze_group(sub: Any, group: dict[str, Any], o: _Options) -> TransferGroup:
    cube = _Cube.of(sub, o.axis, o.lr_field)
    w = _resample_weights(len(cube.seeds), o.n_boot, o.rng_seed)
    m = _mean_curves(cube.y, w)  # (R, P, J)
    n_r, n_p, n_j = m.shape
    xo, yo, where = (
        a.reshape(n_r, n_p) for a in _locate_many(cube.x, m.reshape(-1, n_j), o.window)
    )
    n_lrs = (~np.isnan(cube.y)).any(axis=1).sum(axis=1)  # (P,) lrs with a finished seed
    ok = n_lrs >= MIN_LRS
    xo[:, ~ok] = np.nan
    reps = _Reps(m, xo, yo, where, ok, cube.x)
    points = _points(cube, reps, _sensitivity(cube, w), n_lrs, o.level)
    return _summarise(group, o, cube, reps, points)


@dataclass
class _Reps:
    """Every resample's figures: row 0 is the estimate itself."""

    m: np.ndarray  # (R, P, J) mean curves
    xo: np.ndarray  # (R, P) log2 optimum (NaN where the point has too few lrs)
    yo: np.ndarray
    where: np.ndarray  # (R, P) -1 / 0 / +1
    ok: np.ndarray  # (P,) points with enough lrs
    x: np.ndarray  # (J,) log2 lrs

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """The smallest and largest log2 optimum each resample allows (R, P)."""
        lo = np.where(self.where == _LOW, -np.inf, self.xo)
        hi = np.where(self.where == _HIGH, np.inf, self.xo)
        return lo, hi

    def drift(self) -> tuple[np.ndarray, np.ndarray]:
        """(smallest, largest) drift each resample allows: max - min of the optima, where an
        optimum beyond the grid may be anywhere beyond it."""
        lo, hi = self.bounds()
        lo, hi = lo[:, self.ok], hi[:, self.ok]
        if lo.shape[1] == 0:
            nan = np.full(lo.shape[0], np.nan)
            return nan, nan
        dmin = np.maximum(0.0, lo.max(axis=1) - hi.min(axis=1))
        dmax = hi.max(axis=1) - lo.min(axis=1)
        return dmin, dmax

    def transfer_index(self) -> np.ndarray:
        """(R,) the grid index nearest to the smallest model's optimum (-1: none)."""
        first = np.flatnonzero(self.ok)
        if len(first) == 0:
            return np.full(self.xo.shape[0], -1)
        t = self.xo[:, first[0]]
        idx = np.abs(self.x[None, :] - np.nan_to_num(t, nan=0.0)[:, None]).argmin(axis=1)
        return np.where(np.isfinite(t), idx, -1)

    def regret(self) -> tuple[np.ndarray, np.ndarray]:
        """(R, P) loss at the transferred grid lr, and that minus the best grid loss."""
        t = self.transfer_index()
        r = np.arange(self.m.shape[0])
        at = self.m[r, :, np.maximum(t, 0)]  # (R, P)
        at = np.where((t >= 0)[:, None], at, np.nan)
        finite = np.where(np.isfinite(self.m), self.m, np.inf)
        best = finite.min(axis=2)
        best = np.where(np.isfinite(best), best, np.nan)
        return at, at - best


def _estimate(bound: str, reps: np.ndarray, n_seeds: int, level: float, **kw: Any) -> Any:
    """An Estimate: the value is row 0 of ``reps`` (every seed once), the interval comes from
    the resamples (rows 1..; sizeup.sweep.estimate.t_interval)."""
    value = float(reps[0])
    if len(reps) < 2:
        return Estimate(value, bound)
    kw = {k: (v[1:] if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    lo, hi, lo_open, hi_open = t_interval(value, reps[1:], n_seeds, level, **kw)
    return Estimate(value, bound, lo, hi, lo_open, hi_open)


_BOUND_OF = {_LOW: "<=", _MID: "=", _HIGH: ">="}


def _points(
    cube: _Cube, reps: _Reps, sens: np.ndarray, n_lrs: np.ndarray, level: float
) -> list[ScalePoint]:
    at, regret = reps.regret()
    grid = (float(cube.x[0]), float(cube.x[-1]))
    points = []
    for i, v in enumerate(cube.values):
        n_seeds = int((~np.isnan(cube.y[i])).any(axis=1).sum())
        curve = reps.m[0, i]
        finite = np.isfinite(curve)
        b = int(np.argmin(np.where(finite, curve, np.inf))) if finite.any() else -1
        has_opt = bool(reps.ok[i] and math.isfinite(reps.xo[0, i]))
        where = int(reps.where[0, i]) if has_opt else _MID
        x0 = float(reps.xo[0, i])
        inside = has_opt and where == _MID
        points.append(
            ScalePoint(
                value=_py(v),
                lrs=list(cube.lrs),
                losses=[float(y) if math.isfinite(y) else math.nan for y in curve],
                best_grid_lr=cube.lrs[b] if b >= 0 else math.nan,
                best_grid_loss=float(curve[b]) if b >= 0 else math.nan,
                opt_lr=float(2.0**x0) if inside else math.nan,
                opt_loss=float(reps.yo[0, i]) if inside else math.nan,
                at_edge=has_opt and not inside,
                loss_at_transfer=float(at[0, i]),
                regret=float(regret[0, i]),
                optimum=_optimum(reps, i, n_seeds, level, grid) if has_opt else MISSING,
                regret_est=_estimate(
                    ">=" if has_opt and not inside else "=", regret[:, i], n_seeds, level, floor=0.0
                ),
                lr_sensitivity=_estimate("=", sens[:, i], n_seeds, level, floor=0.0),
                n_lrs=int(n_lrs[i]),
                n_seeds=n_seeds,
                seed_losses={
                    _py(s): [float(y) for y in cube.y[i, k]] for k, s in enumerate(cube.seeds)
                },
            )
        )
    return points


def _optimum(reps: _Reps, i: int, n_seeds: int, level: float, grid: tuple[float, float]) -> Any:
    """log2 of point i's optimal lr: a value or a bound, and its interval."""
    where = reps.where[:, i]
    return _estimate(
        _BOUND_OF[int(where[0])],
        reps.xo[:, i],
        n_seeds,
        level,
        open_low=where == _LOW,
        open_high=where == _HIGH,
        grid=grid,
    )


def _summarise(
    group: dict[str, Any], o: _Options, cube: _Cube, reps: _Reps, points: list[ScalePoint]
) -> TransferGroup:
    enough = int(reps.ok.sum()) >= MIN_VALUES
    reason = (
        ""
        if enough
        else f"{int(reps.ok.sum())} {o.axis} value(s) with >= {MIN_LRS} finished lrs; a verdict "
        f"needs >= {MIN_VALUES}"
    )
    dmin, dmax = reps.drift()
    drift = MISSING
    if enough:
        bound = "=" if dmin[0] == dmax[0] else ">="
        lo, hi, lo_open, hi_open = _drift_interval([p.optimum for p in points if p.enough])
        drift = Estimate(float(dmin[0]), bound, lo, hi, lo_open, hi_open)
    t = reps.transfer_index()
    t_grid = cube.lrs[t[0]] if t[0] >= 0 else math.nan
    first = next((p for p in points if p.enough), None)
    at, _ = reps.regret()
    largest = _largest_is_best(at, reps.ok)
    regrets = [p.regret for p in points if p.enough and not math.isnan(p.regret)]
    return TransferGroup(
        group=group,
        axis=o.axis,
        points=points,
        drift_octaves=drift.value,
        transferred_lr=first.opt_lr if first is not None else math.nan,
        transfer_grid_lr=t_grid,
        largest_is_best=bool(largest[0]) if enough else None,
        max_regret=max(regrets) if regrets else math.nan,
        wider_is_better=_wider(points, cube.lrs),
        edge_warning=any(p.at_edge for p in points),
        drift=drift,
        largest_is_best_share=float(largest[1:].mean()) if len(largest) > 1 else math.nan,
        n_seeds=len(cube.seeds),
        enough=enough,
        reason=reason,
        resampled_drift=(dmin, dmax) if enough else None,
        seeds=list(cube.seeds),
        resampled_optima=np.where((reps.where == _MID) & reps.ok[None, :], reps.xo, np.nan),
    )


def drift_difference(off: TransferGroup, on: TransferGroup, level: float = LEVEL) -> Estimate:
    """How many octaves more ``off`` drifts than ``on``, with a paired interval: both groups'
    drifts are recomputed on the same seed resamples (same seeds, same draws), so the noise they
    share (e.g. SP and muP are the same model at the base width) cancels. Conservative at the
    grid edge: off's smallest drift minus on's largest (a bound "<=" / ">=" when one of them is a
    bound). Missing (NaN) when either has no verdict or they were not drawn from the same seeds.
    """
    if off.resampled_drift is None or on.resampled_drift is None or off.seeds != on.seeds:
        return MISSING
    (off_min, off_max), (on_min, on_max) = off.resampled_drift, on.resampled_drift
    if len(off_min) != len(on_min):
        return MISSING
    diff = off_min - on_max
    value = float(diff[0])
    if not math.isfinite(value):
        return MISSING
    exact = off_min[0] == off_max[0] and on_min[0] == on_max[0]
    bound = "=" if exact else ">="
    return _estimate(bound, diff, len(off.seeds), level, open_low=np.isneginf(diff))


def _drift_interval(optima: list[Estimate]) -> tuple[float, float, bool, bool]:
    """The drift's interval: the smallest and the largest max - min that the optima's own
    intervals allow (interval arithmetic). A drift is a maximum minus a minimum of noisy
    optima, biased upwards by the noise, so a bootstrap interval of it misses a true drift of 0
    (measured: 64-84% coverage for a nominal 90%, docs/transfer.md); the optima's intervals are
    calibrated, and the range they allow covers the drift 86-100% of the time. An optimum beyond
    the grid, or an interval end that is open, reaches as far as it likes (the upper end is then
    open, written as at least the value with the grid edges in place)."""
    ok = [e for e in optima if math.isfinite(e.value) and e.has_interval]
    if len(ok) < 2 or len(ok) < len(optima):
        return math.nan, math.nan, False, False
    lo_free = [e.lo_open or e.bound == "<=" for e in ok]
    hi_free = [e.hi_open or e.bound == ">=" for e in ok]
    los = [-math.inf if f else e.lo for e, f in zip(ok, lo_free, strict=True)]
    his = [math.inf if f else e.hi for e, f in zip(ok, hi_free, strict=True)]
    lo = max(0.0, max(los) - min(his)) if math.isfinite(max(los) - min(his)) else 0.0
    hi = max(e.hi for e in ok) - min(e.lo for e in ok)  # the grid edges in place of open ends
    return lo, hi, False, any(lo_free) or any(hi_free)


def _largest_is_best(at: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """(R,) whether the largest point with enough lrs has the lowest loss at the transferred
    lr among the points with enough lrs (a diverged or missing loss there: no)."""
    sel = at[:, ok]
    if sel.shape[1] == 0:
        return np.zeros(at.shape[0], dtype=bool)
    last = sel[:, -1]
    return np.isfinite(last) & (last <= np.where(np.isnan(sel), np.inf, sel).min(axis=1))


def _wider(points: list[ScalePoint], grid: list[float]) -> dict[float, bool]:
    """Per grid lr: loss is finite and monotone non-increasing along the axis."""
    out = {}
    for j, lr in enumerate(grid):
        ys = [p.losses[j] for p in points]
        out[lr] = bool(
            all(math.isfinite(y) for y in ys)
            and all(b <= a for a, b in zip(ys, ys[1:], strict=False))
        )
    return out


def _py(v: Any) -> Any:
    """numpy scalars to plain Python (JSON and dict keys)."""
    return v.item() if hasattr(v, "item") else v
