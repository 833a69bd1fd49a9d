"""`sizeup train` and `sizeup parametrize`: one run, or the per-tensor table, from flags or a config
file (the option groups in sizeup.cli.options)."""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from sizeup.choices import RUN_SCHEDULES, choices_help
from sizeup.cli.options import run_options
from sizeup.config import RunConfig


def register(app: typer.Typer) -> None:
    """Add `train` and `parametrize` to the app."""
    app.command("train")(train_cmd)
    app.command("parametrize")(parametrize_cmd)


@run_options("steps", "batch_size", "schedule", "data", "seed")
def train_cmd(
    cfg: RunConfig,
    steps: int = typer.Option(None, help="Optimizer steps."),
    batch_size: int = typer.Option(None, help="Sequences (GPT) or examples (MLP) per step."),
    schedule: str = typer.Option(None, help=choices_help(RUN_SCHEDULES)),
    data: str = typer.Option(
        None, help="builtin | teacher | a text file | a .bin token file or dir."
    ),
    seed: int = typer.Option(None),
    out: Path = typer.Option(None, "--out", help="Directory for result.json."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Run one training run and print a summary (and write OUT/result.json)."""
    from sizeup.train import run, run_distributed

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    with _echo_decay_warnings(rank == 0):
        result = run_distributed(cfg) if world > 1 else run(cfg, progress=not quiet)
    if rank != 0:
        return
    _print_summary(result)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        result.save(out / "result.json")
        typer.echo(f"wrote {out / 'result.json'}")
        if result.diagnostics.get("spectral"):
            from sizeup.diagnostics.plots import plot_spectral

            plot_spectral(result.diagnostics["spectral"], out / "spectral.png")
            typer.echo(f"wrote {out / 'spectral.png'}")


@contextlib.contextmanager
def _echo_decay_warnings(show: bool) -> Iterator[None]:
    """Print the optimizer's DecayWarning (weight decay above 1% per step) as one plain
    'warning: ...' line on stderr, on rank 0 only, instead of Python's file:line form."""
    from sizeup.optim import DecayWarning

    default = warnings.showwarning

    def display(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: str | None = None,
    ) -> None:
        if not issubclass(category, DecayWarning):
            default(message, category, filename, lineno, file, line)
        elif show:
            typer.echo(f"warning: {message}", err=True)

    with warnings.catch_warnings():
        warnings.simplefilter("default", DecayWarning)
        warnings.showwarning = display
        yield


@run_options()
def parametrize_cmd(
    cfg: RunConfig,
    table: bool = typer.Option(True, "--table/--no-table", help="Print the per-tensor table."),
    markdown: bool = typer.Option(False, "--markdown", help="Print the table as Markdown."),
    out: Path = typer.Option(None, "--out", help="Write parametrization.json here."),
) -> None:
    """Show the per-tensor scaling table (role, init std, multiplier, lr and wd multipliers)."""
    from sizeup.optim import tensor_table
    from sizeup.train import build

    built = build(cfg)
    p = built.parametrization
    if markdown:
        typer.echo(p.to_markdown())
    elif table:
        p.print_table()
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        # Each tensor's lr, betas, eps and decay per step as the optimizer holds them (the
        # same table function as the planner's per-layer table).
        rows = tensor_table(p.rows(), built.optimizer)
        (out / "parametrization.json").write_text(
            json.dumps({"config": cfg.to_dict(), "tensors": rows}, indent=2)
        )
        typer.echo(f"wrote {out / 'parametrization.json'}")


def _print_summary(r: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="sizeup train: result", show_header=False)
    t.add_column("k")
    t.add_column("v", justify="right")
    c = r.config
    t.add_row("model", f"{c['model']} width={c['width']} depth={c['depth']} rule={c['rule']}")
    t.add_row("optimizer", f"{c['optimizer']} lr={c['lr']:g}")
    t.add_row("params (non-embedding)", f"{r.params:,}")
    t.add_row("initial val loss", f"{r.initial_val_loss:.4f}")
    t.add_row("final train loss", f"{r.final_train_loss:.4f}")
    t.add_row("final val loss", f"{r.final_val_loss:.4f}")
    t.add_row("tokens", f"{r.tokens:,}")
    t.add_row("FLOPs (6ND)", f"{r.flops:.3g}")
    t.add_row("tokens/s", f"{r.tokens_per_s:,.0f}")
    t.add_row("wall time", f"{r.wall_time:.1f} s")
    t.add_row("diverged", f"[red]yes, at step {r.diverged_step}[/red]" if r.diverged else "no")
    Console().print(t)
