"""`sizeup fit ...` (Chinchilla approaches 1-3, HP laws, critical batch, downstream,
data-constrained) and `sizeup flops`. Each fit writes DIR/fit.json and PNG plots."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import typer

from sizeup.errors import ConfigError, SizeupError

fit_app = typer.Typer(
    help="Fit scaling laws to run data (CSV, Parquet, JSON or a sizeup study).",
    no_args_is_help=True,
)

_DATA = typer.Argument(..., help="A .csv, .parquet, .json/.jsonl file or a sizeup study (.db).")
_OUT = typer.Option(..., "--out", help="Directory for fit.json and the plots.")


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


def _print_table(title: str, rows: list[tuple[str, str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    t.add_column("quantity")
    t.add_column("value")
    for k, v in rows:
        t.add_row(k, v)
    Console().print(t)


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
    drop_highest: int = typer.Option(
        0, "--drop-highest", help="Drop the K highest-loss points first (explicit outlier rule)."
    ),
    bootstrap: int = typer.Option(
        0, "--bootstrap", help="Bootstrap resamples for intervals (e.g. 1000)."
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
) -> None:
    """Chinchilla fits: approach 1 (envelope), 2 (isoFLOPs) or 3 (L = E + A/N^a + B/D^b)."""
    from sizeup.laws import chinchilla as ch
    from sizeup.laws import plots
    from sizeup.laws.io import load_table, points

    if approach not in (1, 2, 3):
        raise ConfigError("approach", approach, "1, 2 or 3")
    df = load_table(data, include_diverged=include_diverged)
    N, D, L, C = points(df, params_col, tokens_col, flops_col, loss_col)
    if approach != 3 and drop_highest:
        N, D, L, dropped = ch.drop_highest(N, D, L, drop_highest)
        keep = sorted(set(range(C.size)) - set(dropped.tolist()))
        C = C[keep]
    budgets = list(compute) if compute else [float(C.max()) * f for f in (1, 10, 100, 1000)]
    skipped = df.attrs.get("skipped", 0)
    if approach == 3:
        fit = ch.fit_approach3(
            N,
            D,
            L,
            delta=delta,
            drop_highest_k=drop_highest,
            bootstrap=bootstrap,
            seed=seed,
            level=level,
            tie_exponents=tie_exponents,
        )
        payload = fit.to_dict(compute=budgets)
        keep = sorted(set(range(N.size)) - set(fit.dropped))
        plots.plot_approach3(fit, N[keep], D[keep], L[keep], out / "approach3.png")
        iv = payload.get("intervals", {})
        rows = [(k, f"{payload[k]:.5g}{_iv(iv, k)}") for k in ("E", "A", "B", "alpha", "beta", "a")]
        rows.append(("objective (summed Huber)", f"{fit.objective:.6g}"))
    else:
        if approach == 1:
            fit = ch.fit_approach1(N, D, L, C=C, bootstrap=bootstrap, seed=seed, level=level)
            plots.plot_envelope(fit, N, L, C, out / "envelope.png")
        else:
            fit = ch.fit_approach2(
                N,
                D,
                L,
                C=C,
                method=method,
                window=window,
                log_loss=log_loss,
                bootstrap=bootstrap,
                seed=seed,
                level=level,
            )
            plots.plot_isoflops(fit, out / "isoflops.png")
        payload = fit.to_dict(compute=budgets)
        iv = payload.get("intervals", {})
        rows = [
            ("a (N_opt ∝ C^a)", f"{fit.a:.4f}{_iv(iv, 'a')}"),
            ("b (D_opt ∝ C^b)", f"{fit.b:.4f}{_iv(iv, 'b')}"),
            ("N_opt coefficient", f"{fit.n_opt.coef:.4g}"),
            ("budgets used", str(len(fit.C))),
        ]
    payload.update(
        {
            "data": str(data),
            "n_rows": int(len(df)),
            "skipped_diverged": int(skipped),
            "drop_highest": drop_highest,
        }
    )
    for r in payload.get("derived", []):
        rows.append(
            (
                f"C = {r['C']:.3g}",
                f"N_opt {r['N_opt']:.3g}, D_opt {r['D_opt']:.3g}, "
                f"D/N {r['tokens_per_param']:.1f}"
                + (f", loss {r['loss']:.4f}" if "loss" in r else ""),
            )
        )
    path = _write(out, payload)
    if skipped:
        typer.echo(
            f"left out {skipped} diverged or unfinished trials (use --include-diverged to keep them)"
        )
    _print_table(f"Chinchilla approach {approach} ({len(L)} points)", rows)
    for w in getattr(fit, "warnings", []):
        typer.secho(f"warning: {w}", fg=typer.colors.YELLOW, err=True)
    typer.echo(f"wrote {path}")


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
) -> None:
    """Hyperparameter laws eta_opt(C), B_opt(C) from the near-optimal band (DeepSeek LLM),
    plus eta = a N^p D^q when params and tokens are known."""
    import numpy as np

    from sizeup.laws import plots
    from sizeup.laws.hp import fit_free_form, fit_hp_laws
    from sizeup.laws.io import _numeric, load_table, pick_column

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
            typer.echo(f"free-form law skipped: {e}")
    plots.plot_hp(fit, out / "hp_laws.png")
    path = _write(out, payload)
    _print_table(f"HP laws (band {band:.2%}, {fit.C.size} near-optimal runs)", rows)
    typer.echo(f"wrote {path}")


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
) -> None:
    """B_crit(L) = B*/L^(1/alpha_B) from noise-scale data or steps-to-target at several batch sizes."""
    from sizeup.laws import plots
    from sizeup.laws.critical_batch import fit_critical_batch, fit_critical_batch_from_steps
    from sizeup.laws.io import _numeric, load_table, pick_column

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
    plots.plot_critical_batch(law, np.asarray(pl), np.asarray(pb), out / "critical_batch.png")
    path = _write(out, payload)
    _print_table(
        "Critical batch size", [("B*", f"{law.B_star:.4g}"), ("alpha_B", f"{law.alpha_B:.4f}")]
    )
    typer.echo(f"wrote {path}")


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
) -> None:
    """Sigmoid from loss to downstream accuracy (Llama 3 style)."""
    from sizeup.laws import plots
    from sizeup.laws.downstream import fit_sigmoid
    from sizeup.laws.io import _numeric, load_table, pick_column

    df = load_table(data)
    loss = _numeric(df, pick_column(df, "loss", loss_col))
    acc = _numeric(df, pick_column(df, "accuracy", acc_col))
    law = fit_sigmoid(loss, acc, floor=floor, ceiling=ceiling)
    plots.plot_downstream(law, loss, acc, out / "downstream.png")
    path = _write(out, {"kind": "downstream", **law.to_dict()})
    _print_table("Downstream sigmoid", [(k, f"{v:.4g}") for k, v in law.to_dict().items()])
    typer.echo(f"wrote {path}")


@fit_app.command("data-constrained")
def fit_data_constrained_cmd(
    data: Path = _DATA,
    params_col: str = typer.Option(None, "--params-col"),
    tokens_col: str = typer.Option(None, "--tokens-col"),
    unique_col: str = typer.Option(None, "--unique-col", help="Unique tokens U column."),
    loss_col: str = typer.Option(None, "--loss-col"),
    out: Path = _OUT,
) -> None:
    """Muennighoff et al. 2023 law with repeated data: fits R_D*, R_N* (and the base law on single-epoch runs)."""
    from sizeup.laws.data_constrained import fit_data_constrained
    from sizeup.laws.io import _numeric, load_table, pick_column, points

    df = load_table(data)
    N, D, L, _ = points(df, params_col, tokens_col, None, loss_col)
    U = _numeric(df, pick_column(df, "unique", unique_col))
    law = fit_data_constrained(N, D, U, L)
    path = _write(out, {"kind": "data_constrained", **law.to_dict()})
    _print_table("Data-constrained law", [(k, f"{v:.5g}") for k, v in law.to_dict().items()])
    typer.echo(f"wrote {path}")


def flops_cmd(
    formula: str = typer.Argument(
        "gpt", help="kaplan | chinchilla | deepseek | megatron | gpt (exact count)."
    ),
    n_layer: int = typer.Option(..., "--layers"),
    d_model: int = typer.Option(..., "--d-model"),
    seq_len: int = typer.Option(2048, "--seq-len"),
    vocab: int = typer.Option(50304, "--vocab"),
    n_head: int = typer.Option(None, "--heads"),
    n_kv_head: int = typer.Option(None, "--kv-heads"),
    head_dim: int = typer.Option(None, "--head-dim", help="gpt: per head (MLA: its no-RoPE part)."),
    d_ff: int = typer.Option(None, "--d-ff", help="gpt: dense SwiGLU hidden (default 8/3 d)."),
    experts: int = typer.Option(0, "--experts", help="gpt MoE: routed experts per block."),
    top_k: int = typer.Option(2, "--top-k", help="gpt MoE: experts per token."),
    shared: int = typer.Option(0, "--shared-experts", help="gpt MoE: always-active experts."),
    expert_hidden: int = typer.Option(None, "--expert-hidden", help="gpt MoE: expert size."),
    first_dense: int = typer.Option(0, "--dense-layers", help="gpt MoE: leading dense blocks."),
    router_bias: bool = typer.Option(False, help="gpt MoE: a bias per expert (DeepSeek-V3)."),
    kv_lora_rank: int = typer.Option(None, "--kv-lora-rank", help="gpt: MLA latent size."),
    q_lora_rank: int = typer.Option(None, "--q-lora-rank", help="gpt MLA: query rank."),
    rope_dim: int = typer.Option(None, "--rope-head-dim", help="gpt MLA: RoPE part of a head."),
    v_head_dim: int = typer.Option(None, "--v-head-dim", help="gpt MLA: value head size."),
    tokens_per_s: float = typer.Option(
        None, "--tokens-per-s", help="Measured throughput: report MFU."
    ),
    peak: str = typer.Option("H100", "--peak", help="GPU name from the table, or FLOP/s."),
    n_devices: int = typer.Option(1, "--devices"),
) -> None:
    """Training FLOPs per token for a model shape (an MoE: total and active parameters, FLOPs
    of the active ones), and MFU from a measured throughput."""
    from sizeup.laws.flops import flops_per_token, mfu

    if formula == "gpt":
        kw = dict(
            d_model=d_model,
            n_layer=n_layer,
            seq_len=seq_len,
            vocab_size=vocab,
            n_head=n_head,
            n_kv_head=n_kv_head,
            head_dim=head_dim,
            mlp_hidden=d_ff,
            n_experts=experts,
            top_k=top_k,
            n_shared_experts=shared,
            expert_hidden=expert_hidden,
            first_dense=first_dense,
            router_bias=router_bias,
            kv_lora_rank=kv_lora_rank,
            q_lora_rank=q_lora_rank,
            qk_rope_head_dim=rope_dim,
            v_head_dim=v_head_dim,
        )
        f, rows = _gpt_rows(kw)
    else:
        f = flops_per_token(formula, n_layer, d_model, seq_len, vocab, n_head=n_head)
        rows = [("FLOPs/token (train)", f"{f:.4g}")]
    if tokens_per_s:
        p: str | float = (
            float(peak)
            if peak.replace(".", "").replace("e", "").replace("+", "").isdigit()
            else peak
        )
        rows.append(("MFU", f"{mfu(tokens_per_s, f, p, n_devices):.1%}"))
    _print_table(f"FLOPs ({formula})", rows)


def _gpt_rows(kw: dict[str, Any]) -> tuple[float, list[tuple[str, str]]]:
    """The exact count's rows: parameters (total, and active for an MoE) and FLOPs per token."""
    from sizeup.laws.flops import gpt_exact_flops_per_token, gpt_params

    f = gpt_exact_flops_per_token(**kw)
    rows = [("params", f"{gpt_params(**kw):,}")]
    if kw["n_experts"]:
        rows.append(("active params", f"{gpt_params(**kw, active=True):,}"))
    rows.append(("FLOPs/token (train)", f"{f:.4g}"))
    return f, rows


def register(app: typer.Typer) -> None:
    """Add `fit` (a group) and `flops` to the app."""
    app.add_typer(fit_app, name="fit")
    app.command("flops")(flops_cmd)
