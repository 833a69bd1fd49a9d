"""`sizeup demo`: what muP buys you, on one screen, on a laptop CPU.

A width sweep (4 widths spanning 8x) x an lr grid (powers of two), once in standard
parametrization (SP) and once in muP, on the built-in Shakespeare corpus with a small GPT and
Adam. Then the transfer analysis: under SP the optimal lr slides down as the model widens, so
an lr tuned small is wrong big; under muP it stays put, and the widest model is the best one
at the lr tuned on the smallest. The settings below were chosen by experiment (docs/sweeps.md).
"""

from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sizeup.sweep.executors import Runner


@dataclass
class DemoSettings:
    """What the demo sweeps: widths x lr exponents (log2) x {sp, mup} on a small GPT."""

    widths: list[int] = field(default_factory=lambda: [32, 64, 128, 256])
    lr_exps: list[float] = field(default_factory=lambda: [-11, -10, -9, -8, -7, -6, -5])
    base: dict[str, Any] = field(
        default_factory=lambda: dict(
            model="gpt",
            depth=2,
            head_dim=32,
            base_width=32,
            seq_len=64,
            batch_size=16,
            # a constant lr after a short warmup: a cooldown (wsd) flattens SP's curves at the
            # wide end and hides part of its drift (docs/sweeps.md)
            steps=300,
            warmup=10,
            schedule="constant",
            optimizer="adamw",
            # head_dim is fixed, so width grows by adding heads and the attention scale does not
            # change with width: both rules use the usual 1/sqrt(d_head), and at the base width
            # SP and muP are the very same model (their curves coincide at width 32)
            attn_scale="1/sqrt(d)",
            # QK-norm: without it single runs of the wider models scatter by ~0.1 nats from seed
            # to seed (attention-logit blow-ups), which drowns the width effect (docs/sweeps.md)
            qk_norm=True,
            eval_batches=8,
            seed=0,
            threads=1,
        )
    )

    def spec(self) -> dict[str, Any]:
        """The sweep spec: the grid crossed with the two rules."""
        return {
            "name": "demo",
            "base": self.base,
            "axes": {
                "width": self.widths,
                "lr": [2.0**e for e in self.lr_exps],
                "rule": ["sp", "mup"],
            },
        }


FULL = DemoSettings()
QUICK = DemoSettings(
    lr_exps=[-11, -10, -9, -8, -7, -6], base={**DemoSettings().base, "batch_size": 8}
)


def run_demo(
    out: str | Path,
    quick: bool = False,
    workers: int = 2,
    settings: DemoSettings | None = None,
    runner: Runner | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the SP-vs-muP width sweep, analyse transfer, write report.html and summary.json."""
    from sizeup.sweep import Store, SweepSpec, run_sweep
    from sizeup.sweep.transfer import analyze_transfer

    s = settings or (QUICK if quick else FULL)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    spec = SweepSpec.from_dict(s.spec())
    t0 = time.perf_counter()
    # the study lives next to the report, so an interrupted demo resumes where it stopped
    db = out / ("demo-quick.db" if quick and settings is None else "demo.db")
    rep = run_sweep(
        spec, db, workers=workers, runner=runner, progress=progress, order="largest_first"
    )
    ids = {c.trial_id() for c in spec.trials()}
    with Store(db) as st:
        df = st.to_dataframe(curves=True)
    df = df[df["id"].isin(ids)]  # only this spec's trials, should the file hold others
    analysis = analyze_transfer(
        df.drop(columns=["steps", "train_loss", "val_steps", "val_loss"], errors="ignore"),
        axis="width",
        group_by=["rule"],
    )
    analysis.groups.sort(key=lambda g: g.group["rule"] != "sp")  # SP left, muP right
    wall = time.perf_counter() - t0
    summary = _summary(analysis, s, rep, wall, quick)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    _report(analysis, df, summary).write(out / "report.html")
    return summary


def _group_summary(g: Any) -> dict[str, Any]:
    return {
        "drift_octaves": g.drift_octaves,
        "optimal_lr": {str(p.value): p.opt_lr for p in g.points},
        "best_loss": {str(p.value): p.best_grid_loss for p in g.points},
        "transferred_lr": g.transferred_lr,
        "transfer_grid_lr": g.transfer_grid_lr,
        "loss_at_transferred_lr": {str(p.value): p.loss_at_transfer for p in g.points},
        "regret": {str(p.value): p.regret for p in g.points},
        "max_regret": g.max_regret,
        "widest_is_best": g.largest_is_best,
        "optimum_at_grid_edge": g.edge_warning,
    }


def _summary(analysis: Any, s: DemoSettings, rep: Any, wall: float, quick: bool) -> dict:
    from sizeup.config import json_safe

    sp, mup = _group_summary(analysis.group(rule="sp")), _group_summary(analysis.group(rule="mup"))
    checks = {
        "mup_drift_at_most_1_octave": bool(mup["drift_octaves"] <= 1.0),
        "sp_drift_at_least_2_octaves": bool(sp["drift_octaves"] >= 2.0),
        "mup_widest_is_best": bool(mup["widest_is_best"]),
    }
    return json_safe(
        {
            "sp": sp,
            "mup": mup,
            "checks": checks,
            "all_checks_pass": all(checks.values()),
            "quick": quick,
            "settings": asdict(s),
            "trials": rep.counts,
            "trials_run_now": rep.ran,
            "wall_time_s": wall,
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        }
    )


def _report(analysis: Any, df: Any, summary: dict) -> Any:
    from sizeup.report import Report
    from sizeup.sweep.plots import plot_curves, plot_lr_curves, plot_optimal_lr

    sp, mup, checks = summary["sp"], summary["mup"], summary["checks"]
    widths = summary["settings"]["widths"]
    page = Report(
        "sizeup demo: what muP buys you",
        f"A {summary['settings']['base']['model'].upper()} on the built-in corpus, "
        f"widths {widths} ({widths[-1] // widths[0]}x), an lr grid in powers of two, "
        "Adam, trained once in standard parametrization (SP) and once in muP. "
        "Tune the lr on the smallest model, use it on the widest: does it still work?",
    )
    page.cards(
        {
            "SP: optimal lr drift (octaves)": sp["drift_octaves"],
            "muP: optimal lr drift (octaves)": mup["drift_octaves"],
            "muP: widest is best at the transferred lr": mup["widest_is_best"],
            "SP: loss lost at the widest (regret)": sp["regret"][str(widths[-1])],
            "muP: loss lost at the widest (regret)": mup["regret"][str(widths[-1])],
        },
        good={
            "SP: optimal lr drift (octaves)": checks["sp_drift_at_least_2_octaves"],
            "muP: optimal lr drift (octaves)": checks["mup_drift_at_most_1_octave"],
            "muP: widest is best at the transferred lr": checks["mup_widest_is_best"],
        },
    )
    verdict = (
        "All three checks pass."
        if summary["all_checks_pass"]
        else "Not every check passes on this run: "
        + ", ".join(k for k, v in checks.items() if not v)
        + " failed."
    )
    page.text(verdict, cls="ok" if summary["all_checks_pass"] else "bad")
    page.heading("Loss against learning rate")
    page.text(
        "One curve per width; stars mark the optimum from a parabola fitted in log2(lr) "
        "around the best grid point; crosses at the top are runs that diverged; the "
        "dashed line is the lr tuned on the smallest width."
    )
    page.figure(plot_lr_curves(analysis), "loss vs lr: SP (left) and muP (right)")
    page.heading("Optimal learning rate against width")
    page.figure(plot_optimal_lr(analysis), "SP's optimum slides; muP's stays")
    page.heading("Training curves at the transferred lr")
    for rule in ("sp", "mup"):
        g = analysis.group(rule=rule)
        if math.isfinite(g.transfer_grid_lr) and "train_loss" in df:
            page.figure(
                plot_curves(df, {"rule": rule}, g.transfer_grid_lr),
                f"{rule}: train loss at lr={g.transfer_grid_lr:g}",
            )
    page.heading("Numbers")
    rows = []
    for g in analysis.groups:
        for p in g.points:
            rows.append(
                {
                    "rule": g.group["rule"],
                    "width": p.value,
                    "optimal lr": p.opt_lr,
                    "log2 optimal lr": math.log2(p.opt_lr) if p.opt_lr > 0 else math.nan,
                    "best loss": p.best_grid_loss,
                    "loss at transferred lr": p.loss_at_transfer,
                    "regret": p.regret,
                    "optimum at grid edge": p.at_edge,
                }
            )
    page.table(rows)
    page.text(
        f"{sum(summary['trials'].values())} trials ({summary['trials']}); "
        f"{summary['trials_run_now']} run now in {summary['wall_time_s']:.0f} s."
    )
    page.json(summary, "summary.json")
    return page
