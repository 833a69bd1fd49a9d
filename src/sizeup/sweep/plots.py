"""Figures for the transfer analysis: loss against lr per width (one panel per group), and the
optimal lr against width."""

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


def plot_lr_curves(report: TransferReport, title: str | None = None) -> Any:
    """Loss against lr, one curve per axis value, one panel per group; optima marked with stars,
    diverged points with crosses at the top, the transferred lr as a dashed line."""
    plt = _mpl()
    n = len(report.groups)
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 4.2), sharey=True, squeeze=False)
    finite = [y for g in report.groups for p in g.points for y in p.losses if math.isfinite(y)]
    bests = [
        p.best_grid_loss for g in report.groups for p in g.points if math.isfinite(p.best_grid_loss)
    ]
    lo = min(finite) if finite else 0.0
    # clip the top so blown-up losses at high lr do not squash the interesting region
    spread = (max(bests) - min(bests)) if bests else 1.0
    hi = min(max(finite), lo + max(0.6, 4 * spread)) if finite else 1.0
    pad = 0.04 * (hi - lo or 1.0)
    for ax, g in zip(axes[0], report.groups, strict=True):
        cmap = plt.get_cmap("viridis")
        k = len(g.points)
        for i, p in enumerate(g.points):
            color = cmap(i / max(1, k - 1) * 0.9)
            x, y = np.asarray(p.lrs), np.asarray(p.losses, dtype=float)
            ok = np.isfinite(y)
            ax.plot(
                x[ok],
                np.minimum(y[ok], hi + pad),
                "-o",
                ms=3.5,
                color=color,
                label=f"{report.axis}={p.value}",
            )
            ax.plot(x[~ok], np.full((~ok).sum(), hi + pad), "x", color=color, ms=7)
            if math.isfinite(p.opt_lr):
                ax.plot(
                    [p.opt_lr],
                    [min(p.opt_loss, hi)],
                    "*",
                    ms=14,
                    color=color,
                    markeredgecolor="black",
                    zorder=5,
                )
        if math.isfinite(g.transferred_lr):
            ax.axvline(g.transferred_lr, ls="--", color="gray", lw=1)
        ax.set_xscale("log", base=2)
        ax.set_ylim(lo - pad, hi + 2 * pad)
        ax.set_xlabel(report.lr_field)
        ax.set_title(f"{g.label}: optimum drifts {g.drift_octaves:.1f} octaves")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"{report.metric} (x: diverged)")
    axes[0][-1].legend(fontsize=8, loc="upper left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_optimal_lr(report: TransferReport) -> Any:
    """log2 of the fitted optimal lr against the scaled axis, one line per group."""
    plt = _mpl()
    fig, ax = plt.subplots(figsize=(5.2, 4.0))
    for g in report.groups:
        xs = [p.value for p in g.points]
        ys = [p.opt_lr for p in g.points]
        ax.plot(xs, ys, "-o", label=f"{g.label} (drift {g.drift_octaves:.1f} oct)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xlabel(report.axis)
    ax.set_ylabel(f"optimal {report.lr_field}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_curves(store_df: Any, group: dict[str, Any], lr: float, axis: str = "width") -> Any:
    """Training loss curves at one lr, one line per axis value (needs to_dataframe(curves=True))."""
    plt = _mpl()
    df = store_df
    for k, v in group.items():
        df = df[df[k] == v]
    df = df[np.isclose(df["lr"].astype(float), lr)].sort_values(axis)
    fig, ax = plt.subplots(figsize=(5.2, 4.0))
    cmap = plt.get_cmap("viridis")
    n = len(df)
    for i, (_, row) in enumerate(df.iterrows()):
        if isinstance(row.get("train_loss"), list) and row["train_loss"]:
            y = np.asarray(row["train_loss"], dtype=float)
            k = max(1, len(y) // 30)  # a running mean: per-step losses are too noisy to compare
            ys = np.convolve(y, np.ones(k) / k, mode="valid")
            ax.plot(
                row["steps"][k - 1 :],
                ys,
                color=cmap(i / max(1, n - 1) * 0.9),
                label=f"{axis}={row[axis]}",
                lw=1.2,
            )
    ax.set_xlabel("step")
    ax.set_ylabel("train loss (running mean)")
    ax.set_title(", ".join(f"{k}={v}" for k, v in group.items()) + f", lr={lr:g}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
