"""The HTML page of a transfer study (`sizeup demo --axis ...`): key figures with their intervals
over seeds, the loss-vs-lr curves, the optimal lr against the axis, training curves, the
stability monitors, a table of every number and the command that reproduces it.

Figures that are bounds (an optimum beyond the lr grid) are shown as bounds (≤ / ≥), never as
values: everything goes through ``Estimate.text``.
"""

from __future__ import annotations

import math
from typing import Any

from sizeup.report.html import Report

_HOW_TO_READ = (
    "Each number comes with its 90% interval over seeds in brackets (a bootstrap over seeds "
    "with the small-sample t correction, docs/transfer.md). '≤ x' / '≥ x' is a bound: the "
    "optimum lies beyond the lr grid there, so only a bound is known; an interval end written "
    "'≤' or '≥' reaches past the grid in some resamples."
)


def demo_page(
    analysis: Any, trials: list[Any], summary: dict, s: Any, names: dict[str, str]
) -> Report:
    """The report of one demo study (``s``: its DemoSettings; ``names``: group label -> the
    variant's name)."""
    page = Report(f"sizeup demo: {s.axis}", _intro(s))
    page.text(_HOW_TO_READ)
    _cards(page, analysis, s, summary, names)
    _figures(page, analysis, trials, s, names)
    if s.axis == "stability":
        _stability(page, trials, s)
    page.heading("Numbers")
    page.table(_rows(analysis, s, names))
    page.heading("Reproduce")
    quick = " --quick" if summary["quick"] else ""
    seeds = ",".join(str(x) for x in s.seeds)
    page.text(
        f"sizeup demo --axis {s.axis}{quick} --seeds {seeds}\n\n"
        f"{sum(summary['trials'].values())} trials ({summary['trials']}); the study ran for "
        f"{summary['wall_time_s']:.0f} s of wall time ({summary['trials_run_now']} trials "
        f"run by this call, in {summary['wall_time_this_call_s']:.0f} s)."
    )
    page.json(summary, "summary.json")
    return page


def _intro(s: Any) -> str:
    base = s.base
    variants = "; ".join(f"{v.name}" for v in s.variants)
    return (
        f"A {base['model'].upper()} on the built-in corpus, {s.field} = {s.values}, "
        f"lr = 2^{min(s.lr_exps):g} ... 2^{max(s.lr_exps):g}, Adam, seeds {s.seeds}, "
        f"trained with each of: {variants}. {s.question}"
    )


def _cards(page: Report, analysis: Any, s: Any, summary: dict, names: dict) -> None:
    items: dict[str, Any] = {}
    good: dict[str, bool] = {}
    for g in analysis.groups:
        name = names[g.label]
        if s.axis == "stability":
            items[f"{name}: lr sensitivity at {s.field} {g.points[-1].value}"] = g.points[
                -1
            ].lr_sensitivity.text("{:.3f}")
            continue
        items[f"{name}: optimal lr drift (octaves)"] = g.drift.text() if g.enough else "—"
        items[f"{name}: regret at {s.field} {g.points[-1].value}"] = g.regret_at_largest.text(
            "{:.3f}"
        )
    page.cards(items, good=good)
    checks = summary["checks"]
    if not checks:
        page.text("Not enough finished trials for a verdict.", cls="bad")
        return
    ok = summary["all_checks_pass"]
    lines = [f"{'pass' if v else 'FAIL'}: {k}" for k, v in checks.items()]
    page.text("Checks (fixed before measuring): " + "; ".join(lines), cls="ok" if ok else "bad")


def _figures(page: Report, analysis: Any, trials: list[Any], s: Any, names: dict) -> None:
    from sizeup.sweep.plots import plot_lr_curves, plot_optimal_lr, plot_trial_curves

    page.heading("Loss against learning rate")
    page.text(
        "One curve per axis value (the mean over seeds; each seed as a faint dot); a star marks "
        "the optimum of a parabola fitted in log2(lr) around the best point, with its interval "
        "as a bar; a triangle marks an optimum beyond the grid; crosses at the top are runs "
        "that diverged; the dashed line is the lr tuned on the smallest value."
    )
    page.figure(plot_lr_curves(analysis, labels=names), "loss vs lr, one panel per variant")
    page.heading(f"Optimal learning rate against {s.field}")
    page.figure(plot_optimal_lr(analysis, labels=names), "intervals over seeds as bars")
    page.heading("Training curves at the transferred lr")
    for g in analysis.groups:
        if math.isfinite(g.transfer_grid_lr):
            page.figure(
                plot_trial_curves(trials, g.group, g.transfer_grid_lr, axis=s.field),
                f"{names[g.label]}: train loss at lr={g.transfer_grid_lr:g}",
            )


def _stability(page: Report, trials: list[Any], s: Any) -> None:
    from sizeup.report.stability import plot_monitors

    page.heading("Stability monitors (Wortsman et al. 2023)")
    page.text(
        "At the last measurement (every 50 steps: step 250 of 300), on a fixed validation "
        "batch: the largest attention logit over blocks (left) and the mean log Z of the output "
        "logits (right), against the lr, at the largest width; the mean over seeds, diverged "
        "runs left out."
    )
    page.figure(plot_monitors(trials, s), "attention-logit growth and output-logit drift")


def _rows(analysis: Any, s: Any, names: dict) -> list[dict[str, Any]]:
    rows = []
    for g in analysis.groups:
        for p in g.points:
            rows.append(
                {
                    "variant": names[g.label],
                    s.field: p.value,
                    "log2 optimal lr [90%]": p.optimum.text("{:.2f}"),
                    "best loss": p.best_grid_loss,
                    "loss at transferred lr": p.loss_at_transfer,
                    "regret [90%]": p.regret_est.text("{:.3f}"),
                    "lr sensitivity": p.lr_sensitivity.text("{:.3f}"),
                    "lrs x seeds": f"{p.n_lrs} x {p.n_seeds}",
                }
            )
    return rows
