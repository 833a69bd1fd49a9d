"""The HTML page of a transfer study (`sizeup demo --axis ...`): one sentence with the verdict
and its regret, the key figures with their intervals over seeds, the checks, the settings, the
loss-vs-lr curves side by side, the optimal lr against the axis, training curves, the
stability monitors, a table of every number, and the sizeup version and command that
reproduce it.

Figures that are bounds (an optimum beyond the lr grid) are shown as bounds (≤ / ≥), never as
values: everything goes through ``Estimate.text``. Cards are coloured by what their number
means (a large drift or a measurable regret is bad), never by which variant they belong to.
"""

from __future__ import annotations

import math
from typing import Any

from sizeup.report.html import Report
from sizeup.report.stability import plot_monitors
from sizeup.sweep.estimate import Estimate
from sizeup.sweep.plots import (
    loss_label,
    loss_unit,
    plot_lr_curves,
    plot_optimal_lr,
    plot_transfer_curves,
)

_HOW_TO_READ = (
    "Each number comes with its 90% interval over seeds in brackets (a bootstrap over seeds "
    "with the small-sample t correction, docs/transfer.md). '≤ x' / '≥ x' is a bound: the "
    "optimum lies beyond the lr grid there, so only a bound is known; an interval end written "
    "'≤' or '≥' reaches past the grid in some resamples. Green: a drift under half an octave "
    "or no measurable regret; red: a drift of an octave or more, or a regret above 0."
)
# A drift under half an octave (the lr off by less than a factor 1.4) costs little on a lr
# curve as wide as a transformer's; a full octave is a whole step of the demo's lr grid, where
# the transferred lr is visibly off its optimum.
DRIFT_OK = 0.5
DRIFT_BAD = 1.0
# How each axis names one of its values in a sentence.
_PHRASE = {
    "width": "width {}",
    "depth": "depth {}",
    "batch_size": "batch size {}",
    "steps": "{} steps",
}


def demo_page(
    analysis: Any, trials: list[Any], summary: dict, s: Any, names: dict[str, str]
) -> Report:
    """The report of one demo study (``s``: its DemoSettings; ``names``: group label -> the
    variant's name)."""
    opt = s.base.get("optimizer", "adamw")
    page = Report(f"sizeup demo: {s.axis}" + ("" if opt == "adamw" else f" with {opt}"))
    page.text(verdict_sentence(summary), cls="lead")
    page.text(s.question)
    page.text(_HOW_TO_READ)
    _cards(page, analysis, s, names)
    _checks(page, summary)
    _settings(page, trials, s, summary)
    _figures(page, analysis, trials, s, names)
    if s.axis == "stability":
        _stability(page, trials, s)
    page.heading("Numbers")
    page.table(_rows(analysis, s, names))
    _reproduce(page, summary)
    page.json(summary, "summary.json")
    return page


# --------------------------------------------------------------------------- the verdict
def value_phrase(field: str, value: Any) -> str:
    """'width 256', 'batch size 32', '800 steps'."""
    return _PHRASE.get(field, field + " {}").format(value)


def verdict_sentence(summary: dict) -> str:
    """One sentence from a demo's summary.json: what reusing the smallest value's lr at the
    largest costs under each variant, with its interval ("Reusing the lr tuned at width 32
    for width 256 costs 0.912 nats/token (90% interval 0.786 to 1.037) with SP and nothing
    measurable (90% interval 0 to 0.013) with muP."); for the stability study, the lr
    sensitivity at the largest width."""
    values = summary["settings"]["values"]
    unit = loss_unit(summary["settings"]["base"].get("model"))
    level = summary.get("interval", {}).get("level", 0.9)
    first, last = (value_phrase(summary["field"], v) for v in (values[0], values[-1]))
    stability = summary["axis"] == "stability"
    clauses = []
    for key, v in summary["variants"].items():
        g = summary[key]
        table = g["lr_sensitivity"] if stability else g["regret"]
        e = Estimate.from_dict(table.get(str(values[-1])) or {"value": None})
        text = _cost(e, unit, level) if g.get("enough") else "no verdict yet (too few trials)"
        clauses.append(f"{text} with {v['name']}")
    listed = _and(clauses)
    if stability:
        return f"At {last}, an lr off its optimum costs on average {listed} (lr sensitivity)."
    return f"Reusing the lr tuned at {first} for {last} costs {listed}."


def _cost(e: Estimate, unit: str, level: float) -> str:
    """A loss cost in words: 'at least 0.9 nats/token', 'nothing measurable (...)' (a value
    that rounds to 0 with an interval down to 0), '0.040 nats/token, not distinguishable from 0
    (...)', '0.088 nats/token (90% interval 0.050 to 0.120)'."""
    if not math.isfinite(e.value):
        return "an unknown amount"
    if e.bound == ">=":
        return f"at least {e.value:.3f} {unit} (the best lr lies beyond the grid)"
    if not e.has_interval:
        return f"{e.value:.3f} {unit} (one seed: no interval)"
    hi = ("≥ " if e.hi_open else "") + _small(e.hi)
    if e.lo <= 0 and e.hi <= 0 and not e.hi_open:
        return "nothing measurable (0 in every seed resample)"
    if e.lo <= 0 and e.value < 0.0005:
        return f"nothing measurable ({level:.0%} interval 0 to {hi})"
    if e.lo <= 0:
        return f"{e.value:.3f} {unit}, not distinguishable from 0 ({level:.0%} interval 0 to {hi})"
    return f"{e.value:.3f} {unit} ({level:.0%} interval {e.lo:.3f} to {hi})"


def _small(v: float) -> str:
    """Three decimals, or one significant digit under 0.001 (never '0.000' for a non-zero)."""
    return f"{v:.3f}" if v == 0 or abs(v) >= 0.001 else f"{v:.1g}"


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


# --------------------------------------------------------------------------- key figures
def drift_is_good(e: Estimate) -> bool | None:
    """True (green) when the whole interval lies under DRIFT_OK octaves, False (red) when it
    lies at or above DRIFT_BAD (a '≥' bound there included), None (no colour) in between."""
    if not math.isfinite(e.value):
        return None
    lo, hi = (e.lo, e.hi) if e.has_interval else (e.value, e.value)
    if e.bound == ">=":
        hi = math.inf
    if hi < DRIFT_OK and not e.hi_open:
        return True
    return False if lo >= DRIFT_BAD else None


def regret_is_good(e: Estimate) -> bool | None:
    """True (green) when no regret is measurable (the interval reaches 0, or a single seed's
    value is 0), False (red) when the interval lies above 0 (or a '≥' bound above 0)."""
    if not math.isfinite(e.value):
        return None
    if e.bound == ">=":
        return False if e.value > 0 else None
    lo = e.lo if e.has_interval else e.value
    return lo <= 0


def _cards(page: Report, analysis: Any, s: Any, names: dict) -> None:
    items: dict[str, Any] = {}
    good: dict[str, bool] = {}
    model = s.base.get("model")
    for g in analysis.groups:
        name, last = names[g.label], g.points[-1]
        if s.axis == "stability":
            items[f"{name}: lr sensitivity at {value_phrase(s.field, last.value)}"] = (
                last.lr_sensitivity.text("{:.3f}")
            )
            continue
        drift = f"{name}: optimal lr drift (octaves)"
        regret = f"{name}: regret at {value_phrase(s.field, last.value)} ({loss_unit(model)})"
        items[drift] = g.drift.text("{:.1f}") if g.enough else "no verdict"
        items[regret] = last.regret_est.text("{:.3f}")
        for key, ok in ((drift, drift_is_good(g.drift)), (regret, regret_is_good(last.regret_est))):
            if ok is not None and (g.enough or key == regret):
                good[key] = ok
    page.cards(items, good=good)


def _checks(page: Report, summary: dict) -> None:
    checks = summary["checks"]
    if not checks:
        page.text("Not enough finished trials for a verdict.", cls="bad")
        return
    words = summary.get("check_descriptions", {})
    page.heading("Checks (fixed before measuring)")
    page.bullets(
        [
            (f"{'pass' if ok else 'FAIL'}: {words.get(k, k.replace('_', ' '))}", ok)
            for k, ok in checks.items()
        ]
    )


# --------------------------------------------------------------------------- settings
def _settings(page: Report, trials: list[Any], s: Any, summary: dict) -> None:
    """What was trained: the fixed settings, then steps, batch and tokens per axis value."""
    page.heading("Settings")
    b = s.base
    lrs = sorted(s.lr_exps)
    fixed = {
        "model": _model_text(b, s.field),
        s.field: ", ".join(str(v) for v in s.values),
        "optimizer": f"{b.get('optimizer', 'adamw')}, {b.get('schedule', '')} schedule, "
        f"{b.get('warmup', 0)} warmup steps",
        "learning rates": f"2^{lrs[0]:g} ... 2^{lrs[-1]:g} ({len(lrs)} lrs)",
        "seeds": ", ".join(str(x) for x in s.seeds),
        "variants": "; ".join(f"{v.name}: {_fields_text(v.fields)}" for v in s.variants),
        # what the variants set is theirs (the base's qk_norm is not the stability study's)
        "other settings": _fields_text(
            {
                k: b[k]
                for k in ("rule", "attn_scale", "qk_norm", "z_loss", "eval_batches")
                if k in b and k not in s.variants[0].fields
            }
        ),
        "data": _data_text(trials),
        "loss": loss_label("loss", b.get("model")),
    }
    page.table([{"setting": k, "value": v} for k, v in fixed.items()])
    page.table(_per_value(trials, s))


def _model_text(b: dict, field: str) -> str:
    """'GPT, depth 2, head dim 32, base width 32, sequences of 64 tokens' (the axis omitted)."""
    parts = [str(b.get("model", "")).upper()]
    for key, word in (("depth", "depth"), ("width", "width"), ("head_dim", "head dim")):
        if key in b and key != field:
            parts.append(f"{word} {b[key]}")
    if "base_width" in b:
        parts.append(f"base width {b['base_width']}")
    if "seq_len" in b:
        parts.append(f"sequences of {b['seq_len']} tokens")
    return ", ".join(parts)


def _data_text(trials: list[Any]) -> str:
    data = {t.config.data.source for t in trials}
    if data == {"builtin"}:
        return "the built-in corpus (Shakespeare, byte-level tokens)"
    return ", ".join(sorted(data)) or "—"


def _fields_text(fields: dict[str, Any]) -> str:
    """'rule sp, base_depth none' (plain words, no Python reprs)."""

    def word(v: Any) -> str:
        if v is None:
            return "none"
        if isinstance(v, bool):
            return "on" if v else "off"
        return f"{v:g}" if isinstance(v, float) else str(v)

    return ", ".join(f"{k} {word(v)}" for k, v in fields.items()) or "none"


def _per_value(trials: list[Any], s: Any) -> list[dict[str, Any]]:
    """Steps, batch and tokens at each axis value, read off the trials that ran."""
    configs = {t.config.get(s.field): t.config for t in trials}
    rows = []
    for v in s.values:
        c = configs.get(v)
        if c is None:
            continue
        rows.append(
            {
                s.field: v,
                "steps": f"{c.schedule.steps:,}",
                "batch": f"{c.data.batch_size} x {c.tokens_per_sequence} tokens",
                "tokens per step": f"{c.tokens_per_step:,}",
                "tokens per run": f"{c.tokens_for(c.schedule.steps):,}",
            }
        )
    return rows


# --------------------------------------------------------------------------- figures
def _figures(page: Report, analysis: Any, trials: list[Any], s: Any, names: dict) -> None:

    ylabel = loss_label(analysis.metric, s.base.get("model"))
    page.heading("Loss against learning rate")
    page.text(
        "One panel per variant on shared axes, the rule off on the left; one curve per axis "
        "value (the mean over seeds; each seed as a faint dot); a star marks the optimum of a "
        "parabola fitted in log2(lr) around the best point, with its interval as a bar; a "
        "triangle at the edge of the grid, labelled ≤ or ≥, marks an optimum beyond it; "
        "crosses at the top are runs that diverged; the dashed line is the lr tuned on the "
        "smallest value."
    )
    page.figure(
        plot_lr_curves(analysis, labels=names, ylabel=ylabel), "loss vs lr, one panel per variant"
    )
    page.heading(f"Optimal learning rate against {s.field}")
    page.figure(plot_optimal_lr(analysis, labels=names), "intervals over seeds as bars")
    page.heading("Training curves at the transferred lr")
    page.figure(
        plot_transfer_curves(
            trials,
            analysis,
            labels=names,
            ylabel=f"training loss ({loss_unit(s.base.get('model'))}), running mean",
        ),
        "one panel per variant on shared axes; a line per seed",
    )


def _stability(page: Report, trials: list[Any], s: Any) -> None:

    page.heading("Stability monitors (Wortsman et al. 2023)")
    page.text(
        "At the last measurement (every 50 steps: step 250 of 300), on a fixed validation "
        "batch: the largest attention logit over blocks (left) and the mean log Z of the output "
        "logits (right), against the lr, at the largest width; the mean over seeds, diverged "
        "runs left out."
    )
    page.figure(plot_monitors(trials, s), "attention-logit growth and output-logit drift")


def _rows(analysis: Any, s: Any, names: dict) -> list[dict[str, Any]]:
    def loss(v: float) -> str:
        return f"{v:.3f}" if math.isfinite(v) else "—"

    rows = []
    for g in analysis.groups:
        for p in g.points:
            rows.append(
                {
                    "variant": names[g.label],
                    s.field: p.value,
                    "log2 optimal lr [90%]": p.optimum.text("{:.2f}"),
                    "best loss": loss(p.best_grid_loss),
                    "loss at transferred lr": loss(p.loss_at_transfer),
                    "regret [90%]": p.regret_est.text("{:.3f}"),
                    "lr sensitivity": p.lr_sensitivity.text("{:.3f}"),
                    "lrs x seeds": f"{p.n_lrs} x {p.n_seeds}",
                }
            )
    return rows


# --------------------------------------------------------------------------- reproduce
def _reproduce(page: Report, summary: dict) -> None:
    """The command, the version, what ran and for how long."""
    page.heading("Reproduce")
    command = summary.get("command")
    axis = summary["axis"]
    seeds = ",".join(str(x) for x in summary["settings"]["seeds"])
    if command:
        page.code(command)
    else:
        page.text(
            "These settings are not one of the shipped studies (run_demo(settings=...) from "
            f"Python: the settings above); the shipped study of this axis is "
            f"'sizeup demo --axis {axis} --seeds {seeds}'."
        )
    counts = summary["trials"]
    done = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
    page.text(
        f"sizeup {summary.get('sizeup_version', '?')} on {summary.get('machine') or 'unknown'}. "
        f"{sum(counts.values())} trials ({done}); the study ran for "
        f"{_wall(summary['wall_time_s'])} of wall time; this call ran "
        f"{summary['trials_run_now']} of them in {_wall(summary['wall_time_this_call_s'])}."
    )


def _wall(seconds: float) -> str:
    """'under a second', '42 s', '7.5 min', '2.3 h'."""
    if seconds < 1:
        return "under a second"
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"
