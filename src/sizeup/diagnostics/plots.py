"""Figures for the diagnostics: coordinate checks (one log-log panel per step) and spectral
monitor histories. matplotlib with the Agg backend, so they work without a display."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from sizeup.diagnostics.coord_check import CoordCheckResult


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_coord_check(result: CoordCheckResult, path: str | Path, stat: str | None = None) -> Path:
    """One panel per step, size vs width (or depth) on log-log axes, one line per module;
    modules outside their band are drawn thick, passing ones thin. Modules that vanish at init
    (zero-initialised ones included) are dashed and, on the judged steps, show the size of their
    update out_t - out_0, which is what the verdict judges (the total at init)."""
    plt = _pyplot()
    stat = stat or result.stat
    n = result.steps + 1
    cols = min(n, 5)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False, sharex=True
    )
    cmap = plt.get_cmap("tab20")
    # label each module where it is first drawn (zero-init ones start later)
    labelled: set[str] = set()
    for t in range(n):
        ax = axes[t // cols][t % cols]
        for k, m in enumerate(result.modules):
            judged = t >= result.judge_from
            ys = m.judged_sizes(stat, t) if judged else getattr(m, stat)[t]
            if not any(math.isfinite(y) and y > 0 for y in ys):
                continue
            bad = judged and m.excess(t) > 0
            # dashed: outputs that vanish at init, judged on their update, one-sided
            # (coord_check module doc)
            ax.plot(
                result.sizes,
                ys,
                marker="o",
                ms=2.5,
                color=cmap(k % 20),
                lw=1.6 if bad else 0.7,
                alpha=1.0 if bad else 0.6,
                ls="--" if m.vanishes else "-",
                label=None if m.name in labelled else m.name + ("*" if m.vanishes else ""),
            )
            labelled.add(m.name)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(f"t = {t}" + ("" if t >= result.judge_from else " (not judged)"), fontsize=9)
        ax.set_xlabel(result.axis, fontsize=8)
        if t % cols == 0:
            ax.set_ylabel("mean |x|" if stat == "l1" else "RMS", fontsize=8)
        ax.tick_params(labelsize=7)
    for t in range(n, rows * cols):
        axes[t // cols][t % cols].axis("off")
    s = result.settings
    verdict = "PASSED" if result.passed else f"FAILED (worst: {result.worst.get('module')})"
    fig.suptitle(
        f"coord check: {s.get('model')} {s.get('rule')} {s.get('optimizer')} "
        f"lr={s.get('lr')}: {verdict}",
        fontsize=10,
    )
    if len(result.modules) <= 30:
        fig.legend(loc="center right", fontsize=6, frameon=False)
        fig.tight_layout(rect=(0, 0, 0.8, 0.95))
    else:
        fig.tight_layout(rect=(0, 0, 1, 0.95))
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_spectral(
    history: list[dict[str, Any]], path: str | Path, keys: tuple[str, ...] = ("w", "dw", "align")
) -> Path:
    """Spectral monitor history (list of {"step", "<tensor>/<key>": value}) as one panel per
    quantity, one line per tensor, log y-axis."""
    plt = _pyplot()
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
