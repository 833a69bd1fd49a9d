"""`sizeup sweep`, `sizeup transfer` and `sizeup demo`."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import typer

from sizeup.choices import EXECUTORS, choices_help
from sizeup.cli.options import writable
from sizeup.cli.output import FORMAT, Output, Table
from sizeup.errors import ConfigError, check_choice


def _fmt_lr(v: float) -> str:
    return "—" if not math.isfinite(v) else f"{v:.3g} (2^{math.log2(v):.1f})"


# --stack on `sizeup sweep` and `sizeup demo` (issue 24): off (1) by default until stacking's
# speed is measured side by side on a quiet machine.
STACK_HELP = (
    "Train up to N trials of one shape (lr, seed, betas, decay, schedule may differ) together "
    "as one stacked model; each stays its own trial. 1 (the default, until stacking's speed "
    "is measured): one at a time; 0: as many as fit in half the free memory (a trial's "
    "memory estimate), up to 8. AdamW, SGD and Muon stack; others run one at a time."
)


def register(app: typer.Typer) -> None:
    """Add the sweep, transfer and demo commands to the sizeup app."""
    app.command()(sweep)
    app.command()(transfer)
    app.command()(demo)


def sweep(
    spec: Path = typer.Argument(..., help="Sweep file (.yaml/.toml/.json): base, axes, zip."),
    store: Path = typer.Option(..., "--store", help="SQLite study file (created or resumed)."),
    executor: str = typer.Option("local", "--executor", help=choices_help(EXECUTORS)),
    workers: int = typer.Option(1, "--workers", help="Local worker processes (1: in process)."),
    address: str = typer.Option(None, "--address", help="Ray cluster address (ray only)."),
    ray_host: str = typer.Option(
        None, "--ray-host", help="Address a local Ray cluster listens on (default 127.0.0.1)."
    ),
    cpus_per_trial: float = typer.Option(1.0, "--cpus-per-trial", help="Ray CPUs per trial."),
    gpus_per_trial: float = typer.Option(0.0, "--gpus-per-trial", help="Ray GPUs per trial."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Run failed trials again."),
    requeue_running: bool = typer.Option(
        False, "--requeue-running", help="Queue every 'running' trial again, lease or not."
    ),
    wait: bool = typer.Option(
        True, "--wait/--no-wait", help="Wait for trials other drivers are running."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate and list trials only."),
    export: Path = typer.Option(
        None, "--export", help="Also write the table (.csv/.parquet); salvages a damaged store."
    ),
    logs: list[str] = typer.Option(
        [],
        "--log",
        help="Log every trial under its id: jsonl:DIR | tensorboard:DIR | wandb:PROJECT.",
    ),
    stack: int = typer.Option(1, "--stack", help=STACK_HELP),
) -> None:
    """Run or resume a study: every trial of SPEC ends done, diverged or failed in --store."""
    from sizeup.sweep import load_spec, run_sweep

    console = Output()  # lines only: plain off a terminal, never wrapped
    s = load_spec(spec)  # validated before anything runs
    check_choice("executor", executor, EXECUTORS)
    if export is not None and export.suffix.lower() not in (".csv", ".parquet"):
        raise ConfigError("export", str(export), "a path ending in .csv or .parquet")
    writable("export", export)
    writable("store", store)
    if dry_run:
        _list_trials(console, spec, s, workers)
        return
    if export is not None and _salvage_if_damaged(console, store, export):
        raise SystemExit(1)
    kw: dict = {}
    if executor == "ray":
        # checked (numbers, --ray-host, --address) by the executor, before the store is opened
        kw = dict(address=address, num_cpus=cpus_per_trial, num_gpus=gpus_per_trial, host=ray_host)
    elif address is not None or ray_host is not None:
        flag, value = ("address", address) if address is not None else ("ray_host", ray_host)
        raise ConfigError(flag, value, "used with --executor ray only")
    rep = run_sweep(
        s,
        store,
        executor=executor,
        workers=workers,
        retry_failed=retry_failed,
        requeue_running=requeue_running,
        wait=wait,
        log=logs,
        stack=stack,
        **kw,
    )
    console.line(
        f"ran {rep.ran} trials ({rep.skipped} already finished, "
        f"{rep.requeued} re-queued) in {rep.wall_time:.1f}s: {rep.counts}"
    )
    if export is not None:
        from sizeup.sweep import Store

        with Store(store, readonly=True) as st:
            console.wrote(st.export(export))
    _say_failures(console, rep)
    if rep.unfinished:
        console.line(
            (f"{rep.unfinished} trial(s) of this spec are unfinished", "red"),
            " (still queued or "
            "running in other drivers); run the same command again to finish them, or add "
            "--requeue-running if their drivers are gone",
        )
    # 1, not 2: the input was fine, the study is not complete (as with unfinished trials)
    if rep.unfinished or rep.failed:
        raise SystemExit(1)


SHOWN_FAILURES = 10  # failed trials listed one a line; the export has every one


def _say_failures(console: Output, rep: Any) -> None:
    """Which trials' workers died (and why) and which trials failed (id and the first line of
    the error), so a sweep that exits 1 says what to look at."""
    for tid, causes in rep.deaths.items():
        console.line(f"  trial {tid}: " + "; ".join(causes) + " (it ran again)")
    if not rep.failed:
        return
    console.line(
        (f"{len(rep.failed)} trial(s) of this spec failed", "red"),
        ": `--retry-failed` runs them again; `--export OUT.csv` has each one's whole error",
    )
    for tid, error in list(rep.failed.items())[:SHOWN_FAILURES]:
        console.line(f"  {tid}: {error}")
    if len(rep.failed) > SHOWN_FAILURES:
        console.line(f"  ... and {len(rep.failed) - SHOWN_FAILURES} more")


def _list_trials(console: Output, path: Path, s: Any, workers: int) -> None:
    """The trials, their count, and an estimate of the wall time (a few steps timed here)."""
    from sizeup.sweep.driver import estimate_wall_time

    trials = s.trials()
    varied = list(s.axes) + [k for group in s.zips for k in group]
    for c in trials:
        point = ", ".join(f"{k}={c.get(k)}" for k in varied) or "base"
        console.line(f"  {c.trial_id()}  {point}")
    console.line(f"{len(trials)} trials in {path}")
    try:
        estimate = estimate_wall_time(trials, workers=workers)
    except Exception as e:  # noqa: BLE001 - a dry run validates; the estimate is a bonus
        console.line(f"no wall-time estimate: timing a few steps failed ({e})")
        return
    console.line(estimate.text())


def _salvage_if_damaged(console: Output, store: Path, export: Path) -> bool:
    """With --export on a damaged store (any damage Store.damage finds: the open's check or a
    row that does not decode): write what is readable, say what was lost; True then."""
    from sizeup.sweep import Store

    if not store.is_file():
        return False
    with Store(store, readonly=True, check=False) as st:
        why = st.damage()
        if why is None:
            return False
        console.line((why, "red"))
        path = st.export(export, salvage=True)
        console.line(
            f"salvaged into {path}: the trials that could be read "
            f"({st.unreadable} row(s) unreadable); nothing was run"
        )
    return True


def transfer(
    study: Path = typer.Argument(..., help="Study file written by `sizeup sweep`."),
    axis: str = typer.Option("width", "--axis", help="Scaled axis: width, depth, ..."),
    lr_field: str = typer.Option("lr", "--lr-field", help="The tuned hyperparameter."),
    group_by: str = typer.Option(
        None, "--group-by", help="Comma-separated fields (default: auto)."
    ),
    level: float = typer.Option(0.9, "--level", help="Interval level (bootstrap over seeds)."),
    plot: Path = typer.Option(None, "--plot", help="Write the loss-vs-lr figure (PNG)."),
    # 0.1's file option, hidden: `--format json` prints the same document (one name per
    # concept: JSON output is --format's)
    json_out: Path = typer.Option(None, "--json", hidden=True),
    fmt: str = FORMAT,
) -> None:
    """Optimal lr per width (or depth, batch, steps) with intervals over seeds, its drift in
    octaves and the regret. Exits 1 without a verdict (too few finished trials)."""
    from sizeup.sweep.transfer import analyze_transfer

    if not study.exists():
        raise ConfigError("study", str(study), "an existing study file written by sweep")
    writable("plot", plot)
    writable("json", json_out)
    groups = [g.strip() for g in group_by.split(",")] if group_by else None
    rep = analyze_transfer(study, axis=axis, lr_field=lr_field, group_by=groups, level=level)
    output = Output(fmt)
    with output:
        output.line(f"study: {rep.progress()}")
        for g in rep.groups:
            output.table(_group_table(g, axis, rep.level))
            output.line(*_verdict_line(g, axis))
        _paired_line(output, rep.groups)
        output.data(rep.to_dict())
        written = []
        if plot is not None:
            _plot(rep, study, plot)
            written.append(plot)
        if json_out is not None:
            json_out.write_text(json.dumps(rep.to_dict(), indent=2))
            written.append(json_out)
        output.wrote(*written)
    if not rep.enough:
        raise SystemExit(1)


def _plot(rep: Any, study: Path, path: Path) -> None:
    """The loss-vs-lr figure as in the demo report: the rule-off group left, the loss named
    with its unit (per token, or per example for the MLP)."""
    from dataclasses import replace

    from sizeup.figures import pyplot
    from sizeup.sweep.plots import loss_label, plot_lr_curves, rule_off_first
    from sizeup.sweep.store import Store

    with Store(study, readonly=True) as st:
        models = {t.config.model.name for t in st.trials()}
    model = models.pop() if len(models) == 1 else None
    fig = plot_lr_curves(
        replace(rep, groups=rule_off_first(rep.groups)), ylabel=loss_label(rep.metric, model)
    )
    fig.savefig(path, dpi=110, bbox_inches="tight")
    pyplot().close(fig)


def _fmt_opt(p: Any) -> str:
    """The optimal lr: a value ('0.0039 (2^-8.0)') or a bound ('≤ 0.000488 (2^-11.0)')."""
    e = p.optimum
    if not math.isfinite(e.value):
        return "—"
    sign = {"=": "", "<=": "≤ ", ">=": "≥ "}[e.bound]
    return sign + _fmt_lr(2.0**e.value)


def _group_table(g: Any, axis: str, level: float) -> Table:
    """One group: the optimal lr with its interval, best loss, regret, lr sensitivity per value."""
    seeds = f"{g.n_seeds} seed{'s' * (g.n_seeds != 1)}"
    head = f"drift {g.drift.text()} octaves" if g.enough else "no verdict"
    cols = [axis, "optimal lr", f"log2 lr* [{level:.0%}]", "best loss", "regret", "lr sens."]
    t = Table(
        f"{g.label}: {head} ({seeds}); transferred lr {_fmt_lr(g.transfer_grid_lr)}",
        cols + ["lrs x seeds"],
        right=tuple(cols),
    )
    for p in g.points:
        t.add(
            str(p.value),
            _fmt_opt(p),
            p.optimum.text("{:.2f}"),
            "—" if math.isnan(p.best_grid_loss) else f"{p.best_grid_loss:.4f}",
            p.regret_est.text("{:.3f}"),
            p.lr_sensitivity.text("{:.3f}", interval=False),
            f"{p.n_lrs} x {p.n_seeds}",
        )
    return t


def _paired_line(output: Output, groups: list[Any]) -> None:
    """With two groups: how much more one drifts than the other, paired over seed resamples."""
    from sizeup.sweep.transfer import drift_difference

    if len(groups) != 2 or not all(g.enough for g in groups):
        return
    a, b = sorted(groups, key=lambda g: -g.drift.value)
    d = drift_difference(a, b)
    if math.isfinite(d.value):
        output.line(f"{a.label} drifts {d.text()} octaves more than {b.label} (paired)")


def _verdict_line(g: Any, axis: str) -> tuple[Any, ...]:
    if not g.enough:
        return ((f"no verdict for {g.label}", "red"), f": {g.reason}")
    share = g.largest_is_best_share
    extra = f" (in {share:.0%} of the seed resamples)" if math.isfinite(share) else ""
    return (f"largest {axis} is best at the transferred lr: {g.largest_is_best}{extra}",)


def demo(
    axis: str = typer.Option(
        "width",
        "--axis",
        help="width | depth | batch | steps | stability | critical-batch: what grows; plan: the "
        "whole loop (proxy, steps study, ladder, fit, plan, the planned run trained and scored).",
    ),
    out: Path = typer.Option(
        None,
        "--out",
        help="Folder for report.html, summary.json and the study (default: sizeup-demo, "
        "sizeup-demo-AXIS for the other axes, -OPTIMIZER appended for one other than adamw).",
    ),
    quick: bool = typer.Option(False, "--quick", help="The smaller study (< 10 min on 2 cores)."),
    seeds: str = typer.Option(
        None, "--seeds", help="Comma-separated seeds (default 0,1,2), e.g. 3,4,5."
    ),
    workers: int = typer.Option(2, "--workers", help="Worker processes (one thread each)."),
    stack: int = typer.Option(1, "--stack", help=STACK_HELP),
    optimizer: str = typer.Option(
        "adamw",
        "--optimizer",
        help="The study's optimizer (a registered name); its lr grid is centred on the "
        "optimizer's typical lr.",
    ),
    optimizers: str = typer.Option(
        None,
        "--optimizers",
        help="critical-batch only: comma-separated optimizers (default adamw,muon and, where "
        "registered, dion,scion,soap).",
    ),
) -> None:
    """Does the lr tuned small stay optimal big? One axis, the rule on and off, with seeds:
    optimal lr per value with intervals, drift, regret (report.html, summary.json). With
    --axis critical-batch: steps to a target loss against batch size per optimizer, and
    B_crit of each (McCandlish et al. 2018)."""
    from rich.console import Console

    from sizeup.critbatch import AXIS as CRITICAL_BATCH
    from sizeup.demo import AXES, run_demo, settings_for
    from sizeup.loop import AXIS as LOOP_AXIS
    from sizeup.registry import optimizer_names
    from sizeup.report.transfer import verdict_sentence
    from sizeup.sweep.estimate import Estimate

    check_choice("axis", axis, (*AXES, CRITICAL_BATCH, LOOP_AXIS))
    check_choice("optimizer", optimizer, optimizer_names())
    if axis in (CRITICAL_BATCH, LOOP_AXIS) and stack != 1:
        raise ConfigError("stack", stack, f"1 with --axis {axis} (its runs are not stacked)")
    if axis == CRITICAL_BATCH:
        if optimizer != "adamw":
            raise ConfigError(
                "optimizer",
                optimizer,
                "unset with --axis critical-batch (it compares --optimizers)",
            )
        _demo_critical_batch(out, quick, workers, seeds, optimizers)
        return
    if optimizers is not None:
        raise ConfigError(
            "optimizers",
            optimizers,
            "unset unless --axis critical-batch (the other axes take one --optimizer)",
        )
    if axis == LOOP_AXIS:
        if optimizer != "adamw":
            raise ConfigError("optimizer", optimizer, "unset with --axis plan (its runs use AdamW)")
        _loop(out, quick, workers, seeds)
        return
    seed_list = _parse_seeds(seeds)
    suffix = "" if optimizer == "adamw" else f"-{optimizer}"
    out = (
        out
        if out is not None
        else Path(("sizeup-demo" if axis == "width" else f"sizeup-demo-{axis}") + suffix)
    )
    writable("out", out, folder=True)
    summary = run_demo(
        out,
        quick=quick,
        workers=workers,
        axis=axis,
        seeds=seed_list,
        optimizer=optimizer,
        stack=stack,
    )
    c = Console()
    s = settings_for(axis, quick, optimizer)
    c.print(verdict_sentence(summary), markup=False, highlight=False, soft_wrap=True)
    for key, v in summary["variants"].items():
        g = summary[key]
        if axis == "stability":
            sens = Estimate.from_dict(g["lr_sensitivity"][str(s.values[-1])])
            c.print(
                f"{v['name']}: lr sensitivity at {s.field} {s.values[-1]}: {sens.text('{:.3f}')}"
            )
            continue
        drift = Estimate.from_dict(g["drift_octaves"]).text()
        regret = Estimate.from_dict(g["regret_at_largest"]).text("{:.3f}")
        c.print(f"{v['name']}: optimal lr drifts {drift} octaves; regret at the largest {regret}")
    for k, ok in summary["checks"].items():
        c.print(f"{'pass' if ok else '[red]FAIL[/]'}: {k}")
    c.print(
        f"wrote {out / 'report.html'} and {out / 'summary.json'} "
        f"(the study ran {summary['wall_time_s']:.0f} s)"
    )


def _demo_critical_batch(
    out: Path | None, quick: bool, workers: int, seeds: str | None, optimizers: str | None
) -> None:
    """`sizeup demo --axis critical-batch`: run the study, print B_crit per optimizer."""
    from rich.console import Console

    from sizeup.critbatch import parse_optimizers, run_critical_batch

    names = parse_optimizers(optimizers)
    seed_list = _parse_seeds(seeds)
    out = out if out is not None else Path("sizeup-demo-critical-batch")
    writable("out", out, folder=True)
    summary = run_critical_batch(
        out, quick=quick, workers=workers, optimizers=names, seeds=seed_list
    )
    c = Console()
    c.print(summary["sentence"], markup=False, highlight=False, soft_wrap=True)
    c.print(f"target: {summary['target_rule']}", markup=False, highlight=False, soft_wrap=True)
    c.print(
        f"wrote {out / 'report.html'} and {out / 'summary.json'} "
        f"(the study ran {summary['wall_time_s']:.0f} s)"
    )


def _loop(out: Path | None, quick: bool, workers: int, seeds: str | None) -> None:
    """`sizeup demo --axis plan`: the loop (sizeup.loop), its verdict and where it wrote."""
    from dataclasses import replace

    from rich.console import Console

    from sizeup.loop import run_loop, settings_for

    out = out if out is not None else Path("sizeup-demo-plan")
    writable("out", out, folder=True)
    mode = "quick" if quick else "full"
    s = settings_for(mode)
    seed_list = _parse_seeds(seeds)
    if seed_list is not None:  # a seed set: the studies' and the target's seeds
        s = replace(s, seeds=seed_list, target_seeds=seed_list)
    summary = run_loop(out, mode, settings=s if seed_list is not None else None, workers=workers)
    c = Console()
    c.print(summary["verdict"], markup=False, highlight=False, soft_wrap=True)
    c.print(f"wrote {out / 'report.html'} and {out / 'summary.json'}")


def _parse_seeds(text: str | None) -> list[int] | None:
    """'3,4,5' -> [3, 4, 5]; distinct integers."""
    if text is None:
        return None
    try:
        seeds = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError("seeds", text, "comma-separated integers, e.g. 3,4,5") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError("seeds", text, "distinct comma-separated integers, e.g. 3,4,5")
    return seeds
