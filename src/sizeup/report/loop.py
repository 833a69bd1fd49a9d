"""The HTML page of `sizeup demo --axis plan` (sizeup.loop): the verdict in one sentence, the
score (loss predicted vs measured, the planned lr's regret and offset, the same for the fixed
-1/2 horizon exponent), the measured horizon exponent, the ladder and its fit, the target's
extrapolation, the target study's losses, and summary.json."""

from __future__ import annotations

import math
from typing import Any

from sizeup.report.html import Report
from sizeup.sweep.estimate import Estimate


def loop_page(summary: dict[str, Any]) -> Report:
    """The report of one loop (``summary``: what sizeup.loop.run_loop wrote)."""
    page = Report("sizeup demo: plan", "plan a bigger run from small ones, train it, score it")
    page.text(summary["verdict"], cls="lead")
    sc = summary["score"]
    plan, fixed = sc["plan"], sc["fixed_exponent"]
    page.heading("Score")
    page.table(
        [
            {
                "lr from": name,
                "peak lr": f"{row['lr']:.4g}",
                "horizon exponent": f"{row['data_exponent']:.3g}",
                "optimum offset (octaves)": Estimate.from_dict(
                    row["optimum_offset_octaves"]
                ).text(),
                "regret (nats)": Estimate.from_dict(row["regret"]).text("{:.4f}"),
                "measured loss": f"{row['measured_loss']:.4f}",
            }
            for name, row in (("the plan (measured exponent)", plan), ("fixed -1/2", fixed))
        ]
    )
    pi = plan["prediction_interval"]
    band = f"[{pi[0]:.4f}, {pi[1]:.4f}]" if pi else "none (no noise measured)"
    page.text(
        f"Predicted loss {plan['predicted_loss']:.4f}, 90% prediction interval {band}; "
        f"measured {plan['measured_loss']:.4f} ({plan['loss_error_pct']:+.2f}%, "
        f"{'inside' if plan['inside_interval'] else 'outside'} the interval). The offset is the "
        "measured optimum (a parabola in log2 lr over the seed-mean losses, its interval over "
        "seeds) minus the planned lr, in octaves; the regret is the planned lr's seed-mean loss "
        "minus the best measured lr's."
    )
    h = summary["horizon_exponent"]
    page.heading("Measured horizon exponent")
    page.text(
        f"alpha_data = {Estimate.from_dict(h['estimate']).text('{:.3f}')} from the steps study "
        f"({h['group']}, lengths {', '.join(f'{v:g}' for v in h['values'])} steps)."
    )
    t = summary["target"]
    page.heading("Target and extrapolation")
    page.text(
        f"{t['params']:,} parameters, {t['tokens']:.4g} tokens, {t['compute']:.3g} FLOPs = "
        f"{t['compute_over_ladder']:.1f}x the ladder's largest compute."
    )
    page.table([{k: _fmt(v) for k, v in r.items()} for r in t["extrapolation"]])
    page.heading("Ladder (WSD branches) and its approach-3 fit")
    page.table([{k: _fmt(v) for k, v in r.items()} for r in summary["ladder"]])
    f = summary["fit"]
    page.text(
        f"L = {f['E']:.4g} + {f['A']:.4g} / N^{f['alpha']:.4g} + {f['B']:.4g} / D^{f['beta']:.4g}"
        f" (log-loss noise sigma {f['noise']['sigma_log_loss']:.3g}, {f['noise']['dof']} dof)."
    )
    page.heading("Target study: loss per lr and seed")
    page.table(
        [
            {"lr": f"{lr:.4g}", **{f"seed {s}": _fmt(v) for s, v in zip(sc["seeds"], row)}}
            for lr, row in zip(sc["lrs"], sc["losses"])
        ]
    )
    page.json(summary, "summary.json")
    return page


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    if isinstance(v, list):
        return ", ".join(_fmt(x) for x in v)
    return str(v)
