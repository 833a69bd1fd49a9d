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
from sizeup.cli.output import FORMAT, Output, Table
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
    fmt: str = FORMAT,
) -> None:
    """Run one training run and print a summary (and write OUT/result.json)."""
    from sizeup.train import run, run_distributed

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    output = Output(fmt)
    with optimizer_notes(rank == 0) as notes:
        result = run_distributed(cfg) if world > 1 else run(cfg, progress=not quiet)
    if rank != 0:
        return
    with output:
        output.table(summary_table(result, notes))
        output.data(result.to_dict())
        written = []
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            result.save(out / "result.json")
            written.append(out / "result.json")
            if result.diagnostics.get("spectral"):
                from sizeup.diagnostics.plots import plot_spectral

                plot_spectral(result.diagnostics["spectral"], out / "spectral.png")
                written.append(out / "spectral.png")
        output.wrote(*written)


@contextlib.contextmanager
def optimizer_notes(show: bool) -> Iterator[list[str]]:
    """What building the optimizer says, as plain lines on stderr (rank 0 only) instead of
    Python's file:line form: a DecayWarning (weight decay above 1% per step) as 'warning: ...',
    a BatchTransferWarning (lr, betas, eps moved by the batch transfer) as 'note: ...'. The
    transfer messages are also collected in the list it yields, for a summary."""
    from sizeup.optim import BatchTransferWarning, DecayWarning

    default = warnings.showwarning
    notes: list[str] = []

    def display(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: str | None = None,
    ) -> None:
        if issubclass(category, BatchTransferWarning):
            notes.append(str(message))
            if show:
                typer.echo(f"note: {message}", err=True)
        elif not issubclass(category, DecayWarning):
            default(message, category, filename, lineno, file, line)
        elif show:
            typer.echo(f"warning: {message}", err=True)

    with warnings.catch_warnings():
        warnings.simplefilter("default", DecayWarning)
        warnings.simplefilter("default", BatchTransferWarning)
        warnings.showwarning = display
        yield notes


@run_options()
def parametrize_cmd(
    cfg: RunConfig,
    table: bool = typer.Option(True, "--table/--no-table", help="Print the per-tensor table."),
    out: Path = typer.Option(None, "--out", help="Write parametrization.json here."),
    fmt: str = FORMAT,
) -> None:
    """Show the per-tensor scaling table (role, init std, multiplier, lr and wd multipliers)."""
    from sizeup.optim import tensor_table
    from sizeup.train import build

    with Output(fmt) as output:
        with optimizer_notes(True) as notes:
            built = build(cfg)
        p = built.parametrization
        # Each tensor's lr, betas, eps and decay per step as the optimizer holds them (the
        # same table function as the planner's per-layer table).
        doc = {
            "config": cfg.to_dict(),
            "header": run_header(cfg),
            "batch_transfer": notes,
            "tensors": tensor_table(p.rows(), built.optimizer),
        }
        output.line(run_header(cfg))
        if table:
            columns, rows, caption = p.table_cells()
            output.table(
                Table(
                    f"sizeup parametrization: rule={p.rule}",
                    columns,
                    rows,  # type: ignore[arg-type]
                    caption=caption,
                    right=tuple(columns[3:]),
                )
            )
        output.data(doc)
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            (out / "parametrization.json").write_text(json.dumps(doc, indent=2))
            output.wrote(out / "parametrization.json")


def run_header(cfg: RunConfig) -> str:
    """One line: width, base width, depth, rule and optimizer of the run."""
    depth = f"depth {cfg.depth}"
    if cfg.base_depth:
        depth += f" (base depth {cfg.base_depth})"
    return (
        f"{cfg.model}: width {cfg.width}, base width {cfg.base_width} "
        f"(x{cfg.width / cfg.base_width:g}), {depth}, rule {cfg.rule}, optimizer "
        f"{cfg.optimizer} (lr {cfg.lr:g})"
    )


def rule_settings(c: dict[str, Any]) -> str:
    """The parametrization's key settings in words: what the rule scales from and how."""
    if c["rule"] == "sp":
        return f"sp (the model as written), attention {c['attn_scale']}, init {c['init_std']}"
    parts = [
        f"{c['rule']} from base width {c['base_width']} (width x{c['width'] / c['base_width']:g})",
        f"init std {c['init_std']}",
        f"attention {c['attn_scale']}",
        "Adam eps per tensor" if c["scale_eps"] else "Adam eps fixed",
    ]
    parts += ["zero readout"] if c["zero_readout"] else []
    parts += ["zero query"] if c["zero_query"] else []
    if c.get("base_depth"):
        parts.append(f"depth scaling from base depth {c['base_depth']} (^-{c['depth_exponent']:g})")
    return ", ".join(parts)


def optimizer_settings(c: dict[str, Any]) -> str:
    """Optimizer, lr and the settings it reads, as given (the batch transfer row says if moved)."""
    text = f"{c['optimizer']} lr={c['lr']:g}, weight decay {c['weight_decay']:g}"
    if c["optimizer"] != "sgd":
        text += f", betas ({c['beta1']:g}, {c['beta2']:g}), eps {c['eps']:g}"
    if c["optimizer"] in ("sgd", "muon"):
        text += f", momentum {c['momentum']:g}"
    return text


def summary_table(r: Any, notes: list[str] | None = None) -> Table:
    """The run's summary: model, parametrization, optimizer (and what the batch transfer moved),
    sizes, losses and cost."""
    c = r.config
    t = Table("sizeup train: result", ["quantity", "value"], right=("value",))
    t.add("model", f"{c['model']} width={c['width']} depth={c['depth']}")
    t.add("parametrization", rule_settings(c))
    t.add("optimizer", optimizer_settings(c))
    batch = f"{c['batch_size']} per step"
    if c.get("base_batch_size"):
        batch += f" (base batch {c['base_batch_size']})"
    t.add("batch", batch)
    for note in notes or []:
        t.add("batch transfer", note.rsplit("): ", 1)[-1])
    t.add("params (non-embedding)", f"{r.params:,}")
    t.add("initial val loss", f"{r.initial_val_loss:.4f}")
    t.add("final train loss", f"{r.final_train_loss:.4f}")
    t.add("final val loss", f"{r.final_val_loss:.4f}")
    t.add("tokens", f"{r.tokens:,}")
    t.add("FLOPs (6ND)", f"{r.flops:.3g}")
    t.add("tokens/s", f"{r.tokens_per_s:,.0f}")
    t.add("wall time", f"{r.wall_time:.1f} s")
    t.add("diverged", (f"yes, at step {r.diverged_step}", "red") if r.diverged else "no")
    return t
