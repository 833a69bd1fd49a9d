"""The target-run planner: from a tuned proxy and fitted (or published) laws to a complete plan.

"I tuned at 40M; what do I run at 7B on 2T tokens?" ``plan(...)`` answers with the model shape,
parameters, tokens, FLOPs, batch, steps, peak lr, warmup and WSD schedule, the per-layer table
(init std, multiplier, lr, Adam betas and eps, weight decay per step), the predicted loss, wall
time and cost, and warnings. Every number carries its derivation (formula and inputs) for
``--explain``.

``plan()`` only composes stages (``sizeup.plan.stages`` and ``sizeup.plan.table``), each of
which returns its value and its derivation:

* size: the target (compute C, params N, tokens D, tokens per parameter) or an explicit shape,
  plus the law's compute-optimal allocation for what the target leaves open;
* budget: tokens and compute in the law's convention, "6ND" or "MD" (DeepSeek LLM);
* batch: an explicit batch, else the law's B(C) (or B in its own variables, e.g. Step Law's
  B(D)), else a user B(D) law, else a fallback B(C); optionally a ramp-up to it;
* peak lr: a user eta(N, D) law, else transfer from the proxy (eta_base b^1/2 d^alpha_data),
  else the law's eta(C) (or eta in its own variables);
* schedule: WSD by default; constant, cosine, multistep or power;
* per-layer table: ``sizeup.parametrize`` on the target (meta device) relative to the proxy,
  then ``Parametrization.optimizer`` with the batch transfer, read back per tensor;
* loss, time and cost, and the checks that warn.

Its inputs are records (``sizeup.plan.records``: Target, ShapeOptions, Proxy, Recipe, Laws,
ScheduleOptions, Hardware, Checks); flat options (``base_lr=...``) map onto their fields.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sizeup.plan.options import PlanInputs
from sizeup.plan.records import (
    Checks,
    Hardware,
    Laws,
    Proxy,
    Recipe,
    ScheduleOptions,
    Shape,
    ShapeOptions,
    Target,
)
from sizeup.plan.stages import (
    Stage,
    batch_stage,
    budget_stage,
    checks_stage,
    cost_stage,
    loss_stage,
    lr_stage,
    ramp_stage,
    ratio_stage,
    schedule_stage,
    size_stage,
)
from sizeup.plan.table import ModelFactory, table_stage


@dataclass
class Plan:
    """A complete plan for the target run; every number has an entry in ``explain``."""

    preset: dict[str, Any]
    shape: dict[str, Any]
    params: int
    params_non_embedding: int
    tokens: float
    tokens_per_param: float
    flops: float
    flops_formula: str
    flops_exact: float
    batch_tokens: int
    batch_sequences: int
    batch_rounding: str
    steps: int
    peak_lr: float
    lr_source: str
    warmup_steps: int
    schedule: dict[str, Any]
    width_ratio: float
    batch_ratio: float
    data_ratio: float
    data_exponent: float
    readout_form: str
    rule: str
    layers: list[dict[str, Any]]
    recipe: dict[str, Any] = field(default_factory=dict)  # the parametrization and optimizer
    proxy: dict[str, Any] | None = None  # what was transferred from (and its source)
    loss: float | None = None
    loss_interval: tuple[float, float] | None = None
    params_active: int | None = None  # an MoE's parameters per token (None: dense, all)
    time_s: float | None = None
    gpu_hours: float | None = None
    cost: float | None = None
    hardware: dict[str, Any] | None = None
    optimum: dict[str, Any] | None = None  # the law's compute-optimal size and tokens at C
    critical_batch: float | None = None
    batch_ramp: list[dict[str, float]] | None = None  # stages: from_step, from_tokens, batch
    comparison: dict[str, Any] | None = None  # compare_laws: one row per preset
    batch_transfer: dict[str, Any] | None = None  # what the proxy->target batch transfer moved
    size_target: dict[str, Any] | None = None  # the size the family rule aimed at, and what it is
    warnings: list[str] = field(default_factory=list)
    explain: list[dict[str, Any]] = field(default_factory=list)

    def lr_schedule(self) -> Any:
        """The planned lr multiplier per step (sizeup.schedules.Schedule), counting tokens
        through the batch ramp when there is one."""
        from sizeup.plan.stages import build_schedule

        return build_schedule(self.schedule, self.steps, self.batch_tokens, self.ramp())

    def ramp(self) -> Any:
        """The planned batch ramp (sizeup.schedules.BatchRamp), or None."""
        if not self.batch_ramp:
            return None
        from sizeup.schedules import BatchRamp

        return BatchRamp(
            tuple((r["switch_tokens"], int(r["batch_tokens"])) for r in self.batch_ramp)
        )

    def run_config(self) -> dict[str, Any]:
        """The RunConfig fields that train this plan with `sizeup train` (sizeup's GPT): the
        shape (width, depth, head_dim, seq_len, vocab_size, tie_embeddings), the recipe (rule,
        base width and depth, init, optimizer, betas, eps, weight decay, momentum), the batch
        (batch_size in sequences, the ramp's stages as batch_ramp), steps, lr = the planned
        peak and the schedule with its warmup and parameters. The peak already carries the batch
        transfer, so base_batch_size is None and betas, eps and momentum are the transferred
        ones the per-layer table shows. ``mlp_ratio`` is the target's d_ff / d_model, so the run
        builds the planned d_ff (and its base the same ratio, as the plan's table assumes). Not
        RunConfig fields, so not carried: GQA (n_kv_head) and the Table 8 readout form."""
        s, r, sched = self.shape, self.recipe, self.schedule
        seq = s["seq_len"]
        out: dict[str, Any] = dict(
            model="gpt",
            width=s["d_model"],
            depth=s["n_layer"],
            head_dim=s["head_dim"],
            seq_len=seq,
            vocab_size=s["vocab_size"],
            mlp_ratio=s["d_ff"] / s["d_model"],
            tie_embeddings=s["tie_embeddings"],
            rule=r["rule"],
            init_std=r["sigma"] if r["sigma"] is not None else "model",
            optimizer=r["optimizer"],
            lr=self.peak_lr,
            weight_decay=r["weight_decay"],
            scale_eps=r["scale_eps"],
            batch_size=self.batch_sequences,
            base_batch_size=None,
            batch_ramp=None,
            steps=self.steps,
            warmup=sched["warmup_steps"],
            schedule=sched["kind"],
            decay_frac=sched["decay_frac"],
            cooldown=sched["cooldown"],
            milestones=sched.get("milestones"),
            power_a=sched.get("power_a"),
            power_b=sched.get("power_b"),
        )
        if self.batch_ramp:
            out["batch_ramp"] = [
                [row["switch_tokens"], int(row["batch_tokens"]) // seq] for row in self.batch_ramp
            ]
        out.update(self._run_recipe())
        return out

    def _run_recipe(self) -> dict[str, Any]:
        """The recipe's base (the proxy when its lr transferred, else the target itself),
        depth scaling, and betas, eps, momentum and Muon lr moved to the target batch as the
        table's optimizer moves them."""
        r, px = self.recipe, self.proxy
        transferred = px is not None and self.lr_source == "transfer from the proxy"
        scaled = transferred and bool(px.get("depth")) and r["depth_exponent"] is not None
        out: dict[str, Any] = dict(
            base_width=px["width"] if transferred else self.shape["d_model"],
            base_depth=px["depth"] if scaled else None,
            beta1=r["beta1"],
            beta2=r["beta2"],
            eps=r["eps"],
            momentum=r["momentum"],
            muon_lr=None,
        )
        if scaled:
            out["depth_exponent"] = r["depth_exponent"]
        if transferred and r["muon_lr"] is not None and px.get("lr"):
            out["muon_lr"] = r["muon_lr"] * self.peak_lr / px["lr"]
        if transferred and px.get("batch_tokens") and px["batch_tokens"] != self.batch_tokens:
            from sizeup.plan.stages import batch_transfer

            recipe = Recipe(**r)
            _, betas, eps, mom = batch_transfer(recipe, 1.0, self.batch_tokens, px["batch_tokens"])
            mom = mom if r["momentum"] > 0 else r["momentum"]  # as build_optimizer moves it
            out.update(beta1=betas[0], beta2=betas[1], eps=eps, momentum=mom)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict; the keys "peak_lr", "batch_tokens", "params", "tokens", "flops" and
        "layers" are the command-line contract; "run_config" is ``run_config()``."""
        d = asdict(self)
        if d["loss_interval"] is not None:
            d["loss_interval"] = list(d["loss_interval"])
        d["run_config"] = self.run_config()
        return d

    def to_json(self) -> str:
        """The plan as indented JSON."""
        return json.dumps(self.to_dict(), indent=2)

    def summary_rows(self) -> list[tuple[str, str]]:
        """(quantity, value) rows of the headline numbers, in words, shared by Markdown and
        rich. Loss, time and cost always have a row: the number, or what it needs."""
        rows = [
            ("laws", f"{self.preset['name']} ({self.preset['source']})"),
            ("shape", self._shape_text()),
            ("parameters", self._params_text()),
            ("tokens", self._tokens_text()),
            (
                "compute",
                f"{self.flops:.3e} FLOPs ({self.flops_formula}); every matmul of this GPT "
                f"counted: {self.flops_exact:.3e}",
            ),
            (
                "batch",
                f"{_fmt(self.batch_tokens)} tokens = {self.batch_sequences} sequences "
                f"({self.batch_rounding})",
            ),
            ("steps", f"{self.steps:,}"),
            ("peak lr", f"{self.peak_lr:.4g} ({self.lr_source})"),
            ("schedule", schedule_text(self.schedule)),
            ("transfer", self._transfer_text()),
        ]
        if self.batch_ramp:
            rows.insert(6, ("batch ramp", ramp_text(self.batch_ramp)))
        if self.batch_transfer is not None:
            rows.append(("batch transfer", batch_transfer_text(self.batch_transfer)))
        if self.proxy is not None:
            rows.append(("proxy", _proxy_row(self.proxy)))
        return rows + [
            ("predicted loss", self._loss_text()),
            ("time", self._time_text()),
            ("cost", self._cost_text()),
        ]

    def _explained(self, name: str) -> dict[str, Any] | None:
        return next((e for e in self.explain if e["name"] == name), None)

    def _shape_text(self) -> str:
        """Layers, width as heads x head_dim, d_ff with its rounding, vocabulary and context."""
        s = self.shape
        kv = f", {s['n_kv_head']} key/value heads" if s["n_kv_head"] != s["n_head"] else ""
        d_ff = f"d_ff {s['d_ff']:,}"
        if s.get("ffn_multiple", 1) > 1:
            exact = s["mlp_ratio"] * s["d_model"]
            how = "," if abs(exact - s["d_ff"]) < 1e-6 else f" = {exact:,.1f} rounded up to"
            d_ff += f" ({s['mlp_ratio']:.4g} x d_model{how} a multiple of {s['ffn_multiple']})"
        vocab = self._explained("vocab_size")
        source = f" ({vocab['formula']})" if vocab else ""
        return (
            f"{s['n_layer']} layers, d_model {s['d_model']:,} ({s['n_head']} heads x "
            f"{s['head_dim']}{kv}), {d_ff}, vocabulary {s['vocab_size']:,}{source}, context "
            f"{s['seq_len']:,}"
        )

    def _params_text(self) -> str:
        text = (
            f"{_fmt(self.params)} total, {_fmt(self.params_non_embedding)} without the embeddings"
        )
        if self.params_active:  # an MoE: what one token uses
            text += f", {_fmt(self.params_active)} active per token"
        t = self.size_target
        if t is not None:
            got = self.params if t["is"] in ("params", "N_opt(C)", "sqrt(C / (6 r))") else None
            off = f", {got / t['size'] - 1:+.1%}" if got else ""
            what = (
                f"{t['size']:.3g} parameters"
                if t["is"] == "params"
                else f"{t['is']} = {t['size']:.3g}"
            )
            text += f"; the family shape nearest the target {what}{off}"
        return text

    def _tokens_text(self) -> str:
        text = f"{_fmt(self.tokens)} = {self.tokens_per_param:.1f} tokens per parameter"
        if self.optimum and self.optimum.get("tokens_per_param"):
            text += (
                f" (compute-optimal under {self.preset['name']}: "
                f"{self.optimum['tokens_per_param']:.1f})"
            )
        return text

    def _transfer_text(self) -> str:
        """The target against the proxy, in words (or why nothing was transferred)."""
        if self.proxy is None:
            return (
                "none: no proxy given (--base-width, --base-lr, --base-batch, --base-tokens), "
                "so the lr comes from the laws and the table is the target's own"
            )
        parts = [f"{self.width_ratio:.4g}x the proxy's width"]
        if self.proxy.get("batch_tokens"):
            parts.append(f"{self.batch_ratio:.4g}x its batch")
        if self.proxy.get("tokens"):
            parts.append(f"{self.data_ratio:.4g}x its tokens")
        text = ", ".join(parts)
        if self.data_exponent:
            text += f"; lr x (tokens ratio)^{self.data_exponent:g}"
        return text

    def _loss_text(self) -> str:
        if self.loss is not None:
            band = ""
            if self.loss_interval is not None and self.loss_interval[0] != self.loss_interval[1]:
                band = f" (90% bootstrap {self.loss_interval[0]:.4f}-{self.loss_interval[1]:.4f})"
            return f"{self.loss:.4f}{band}"
        name = self.preset["name"]
        if "loss" not in self.preset.get("provides", []):
            return (
                f"- (no loss law in preset {name}; --preset chinchilla, epoch or a `sizeup fit` "
                "fit.json predicts one)"
            )
        return f"- (preset {name}'s loss law is not in C = 6ND terms)"

    def _time_text(self) -> str:
        if self.time_s is None or self.hardware is None:
            return "- (give --gpu, e.g. --gpu H100 --n-gpus 256, for the wall time)"
        h = self.hardware
        return (
            f"{self.time_s / 86400:.2f} days on {h['n_gpus']} x {h['gpu']} at MFU {h['mfu']:g} "
            f"({_fmt(self.gpu_hours)} GPU-hours)"
        )

    def _cost_text(self) -> str:
        if self.cost is not None and self.hardware is not None:
            return f"{self.cost:,.0f} at {self.hardware['gpu_price']:g} per GPU-hour"
        if self.time_s is None:
            return "- (give --gpu and --gpu-price, per GPU-hour, for the cost)"
        return (
            f"- (give --gpu-price, per GPU-hour, for the cost of {_fmt(self.gpu_hours)} GPU-hours)"
        )

    def layer_header(self) -> list[str]:
        """Column names of the per-layer table."""
        return ["tensor", "role", "init std", "mult", "lr", "decay/step", "beta1", "beta2", "eps"]

    def layer_rows(self) -> list[list[str]]:
        """The per-layer table as strings."""

        def g(v: Any) -> str:
            return "-" if v is None else f"{v:.3g}"

        keys = ("init_std", "multiplier", "lr", "decay_per_step", "beta1", "beta2", "eps")
        return [
            [r["tensor"], r["role"] + ("*" if r["optimizer"] == "muon" else "")]
            + [g(r[k]) for k in keys]
            for r in self.layers
        ]

    def table_title(self) -> str:
        """What the per-layer table is (shared by Markdown and rich)."""
        form = "Table 8 (readout multiplier 1/n)" if self.readout_form == "table8" else "Table 3"
        return (
            f"rule {self.rule}, {self.recipe.get('optimizer', 'adamw')}, readout in the {form} "
            "form; sizeup.parametrize on the target, values from its optimizer"
            + (" (* updated by Muon)" if any(r["optimizer"] == "muon" for r in self.layers) else "")
        )

    def to_markdown(self) -> str:
        """The plan as a Markdown document (summary, per-layer table, warnings, derivations)."""
        out = ["# sizeup plan", "", "| quantity | value |", "|---|---|"]
        out += [f"| {k} | {v} |" for k, v in self.summary_rows()]
        out += ["", f"## Per-layer table ({self.table_title()})", ""]
        head = self.layer_header()
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(r) + " |" for r in self.layer_rows()]
        if self.comparison is not None:
            from sizeup.plan.compare import to_markdown

            out += ["", to_markdown(self.comparison).rstrip("\n")]
        if self.warnings:
            out += ["", "## Warnings", ""] + [f"- {w}" for w in self.warnings]
        out += ["", "## How each number was derived", ""]
        for e in self.explain:
            out.append(
                f"- **{e['name']}** = {_fmt_any(e['value'])}: `{e['formula']}` "
                f"with {_fmt_inputs(e['inputs'])}"
            )
        return "\n".join(out) + "\n"

    def save(self, out_dir: str | Path) -> Path:
        """Write out_dir/plan.json, out_dir/plan.md and out_dir/run.json (``run_config()``:
        `sizeup train -c out_dir/run.json`), and with a comparison of laws
        out_dir/compare_lr.png (each law's lr against tokens); return the JSON path."""
        d = Path(out_dir)
        d.mkdir(parents=True, exist_ok=True)
        (d / "plan.json").write_text(self.to_json())
        (d / "plan.md").write_text(self.to_markdown())
        (d / "run.json").write_text(json.dumps(self.run_config(), indent=2))
        if self.comparison is not None:
            from sizeup.plan.compare import plot_comparison

            plot_comparison(self.comparison, d / "compare_lr.png")
        return d / "plan.json"


def schedule_text(sched: dict[str, Any]) -> str:
    """The schedule in one line: kind, warmup, stable and decay steps, and what the kind reads."""
    kind = sched["kind"]
    text = f"{kind}: warmup {sched['warmup_steps']:,}"
    if kind in ("wsd", "power"):
        text += f", then {sched['stable_steps']:,} steps, {sched['cooldown']} decay {sched['decay_steps']:,} steps"
    elif kind == "cosine":
        text += f", cosine decay {sched['decay_steps']:,} steps"
    elif kind == "constant":
        text += f", constant {sched['stable_steps']:,} steps"
    if kind == "multistep":
        text += ", then " + ", ".join(
            f"x{m:g} after {q:.0%} of tokens" for q, m in sched["milestones"]
        )
    if kind == "power":
        text += f"; lr = min(peak, {sched['power_a']:g} n^{sched['power_b']:g}), n tokens seen"
    return text


def batch_transfer_text(moved: dict[str, Any]) -> str:
    """What the square-root rule moved from the proxy's batch to the target's, in one line."""
    b = moved["batch"] / moved["base_batch"]
    parts = []
    for k, pair in moved.items():
        if k in ("base_batch", "batch") or f"{pair[0]:.4g}" == f"{pair[1]:.4g}":
            continue
        before, after = pair
        clipped = " (clipped at 0)" if k != "lr" and after == 0 else ""
        parts.append(f"{k} {before:.4g} -> {after:.4g}{clipped}")
    return (
        f"proxy batch {_fmt(moved['base_batch'])} -> {_fmt(moved['batch'])} tokens "
        f"(b = {b:.4g}, square-root rule): " + ", ".join(parts)
    )


def ramp_text(table: list[dict[str, float]]) -> str:
    """The batch ramp in one line: each stage's batch and first step."""
    return ", ".join(
        f"{_fmt(r['batch_tokens'])} from step {int(r['from_step']):,} ({_fmt(r['from_tokens'])} tokens)"
        for r in table
    )


def _fmt(x: float) -> str:
    """Human-friendly big number: 6.9B, 2T, 9.4M."""
    x = float(x)
    for unit, v in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(x) >= v:
            return f"{x / v:.3g}{unit}"
    return f"{x:.4g}"


def _proxy_row(proxy: dict[str, Any]) -> str:
    """The proxy in one line: base width and depth, tuned lr, batch, tokens and source."""
    parts = [f"base width {proxy['width']}"]
    parts += [f"depth {proxy['depth']}"] if proxy.get("depth") else []
    parts += [f"lr {proxy['lr']:.4g}"] if proxy.get("lr") else []
    parts += [f"batch {_fmt(proxy['batch_tokens'])} tokens"] if proxy.get("batch_tokens") else []
    parts += [f"{_fmt(proxy['tokens'])} tokens"] if proxy.get("tokens") else []
    return ", ".join(parts) + f" ({proxy['source']})"


def _fmt_any(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _fmt_inputs(inputs: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_fmt_any(v)}" for k, v in inputs.items()) or "no inputs"


# ----------------------------------------------------------------------------- the planner


def plan(
    target: Target | None = None,
    *,
    shape: Shape | ShapeOptions | None = None,
    proxy: Proxy | None = None,
    recipe: Recipe | None = None,
    laws: Laws | None = None,
    schedule: ScheduleOptions | None = None,
    hardware: Hardware | None = None,
    checks: Checks | None = None,
    model: ModelFactory | None = None,
    **options: Any,
) -> Plan:
    """Plan the target run: shape, tokens, FLOPs, batch, steps, peak lr, schedule, per-layer
    table, predicted loss, time and cost, with warnings and the derivation of every number.

    Inputs are records (``shape`` may be an explicit Shape) and/or flat options that fill their
    fields: ``compute``/``params``/``tokens``/``tokens_per_param`` (Target); ``n_layer``,
    ``d_model``, ... (ShapeOptions); ``base_width``, ``base_lr``, ... (Proxy); ``rule``,
    ``optimizer``, ``readout_form``, ``weight_decay``, ... (Recipe, shared by proxy and
    target); ``preset``, ``lr_law``, ``data_exponent``, ... (Laws); ``batch_tokens``,
    ``warmup``, ... (ScheduleOptions); ``gpu``, ``n_gpus``, ... (Hardware);
    ``critical_batch``, ... (Checks). ``model``: a factory ``(Shape) -> nn.Module`` for the
    per-layer table (default the built-in GPT). A proxy from ``Proxy.from_study`` brings its
    recipe.
    """
    if isinstance(shape, Shape):
        shape = ShapeOptions.of(shape)
    given = dict(
        target=target,
        shape=shape,
        proxy=proxy,
        recipe=recipe,
        laws=laws,
        schedule=schedule,
        hardware=hardware,
        checks=checks,
    )
    inp = PlanInputs.build(given, options)
    law = inp.laws.resolve()
    size = size_stage(inp.target, inp.shape, law)
    sh = size.value.shape
    budget = budget_stage(inp.target, size.value, law, inp.checks)
    batch = batch_stage(inp.schedule, inp.laws, law, budget.value, sh)
    ramp = ramp_stage(inp.schedule, law, batch.value, budget.value, sh)
    steps = ramp.value.steps if ramp.value is not None else batch.value.steps
    ratios = ratio_stage(inp.proxy, sh, batch.value, budget.value, inp.checks.extrapolation_limit)
    lr = lr_stage(inp.laws, law, budget.value, sh, batch.value, inp.proxy, inp.recipe, ratios.value)
    sched = schedule_stage(inp.schedule, inp.recipe, steps, lr.value.peak)
    table = table_stage(sh, inp.recipe, inp.proxy, lr.value, batch.value, model)
    loss = loss_stage(law, size.value.params, budget.value.tokens)
    cost = cost_stage(inp.hardware, budget.value.flops_exact)
    predicted = loss.value[0] if loss.value is not None else None
    verdict = checks_stage(
        inp.checks, inp.laws, law, budget.value, size.value, batch.value, predicted
    )
    stages = [size, budget, batch, ramp, ratios, lr, sched, table, loss, cost, verdict]
    p = _assemble(inp, law, stages)
    if inp.laws.compare_laws:
        from sizeup.plan.compare import compare_laws

        p.comparison = compare_laws(p, inp.laws.compare_laws, inp.recipe, inp.schedule).to_dict()
    return p


def _assemble(inp: PlanInputs, law: Any, stages: list[Stage]) -> Plan:
    """The Plan record from the stages' values; explain and warnings in stage order."""
    size, budget, batch, ramp, ratios, lr, sched, table, loss, cost, verdict = (
        s.value for s in stages
    )
    return Plan(
        preset=law.to_dict(),
        shape=size.shape.to_dict(),
        params=size.params,
        params_non_embedding=size.params_non_embedding,
        params_active=size.shape.params(active=True) if size.shape.n_experts else None,
        tokens=budget.tokens,
        tokens_per_param=budget.tokens_per_param,
        flops=budget.flops,
        flops_formula=budget.formula,
        flops_exact=budget.flops_exact,
        batch_tokens=batch.tokens,
        batch_sequences=batch.sequences,
        batch_rounding=batch.rounding,
        steps=ramp.steps if ramp is not None else batch.steps,
        peak_lr=lr.peak,
        lr_source=lr.source,
        warmup_steps=sched["warmup_steps"],
        schedule=sched,
        width_ratio=ratios.width,
        batch_ratio=ratios.batch,
        data_ratio=ratios.data,
        data_exponent=inp.laws.data_exponent,
        readout_form=inp.recipe.readout_form,
        rule=inp.recipe.rule,
        layers=table,
        recipe=asdict(inp.recipe),
        proxy=inp.proxy.to_dict() if inp.proxy is not None else None,
        loss=loss[0] if loss is not None else None,
        loss_interval=loss[1] if loss is not None else None,
        time_s=cost.time_s if cost is not None else None,
        gpu_hours=cost.gpu_hours if cost is not None else None,
        cost=cost.cost if cost is not None else None,
        hardware=cost.hardware if cost is not None else None,
        optimum=verdict.optimum,
        critical_batch=verdict.critical_batch,
        batch_ramp=ramp.table if ramp is not None else None,
        batch_transfer=lr.moved,
        size_target=None if size.target is None else {"size": size.target, "is": size.target_is},
        warnings=[w for s in stages for w in s.warnings],
        explain=[e for s in stages for e in s.explain],
    )
