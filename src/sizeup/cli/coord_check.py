"""`sizeup coord-check`: a coordinate check with a verdict; exit code 1 when it fails (CI gate)."""

from __future__ import annotations

from pathlib import Path

import typer

from sizeup.cli.options import ints


def register(app: typer.Typer) -> None:
    """Add the `coord-check` command to the sizeup app."""
    app.command("coord-check")(coord_check_cmd)


def coord_check_cmd(
    model: str = typer.Option("mlp", help="mlp | gpt"),
    rule: str = typer.Option("mup", help="sp | mup | mup_simple | spectral"),
    optimizer: str = typer.Option("adamw", help="adamw | sgd | muon"),
    lr: float = typer.Option(
        None,
        help="Base lr (default per optimizer: adamw 1e-2, sgd 0.5 (MLP) / 0.1 (GPT), muon 2e-2).",
    ),
    widths: str = typer.Option(
        None,
        help="Increasing widths, comma-separated (default 64,128,256,512; GPT 128,256,512,1024).",
    ),
    steps: int = typer.Option(4, help="Training steps; t = 0..steps are recorded."),
    seeds: int = typer.Option(3, help="Seeds averaged per width."),
    out: Path = typer.Option(None, help="Write coord_check.json and coord_check.png here."),
    base_width: int = typer.Option(None, help="Base model width (default: smallest width)."),
    depth: int = typer.Option(2, help="Blocks (GPT) or hidden layers (MLP)."),
    n_head: int = typer.Option(4, help="GPT heads (fixed, so head_dim grows with width)."),
    attn_scale: str = typer.Option("1/d", help="GPT attention scale: 1/d | 1/sqrt(d)."),
    zero_readout: bool = typer.Option(None, help="Zero-init the readout (default: on for GPT)."),
    zero_query: bool = typer.Option(None, help="Zero-init queries (default: on for GPT)."),
    batch_size: int = typer.Option(None, help="Examples (MLP, 64) or sequences (GPT, 8)."),
    modules: str = typer.Option(None, help="Only these modules (comma-separated fnmatch)."),
    tolerance: float = typer.Option(0.1, help="Pass when |slope| <= tolerance."),
    noise_z: float = typer.Option(
        2.0,
        help="Fail only when outside the band by more than "
        "this many standard errors of the seed noise (0: strict).",
    ),
    scale_eps: bool = typer.Option(
        True,
        "--scale-eps/--no-scale-eps",
        help="Adam eps per tensor, following its gradient scale.",
    ),
    depths: str = typer.Option(None, help="Depth mode: depths, e.g. 2,4,8,16,32 (GPT)."),
    depth_scaling: bool = typer.Option(True, help="Depth mode: scale residual branches."),
    width: int = typer.Option(64, help="Depth mode: the fixed width."),
    threads: int = typer.Option(1, help="torch threads."),
    device: str = typer.Option("cpu", help="Where the models train: cpu | cuda | cuda:N."),
) -> None:
    """Train at several widths (or depths) and judge whether every activation stays flat."""
    from rich.console import Console

    from sizeup.diagnostics.coord_check import coord_check, depth_check

    console = Console()
    pkw = {
        k: v
        for k, v in (("zero_readout", zero_readout), ("zero_query", zero_query))
        if v is not None
    }
    pkw["scale_eps"] = scale_eps
    if depths:
        result = depth_check(
            model,
            rule,
            optimizer,
            lr,
            ints("depths", depths),
            steps,
            seeds,
            depth_scaling=depth_scaling,
            width=width,
            base_width=base_width,
            n_head=n_head,
            batch_size=batch_size,
            attn_scale=attn_scale,
            tolerance=tolerance,
            noise_z=noise_z,
            parametrize_kwargs=pkw,
            threads=threads,
            progress=True,
            device=device,
        )
    else:
        result = coord_check(
            model,
            rule,
            optimizer,
            lr,
            ints("widths", widths) if widths else None,
            steps,
            seeds,
            base_width=base_width,
            depth=depth,
            n_head=n_head,
            batch_size=batch_size,
            attn_scale=attn_scale,
            modules=modules.split(",") if modules else None,
            tolerance=tolerance,
            noise_z=noise_z,
            parametrize_kwargs=pkw,
            threads=threads,
            progress=True,
            device=device,
        )
    console.print(result.table())
    w = result.worst
    if w:
        console.print(
            f"worst: [bold]{w['module']}[/] ({w['kind']}) at t={w['step']}: "
            f"slope {w['slope'] if w['slope'] is None else round(w['slope'], 3)}"
        )
    noisy = [m.name for m in result.modules if m.noisy(result.judge_from)]
    if noisy:
        verb = "lies" if len(noisy) == 1 else "lie"
        console.print(
            f"[yellow]noisy[/]: {', '.join(noisy)} {verb} outside the band but within "
            f"{noise_z:g} standard errors of the seed noise; more --seeds settle it."
        )
    if out is not None:
        from sizeup.diagnostics.plots import plot_coord_check

        path = result.save(out)
        png = plot_coord_check(result, out / "coord_check.png")
        console.print(f"wrote {path} and {png}")
    if not result.passed:
        # SystemExit, not typer.Exit: sizeup.cli.main runs click with standalone_mode=False,
        # where click turns typer.Exit into a return value and the exit code would be lost.
        raise SystemExit(1)
