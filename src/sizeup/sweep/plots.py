"""Figures for the transfer analysis: loss against lr per axis value (one panel per group,
the rule off on the left), the optimal lr against the axis with its interval over seeds
(bounds drawn as triangles), and training curves at the transferred lr side by side."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sizeup.figures import pyplot
from sizeup.sweep.transfer import TransferGroup, TransferReport

# Metric columns of a study and what they are (RunResult.loss is the final validation loss).
_METRIC_NAMES = {
    "loss": "validation loss",
    "final_val_loss": "validation loss",
    "final_train_loss": "training loss",
    "initial_val_loss": "initial validation loss",
}


def loss_unit(model: str | None = "gpt") -> str:
    """The unit of a run's loss: cross-entropy in nats, per token for sequence models, per
    example for the MLP (whose "tokens" are examples)."""
    return "nats/example" if model == "mlp" else "nats/token"


def loss_label(metric: str, model: str | None = "gpt") -> str:
    """'validation loss (nats/token)': which loss a study's ``metric`` column is, and its
    unit."""
    name = _METRIC_NAMES.get(metric)
    return metric if name is None else f"{name} ({loss_unit(model)})"


def _switches_off(v: Any) -> bool:
    """A group value that means "this rule is off": the standard parametrization, no base
    (so nothing to transfer from), a switch that is off, an exponent or coefficient of 0."""
    if v is None or v is False or v == "sp":
        return True
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == 0


def rule_off_first(groups: list[TransferGroup]) -> list[TransferGroup]:
    """The groups with the rule off first: ordered by how many of their values switch a rule
    off (``_switches_off``), most first; ties keep their order. So SP comes before muP, "no
    residual scaling" before Depth-muP, neither before QK-norm."""
    return sorted(groups, key=lambda g: -sum(_switches_off(v) for v in g.group.values()))


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
_BOUND_TEXT = {"<=": "≤", ">=": "≥"}
EDGE_GID = "edge-optimum"  # the gid of a grid-edge optimum's marker (tests find it by it)


def _draw_point(ax: Any, p: Any, color: Any, hi: float, pad: float) -> None:
    """One axis value: its seeds (faint), its seed mean, crosses for diverged lrs, and its
    optimum (a star, or a triangle pointing past the grid edge for a bound) with its interval."""
    x, y = np.asarray(p.lrs), np.asarray(p.losses, dtype=float)
    for ys in p.seed_losses.values() if len(p.seed_losses) > 1 else ():
        ys = np.asarray(ys, dtype=float)
        ok = np.isfinite(ys)
        ax.plot(x[ok], np.minimum(ys[ok], hi + pad), ".", ms=2.5, color=color, alpha=0.35)
    ok = np.isfinite(y)
    ax.plot(x[ok], np.minimum(y[ok], hi + pad), "-o", ms=3.5, color=color)
    ax.plot(x[~ok], np.full((~ok).sum(), hi + pad), "x", color=color, ms=7)
    _draw_optimum(ax, p, color, hi)


def _draw_optimum(ax: Any, p: Any, color: Any, hi: float) -> None:
    """A star at a fitted optimum; at the grid edge a triangle pointing past it, labelled
    '≤ 2^-12' / '≥ 2^-6' (the optimum is a bound there); the interval as a bar."""
    e = p.optimum
    if not math.isfinite(e.value):
        return
    lr = 2.0**e.value
    yv = p.opt_loss if e.bound == "=" and math.isfinite(p.opt_loss) else p.best_grid_loss
    yv = min(yv, hi)
    if e.has_interval:
        ax.plot([2.0**e.lo, 2.0**e.hi], [yv, yv], "-", color=color, lw=2.5, alpha=0.6)
    edge = e.bound != "="
    ax.plot(
        [lr],
        [yv],
        _BOUND_MARKER[e.bound],
        ms=9 if edge else 12,
        color=color,
        markeredgecolor="black",
        zorder=5,
        gid=EDGE_GID if edge else None,
    )
    if edge:
        ax.annotate(
            f"{_BOUND_TEXT[e.bound]} $2^{{{e.value:g}}}$",
            xy=(lr, yv),
            # inward and above the marker: the text stays inside the panel at either edge
            xytext=(-4 if e.bound == ">=" else 4, 7),
            textcoords="offset points",
            ha="right" if e.bound == ">=" else "left",
            va="bottom",
            fontsize=8,
            color="black",
        )


def _value_colors(report: TransferReport) -> dict[Any, Any]:
    """One colour per axis value, the same in every panel."""
    cmap = pyplot().get_cmap("viridis")
    values = sorted({p.value for g in report.groups for p in g.points})
    return {v: cmap(i / max(1, len(values) - 1) * 0.9) for i, v in enumerate(values)}


def plot_lr_curves(
    report: TransferReport,
    title: str | None = None,
    labels: dict[str, str] | None = None,
    ylabel: str | None = None,
) -> Any:
    """Loss against lr, one curve (the seed mean; seeds as faint dots) per axis value, one
    panel per group in the report's order (``rule_off_first`` puts the rule-off group left),
    on shared axes; optima as stars with their interval as a bar, an optimum beyond the grid
    as a triangle at the edge pointing past it and labelled with its bound, diverged points as
    crosses at the top, the transferred lr as a dashed line. The legend below the panels says
    what each mark is. ``ylabel``: default ``loss_label(report.metric)``."""
    plt = pyplot()
    n = len(report.groups)
    fig, axes = plt.subplots(
        1, n, figsize=(4.6 * n, 4.4), sharex=True, sharey=True, squeeze=False, layout="constrained"
    )
    lo, hi, pad = _ylimits(report)
    colors = _value_colors(report)
    for ax, g in zip(axes[0], report.groups, strict=True):
        for p in g.points:
            _draw_point(ax, p, colors[p.value], hi, pad)
        if math.isfinite(g.transfer_grid_lr):
            ax.axvline(g.transfer_grid_lr, ls="--", color="gray", lw=1)
        ax.set_xscale("log", base=2)
        ax.set_ylim(lo - pad, hi + 2 * pad)
        ax.set_xlabel(report.lr_field)
        drift = g.drift.text("{:.1f}") if g.enough else "no verdict"
        ax.set_title(f"{(labels or {}).get(g.label, g.label)}\ndrift {drift} octaves", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(ylabel or loss_label(report.metric))
    _lr_legend(fig, report, colors)
    if title:
        fig.suptitle(title)
    return fig


def _lr_legend(fig: Any, report: TransferReport, colors: dict[Any, Any]) -> None:
    """Below the panels: a colour per axis value, then what each mark means."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, marker="o", ms=3.5) for c in colors.values()]
    names = [f"{report.axis} {v}" for v in colors]
    marks = [
        (Line2D([], [], ls="", marker="*", ms=10, color="0.6", mec="k"), "optimum (bar: interval)"),
        (Line2D([], [], ls="", marker="<", ms=8, color="0.6", mec="k"), "beyond the grid: a bound"),
        (Line2D([], [], ls="", marker="x", ms=7, color="0.3"), "diverged"),
        (Line2D([], [], ls="", marker=".", ms=5, color="0.5"), "one seed"),
        (Line2D([], [], ls="--", color="gray", lw=1), "transferred lr"),
    ]
    fig.legend(
        handles + [h for h, _ in marks],
        names + [t for _, t in marks],
        loc="outside lower center",
        ncols=min(len(handles) + len(marks), 5),
        fontsize=8,
        frameon=False,
    )


def plot_optimal_lr(report: TransferReport, labels: dict[str, str] | None = None) -> Any:
    """log2 of the optimal lr against the scaled axis, one line per group, with the interval
    over seeds as error bars; a bound is a triangle pointing the way the optimum lies."""
    plt = pyplot()
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
    to_frame(curves=True))."""
    plt = pyplot()
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


def _chosen(trials: list[Any], group: dict[str, Any], lr: float) -> list[Any]:
    """Finished trials of ``group`` at ``lr``."""
    return [
        t
        for t in trials
        if t.result is not None
        and all(t.config.get(k) == v for k, v in group.items())
        and math.isclose(t.config.optimizer.lr, lr, rel_tol=1e-9)
    ]


def _trial_panel(
    ax: Any, trials: list[Any], group: dict[str, Any], lr: float, axis: str, colors: dict
) -> bool:
    """One panel of training curves: a line per seed, a colour per axis value (running means:
    per-step losses are too noisy to compare). Whether anything was drawn."""
    seen: set = set()
    chosen = _chosen(trials, group, lr)
    for t in sorted(chosen, key=lambda t: (t.config.get(axis), t.config.run.seed)):
        v = t.config.get(axis)
        y = np.asarray(t.result.train_loss, dtype=float)
        if len(y) == 0:
            continue
        k = max(1, len(y) // 30)
        ys = np.convolve(y, np.ones(k) / k, mode="valid")
        label = None if v in seen else f"{axis} {v}"
        ax.plot(t.result.steps[k - 1 :], ys, color=colors[v], label=label, lw=1.0, alpha=0.8)
        seen.add(v)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    return bool(seen)


def _axis_colors(trials: list[Any], axis: str) -> dict[Any, Any]:
    cmap = pyplot().get_cmap("viridis")
    values = sorted({t.config.get(axis) for t in trials})
    return {v: cmap(i / max(1, len(values) - 1) * 0.9) for i, v in enumerate(values)}


def plot_trial_curves(
    trials: list[Any], group: dict[str, Any], lr: float, axis: str = "width"
) -> Any:
    """Training loss curves at one lr from stored trials (``Store.trials()``): one colour per
    axis value, a line per seed. Works for any axis, ``steps`` included (a DataFrame with
    curves has its ``steps`` column taken by the logged steps)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 4.0))
    if _trial_panel(ax, trials, group, lr, axis, _axis_colors(trials, axis)):
        ax.legend(fontsize=8)
    ax.set_ylabel("training loss (running mean)")
    ax.set_title(", ".join(f"{k}={v}" for k, v in group.items()) + f", lr={lr:g}", fontsize=9)
    fig.tight_layout()
    return fig


def plot_transfer_curves(
    trials: list[Any],
    report: TransferReport,
    labels: dict[str, str] | None = None,
    ylabel: str = "training loss (running mean)",
) -> Any:
    """Training curves at each group's transferred lr, one panel per group side by side on
    shared axes (the report's group order), a colour per axis value, a line per seed."""
    plt = pyplot()
    groups = [g for g in report.groups if math.isfinite(g.transfer_grid_lr)]
    n = max(1, len(groups))
    fig, axes = plt.subplots(
        1, n, figsize=(4.6 * n, 3.8), sharex=True, sharey=True, squeeze=False, layout="constrained"
    )
    colors = _axis_colors(trials, report.axis)
    for ax, g in zip(axes[0], groups):
        _trial_panel(ax, trials, g.group, g.transfer_grid_lr, report.axis, colors)
        lr = g.transfer_grid_lr
        name = (labels or {}).get(g.label, g.label)
        ax.set_title(f"{name}\nat the transferred lr 2^{math.log2(lr):g} ({lr:.3g})", fontsize=9)
    axes[0][0].set_ylabel(ylabel)
    handles, names = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(
            handles,
            names,
            loc="outside lower center",
            ncols=min(len(handles), 6),
            fontsize=8,
            frameon=False,
        )
    return fig
