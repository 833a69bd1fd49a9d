"""`sizeup plan`: print the plan for a target run as a rich table, and write plan.json and
plan.md with --out. Everything heavy is imported inside the command so `sizeup --help` stays fast."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add the `plan` command to the sizeup app."""
    app.command("plan")(plan_command)


def plan_command(
    preset: str = typer.Option(
        "chinchilla",
        help="Laws: chinchilla, epoch, deepseek-v1, or a `sizeup fit` fit.json / folder.",
    ),
    compute: float | None = typer.Option(None, help="Target compute budget C in FLOPs."),
    params: float | None = typer.Option(None, help="Target total parameters N."),
    tokens: float | None = typer.Option(None, help="Training tokens D."),
    tokens_per_param: float | None = typer.Option(None, help="Tokens per parameter D/N."),
    n_layer: int | None = typer.Option(None, help="Explicit shape: number of blocks."),
    d_model: int | None = typer.Option(None, help="Explicit shape: model width."),
    n_head: int | None = typer.Option(
        None, help="Explicit shape: attention heads (default d_model / head_dim)."
    ),
    head_dim: int = typer.Option(128, help="Head dimension (family rule and default heads)."),
    n_kv_head: int | None = typer.Option(None, help="Key/value heads (GQA); default n_head."),
    vocab_size: int = typer.Option(32000, help="Vocabulary size."),
    seq_len: int = typer.Option(2048, help="Sequence length."),
    mlp_ratio: float = typer.Option(8 / 3, help="SwiGLU hidden size / d_model."),
    tie_embeddings: bool = typer.Option(False, help="Tie the LM head to the embedding."),
    aspect_ratio: float = typer.Option(128.0, help="Family rule: d_model / n_layer."),
    base_width: int | None = typer.Option(
        None, help="Proxy d_model (enables transfer from a tuned proxy)."
    ),
    base_depth: int | None = typer.Option(None, help="Proxy n_layer."),
    base_lr: float | None = typer.Option(None, help="Proxy's tuned peak lr."),
    base_batch: int | None = typer.Option(None, help="Proxy's batch in tokens."),
    base_tokens: float | None = typer.Option(None, help="Proxy's training tokens."),
    rule: str = typer.Option(
        "mup", help="Parametrization of the proxy: sp, mup, mup_simple, spectral."
    ),
    sigma: float = typer.Option(0.02, help="Proxy's base init std."),
    beta1: float = typer.Option(0.9, help="Proxy's Adam beta1."),
    beta2: float = typer.Option(0.95, help="Proxy's Adam beta2."),
    eps: float = typer.Option(1e-8, help="Proxy's Adam eps."),
    weight_decay: float = typer.Option(0.1, help="Independent weight decay."),
    optimizer: str = typer.Option("adamw", help="adamw or muon (hidden matrices)."),
    readout_form: str = typer.Option(
        "table8", help="muP readout form: table8 (multiplier 1/n) or table3."
    ),
    scale_eps: bool = typer.Option(
        True,
        "--scale-eps/--no-scale-eps",
        help="Adam eps per tensor, following its gradient scale.",
    ),
    data_exponent: float = typer.Option(0.0, help="alpha_data: lr x (D/D_base)^alpha_data."),
    depth_exponent: float | None = typer.Option(
        None, help="Depth-muP exponent (with --base-depth)."
    ),
    batch_tokens: float | None = typer.Option(None, help="Batch in tokens (overrides the laws)."),
    batch_multiple: int = typer.Option(
        8, help="Round the batch to a multiple of this many sequences."
    ),
    lr_law: str | None = typer.Option(None, help="eta(C) as 'coef,exponent'."),
    batch_law: str | None = typer.Option(None, help="B(C) in tokens as 'coef,exponent'."),
    lr_nd_law: str | None = typer.Option(None, help="eta(N, D) = coef N^a D^b as 'coef,a,b'."),
    batch_d_law: str | None = typer.Option(None, help="B(D) in tokens as 'coef,exponent'."),
    warmup: int | None = typer.Option(None, help="Warmup steps (default 1% of steps)."),
    decay_frac: float = typer.Option(0.2, help="WSD: fraction of steps in the cooldown."),
    cooldown: str = typer.Option("linear", help="WSD cooldown: linear, 1-sqrt, exponential."),
    gpu: str | None = typer.Option(
        None, help="GPU type (sizeup.laws.flops.GPU_PEAK_FLOPS) or peak FLOP/s."
    ),
    n_gpus: int = typer.Option(1, help="Number of GPUs."),
    mfu: float = typer.Option(0.4, help="Model FLOPs utilisation for time and cost."),
    gpu_price: float | None = typer.Option(None, help="Price per GPU-hour."),
    critical_batch: float | None = typer.Option(
        None, help="Critical batch in tokens (warn above it)."
    ),
    fit_range: str | None = typer.Option(
        None, help="Compute range the law was fitted on, 'Cmin,Cmax'."
    ),
    out: Path | None = typer.Option(None, help="Write DIR/plan.json and DIR/plan.md."),
    explain: bool = typer.Option(
        False, "--explain", help="Show the formula and inputs of every number."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print plan.json to stdout instead of tables."
    ),
) -> None:
    """Plan a target run: shape, tokens, FLOPs, batch, peak lr, schedule, per-layer table, loss, time."""
    from sizeup.errors import ConfigError
    from sizeup.plan import Proxy, plan

    proxy = None
    if base_width is not None:
        proxy = Proxy(
            width=base_width,
            depth=base_depth,
            lr=base_lr,
            batch_tokens=base_batch,
            tokens=base_tokens,
            rule=rule,
            sigma=sigma,
            betas=(beta1, beta2),
            eps=eps,
            weight_decay=weight_decay,
        )
    elif any(v is not None for v in (base_lr, base_batch, base_tokens, base_depth)):
        raise ConfigError(
            "base_width",
            None,
            "given whenever a proxy setting (--base-lr, "
            "--base-batch, --base-tokens, --base-depth) is",
        )
    fr = None
    if fit_range is not None:
        try:
            lo, hi = (float(x) for x in fit_range.split(","))
        except ValueError as e:
            raise ConfigError("fit_range", fit_range, "'Cmin,Cmax' in FLOPs") from e
        fr = (lo, hi)
    gpu_arg: str | float | None = gpu
    if gpu is not None:
        try:
            gpu_arg = float(gpu)
        except ValueError:
            gpu_arg = gpu
    p = plan(
        compute=compute,
        params=params,
        tokens=tokens,
        tokens_per_param=tokens_per_param,
        preset=preset,
        n_layer=n_layer,
        d_model=d_model,
        n_head=n_head,
        head_dim=head_dim,
        n_kv_head=n_kv_head,
        vocab_size=vocab_size,
        seq_len=seq_len,
        mlp_ratio=mlp_ratio,
        tie_embeddings=tie_embeddings,
        aspect_ratio=aspect_ratio,
        proxy=proxy,
        batch_tokens=batch_tokens,
        batch_multiple=batch_multiple,
        lr_law=lr_law,
        batch_law=batch_law,
        lr_nd_law=lr_nd_law,
        batch_d_law=batch_d_law,
        data_exponent=data_exponent,
        depth_exponent=depth_exponent,
        readout_form=readout_form,
        scale_eps=scale_eps,
        optimizer=optimizer,
        warmup=warmup,
        decay_frac=decay_frac,
        cooldown=cooldown,
        gpu=gpu_arg,
        n_gpus=n_gpus,
        mfu=mfu,
        gpu_price=gpu_price,
        critical_batch=critical_batch,
        fit_range=fr,
    )
    if out is not None:
        path = p.save(out)
    if as_json:
        typer.echo(p.to_json())
    else:
        _print_rich(p, explain)
    if out is not None:
        typer.echo(f"wrote {path} and {path.with_name('plan.md')}", err=as_json)


def _print_rich(p: object, explain: bool) -> None:
    """Summary table, per-layer table, warnings and (with --explain) the derivations."""
    from rich.console import Console
    from rich.table import Table

    from sizeup.plan.planner import Plan, _fmt_any, _fmt_inputs

    assert isinstance(p, Plan)
    import sys

    # Piped output (files, CI logs) gets room for the 9-column table instead of rich's 80.
    con = Console() if sys.stdout.isatty() else Console(width=120)
    summary = Table(title="sizeup plan", show_header=False)
    summary.add_column("quantity", style="bold")
    summary.add_column("value")
    for k, v in p.summary_rows():
        summary.add_row(k, v)
    con.print(summary)
    form = "Table 8 (readout multiplier 1/n)" if p.readout_form == "table8" else "Table 3"
    layers = Table(title=f"per-layer table: rule {p.rule}, {form}, residual-out init x (2L)^-1/2")
    for h in p.layer_header():
        layers.add_column(h, justify="left" if h in ("tensor", "role") else "right", no_wrap=True)
    for row in p.layer_rows():
        layers.add_row(*row)
    con.print(layers)
    for w in p.warnings:
        con.print(f"[yellow]warning:[/yellow] {w}")
    if explain:
        t = Table(title="how each number was derived")
        for h in ("quantity", "value", "formula", "inputs"):
            t.add_column(h)
        for e in p.explain:
            t.add_row(e["name"], _fmt_any(e["value"]), e["formula"], _fmt_inputs(e["inputs"]))
        con.print(t)
