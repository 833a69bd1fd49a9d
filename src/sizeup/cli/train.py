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

from sizeup.choices import SCHEDULES, choices_help
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
    schedule: str = typer.Option(None, help=choices_help(SCHEDULES)),
    data: str = typer.Option(
        None, help="builtin | teacher | a text file | a .bin token file or dir."
    ),
    seed: int = typer.Option(None),
    out: Path = typer.Option(
        None, "--out", help="Directory for result.json (and checkpoints/ with checkpointing)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    fsdp: bool = typer.Option(False, "--fsdp", help="Shard with FSDP2 (under torchrun)."),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the model."),
    autocast: bool = typer.Option(False, "--bf16", help="bf16 autocast (weights stay fp32)."),
    checkpoint_every: int = typer.Option(
        0, "--checkpoint-every", help="Save the run's state every N steps (and at the end)."
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue from the newest checkpoint in OUT/checkpoints."
    ),
    keep: int = typer.Option(1, "--keep-checkpoints", help="Newest checkpoints kept (0: all)."),
    logs: list[str] = typer.Option(
        [],
        "--log",
        "--log-to",
        help="jsonl:FILE | tensorboard:DIR | wandb:PROJECT (repeatable; --log-to under "
        "torchrun, whose own --log-* options take --log).",
    ),
) -> None:
    """Run one training run and print a summary (and write OUT/result.json). Under torchrun:
    DDP, or FSDP2 with --fsdp. With --checkpoint-every (or --resume) the run saves its state in
    OUT/checkpoints and --resume continues a killed run from the newest one."""
    # flags that only switch a RunConfig field on (a config file's True is not undone)
    switched = {
        k: True for k, on in (("fsdp", fsdp), ("compile", compile_), ("autocast", autocast)) if on
    }
    if switched:
        cfg = cfg.replace(**switched)
    from sizeup.train import run, run_distributed
    from sizeup.train.distributed import launched

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    plan = _checkpointing(out, checkpoint_every, resume, keep)
    loggers = _loggers(logs, cfg, plan, out) if rank == 0 else []
    kw: dict[str, Any] = dict(progress=not quiet, loggers=loggers, checkpoint=plan)
    try:
        with _echo_decay_warnings(rank == 0):
            result = run_distributed(cfg, **kw) if world > 1 or launched() else run(cfg, **kw)
    finally:
        for lg in loggers:
            lg.close()
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


def _checkpointing(out: Path | None, every: int, resume: bool, keep: int) -> Any:
    """The run's Checkpointing (OUT/checkpoints), None without --checkpoint-every/--resume;
    a folder with another run's checkpoints is refused here, before any logger opens a file."""
    from sizeup.errors import ConfigError
    from sizeup.train import checkpoint
    from sizeup.train.loop import Checkpointing

    if every < 0:
        raise ConfigError("checkpoint_every", every, "a number of steps >= 0")
    if keep < 0:
        raise ConfigError("keep_checkpoints", keep, "a number >= 0 (0 keeps every checkpoint)")
    if not every and not resume:
        return None
    if out is None:
        flag = "resume" if resume else "checkpoint_every"
        raise ConfigError(
            flag, resume or every, "used with --out DIR (checkpoints: DIR/checkpoints)"
        )
    plan = Checkpointing(out / "checkpoints", every, resume, keep or None)
    if not resume:
        checkpoint.check_fresh(plan.directory)
    return plan


def _loggers(logs: list[str], cfg: Any, plan: Any, out: Path | None) -> list[Any]:
    """One logger per --log (all specs checked first); a resumed run logs on from its step."""
    from sizeup.train import checkpoint
    from sizeup.train.loggers import make_logger, parse_log

    for spec in logs:
        parse_log(spec)
    start = 0
    if plan is not None and plan.resume and (side := checkpoint.latest(plan.directory)):
        start = int(side.stem.split("_", 1)[1])
    return [make_logger(spec, cfg, start_step=start, directory=out) for spec in logs]


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
    t.add_row("step time", f"{r.step_time * 1e3:.1f} ms")
    mfu = f"{100 * r.mfu:.1f}% of {r.peak_flops:.3g} FLOP/s" if r.mfu == r.mfu else "unknown"
    t.add_row(f"MFU ({r.device_name or 'device'})", mfu)
    t.add_row("wall time", f"{r.wall_time:.1f} s")
    t.add_row("diverged", f"[red]yes, at step {r.diverged_step}[/red]" if r.diverged else "no")
    Console().print(t)
