"""Figures for the transfer analysis: loss against lr per width (one panel per group), and the
optimal lr against width with its interval over seeds (bounds drawn as triangles)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sizeup.sweep.transfer import TransferReport


def _mpl() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: never needs a display
    import matplotlib.pyplot as plt

    return plt


def _ylimits(report: TransferReport) -> tuple[float, float, float]:
    """(lo, hi, pad): the top is clipped so blown-up losses at high lr do not squash the
    interesting region."""
    finite = [y for g in report.groups for p in g.points for y in p.losses if math.isfinite(y)]
    bests = [
        p.best_grid_loss for g in report.groups for p in g.points if math.isfinite(p.best_grid_loss)
    ]
    lo = min(finite) if finite else 0.0
    spread = (max(bests) - min(bests)) if bests else 1.0
    hi = min(max(finite), lo + max(0.6, 4 * spread)) if finite else 1.0
    return lo, hi, 0.04 * (hi - lo or 1.0)


_BOUND_MARKER = {"=": "*", "<=": "<", ">=": ">"}


def _draw_point(ax: Any, p: Any, color: Any, label: str, hi: float, pad: float) -> None:
    """One axis value: its seeds (faint), its seed mean, crosses for diverged lrs, and its
    optimum (a star, or a triangle pointing past the grid edge for a bound) with its interval."""
    x, y = np.asarray(p.lrs), np.asarray(p.losses, dtype=float)
    for ys in p.seed_losses.values() if len(p.seed_losses) > 1 else ():
        ys = np.asarray(ys, dtype=float)
        ok = np.isfinite(ys)
        ax.plot(x[ok], np.minimum(ys[ok], hi + pad), ".", ms=2.5, color=color, alpha=0.35)
    ok = np.isfinite(y)
    ax.plot(x[ok], np.minimum(y[ok], hi + pad), "-o", ms=3.5, color=color, label=label)
    ax.plot(x[~ok], np.full((~ok).sum(), hi + pad), "x", color=color, ms=7)
    e = p.optimum
    if not math.isfinite(e.value):
        return
    lr = 2.0**e.value
    yv = p.opt_loss if e.bound == "=" and math.isfinite(p.opt_loss) else p.best_grid_loss
    yv = min(yv, hi)
    if e.has_interval:
        ax.plot([2.0**e.lo, 2.0**e.hi], [yv, yv], "-", color=color, lw=2.5, alpha=0.6)
    ax.plot(
        [lr],
        [yv],
        _BOUND_MARKER[e.bound],
        ms=12 if e.bound == "=" else 9,
        color=color,
        markeredgecolor="black",
        zorder=5,
    )


def plot_lr_curves(
    report: TransferReport, title: str | None = None, labels: dict[str, str] | None = None
) -> Any:
    """Loss against lr, one curve (the seed mean; seeds as faint dots) per axis value, one
    panel per group; optima as stars with their interval as a bar, an optimum beyond the grid
    as a triangle pointing past the edge, diverged points as crosses at the top, the
    transferred lr as a dashed line."""
    plt = _mpl()
    n = len(report.groups)
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 4.2), sharey=True, squeeze=False)
    lo, hi, pad = _ylimits(report)
    for ax, g in zip(axes[0], report.groups, strict=True):
        cmap = plt.get_cmap("viridis")
        k = len(g.points)
        for i, p in enumerate(g.points):
            color = cmap(i / max(1, k - 1) * 0.9)
            _draw_point(ax, p, color, f"{report.axis}={p.value}", hi, pad)
        if math.isfinite(g.transfer_grid_lr):
            ax.axvline(g.transfer_grid_lr, ls="--", color="gray", lw=1)
        ax.set_xscale("log", base=2)
        ax.set_ylim(lo - pad, hi + 2 * pad)
        ax.set_xlabel(report.lr_field)
        drift = g.drift.text("{:.1f}") if g.enough else "no verdict"
        ax.set_title(f"{(labels or {}).get(g.label, g.label)}: drift {drift} oct", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"{report.metric} (x: diverged)")
    axes[0][-1].legend(fontsize=8, loc="upper left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_optimal_lr(report: TransferReport, labels: dict[str, str] | None = None) -> Any:
    """log2 of the optimal lr against the scaled axis, one line per group, with the interval
    over seeds as error bars; a bound is a triangle pointing the way the optimum lies."""
    plt = _mpl()
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    for k, g in enumerate(report.groups):
        color = plt.get_cmap("tab10")(k)
        pts = [p for p in g.points if math.isfinite(p.optimum.value)]
        xs = [p.value for p in pts]
        ys = [p.optimum.value for p in pts]
        name = (labels or {}).get(g.label, g.label)
        drift = g.drift.text("{:.1f}", interval=False) if g.enough else "—"
        ax.plot(xs, ys, "-", color=color, label=f"{name} (drift {drift} oct)")
        for p in pts:
            e = p.optimum
            if e.has_interval:
                ax.plot([p.value, p.value], [e.lo, e.hi], "-", color=color, lw=2, alpha=0.5)
            marker = {"=": "o", "<=": "v", ">=": "^"}[e.bound]
            ax.plot([p.value], [e.value], marker, color=color, ms=6 if e.bound == "=" else 9)
    ax.set_xscale("log", base=2)
    ax.set_xlabel(report.axis)
    ax.set_ylabel(f"log2 optimal {report.lr_field}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_curves(store_df: Any, group: dict[str, Any], lr: float, axis: str = "width") -> Any:
    """Training loss curves at one lr, one colour per axis value (a line per seed; needs
    to_dataframe(curves=True))."""
    plt = _mpl()
    df = store_df
    for k, v in group.items():
        df = df[df[k] == v]
    df = df[np.isclose(df["lr"].astype(float), lr)].sort_values(axis)
    fig, ax = plt.subplots(figsize=(5.2, 4.0))
    cmap = plt.get_cmap("viridis")
    values = sorted(df[axis].unique())
    n = len(values)
    seen: set = set()
    for _, row in df.iterrows():
        i = values.index(row[axis])
        if isinstance(row.get("train_loss"), list) and row["train_loss"]:
            y = np.asarray(row["train_loss"], dtype=float)
            k = max(1, len(y) // 30)  # a running mean: per-step losses are too noisy to compare
            ys = np.convolve(y, np.ones(k) / k, mode="valid")
            ax.plot(
                row["steps"][k - 1 :],
                ys,
                color=cmap(i / max(1, n - 1) * 0.9),
                label=None if row[axis] in seen else f"{axis}={row[axis]}",
                lw=1.2,
            )
            seen.add(row[axis])
    ax.set_xlabel("step")
    ax.set_ylabel("train loss (running mean)")
    ax.set_title(", ".join(f"{k}={v}" for k, v in group.items()) + f", lr={lr:g}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_trial_curves(
    trials: list[Any], group: dict[str, Any], lr: float, axis: str = "width"
) -> Any:
    """Training loss curves at one lr from stored trials (``Store.trials()``): one colour per
    axis value, a line per seed. Works for any axis, ``steps`` included (a DataFrame with
    curves has its ``steps`` column taken by the logged steps)."""
    plt = _mpl()
    chosen = [
        t
        for t in trials
        if t.result is not None
        and all(getattr(t.config, k) == v for k, v in group.items())
        and math.isclose(t.config.lr, lr, rel_tol=1e-9)
    ]
    values = sorted({getattr(t.config, axis) for t in chosen})
    fig, ax = plt.subplots(figsize=(5.2, 4.0))
    cmap = plt.get_cmap("viridis")
    seen: set = set()
    for t in sorted(chosen, key=lambda t: (getattr(t.config, axis), t.config.seed)):
        v = getattr(t.config, axis)
        y = np.asarray(t.result.train_loss, dtype=float)
        if len(y) == 0:
            continue
        k = max(1, len(y) // 30)  # a running mean: per-step losses are too noisy to compare
        ys = np.convolve(y, np.ones(k) / k, mode="valid")
        color = cmap(values.index(v) / max(1, len(values) - 1) * 0.9)
        label = None if v in seen else f"{axis}={v}"
        ax.plot(t.result.steps[k - 1 :], ys, color=color, label=label, lw=1.0, alpha=0.8)
        seen.add(v)
    ax.set_xlabel("step")
    ax.set_ylabel("train loss (running mean)")
    ax.set_title(", ".join(f"{k}={v}" for k, v in group.items()) + f", lr={lr:g}", fontsize=9)
    if seen:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
