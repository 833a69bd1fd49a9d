"""`sizeup wsd`: WSD cooldown branches per model width -> points.csv -> a compute-optimal fit.

Each width trains one stable trunk with a cooldown branch per step count (sizeup.train.wsd),
the widths in parallel worker processes (the sweep's executor, one torch thread each). Each
width's loss is interpolated along its branches to common compute budgets (isoFLOP profiles)
and approach 2 fits the profiles' minima. When no budget brackets its minimum (the narrowest or
the widest width wins everywhere), approach 3 is fitted on the branch points instead, said so,
and its optimum says which widths and steps would bracket it.
"""

from __future__ import annotations

import functools
import json
import math
import os
from pathlib import Path
from typing import Any

import typer

from sizeup.cli.options import ints, run_options, writable
from sizeup.cli.output import Output
from sizeup.config import RunConfig
from sizeup.errors import DataError, SizeupError
from sizeup.registry import get_model

# The documented example, measured to bracket the compute-optimal width on the built-in corpus
# (docs/laws.md, "WSD isoFLOPs"): a family of tiny GPTs (head_dim 8, muP from base width 8 at
# lr 0.01), whose narrow members saturate within a few thousand steps. The command's own
# RunConfig defaults, under any config file, flag or --set.
WSD_DEFAULTS = {"head_dim": 8, "base_width": 8, "lr": 0.01, "cooldown": "1-sqrt"}
DEFAULT_WIDTHS = "8,16,24,32"
DEFAULT_STEPS = "160,320,640,1280,2560"


def register(app: typer.Typer) -> None:
    """Add `wsd` to the app."""
    app.command("wsd")(wsd_cmd)


@run_options(exclude=("steps", "schedule"), defaults=WSD_DEFAULTS)
def wsd_cmd(
    cfg: RunConfig,
    widths: str = typer.Option(DEFAULT_WIDTHS, help="Model widths (one stable run each)."),
    steps: str = typer.Option(DEFAULT_STEPS, help="Total steps of each cooldown branch."),
    workers: int = typer.Option(
        None, help="Widths trained at once (default: one process per core, at most one per width)."
    ),
    out: Path = typer.Option(
        Path("wsd"), "--out", help="Directory for points.csv, fit.json and the plot."
    ),
    save_trunk: Path = typer.Option(
        None, "--save-trunk", help="Checkpoint each trunk at its branch points (DIR/width_W)."
    ),
) -> None:
    """Train one WSD trunk per width with cooldown branches; fit the compute-optimal size.

    The defaults are the measured example that brackets the optimum in minutes on 2 cores.
    They train tiny GPTs (head_dim 8, base width 8, lr 0.01) of widths 8 to 32. Each branch
    cools down over --decay-frac of its steps in the --cooldown shape (the run's schedule
    fields).
    """
    import pandas as pd

    from sizeup.train.wsd import branch_schedules

    writable("out", out, folder=True)
    ws, totals = ints("widths", widths), ints("steps", steps)
    configs = [cfg.replace(width=w) for w in ws]  # every width checked before any training
    decay_frac, cooldown = cfg.schedule.decay_frac, cfg.schedule.cooldown
    branch_schedules(cfg, totals, decay_frac, cooldown)
    output = Output()
    points = _train(configs, totals, decay_frac, cooldown, workers, output, save_trunk)
    out.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(points).sort_values(["width", "steps"])
    df.to_csv(out / "points.csv", index=False)
    output.line(f"{len(df)} branch points ({len(ws)} widths x {len(set(totals))} step counts)")
    written = _fit(df, cfg, out, output)
    output.wrote(out / "points.csv", *written)


# ----------------------------------------------------------------------------- training


def _trunk_dir(root: Path | None, cfg: RunConfig) -> Path | None:
    """Where --save-trunk keeps one width's trunk checkpoints (ROOT/width_W)."""
    return None if root is None else Path(root) / f"width_{cfg.model.width}"


def _train(
    configs: list[RunConfig],
    totals: list[int],
    decay_frac: float,
    cooldown: str,
    workers: int | None,
    output: Output,
    save_trunk: Path | None = None,
) -> list[dict[str, Any]]:
    """Every width's branch points: in this process (one worker), else one worker process per
    width at a time through the sweep's LocalExecutor, widest first."""
    from sizeup.train.wsd import branch_run, wsd_branches

    n = min(workers or os.cpu_count() or 1, len(configs))
    if n <= 1:
        return [
            p.to_dict()
            for c in configs
            for p in wsd_branches(
                c,
                totals,
                decay_frac=decay_frac,
                cooldown=cooldown,
                progress=True,
                save_dir=_trunk_dir(save_trunk, c),
            )
        ]
    from sizeup.progress import Progress
    from sizeup.sweep.executors import LocalExecutor

    runner = functools.partial(
        branch_run,
        total_steps=totals,
        decay_frac=decay_frac,
        cooldown=cooldown,
        save_root=save_trunk,
    )
    output.line(f"training {len(configs)} widths, {n} at a time (one process per core)", err=True)
    points: list[dict[str, Any]] = []
    widest_first = sorted(configs, key=lambda c: -c.model.width)
    with Progress("WSD widths", len(configs)) as bar:
        for event in LocalExecutor(workers=n).run(widest_first, runner):
            if event[0] != "end":
                continue
            cfg, result, error, seconds = event[1:]
            if error is not None:
                raise SizeupError(f"WSD branches of width {cfg.model.width} failed: {error}")
            points += result.diagnostics["wsd_points"]
            bar.advance(1, info=f"width {cfg.model.width} done in {seconds:.0f}s")
    return points


# ----------------------------------------------------------------------------- the fit


def _fit(df: Any, cfg: RunConfig, out: Path, output: Output) -> list[Path]:
    """Approach 2 on isoFLOP profiles interpolated from the branches; approach 3 on the branch
    points when no budget brackets its minimum. Returns the files written."""
    import numpy as np

    from sizeup.laws.chinchilla import fit_approach2, isoflop_from_curves
    from sizeup.laws.plots import plot_isoflops

    ok = df[np.isfinite(df["loss"])]
    if ok.empty:  # points.csv is written: the runs are kept, only the fit has nothing to fit
        raise DataError(
            f"no branch point has a finite validation loss ({out / 'points.csv'}): every "
            "branch diverged, or the data has no validation split (val_frac > 0, or val.bin)"
        )
    N, D, L = (ok[k].to_numpy(float) for k in ("params", "tokens", "loss"))
    try:
        iso = isoflop_from_curves(N, D, L, budgets=common_budgets(N, D))
        fit = fit_approach2(*iso[:3], C=iso[3])
    except SizeupError as e:
        return _fallback(ok, cfg, out, output, str(e))
    (out / "fit.json").write_text(json.dumps(fit.to_dict(), indent=2, default=float))
    png = plot_isoflops(fit, out / "isoflops.png")
    output.line(
        f"approach 2 on {len(fit.C)} isoFLOP budgets with a bracketed minimum: "
        f"N_opt ~ C^{fit.a:.3f}, D_opt ~ C^{fit.b:.3f}"
    )
    return [out / "fit.json", png]


def common_budgets(N: Any, D: Any, n: int = 8, least: int | None = None) -> Any:
    """``n`` compute budgets, evenly spaced in log, over the range where at least ``least``
    model sizes' branches reach (fewer where none does; default: the PROFILE_SIZES approach 2
    needs): the budgets an isoFLOP profile can bracket, none wasted where one size alone was
    trained."""
    import numpy as np

    from sizeup.laws.chinchilla import PROFILE_SIZES

    least = PROFILE_SIZES if least is None else least
    sizes = np.unique(N)
    lo = np.array([6 * s * D[N == s].min() for s in sizes])
    hi = np.array([6 * s * D[N == s].max() for s in sizes])
    grid = np.geomspace(lo.min(), hi.max(), 256)
    cover = ((grid[:, None] >= lo) & (grid[:, None] <= hi)).sum(axis=1)
    for k in range(min(least, sizes.size), 0, -1):
        ok = grid[cover >= k]
        if ok.size >= 2:
            return np.geomspace(ok.min(), ok.max(), n)
    return np.geomspace(lo.min(), hi.max(), n)


def _fallback(ok: Any, cfg: RunConfig, out: Path, output: Output, reason: str) -> list[Path]:
    """Approach 3 on the branch points, said so, and which widths and steps would bracket the
    optimum (from approach 3's N_opt, else from where the profiles' minima sit)."""
    from sizeup.laws import plots
    from sizeup.laws.chinchilla import fit_approach3

    output.warning(f"no approach-2 fit: {reason}")
    output.line(_where_minima_sit(ok))
    N, D, L = (ok[k].to_numpy(float) for k in ("params", "tokens", "loss"))
    try:
        fit = fit_approach3(N, D, L)
    except SizeupError as e:
        output.warning(f"no approach-3 fit either: {e}")
        return []
    payload = {**fit.to_dict(), "fallback": f"approach 3 on the branch points: {reason}"}
    (out / "fit.json").write_text(json.dumps(payload, indent=2, default=float))
    png = plots.plot_approach3(fit, N, D, L, out / "approach3.png")
    output.line(
        f"fell back to approach 3 (L = E + A/N^alpha + B/D^beta) on the {len(L)} branch "
        f"points: alpha {fit.law.alpha:.3f}, beta {fit.law.beta:.3f}, N_opt ~ C^{fit.law.a:.3f}"
    )
    output.line(_suggestion(ok, cfg, fit.law))
    return [out / "fit.json", png]


def _profiles(ok: Any) -> list[tuple[float, list[float], int]]:
    """(budget, the widths covering it, index of the lowest loss) per isoFLOP budget."""
    import numpy as np

    from sizeup.laws.chinchilla import isoflop_from_curves

    N, D, L = (ok[k].to_numpy(float) for k in ("params", "tokens", "loss"))
    width_of = dict(zip(ok["params"].to_numpy(float), ok["width"]))
    try:
        Ni, _, Li, Ci = isoflop_from_curves(N, D, L)
    except SizeupError:
        return []
    out = []
    for c in np.unique(Ci):
        sel = np.flatnonzero(Ci == c)
        sel = sel[np.argsort(Ni[sel])]
        out.append((float(c), [width_of[n] for n in Ni[sel]], int(np.argmin(Li[sel]))))
    return out


def _where_minima_sit(ok: Any) -> str:
    """Which width wins the isoFLOP budgets that several widths cover."""
    shared = [(c, ws, i) for c, ws, i in _profiles(ok) if len(ws) >= 2]
    if not shared:
        return (
            "no compute budget is covered by two widths' branches: widen the step range so "
            "that narrow widths' long branches reach the wide widths' short ones"
        )
    narrowest = all(i == 0 for _, _, i in shared)
    widest = all(i == len(ws) - 1 for _, ws, i in shared)
    if narrowest:
        return (
            "the narrowest width has the lowest loss at every shared budget: the optimum is "
            "narrower (or the narrow widths need longer branches)"
        )
    if widest:
        return (
            "the widest width has the lowest loss at every shared budget: the optimum is "
            "wider (or the wide widths need shorter branches)"
        )
    from sizeup.laws.chinchilla import PROFILE_SIZES

    return f"the minimum sits inside too few budgets (each needs {PROFILE_SIZES}+ widths around it)"


def bracketing_widths(w_opt: float, cfg: RunConfig) -> list[int]:
    """The widths to try around ``w_opt``: PROFILE_SIZES of them (what approach 2 needs per
    budget, sizeup.laws.chinchilla), doublings centred on it, multiples of the head size and
    no narrower than the base width. Where the floor merges the narrow ones (an optimum below
    the base), the list goes on doubling upwards, so it never names fewer sizes than approach
    2 needs."""
    from sizeup.laws.chinchilla import PROFILE_SIZES

    unit = cfg.model.head_dim if get_model(cfg.model.name).heads else 1
    floor = max(unit, cfg.parametrization.base_width)
    half = (PROFILE_SIZES - 1) / 2
    factors = [2.0 ** (k - half) for k in range(PROFILE_SIZES)]
    widths = sorted({max(floor, unit * round(w_opt * f / unit)) for f in factors})
    while len(widths) < PROFILE_SIZES:
        widths.append(2 * widths[-1])
    return widths


def _suggestion(ok: Any, cfg: RunConfig, law: Any) -> str:
    """Widths around approach 3's N_opt at the grid's middle budget, and steps that put their
    branches on budgets 4x either side of it."""
    import numpy as np

    C = 6.0 * ok["params"].to_numpy(float) * ok["tokens"].to_numpy(float)
    mid = math.sqrt(C.min() * C.max())
    n_opt, _ = law.optimal(mid)
    pairs = ok.groupby("width")["params"].first()
    # width from N along the trained widths (log-log, extrapolated straight)
    slope, icpt = np.polyfit(np.log(pairs.to_numpy(float)), np.log(pairs.index.to_numpy(float)), 1)
    w_opt = math.exp(icpt + slope * math.log(n_opt))
    widths = bracketing_widths(w_opt, cfg)
    n_of = [math.exp((math.log(w) - icpt) / slope) for w in widths]
    tokens = cfg.tokens_per_step
    lo = max(1, round(mid / 4 / (6 * n_of[-1] * tokens)))
    hi = max(lo * 4, round(mid * 4 / (6 * n_of[0] * tokens)))
    steps = sorted({int(float(f"{x:.2g}")) for x in np.geomspace(lo, hi, 5)})
    return (
        f"approach 3 puts the optimum at N_opt ~ {n_opt:.3g} parameters (about width "
        f"{w_opt:.0f}) at C = {mid:.3g} FLOPs; to bracket it with approach 2 try --widths "
        f"{','.join(map(str, widths))} --steps {','.join(map(str, steps))}"
    )
