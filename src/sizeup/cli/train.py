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

from sizeup.cli.options import run_options, writable
from sizeup.cli.output import FORMAT, Output, Table
from sizeup.config import RunConfig
from sizeup.registry import get_optimizer


def register(app: typer.Typer) -> None:
    """Add `train` and `parametrize` to the app."""
    app.command("train")(train_cmd)
    app.command("parametrize")(parametrize_cmd)


@run_options()
def train_cmd(
    cfg: RunConfig,
    out: Path = typer.Option(
        None, "--out", help="Directory for result.json (and checkpoints/ with checkpointing)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
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
    fmt: str = FORMAT,
) -> None:
    """Run one training run and print a summary (and write OUT/result.json). Every RunConfig
    field is an option (grouped by section below), or comes from --config FILE or --set. Under
    torchrun: DDP, or FSDP2 with --fsdp. With --checkpoint-every (or --resume) the run saves its
    state in OUT/checkpoints and --resume continues a killed run from the newest one."""
    from sizeup.train import run, run_distributed
    from sizeup.train.distributed import launched

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    writable("out", out, folder=True)  # before any step: the result must have somewhere to go
    plan = _checkpointing(out, checkpoint_every, resume, keep)
    loggers = _loggers(logs, cfg, plan, out) if rank == 0 else []
    kw: dict[str, Any] = dict(progress=not quiet, loggers=loggers, checkpoint=plan)
    output = Output(fmt)
    try:
        with optimizer_notes(rank == 0) as notes:
            result = run_distributed(cfg, **kw) if world > 1 or launched() else run(cfg, **kw)
    finally:
        for lg in loggers:
            lg.close()
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

    writable("out", out, folder=True)
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
    m, p = cfg.model, cfg.parametrization
    depth = f"depth {m.depth}"
    if p.base_depth:
        depth += f" (base depth {p.base_depth})"
    return (
        f"{m.name}: width {m.width}, base width {p.base_width} (x{m.width / p.base_width:g}), "
        f"{depth}, rule {p.rule}, optimizer {cfg.optimizer.name} (lr {cfg.optimizer.lr:g})"
    )


def rule_settings(cfg: RunConfig) -> str:
    """The parametrization's key settings in words: what the rule scales from and how."""
    m, p = cfg.model, cfg.parametrization
    if p.rule == "sp":
        return f"sp (the model as written), attention {m.attn_scale}, init {p.sigma}"
    parts = [
        f"{p.rule} from base width {p.base_width} (width x{m.width / p.base_width:g})",
        f"init std {p.sigma}",
        f"attention {m.attn_scale}",
        "Adam eps per tensor" if p.scale_eps else "Adam eps fixed",
    ]
    parts += ["Table 8 readout"] if p.readout_form == "table8" else []
    parts += [name.replace("_", " ") for name in _ZEROS if getattr(p, name)]
    if p.base_depth:
        parts.append(f"depth scaling from base depth {p.base_depth} (^-{p.depth_exponent:g})")
    return ", ".join(parts)


_ZEROS = ("zero_readout", "zero_query", "zero_router")


def optimizer_settings(cfg: RunConfig) -> str:
    """Optimizer, lr and the settings it reads (its registry entry), as given (the batch
    transfer row says if any moved)."""
    o = cfg.optimizer
    reads = get_optimizer(o.name).reads
    text = f"{o.name} lr={o.lr:g}, weight decay {o.weight_decay:g}"
    if "beta1" in reads:
        text += f", betas ({o.beta1:g}, {o.beta2:g})"
    if "eps" in reads:
        text += f", eps {o.eps:g}"
    if "momentum" in reads:
        text += f", momentum {o.momentum:g}"
    if "dion_rank" in reads:  # Dion
        text += f", rank {o.dion_rank:g} of min(fan_out, fan_in)"
    return text


def batch_settings(cfg: RunConfig, world_size: int = 1) -> str:
    """'64 per step (4 micro-batches of 16; base batch 32)': the full batch of an optimizer
    step, the forward/backward passes each rank takes for it (gradient accumulation) and the
    base batch the batch transfer starts from."""
    d = cfg.data
    notes = []
    local = d.batch_size // max(1, world_size)
    if d.micro_batch_size and d.micro_batch_size < local:
        ranks = f" on each of {world_size} ranks" if world_size > 1 else ""
        notes.append(f"{local // d.micro_batch_size} micro-batches of {d.micro_batch_size}{ranks}")
    if cfg.optimizer.base_batch_size:
        notes.append(f"base batch {cfg.optimizer.base_batch_size}")
    return f"{d.batch_size} per step" + (f" ({'; '.join(notes)})" if notes else "")


def summary_table(r: Any, notes: list[str] | None = None) -> Table:
    """The run's summary: model, parametrization, optimizer (and what the batch transfer moved),
    sizes, losses and cost."""
    cfg = RunConfig.from_dict(r.config)
    m = cfg.model
    t = Table("sizeup train: result", ["quantity", "value"], right=("value",))
    t.add("model", f"{m.name} width={m.width} depth={m.depth}")
    t.add("parametrization", rule_settings(cfg))
    t.add("optimizer", optimizer_settings(cfg))
    t.add("batch", batch_settings(cfg, r.world_size))
    for note in notes or []:
        t.add("batch transfer", note.rsplit("): ", 1)[-1])
    t.add("params (non-embedding)", f"{r.params:,}")
    t.add("initial val loss", f"{r.initial_val_loss:.4f}")
    t.add("final train loss", f"{r.final_train_loss:.4f}")
    t.add("final val loss", f"{r.final_val_loss:.4f}")
    t.add("tokens", f"{r.tokens:,}")
    t.add("FLOPs (6ND)", f"{r.flops:.3g}")
    t.add("tokens/s", f"{r.tokens_per_s:,.0f}")
    t.add("step time", f"{r.step_time * 1e3:.1f} ms")
    mfu = f"{100 * r.mfu:.1f}% of {r.peak_flops:.3g} FLOP/s" if r.mfu == r.mfu else "unknown"
    t.add(f"MFU ({r.device_name or 'device'})", mfu)
    t.add("wall time", f"{r.wall_time:.1f} s")
    t.add("diverged", (f"yes, at step {r.diverged_step}", "red") if r.diverged else "no")
    return t
