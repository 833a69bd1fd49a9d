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
        kw = dict(address=address, num_cpus=cpus_per_trial, num_gpus=gpus_per_trial, host=ray_host)
    rep = run_sweep(
        s,
        store,
        executor=executor,
        workers=workers,
        retry_failed=retry_failed,
        requeue_running=requeue_running,
        wait=wait,
        log=logs,
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
    if rep.unfinished:
        console.line(
            (f"{rep.unfinished} trial(s) of this spec are unfinished", "red"),
            " (still queued or "
            "running in other drivers); run the same command again to finish them, or add "
            "--requeue-running if their drivers are gone",
        )
        raise SystemExit(1)


def _list_trials(console: Output, path: Path, s: Any, workers: int) -> None:
    """The trials, their count, and an estimate of the wall time (a few steps timed here)."""
    from sizeup.sweep.driver import estimate_wall_time

    trials = s.trials()
    varied = list(s.axes) + [k for group in s.zips for k in group]
    for c in trials:
        point = ", ".join(f"{k}={getattr(c, k)}" for k in varied) or "base"
        console.line(f"  {c.trial_id()}  {point}")
    console.line(f"{len(trials)} trials in {path}")
    try:
        estimate = estimate_wall_time(trials, workers=workers)
    except Exception as e:  # noqa: BLE001 - a dry run validates; the estimate is a bonus
        console.line(f"no wall-time estimate: timing a few steps failed ({e})")
        return
    console.line(estimate.text())


def _salvage_if_damaged(console: Output, store: Path, export: Path) -> bool:
    """With --export on a damaged store: write what is readable, say what was lost; True then."""
    from sizeup.errors import StoreError
    from sizeup.sweep import Store

    if not store.is_file():
        return False
    try:
        Store(store, readonly=True).close()
        return False
    except StoreError as e:
        console.line((str(e), "red"))
    with Store(store, readonly=True, check=False) as st:
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
    plot: Path = typer.Option(None, "--plot", help="Write the loss-vs-lr figure (PNG)."),
    json_out: Path = typer.Option(None, "--json", help="Write the full analysis as JSON."),
    fmt: str = FORMAT,
) -> None:
    """Optimal lr per width (or depth, batch, steps), its drift in octaves and the regret."""
    from sizeup.sweep.transfer import analyze_transfer

    if not study.exists():
        raise ConfigError("study", str(study), "an existing study file written by sweep")
    writable("plot", plot)
    writable("json", json_out)
    groups = [g.strip() for g in group_by.split(",")] if group_by else None
    output = Output(fmt)
    rep = analyze_transfer(study, axis=axis, lr_field=lr_field, group_by=groups)
    with output:
        for g in rep.groups:
            output.table(_transfer_table(g, axis))
            output.line(f"largest {axis} is best at the transferred lr: {g.largest_is_best}")
        output.data(rep.to_dict())
        written = []
        if plot is not None:
            from sizeup.sweep.plots import plot_lr_curves

            plot_lr_curves(rep).savefig(plot, dpi=110, bbox_inches="tight")
            written.append(plot)
        if json_out is not None:
            json_out.write_text(json.dumps(rep.to_dict(), indent=2))
            written.append(json_out)
        output.wrote(*written)


def _transfer_table(g: Any, axis: str) -> Table:
    """One group of the transfer analysis: the optimal lr, losses and regret per axis value."""
    t = Table(
        f"{g.label}: drift {g.drift_octaves:.2f} octaves, transferred lr "
        f"{_fmt_lr(g.transferred_lr)}",
        [axis, "optimal lr", "best loss", "loss @ transferred", "regret", "edge"],
        right=(axis, "optimal lr", "best loss", "loss @ transferred", "regret"),
    )
    for p in g.points:
        t.add(
            str(p.value),
            _fmt_lr(p.opt_lr),
            f"{p.best_grid_loss:.4f}",
            f"{p.loss_at_transfer:.4f}",
            f"{p.regret:.4f}",
            "yes" if p.at_edge else "",
        )
    return t


def demo(
    out: Path = typer.Option(
        Path("sizeup-demo"), "--out", help="Folder for report.html, summary.json and the study."
    ),
    quick: bool = typer.Option(False, "--quick", help="About 3 minutes instead of 6-10."),
    workers: int = typer.Option(2, "--workers", help="Worker processes (one thread each)."),
) -> None:
    """SP vs muP on the built-in corpus: does the optimal lr hold as width grows 8x?"""
    from rich.console import Console

    from sizeup.demo import run_demo

    summary = run_demo(out, quick=quick, workers=workers)
    c = Console()
    c.print(f"SP:  optimal lr drifts {summary['sp']['drift_octaves']:.2f} octaves")
    c.print(
        f"muP: optimal lr drifts {summary['mup']['drift_octaves']:.2f} octaves; "
        f"widest is best at the transferred lr: {summary['mup']['widest_is_best']}"
    )
    c.print(
        f"wrote {out / 'report.html'} and {out / 'summary.json'} in {summary['wall_time_s']:.0f}s"
    )
