"""Figures for the diagnostics: coordinate checks (one log-log panel per step) and spectral
monitor histories. matplotlib with the Agg backend, so they work without a display."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sizeup.figures import pyplot, readable_ticks

if TYPE_CHECKING:  # pragma: no cover
    from sizeup.diagnostics.coord_check import CoordCheckResult, ModuleCurve

# Modules listed in the legend, at most: past this only the failing and noisy ones are (the
# rest are in coord_check.json), so the legend never outgrows the figure.
MAX_LEGEND = 30
# The narrowest x range a panel shows, as a ratio: a slope is read off a log-log line, and over
# less than a decade (depth 2..8, say) a slope of 0.1 moves a line by less than a line width.
MIN_SPAN = 10.0
# A margin either side of the sizes, as a share of the log x range (no point on the frame).
MARGIN = 0.06


def plot_coord_check(result: CoordCheckResult, path: str | Path, stat: str | None = None) -> Path:
    """Write ``coord_check_figure`` to ``path`` (PNG); return the path."""
    plt = pyplot()
    fig = coord_check_figure(result, stat)
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def coord_check_figure(result: CoordCheckResult, stat: str | None = None) -> Any:
    """One panel per step, size vs width (or depth) on log-log axes, one line per module.

    Modules outside their band are drawn thick and named at their line's end; each legend
    entry carries the module's judged slope at its worst step. On judged steps the band of
    slopes that pass is shaded as a wedge around the expected slope 0 (flat), anchored at each
    offender's first point (or mid-panel when none fails there). Modules that vanish at init
    are dashed and, on the judged steps, show the size of their update out_t - out_0, which is
    what the verdict judges. The legend sits in its own column right of the panels, inside
    the figure and below the title."""
    plt = pyplot()
    stat = stat or result.stat
    n = result.steps + 1
    cols = min(n, 5)
    rows = math.ceil(n / cols)
    cmap = plt.get_cmap("tab20")
    colors = {m.name: cmap(k % 20) for k, m in enumerate(result.modules)}
    handles, labels, title = _legend_entries(result, colors)
    ncols = 1 if len(handles) <= 24 else 2
    # the legend gets its own column, sized from its longest entry (6.5 pt text): below the
    # title, beside the panels, never past the figure's edge
    width = ncols * (0.055 * max(len(x) for x in labels) + 0.6)
    fig = plt.figure(
        figsize=(3.0 * cols + width, max(2.9 * rows + 0.5, 0.14 * len(labels) / ncols + 1.2)),
        layout="constrained",
    )
    gs = fig.add_gridspec(rows, cols + 1, width_ratios=[3.0] * cols + [width])
    axes = [fig.add_subplot(gs[t // cols, t % cols]) for t in range(n)]
    for t, ax in enumerate(axes):
        ax.sharex(axes[0])
        _panel(ax, result, t, stat, colors)
        if t % cols:
            ax.set_ylabel("")
    lax = fig.add_subplot(gs[:, cols])
    lax.axis("off")
    lax.legend(
        handles,
        labels,
        loc="upper left",
        borderaxespad=0,
        fontsize=6.5,
        title=title,
        title_fontsize=7,
        frameon=False,
        ncols=ncols,
    )
    fig.suptitle(_title(result), fontsize=10)
    readable_ticks(fig)
    return fig


def _title(result: CoordCheckResult) -> str:
    s = result.settings
    verdict = {
        "pass": "PASSED",
        "fail": f"FAILED (worst: {result.worst.get('module')})",
        "inconclusive": f"INCONCLUSIVE ({result.seeds} seed(s): run more seeds)",
    }[result.verdict]
    what = f"{s.get('model')} {s.get('rule')} {s.get('optimizer')} lr={s.get('lr')}"
    return (
        f"coord check over {result.axis}: {what}: {verdict}\n"
        f"* vanishes at init: dashed, its update out_t - out_0 is drawn and judged"
    )


def _panel(ax: Any, result: CoordCheckResult, t: int, stat: str, colors: dict) -> None:
    """Step t: every module's line, the band on judged steps, offenders named."""
    judged = t >= result.judge_from
    offenders = []
    for m in result.modules:
        ys = np.asarray(m.judged_sizes(stat, t) if judged else getattr(m, stat)[t], dtype=float)
        if not np.any(np.isfinite(ys) & (ys > 0)):
            continue
        bad = judged and m.fails(t)
        ax.plot(
            result.sizes,
            ys,
            marker="o",
            ms=2.5,
            color=colors[m.name],
            lw=1.8 if bad else 0.7,
            alpha=1.0 if bad else 0.6,
            ls="--" if m.vanishes else "-",
            zorder=3 if bad else 2,
        )
        if bad:
            offenders.append((m, ys))
    _axes(ax, result, t, stat)
    if judged:
        _bands(ax, result, t, stat, offenders)
    for m, ys in offenders:
        _name_at_end(ax, result.sizes, ys, m, t, colors[m.name])


def _axes(ax: Any, result: CoordCheckResult, t: int, stat: str) -> None:
    """Log-log axes spanning at least MIN_SPAN in x, the sizes as ticks."""
    from matplotlib.ticker import NullLocator

    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    lo, hi = min(result.sizes), max(result.sizes)
    if hi / lo < MIN_SPAN:
        mid = math.sqrt(lo * hi)
        lo, hi = mid / math.sqrt(MIN_SPAN), mid * math.sqrt(MIN_SPAN)
    pad = (hi / lo) ** MARGIN
    ax.set_xlim(lo / pad, hi * pad)
    ticks = list(result.sizes)
    # every size is a tick; past five, every other one is labelled, so labels never touch
    ax.set_xticks(
        ticks, [str(v) if i % 2 == 0 or len(ticks) <= 5 else "" for i, v in enumerate(ticks)]
    )
    ax.xaxis.set_minor_locator(NullLocator())
    judged = t >= result.judge_from
    ax.set_title(f"t = {t}" + ("" if judged else " (init, not judged)"), fontsize=9)
    ax.set_xlabel(result.axis, fontsize=8)
    ax.set_ylabel("mean |x|" if stat == "l1" else "RMS", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.25, which="major")
    ax.margins(y=0.15)  # headroom for the offenders' names above (or below) their line ends


def _bands(ax: Any, result: CoordCheckResult, t: int, stat: str, offenders: list) -> None:
    """The slopes that pass, shaded as a wedge: from each offender's first point (its own band,
    so the reader sees where it leaves it), or from mid-panel when nothing fails at step t."""
    x = np.geomspace(result.sizes[0], result.sizes[-1], 20)
    if offenders:
        anchors = [(m.band, float(ys[np.isfinite(ys)][0])) for m, ys in offenders]
    else:
        y0, y1 = ax.dataLim.y0, ax.dataLim.y1
        if not (y0 > 0 and math.isfinite(y1)):
            return
        anchors = [((-result.tolerance, result.tolerance), math.sqrt(y0 * y1))]
    for (lo, hi), y in anchors:
        r = x / x[0]
        ax.fill_between(x, y * r**lo, y * r**hi, color="0.5", alpha=0.18, lw=0, zorder=1)


def _worst_slope(m: ModuleCurve, judge_from: int) -> float:
    """The slope the verdict weighs most: at the worst judged step (t=0 when none is judged)."""
    if judge_from >= len(m.slopes):
        return m.slopes[-1]
    return m.judged_slope(m.worst_step(judge_from))


def _name_at_end(ax: Any, sizes: list[int], ys: np.ndarray, m: ModuleCurve, t: int, color: Any):
    """An offender's name and slope at step t, ending at its line's last point: above it for
    a rising line, below for a falling one, so the text stays off the line and in the panel."""
    ok = np.flatnonzero(np.isfinite(ys) & (ys > 0))
    i = int(ok[-1])
    slope = m.judged_slope(t)
    up = not slope < 0
    ax.annotate(
        f"{m.name} {slope:+.2f}",
        xy=(sizes[i], ys[i]),
        xytext=(0, 5 if up else -5),
        textcoords="offset points",
        fontsize=7,
        color=color,
        va="bottom" if up else "top",
        ha="right",
        fontweight="bold",
    )


def _legend_entries(result: CoordCheckResult, colors: dict) -> tuple[list, list[str], str]:
    """(handles, labels, title): one entry per module, failures first, with its judged slope
    at its worst step (past MAX_LEGEND modules only the failing and noisy ones), then the
    band."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    mods = result.failing() + result.inconclusive() + [m for m in result.modules if m.passed]
    noisy = [m for m in mods if not m.passed or m.noisy(result.judge_from)]
    shown = mods if len(mods) <= MAX_LEGEND else noisy
    handles: list[Any] = []
    labels: list[str] = []
    for m in shown:
        bad = not m.passed
        style = dict(color=colors[m.name], lw=1.8 if bad else 0.9, ls="--" if m.vanishes else "-")
        handles.append(Line2D([], [], **style))
        verdict = {"fail": "  FAIL", "inconclusive": "  inconclusive"}.get(m.verdict, "")
        verdict = verdict or ("  noisy" if m.noisy(result.judge_from) else "")
        slope = _worst_slope(m, result.judge_from)
        labels.append(f"{m.name}{'*' if m.vanishes else ''}  {slope:+.2f}{verdict}")
    handles.append(Patch(color="0.5", alpha=0.3, lw=0))
    labels.append(f"slopes that pass (|slope| <= {result.tolerance:g})")
    title = "module  judged slope"
    if len(shown) < len(mods):
        title += f"\n({len(mods) - len(shown)} passing modules not listed)"
    return handles, labels, title


def plot_spectral(
    history: list[dict[str, Any]], path: str | Path, keys: tuple[str, ...] = ("w", "dw", "align")
) -> Path:
    """Spectral monitor history (list of {"step", "<tensor>/<key>": value}) as one panel per
    quantity, one line per tensor, log y-axis."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.2), squeeze=False)
    tensors = sorted({k.rsplit("/", 1)[0] for h in history for k in h if "/" in k})
    labels = {
        "w": "||W||_2 / sqrt(fan_out/fan_in)",
        "dw": "||dW||_2 / sqrt(fan_out/fan_in)",
        "align": "||Wx|| / (||W||_2 ||x||)",
    }
    for ax, key in zip(axes[0], keys):
        for name in tensors:
            pts = [
                (h["step"], h[f"{name}/{key}"])
                for h in history
                if f"{name}/{key}" in h and h[f"{name}/{key}"] is not None
            ]
            if pts:
                ax.plot(*zip(*pts), lw=0.9, label=name)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(labels.get(key, key), fontsize=9)
    if tensors and len(tensors) <= 20:
        axes[0][-1].legend(fontsize=6, frameon=False)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
