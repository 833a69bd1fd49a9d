"""`sizeup wsd`: WSD cooldown branches per model size -> points.csv -> isoFLOP approach-2 fit."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from sizeup.cli.options import ints, run_options
from sizeup.config import RunConfig


def register(app: typer.Typer) -> None:
    """Add `wsd` to the app."""
    app.command("wsd")(wsd_cmd)


@run_options()
def wsd_cmd(
    cfg: RunConfig,
    widths: str = typer.Option("64,96,128,192", help="Model widths (one stable run each)."),
    steps: str = typer.Option("60,120,240", help="Total steps of each cooldown branch."),
    decay_frac: float = typer.Option(0.2, help="Cooldown fraction of each branch."),
    cooldown: str = typer.Option("1-sqrt", help="linear | 1-sqrt | exponential"),
    out: Path = typer.Option(
        Path("wsd"), "--out", help="Directory for points.csv, fit.json, plots."
    ),
    save_trunk: Path = typer.Option(
        None, "--save-trunk", help="Checkpoint each trunk at its branch points (DIR/width_W)."
    ),
) -> None:
    """Train one WSD trunk per width with cooldown branches; fit approach 2 on the isoFLOPs."""
    import numpy as np
    import pandas as pd

    from sizeup.errors import SizeupError
    from sizeup.train.wsd import wsd_study

    pts = wsd_study(
        cfg,
        ints("widths", widths),
        ints("steps", steps),
        decay_frac=decay_frac,
        cooldown=cooldown,
        progress=True,
        save_dir=save_trunk,
    )
    out.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame([p.to_dict() for p in pts])
    df.to_csv(out / "points.csv", index=False)
    typer.echo(f"wrote {out / 'points.csv'} ({len(df)} branch points)")
    ok = df[np.isfinite(df["loss"])]
    try:
        from sizeup.laws.chinchilla import fit_approach2, isoflop_from_curves
        from sizeup.laws.plots import plot_isoflops

        N, D, L, C = isoflop_from_curves(
            ok["params"].to_numpy(float),
            ok["tokens"].to_numpy(float),
            ok["loss"].to_numpy(float),
        )
        fit = fit_approach2(N, D, L, C=C)
    except SizeupError as e:
        typer.secho(f"no approach-2 fit from these points: {e}", fg=typer.colors.YELLOW)
        return
    (out / "fit.json").write_text(json.dumps(fit.to_dict(), indent=2, default=float))
    plot_isoflops(fit, out / "isoflops.png")
    typer.echo(f"N_opt ~ C^{fit.a:.3f}, D_opt ~ C^{fit.b:.3f}; wrote {out / 'fit.json'}")
