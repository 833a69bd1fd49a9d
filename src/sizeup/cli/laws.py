"""`sizeup fit ...` (Chinchilla approaches 1-3, HP laws, critical batch, downstream,
data-constrained) and `sizeup flops`. Each fit writes DIR/fit.json and PNG plots."""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path
from typing import Any

import typer

from sizeup.choices import HOLDOUTS, RESAMPLES, choices_help
from sizeup.cli.options import field_parameters, take_fields, writable
from sizeup.cli.output import FORMAT, Output, Table
from sizeup.config import ModelSpec
from sizeup.errors import ConfigError, SizeupError, check_choice
from sizeup.plan.records import PLAN_MODEL, ShapeRule

fit_app = typer.Typer(
    help="Fit scaling laws to run data (CSV, Parquet, JSON or a sizeup study).",
    no_args_is_help=True,
)

_DATA = typer.Argument(..., help="A .csv, .parquet, .json/.jsonl file or a sizeup study (.db).")
_OUT = typer.Option(
    None,
    "--out",
    help="Directory for fit.json and the plots (default: fit-KIND, e.g. fit-chinchilla).",
    show_default=False,
)


def _out(out: Path | None, kind: str) -> Path:
    """The output folder: the one given, else ./fit-KIND; checked before any work."""
    folder = out if out is not None else Path(f"fit-{kind}")
    writable("out", folder, folder=True)
    return folder


def _write(out: Path, payload: dict[str, Any]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "fit.json"
    path.write_text(json.dumps(_clean(payload), indent=2, allow_nan=False))
    return path


def _clean(x: Any) -> Any:
    """JSON-safe: numpy scalars to floats, tuples to lists, NaN/inf to None."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _table(title: str, rows: list[tuple[str, str]]) -> Table:
    """A quantity/value table."""
    return Table(title, ["quantity", "value"], [list(r) for r in rows])


def _finish(
    output: Output, payload: dict[str, Any], path: Path, pngs: list[Path], warnings: Any = ()
) -> None:
    """The fit's warnings, the JSON document (--format json) and every file written."""
    for w in warnings:
        output.warning(w)
    output.data(_clean(payload))
    output.wrote(path, *pngs)


def _iv(d: dict[str, Any], key: str) -> str:
    iv = d.get(key)
    return "" if iv is None else f"  [{iv[0]:.4g}, {iv[1]:.4g}]"


@fit_app.command("chinchilla")
def fit_chinchilla(
    data: Path = _DATA,
    approach: int = typer.Option(
        3, "--approach", help="1: loss envelope, 2: isoFLOP minima, 3: parametric L(N, D)."
    ),
    params_col: str = typer.Option(None, "--params-col", help="Column with parameter counts N."),
    tokens_col: str = typer.Option(None, "--tokens-col", help="Column with training tokens D."),
    flops_col: str = typer.Option(
        None, "--flops-col", help="Column with compute C (then D = C / 6N)."
    ),
    loss_col: str = typer.Option(None, "--loss-col", help="Column with the final loss."),
    weights_col: str = typer.Option(
        None,
        "--weights-col",
        help="Approach 3: column of point weights (a weight of 2 counts a run twice).",
    ),
    drop_highest: int = typer.Option(
        0, "--drop-highest", help="Drop the K highest-loss points first (explicit outlier rule)."
    ),
    bootstrap: int = typer.Option(
        0, "--bootstrap", help="Bootstrap resamples for intervals (e.g. 1000)."
    ),
    resample: str = typer.Option(
        "auto",
        "--resample",
        help="Approach 3 bootstrap: "
        + choices_help(RESAMPLES)
        + " (auto: points with 10+ runs per parameter, else parametric).",
    ),
    holdout: str = typer.Option(
        "none",
        "--holdout",
        help=choices_help(HOLDOUTS)
        + ": refit without the largest compute budget and check its prediction.",
    ),
    tie_exponents: bool = typer.Option(
        False, "--tie-exponents", help="Approach 3 with beta = alpha (Gadre et al. 2024)."
    ),
    delta: float = typer.Option(
        1e-3, "--delta", help="Huber threshold on log-loss residuals (approach 3)."
    ),
    method: str = typer.Option("parabola", "--method", help="Approach 2: parabola | akima."),
    window: int = typer.Option(
        None, "--window", help="Approach 2 parabola: points either side of each minimum."
    ),
    log_loss: bool = typer.Option(
        False, "--log-loss", help="Approach 2 parabola: fit log L instead of L."
    ),
    compute: list[float] = typer.Option(
        None, "--compute", help="Budgets C for derived quantities (repeatable)."
    ),
    level: float = typer.Option(0.9, "--level", help="Confidence level of the intervals."),
    seed: int = typer.Option(0, "--seed"),
    include_diverged: bool = typer.Option(
        False, "--include-diverged", help="Studies: keep diverged trials."
    ),
    out: Path = _OUT,
    fmt: str = FORMAT,
) -> None:
    """Chinchilla fits: approach 1 (envelope), 2 (isoFLOPs) or 3 (L = E + A/N^a + B/D^b)."""
    from sizeup.laws import chinchilla as ch
    from sizeup.laws.io import load_table, points

    output = Output(fmt)
    out = _out(out, "chinchilla")
    if approach not in (1, 2, 3):
        raise ConfigError("approach", approach, "1, 2 or 3")
    check_choice("holdout", holdout, HOLDOUTS)
    df = load_table(data, include_diverged=include_diverged)
    N, D, L, C = points(df, params_col, tokens_col, flops_col, loss_col)
    weights = _weights(df, weights_col, approach)
    left_out = None
    if approach != 3 and drop_highest:
        N0, L0, C0 = N, L, C
        N, D, L, dropped = ch.drop_highest(N, D, L, drop_highest)
        keep = sorted(set(range(C.size)) - set(dropped.tolist()))
        C = C[keep]
        left_out = (N0[dropped], L0[dropped], C0[dropped])
    budgets = list(compute) if compute else [float(C.max()) * f for f in (1, 10, 100, 1000)]
    opts: dict[str, Any] = dict(bootstrap=bootstrap, seed=seed, level=level)
    if approach == 3:
        opts.update(
            delta=delta,
            drop_highest_k=drop_highest,
            tie_exponents=tie_exponents,
            resample=resample,
        )
        fit, payload, rows, ho = _chinchilla3(N, D, L, weights, budgets, holdout, out, opts)
    else:
        opts.update(method=method, window=window, log_loss=log_loss)
        fit, payload, rows, ho = _chinchilla12(
            approach, N, D, L, C, budgets, holdout, out, opts, left_out
        )
    pngs = payload.pop("_pngs")
    skipped = df.attrs.get("skipped", 0)
    payload.update(
        {
            "data": str(data),
            "n_rows": int(len(df)),
            "skipped_diverged": int(skipped),
            "drop_highest": drop_highest,
        }
    )
    rows += _derived_rows(payload.get("derived", []))
    path = _write(out, payload)
    with output:
        if skipped:
            output.line(
                f"left out {skipped} diverged or unfinished trials "
                "(use --include-diverged to keep them)"
            )
        output.table(_table(f"Chinchilla approach {approach} ({len(L)} points)", rows))
        if ho is not None:
            output.table(_holdout_table(ho))
        _finish(output, payload, path, pngs, getattr(fit, "warnings", []))


def _weights(df: Any, weights_col: str | None, approach: int) -> Any:
    """The --weights-col column as an array (approach 3 only), or None."""
    from sizeup.laws.io import _numeric, pick_column

    if weights_col is None:
        return None
    if approach != 3:
        raise ConfigError(
            "weights-col",
            weights_col,
            "approach 3 only (approaches 1 and 2 fit one optimum per budget, unweighted)",
        )
    return _numeric(df, pick_column(df, "weights", weights_col))


def _chinchilla3(
    N: Any, D: Any, L: Any, weights: Any, budgets: list[float], holdout: str, out: Path, opts: dict
) -> tuple[Any, dict[str, Any], list[tuple[str, str]], Any]:
    """Approach 3: the fit, its payload and table rows, and the holdout (or None)."""
    from sizeup.laws import chinchilla as ch
    from sizeup.laws import plots
    from sizeup.laws.validate import holdout_approach3

    fit = ch.fit_approach3(N, D, L, weights=weights, **opts)
    payload = fit.to_dict(compute=budgets)
    ho = None
    if holdout == "largest-budget":
        if opts["bootstrap"] < 1:
            raise ConfigError(
                "bootstrap",
                opts["bootstrap"],
                "at least 1 with --holdout (the held-out runs are judged against their "
                "prediction interval; 200+ advised)",
            )
        ho = holdout_approach3(N, D, L, weights=weights, **opts)
        payload["holdout"] = ho.to_dict()
    # every point: the figure draws the ones the fit dropped hollow
    pngs = [plots.plot_approach3(fit, N, D, L, out / "approach3.png", holdout=ho)]
    if ho is not None:
        pngs.append(plots.plot_holdout(ho, N, D, L, out / "holdout.png"))
    payload["_pngs"] = pngs
    iv = payload.get("intervals", {})
    rows = [(k, f"{payload[k]:.5g}{_iv(iv, k)}") for k in ("E", "A", "B", "alpha", "beta", "a")]
    rows.append(("objective (summed Huber)", f"{fit.objective:.6g}"))
    rows.append(("noise: log-loss residual scale", f"{fit.sigma:.4g} ({fit.dof} dof)"))
    if fit.samples is not None:
        rows.append(("bootstrap", f"{len(fit.samples)} resamples, {fit.resample}"))
    return fit, payload, rows, ho


def _chinchilla12(
    approach: int,
    N: Any,
    D: Any,
    L: Any,
    C: Any,
    budgets: list[float],
    holdout: str,
    out: Path,
    opts: dict,
    left_out: Any = None,
) -> tuple[Any, dict[str, Any], list[tuple[str, str]], Any]:
    """Approaches 1 and 2: the fit, its payload and table rows, and the holdout (or None);
    ``left_out``: (N, L, C) of the points --drop-highest removed, drawn hollow."""
    from sizeup.laws import chinchilla as ch
    from sizeup.laws import plots
    from sizeup.laws.validate import holdout_allocation

    if approach == 1:
        opts = {k: opts[k] for k in ("bootstrap", "seed", "level")}
        fit = ch.fit_approach1(N, D, L, C=C, **opts)
    else:
        fit = ch.fit_approach2(N, D, L, C=C, **opts)
    ho = holdout_allocation(fit) if holdout == "largest-budget" else None
    if approach == 1:
        png = plots.plot_envelope(fit, N, L, C, out / "envelope.png", ho, left_out)
    else:
        png = plots.plot_isoflops(fit, out / "isoflops.png", ho, left_out)
    payload = fit.to_dict(compute=budgets)
    payload["_pngs"] = [png]
    if ho is not None:
        payload["holdout"] = ho.to_dict()
    iv = payload.get("intervals", {})
    rows = [
        ("a (N_opt ∝ C^a)", f"{fit.a:.4f}{_iv(iv, 'a')}"),
        ("b (D_opt ∝ C^b)", f"{fit.b:.4f}{_iv(iv, 'b')}"),
        ("N_opt coefficient", f"{fit.n_opt.coef:.4g}"),
        ("budgets used", str(len(fit.C))),
    ]
    rows += [(f"budget {b['C']:.3g} skipped", str(b["reason"])) for b in fit.skipped]
    return fit, payload, rows, ho


def _derived_rows(derived: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """One table row per --compute budget: N_opt, D_opt, D/N and the loss with its intervals."""
    rows = []
    for r in derived:
        text = f"N_opt {r['N_opt']:.3g}, D_opt {r['D_opt']:.3g}, D/N {r['tokens_per_param']:.1f}"
        if "loss" in r:
            text += f", loss {r['loss']:.4f}"
        if "loss_prediction_interval" in r:
            lo, hi = r["loss_prediction_interval"]
            text += f" (a run: [{lo:.4f}, {hi:.4f}])"
        if "N_opt_prediction_interval" in r:
            lo, hi = r["N_opt_prediction_interval"]
            text += f" (N_opt of a new budget: [{lo:.3g}, {hi:.3g}])"
        rows.append((f"C = {r['C']:.3g}", text))
    return rows


def _holdout_table(ho: Any) -> Table:
    """The held-out budget: each point observed vs predicted, its interval and the verdict."""
    rows = []
    for p in ho.to_dict()["points"]:
        lo, hi = p["interval"]
        rows.append(
            (
                f"row {p['row']}: {p['point']}",
                f"observed {p['observed']:.4g}, predicted {p['predicted']:.4g} "
                f"({p['rel_error']:+.2%}), {ho.level:.0%} interval [{lo:.4g}, {hi:.4g}] "
                + ("inside" if p["inside"] else "OUTSIDE"),
            )
        )
    n_in = int(ho.inside.sum())
    rows.append(("verdict", f"{n_in} of {len(ho.rows)} inside their prediction interval"))
    return _table(
        f"Held out: largest budget C = {ho.budget:.3g} ({ho.quantity}; refit on {ho.n_fit})", rows
    )


@fit_app.command("hp")
def fit_hp(
    data: Path = _DATA,
    flops_col: str = typer.Option(
        None, "--flops-col", help="Compute column (else 6 * params * tokens)."
    ),
    params_col: str = typer.Option(None, "--params-col"),
    tokens_col: str = typer.Option(None, "--tokens-col"),
    lr_col: str = typer.Option(None, "--lr-col", help="Learning-rate column."),
    batch_col: str = typer.Option(None, "--batch-col", help="Batch-size column (tokens per step)."),
    loss_col: str = typer.Option(None, "--loss-col"),
    band: float = typer.Option(
        0.0025, "--band", help="Near-optimal band: within this fraction of the best loss."
    ),
    include_diverged: bool = typer.Option(False, "--include-diverged"),
    out: Path = _OUT,
    fmt: str = FORMAT,
) -> None:
    """Hyperparameter laws eta_opt(C), B_opt(C) from the near-optimal band (DeepSeek LLM),
    plus eta = a N^p D^q when params and tokens are known."""
    import numpy as np

    from sizeup.laws import plots
    from sizeup.laws.hp import fit_free_form, fit_hp_laws
    from sizeup.laws.io import _numeric, load_table, pick_column

    output = Output(fmt)
    out = _out(out, "hp")
    skipped_free_form = None

    df = load_table(data, include_diverged=include_diverged)
    loss = _numeric(df, pick_column(df, "loss", loss_col))
    lr_c = pick_column(df, "lr", lr_col, required=False)
    b_c = pick_column(df, "batch", batch_col, required=False)
    n_c = pick_column(df, "params", params_col, required=False)
    t_c = pick_column(df, "tokens", tokens_col, required=False)
    f_c = pick_column(df, "flops", flops_col, required=n_c is None or t_c is None)
    C = _numeric(df, f_c) if f_c is not None else 6.0 * _numeric(df, n_c) * _numeric(df, t_c)
    fit = fit_hp_laws(
        C,
        None if lr_c is None else _numeric(df, lr_c),
        None if b_c is None else _numeric(df, b_c),
        loss,
        band=band,
    )
    payload = fit.to_dict()
    rows = []
    if fit.lr_law:
        rows.append(("eta_opt(C)", f"{fit.lr_law.coef:.4g} * C^{fit.lr_law.exponent:.4f}"))
    if fit.batch_law:
        rows.append(("B_opt(C)", f"{fit.batch_law.coef:.4g} * C^{fit.batch_law.exponent:.4f}"))
    if lr_c is not None and n_c is not None and t_c is not None:
        N, D, lr = _numeric(df, n_c), _numeric(df, t_c), _numeric(df, lr_c)
        # free-form law on the best lr of each (N, D) cell
        keys = sorted(set(zip(N, D)))
        best = [
            np.flatnonzero((N == n) & (D == d))[np.argmin(loss[(N == n) & (D == d)])]
            for n, d in keys
        ]
        try:
            ff = fit_free_form(lr[best], N=N[best], D=D[best])
            payload["lr_free_form"] = ff.to_dict()
            rows.append(
                (
                    "eta(N, D)",
                    f"{ff.coef:.4g} * N^{ff.exponents['N']:.4f} * D^{ff.exponents['D']:.4f}",
                )
            )
        except SizeupError as e:  # too few (N, D) cells for a free-form law: say so, keep the rest
            skipped_free_form = f"free-form law skipped: {e}"
    png = plots.plot_hp(fit, out / "hp_laws.png")
    path = _write(out, payload)
    with output:
        if skipped_free_form:
            output.line(skipped_free_form)
        output.table(_table(f"HP laws (band {band:.2%}, {fit.C.size} near-optimal runs)", rows))
        _finish(output, payload, path, [png])


@fit_app.command("critical-batch")
def fit_critical_batch_cmd(
    data: Path = _DATA,
    loss_col: str = typer.Option(None, "--loss-col", help="Loss (or target loss) column."),
    batch_col: str = typer.Option(
        None,
        "--batch-col",
        help="Measured noise scale / critical batch, or the batch size with --steps-col.",
    ),
    steps_col: str = typer.Option(
        None, "--steps-col", help="Steps to reach the target loss: use the S-E trade-off."
    ),
    out: Path = _OUT,
    fmt: str = FORMAT,
) -> None:
    """B_crit(L) = B*/L^(1/alpha_B) from noise-scale data or steps-to-target at several batch sizes."""
    from sizeup.laws import plots
    from sizeup.laws.critical_batch import fit_critical_batch, fit_critical_batch_from_steps
    from sizeup.laws.io import _numeric, load_table, pick_column

    output = Output(fmt)
    out = _out(out, "critical-batch")
    df = load_table(data)
    loss = _numeric(df, pick_column(df, "loss", loss_col))
    batch = _numeric(df, pick_column(df, "batch", batch_col))
    payload: dict[str, Any] = {"kind": "critical_batch"}
    if steps_col:
        law, fits = fit_critical_batch_from_steps(
            loss, batch, _numeric(df, pick_column(df, "steps", steps_col))
        )
        payload["tradeoffs"] = [
            {"target": f.target, "S_min": f.S_min, "E_min": f.E_min, "B_crit": f.B_crit}
            for f in fits
        ]
        pl, pb = [f.target for f in fits], [f.B_crit for f in fits]
    else:
        law = fit_critical_batch(loss, batch)
        pl, pb = loss, batch
    import numpy as np

    payload.update(law.to_dict())
    png = plots.plot_critical_batch(law, np.asarray(pl), np.asarray(pb), out / "critical_batch.png")
    path = _write(out, payload)
    with output:
        rows = [("B*", f"{law.B_star:.4g}"), ("alpha_B", f"{law.alpha_B:.4f}")]
        output.table(_table("Critical batch size", rows))
        _finish(output, payload, path, [png])


@fit_app.command("downstream")
def fit_downstream_cmd(
    data: Path = _DATA,
    loss_col: str = typer.Option(None, "--loss-col"),
    acc_col: str = typer.Option("accuracy", "--acc-col", help="Benchmark accuracy column."),
    floor: float = typer.Option(
        None, "--floor", help="Pin the low asymptote (e.g. chance accuracy)."
    ),
    ceiling: float = typer.Option(None, "--ceiling", help="Pin the high asymptote."),
    out: Path = _OUT,
    fmt: str = FORMAT,
) -> None:
    """Sigmoid from loss to downstream accuracy (Llama 3 style)."""
    from sizeup.laws import plots
    from sizeup.laws.downstream import fit_sigmoid
    from sizeup.laws.io import _numeric, load_table, pick_column

    output = Output(fmt)
    out = _out(out, "downstream")
    df = load_table(data)
    loss = _numeric(df, pick_column(df, "loss", loss_col))
    acc = _numeric(df, pick_column(df, "accuracy", acc_col))
    law = fit_sigmoid(loss, acc, floor=floor, ceiling=ceiling)
    png = plots.plot_downstream(law, loss, acc, out / "downstream.png")
    payload = {"kind": "downstream", **law.to_dict()}
    path = _write(out, payload)
    with output:
        rows = [(k, f"{v:.4g}") for k, v in law.to_dict().items()]
        output.table(_table("Downstream sigmoid", rows))
        _finish(output, payload, path, [png])


@fit_app.command("data-constrained")
def fit_data_constrained_cmd(
    data: Path = _DATA,
    params_col: str = typer.Option(None, "--params-col"),
    tokens_col: str = typer.Option(None, "--tokens-col"),
    unique_col: str = typer.Option(None, "--unique-col", help="Unique tokens U column."),
    loss_col: str = typer.Option(None, "--loss-col"),
    out: Path = _OUT,
    fmt: str = FORMAT,
) -> None:
    """Muennighoff et al. 2023 law with repeated data: fits R_D*, R_N* (and the base law on single-epoch runs)."""
    from sizeup.laws.data_constrained import fit_data_constrained
    from sizeup.laws.io import _numeric, load_table, pick_column, points

    output = Output(fmt)
    out = _out(out, "data-constrained")
    df = load_table(data)
    N, D, L, _ = points(df, params_col, tokens_col, None, loss_col)
    U = _numeric(df, pick_column(df, "unique", unique_col))
    law = fit_data_constrained(N, D, U, L)
    payload = {"kind": "data_constrained", **law.to_dict()}
    path = _write(out, payload)
    with output:
        rows = [(k, f"{v:.5g}") for k, v in law.to_dict().items()]
        output.table(_table("Data-constrained law", rows))
        _finish(output, payload, path, [])


@fit_app.command("mixing")
def fit_mixing_cmd(
    data: Path = _DATA,
    proportions: str = typer.Option(
        ..., "--proportions", help="Comma-separated columns: each run's share of every domain."
    ),
    losses: str = typer.Option(
        ..., "--losses", help="Comma-separated columns: each run's loss on every eval domain."
    ),
    target_weights: str = typer.Option(
        None,
        "--target-weights",
        help="loss_col=weight,... : how much each eval loss counts in the total (default equal).",
    ),
    max_share: str = typer.Option(
        None, "--max-share", help="domain=fraction,... : upper bounds (e.g. data you have)."
    ),
    min_share: str = typer.Option(None, "--min-share", help="domain=fraction,... : lower bounds."),
    bootstrap: int = typer.Option(
        0, "--bootstrap", help="Parametric resamples for the best mixture's interval (e.g. 200)."
    ),
    level: float = typer.Option(0.9, "--level", help="Level of the intervals."),
    seed: int = typer.Option(0, "--seed"),
    out: Path = _OUT,
    fmt: str = FORMAT,
) -> None:
    """Data mixing law (Ye et al. 2024): L_i(r) = c_i + k_i exp(sum_j t_ij r_j) per eval domain,
    and the training mixture it predicts to be best for the runs' model size and budget."""
    import numpy as np

    from sizeup.laws import plots
    from sizeup.laws.io import _numeric, load_table, pick_column
    from sizeup.laws.mixing import fit_mixing

    output = Output(fmt)
    out = _out(out, "mixing")
    df = load_table(data)
    dom = _names(proportions, "proportions")
    tgt = _names(losses, "losses")
    P = np.column_stack([_numeric(df, pick_column(df, "proportion", c)) for c in dom])
    Y = np.column_stack([_numeric(df, pick_column(df, "loss", c)) for c in tgt])
    fit = fit_mixing(
        P,
        Y,
        domains=dom,
        targets=tgt,
        target_weights=_per_name(target_weights, tgt, 1.0, "target-weights"),
        lower=_per_name(min_share, dom, 0.0, "min-share"),
        upper=_per_name(max_share, dom, 1.0, "max-share"),
        bootstrap=bootstrap,
        level=level,
        seed=seed,
    )
    payload = fit.to_dict()
    payload["data"] = str(data)
    png = plots.plot_mixing(fit, out / "mixing.png")
    path = _write(out, payload)
    opt = payload["optimum"]
    ivs = opt.get("intervals", {})
    rows = [(f"best share: {d}", f"{r:.3f}{_iv(ivs, d)}") for d, r in opt["mixture"].items()]
    rows.append(("predicted total loss", f"{opt['total']:.4f}"))
    best = payload["best_run"]
    rows.append(
        (
            f"best run (row {best['row']})",
            ", ".join(f"{d} {r:.3f}" for d, r in best["mixture"].items())
            + f": total {best['total']:.4f}",
        )
    )
    with output:
        output.table(_table(f"Data mixing law ({fit.P.shape[0]} runs)", rows))
        _finish(output, payload, path, [png], fit.warnings)


def _names(text: str, option: str) -> list[str]:
    names = [c.strip() for c in text.split(",") if c.strip()]
    if not names or len(set(names)) != len(names):
        raise ConfigError(option, text, "comma-separated distinct column names")
    return names


def _per_name(text: str | None, names: list[str], default: float, option: str) -> Any:
    """'a=0.3,b=0.2' -> values in the order of names (default for the others), or None."""
    import numpy as np

    if text is None:
        return None
    out = dict.fromkeys(names, default)
    for item in text.split(","):
        key, sep, val = item.partition("=")
        if not sep or key.strip() not in out:
            raise ConfigError(option, item, f"name=number with name one of {names}")
        try:
            out[key.strip()] = float(val)
        except ValueError:
            raise ConfigError(option, item, "name=number") from None
    return np.array([out[n] for n in names])


# `sizeup flops` takes the shape options `sizeup plan` takes (ModelSpec's fields, d_ff's rounding),
# with the plan's defaults, plus the shapes the built-in GPT cannot build (MLA) and a measured
# throughput.
FLOPS_FIELDS = [i for i in ModelSpec.field_info() if i.name != "name"] + [
    i for i in ShapeRule.field_info() if i.name == "ffn_multiple"
]
FLOPS_OPTIONS: dict[str, tuple[Any, Any]] = {
    "router_bias": (
        bool,
        typer.Option(
            False,
            "--router-bias/--no-router-bias",
            help="gpt MoE: a bias per expert (DeepSeek-V3).",
        ),
    ),
    "kv_lora_rank": (int | None, typer.Option(None, help="gpt: MLA latent size.")),
    "q_lora_rank": (int | None, typer.Option(None, help="gpt MLA: query rank.")),
    "rope_head_dim": (int | None, typer.Option(None, help="gpt MLA: RoPE part of a head.")),
    "v_head_dim": (int | None, typer.Option(None, help="gpt MLA: value head size.")),
    "tokens_per_s": (
        float | None,
        typer.Option(None, help="Measured throughput: report MFU."),
    ),
    "gpu": (str, typer.Option("H100", help="GPU name from the table, or FLOP/s.")),
    "n_gpus": (int, typer.Option(1, help="GPUs the throughput was measured on.")),
    "fmt": (str | None, FORMAT),
}


def flops_cmd(formula: str = "gpt", **options: Any) -> None:
    """Training FLOPs per token for a model shape (the options `sizeup plan` takes; an MoE:
    total and active parameters, FLOPs of the active ones), and MFU from a measured
    throughput."""
    from sizeup.flops import flops_per_token, mfu

    output = Output(options.pop("fmt"))
    given = take_fields(options, FLOPS_FIELDS)
    rule = ShapeRule(**{k: given.pop(k) for k in ("ffn_multiple",) if k in given})
    model = _flops_model(given, rule)
    doc: dict[str, Any] = {"formula": formula}
    if formula == "gpt":
        mla = dict(
            router_bias=options["router_bias"],
            kv_lora_rank=options["kv_lora_rank"],
            q_lora_rank=options["q_lora_rank"],
            qk_rope_head_dim=options["rope_head_dim"],
            v_head_dim=options["v_head_dim"],
        )
        f, n, rows = _gpt_rows(model, mla)
        rows[0] = (rows[0][0], f"{n:,} ({_rounding(model, given, rule)})")
        doc.update(model=model.to_dict(), params=n)
    else:
        f = flops_per_token(
            formula, model.depth, model.width, model.seq_len, model.vocab_size, n_head=model.heads
        )
        rows = [("FLOPs/token (train)", f"{f:.4g}")]
    doc["flops_per_token"] = f
    if options["tokens_per_s"]:
        tps, gpu, n_gpus = options["tokens_per_s"], options["gpu"], options["n_gpus"]
        doc["mfu"] = mfu(tps, f, _number_or_name(gpu), n_gpus)
        rows.append(("MFU", f"{doc['mfu']:.1%} ({tps:g} tokens/s on {n_gpus} x {gpu})"))
    with output:
        output.table(_table(f"FLOPs ({formula})", rows))
        output.data(doc)


def _flops_model(given: dict[str, Any], rule: ShapeRule) -> Any:
    """The ModelSpec the flags describe, as `sizeup plan` reads an explicit shape: the plan's
    defaults (heads of 128, a 2048 context, a 32k vocabulary), d_ff rounded up to a multiple of
    ffn_multiple unless given."""
    from sizeup.plan.records import rounded
    from sizeup.plan.stages import model_template

    for name in ("width", "depth"):
        if name not in given:
            raise ConfigError(name, None, f"given (--{name}): the shape to count")
    return rounded(model_template(given, None), rule)


def _rounding(model: Any, given: dict[str, Any], rule: ShapeRule) -> str:
    from sizeup.plan.records import rounding_text
    from sizeup.plan.stages import model_template

    return rounding_text(model, model_template(given, None), rule)


flops_cmd.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [
        inspect.Parameter(
            "formula",
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            default=typer.Argument(
                "gpt", help="kaplan | chinchilla | deepseek | megatron | gpt (exact count)."
            ),
            annotation=str,
        )
    ]
    + field_parameters(FLOPS_FIELDS, PLAN_MODEL)
    + [
        inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=opt, annotation=ann)
        for k, (ann, opt) in FLOPS_OPTIONS.items()
    ]
)
flops_cmd.__annotations__ = {}


def _number_or_name(text: str) -> str | float:
    """'H100' stays a name; '1.5e15' becomes FLOP/s."""
    try:
        return float(text)
    except ValueError:
        return text


def _gpt_rows(model: Any, mla: dict[str, Any]) -> tuple[float, int, list[tuple[str, str]]]:
    """The exact count: FLOPs per token, parameters, and their rows (total parameters, active
    ones for an MoE, FLOPs per token)."""
    from sizeup.flops import gpt_exact_flops_per_token, gpt_params

    f = gpt_exact_flops_per_token(model, **mla)
    n = gpt_params(model, **mla)
    rows = [("params", f"{n:,}")]
    if model.n_experts:
        rows.append(("active params", f"{gpt_params(model, **mla, active=True):,}"))
    rows.append(("FLOPs/token (train)", f"{f:.4g}"))
    return f, n, rows


def register(app: typer.Typer) -> None:
    """Add `fit` (a group) and `flops` to the app."""
    app.add_typer(fit_app, name="fit")
    app.command("flops")(flops_cmd)
