"""The HTML page of the critical-batch study (`sizeup demo --axis critical-batch`): one sentence
with B_crit per optimizer and its interval, the target loss and how it was chosen, the settings,
steps-to-target against batch size with each optimizer's McCandlish fit, the steps-tokens
trade-off, a table of every cell, and the command that reproduces it."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sizeup.figures import log_ticks, pyplot
from sizeup.report.html import Report
from sizeup.sweep.estimate import Estimate

_HOW_TO_READ = (
    "S: optimizer steps to first reach the target loss; E = S x B: sequences (tokens: x the "
    "sequence length) to reach it. The fit is McCandlish et al. 2018's S = S_min (1 + B_crit / "
    "B), per optimizer, in log S over every seed at the best lr of each batch size. B_crit (in "
    "sequences) is where a run needs twice the minimum steps and twice the minimum data: "
    "well below it, doubling the batch halves the steps; well above it, steps barely fall. "
    "Brackets: the interval from the profile of the fit (F-test); '∞)': the data do not rule "
    "out any larger B_crit; '≥ x': steps fell as 1/B at every batch measured."
)


def b_crit_text(e: Estimate, fmt: str = "{:.3g}") -> str:
    """'21.4 [12.1, 40.3]', '≥ 45 [45, ∞)', '18 (no interval)', '—'."""
    if not math.isfinite(e.value):
        return "—"
    head = {"=": "", ">=": "≥ ", "<=": "≤ "}[e.bound] + fmt.format(e.value)
    if not math.isfinite(e.lo):
        return head
    if math.isfinite(e.hi):
        return f"{head} [{fmt.format(e.lo)}, {fmt.format(e.hi)}]"
    return f"{head} [{fmt.format(e.lo)}, ∞)" if e.hi_open or math.isinf(e.hi) else head


def sentence(summary: dict) -> str:
    """'B_crit (sequences of 64 tokens, 90% interval): adamw 21.4 [12.1, 40.3], muon 9.8 [...];
    target loss 2.512 nats/token.'"""
    level = summary["interval"]["level"]
    parts = []
    for opt in summary["optimizers"]:
        parts.append(f"{opt} {b_crit_text(Estimate.from_dict(summary['b_crit'][opt]))}")
    seq = summary["settings"]["base"]["seq_len"]
    return (
        f"B_crit (sequences of {seq} tokens, {level:.0%} interval): "
        + ", ".join(parts)
        + f"; target loss {summary['target_loss']:.3f} nats/token."
    )


def critical_batch_page(analysis: Any, trials: list[Any], summary: dict, s: Any) -> Report:
    """The report of one critical-batch study (``s``: its CritBatchSettings)."""
    page = Report("sizeup demo: critical batch per optimizer")
    page.text(summary["sentence"], cls="lead")
    page.text(
        "How large a batch can each optimizer use before more data per step stops buying "
        "fewer steps?"
    )
    page.text(_HOW_TO_READ)
    page.cards(
        {f"{o}: B_crit (sequences)": b_crit_text(f.b_crit) for o, f in analysis.fits.items()}
    )
    page.heading("Target and settings")
    page.text(
        f"Target loss {analysis.target:.3f} nats/token: {summary['target_rule']}. "
        f"Loss: {summary['loss']}."
    )
    b = s.base
    page.table(
        [
            {"setting": k, "value": v}
            for k, v in {
                "model": f"GPT, width {b['width']}, depth {b['depth']}, head dim {b['head_dim']}, "
                f"sequences of {b['seq_len']} tokens",
                "optimizers": ", ".join(s.optimizers),
                "batch sizes (sequences)": ", ".join(str(x) for x in s.batch_sizes),
                "steps at batch B": f"{s.min_steps} + {s.sequences} / B",
                "learning rates": f"{len(s.lr_offsets)} per batch size, offsets "
                f"{', '.join(f'{o:g}' for o in s.lr_offsets)} octaves around each optimizer's "
                f"lr, x (B / {s.ref_batch})^1/2",
                "schedule": f"{b.get('schedule')}, {b.get('warmup')} warmup steps, rule "
                f"{b.get('rule')}",
                "seeds": ", ".join(str(x) for x in s.seeds),
            }.items()
        ]
    )
    page.heading("Steps to the target against batch size")
    page.figure(
        plot_steps(analysis, s),
        "one colour per optimizer; dots: each seed at the best lr; line: the fit",
    )
    page.heading("Steps against data: the trade-off")
    page.figure(
        plot_tradeoff(analysis, s),
        "E = S x B against S; the fitted hyperbola (S/S_min - 1)(E/E_min - 1) = 1",
    )
    page.heading("Numbers")
    page.table(_rows(analysis, s))
    page.heading("Reproduce")
    if summary.get("command"):
        page.code(summary["command"])
    counts = summary["trials"]
    page.text(
        f"sizeup {summary.get('sizeup_version', '?')} on {summary.get('machine') or 'unknown'}; "
        f"{sum(counts.values())} trials ({', '.join(f'{n} {k}' for k, n in counts.items() if n)})"
        f"; the study ran for {summary['wall_time_s']:.0f} s of wall time."
    )
    page.json(summary, "summary.json")
    return page


def _rows(analysis: Any, s: Any) -> list[dict[str, Any]]:
    rows = []
    seq = s.base["seq_len"]
    for c in analysis.cells:
        S = np.array(c.steps, dtype=float)
        rows.append(
            {
                "optimizer": c.optimizer,
                "batch": c.batch_size,
                "best lr": f"2^{math.log2(c.lr):.1f}" + (" (grid edge)" if c.at_grid_edge else "")
                if c.ok
                else c.reason,
                "steps to target": ", ".join(f"{x:.0f}" for x in S) or "—",
                "tokens to target": ", ".join(f"{x * c.batch_size * seq:,.0f}" for x in S) or "—",
            }
        )
    for o, f in analysis.fits.items():
        rows.append(
            {
                "optimizer": o,
                "batch": "fit",
                "best lr": f.reason or f"B_crit {b_crit_text(f.b_crit)}",
                "steps to target": f"S_min {f.fit.S_min:.0f}" if f.fit else "—",
                "tokens to target": f"E_min {f.fit.E_min * seq:,.0f}" if f.fit else "—",
            }
        )
    return rows


def _colours(names: list[str]) -> dict[str, Any]:
    plt = pyplot()
    cmap = plt.get_cmap("tab10")
    return {n: cmap(i % 10) for i, n in enumerate(names)}


def plot_steps(analysis: Any, s: Any) -> Any:
    """Steps to the target against batch size (log-log), each optimizer's fit as a line."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colour = _colours(list(s.optimizers))
    grid = np.geomspace(min(s.batch_sizes), max(s.batch_sizes), 100)
    for opt in s.optimizers:
        cells = [c for c in analysis.cells if c.optimizer == opt and c.ok]
        B = [c.batch_size for c in cells for _ in c.steps]
        S = [x for c in cells for x in c.steps]
        ax.scatter(B, S, color=colour[opt], s=18, alpha=0.8)
        f = analysis.fits[opt].fit
        label = f"{opt}: B_crit {b_crit_text(analysis.fits[opt].b_crit)}"
        if f is not None:
            ax.plot(grid, f.S_min + f.E_min / grid, color=colour[opt], label=label)
        else:
            ax.plot([], [], color=colour[opt], label=f"{opt}: no fit")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    log_ticks(ax.yaxis)
    ax.set_xticks(s.batch_sizes, [str(b) for b in s.batch_sizes])
    ax.set_xlabel("batch size B (sequences)")
    ax.set_ylabel(f"steps to loss {analysis.target:.3f}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_tradeoff(analysis: Any, s: Any) -> Any:
    """Tokens against steps to the target per optimizer, with the fitted hyperbola."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colour = _colours(list(s.optimizers))
    seq = s.base["seq_len"]
    for opt in s.optimizers:
        cells = [c for c in analysis.cells if c.optimizer == opt and c.ok]
        S = np.array([x for c in cells for x in c.steps])
        E = np.array([x * c.batch_size * seq for c in cells for x in c.steps])
        ax.scatter(S, E, color=colour[opt], s=18, alpha=0.8, label=opt)
        f = analysis.fits[opt].fit
        if f is not None and len(S):
            B = np.geomspace(min(s.batch_sizes) / 2, max(s.batch_sizes) * 2, 100)
            steps = f.S_min + f.E_min / B
            ax.plot(steps, steps * B * seq, color=colour[opt])
    ax.set_xscale("log")
    ax.set_yscale("log")
    log_ticks(ax.xaxis)
    log_ticks(ax.yaxis)
    ax.set_xlabel("steps S to the target")
    ax.set_ylabel("tokens E to the target")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
