"""The target-run planner: from a tuned proxy and fitted (or published) laws to a complete plan.

"I tuned at 40M; what do I run at 7B on 2T tokens?" ``plan(...)`` answers with the model shape,
parameters, tokens, FLOPs, batch (and the micro-batch that fits the GPU), steps, peak lr, warmup
and WSD schedule, the per-layer table (init std, multiplier, lr, Adam betas and eps, weight
decay per step), the predicted loss, wall time and cost, and warnings. Every number carries its
derivation (formula and inputs) for ``--explain``.

The plan's decisions are one RunConfig (``Plan.run``, written as run.json): the ModelSpec it
chose, the ParamSpec and OptimSpec of the recipe (the lr, betas and eps moved to the target's
batch and length), the ScheduleSpec and the batch. `sizeup train -c run.json` trains exactly it,
and the per-layer table is read off it as `sizeup train` builds it, so the plan and the run
cannot disagree (tests/test_plan_roundtrip.py).

``plan()`` only composes stages (``sizeup.plan.stages`` and ``sizeup.plan.table``), each of
which returns its value and its derivation:

* size: the target (compute C, params N, tokens D, tokens per parameter) or an explicit shape,
  plus the law's compute-optimal allocation for what the target leaves open;
* budget: tokens and compute in the law's convention, "6ND" or "MD" (DeepSeek LLM);
* batch: an explicit batch, else the law's B(C) (or B in its own variables, e.g. Step Law's
  B(D)), else a user B(D) law, else a fallback B(C); optionally a ramp-up to it;
* peak lr: a user eta(N, D) law, else transfer from the proxy (eta_base b^1/2 d^alpha_data),
  else an lr given for the target, else the law's eta(C) (or eta in its own variables);
* schedule: WSD by default; constant, cosine, multistep or power;
* the run: the RunConfig of these decisions, with the micro-batch that fits the GPU's memory;
* per-layer table: that run built on the meta device (``sizeup.train.build.parametrized``);
* loss, time and cost, and the checks that warn.

Its inputs are the plan's records (``sizeup.plan.records``) and the fields of the shared
ModelSpec, ParamSpec, OptimSpec and ScheduleSpec it is given (``sizeup.plan.options``).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sizeup.config import DataSpec, ModelSpec, OptimSpec, ParamSpec, RunConfig
from sizeup.flops import gpu_memory_gib
from sizeup.optim.transfer import SQRT_RULE
from sizeup.plan.compare import compare_laws, plot_comparison, to_markdown
from sizeup.plan.options import PlanInputs, Study
from sizeup.plan.records import (
    PLAN_OPTIMIZER,
    BatchOptions,
    Checks,
    Hardware,
    Laws,
    Proxy,
    ShapeRule,
    Target,
    params,
    rounding_text,
)
from sizeup.plan.stages import (
    Batch,
    LearningRate,
    ProxyView,
    Stage,
    batch_stage,
    budget_stage,
    checks_stage,
    cost_stage,
    extrapolation_text,
    loss_stage,
    lr_stage,
    model_template,
    note,
    ramp_stage,
    ratio_stage,
    schedule_dict,
    schedule_stage,
    size_stage,
)
from sizeup.plan.table import table_stage
from sizeup.registry import get_optimizer
from sizeup.train.build import memory_estimate


@dataclass
class Plan:
    """A complete plan for the target run; every number has an entry in ``explain``. ``run``
    is the RunConfig that trains it (run.json); the other fields are what the plan decided
    and why."""

    run: RunConfig
    preset: dict[str, Any]
    model: dict[str, Any]  # run.model with its derived sizes (heads, head size, d_ff)
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
    layers: list[dict[str, Any]]
    # the parametrization the run uses (base: the proxy, else the target) and the proxy's
    # optimizer settings before the transfers
    recipe: dict[str, Any] = field(default_factory=dict)
    proxy: dict[str, Any] | None = None  # what was transferred from (and its source)
    loss: float | None = None
    loss_interval: tuple[float, float] | None = None
    # where a run's measured loss will land (a fit with its noise measured; None: a preset)
    loss_prediction_interval: tuple[float, float] | None = None
    # compute, params and tokens against the law's fitted ranges (sizeup.plan.stages.extrapolation)
    extrapolation: list[dict[str, Any]] = field(default_factory=list)
    # transfer exponents a study measured, each with the default it replaced (sizeup.sweep.exponents)
    measured_rules: list[dict[str, Any]] = field(default_factory=list)
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
    rounding: str = ""  # how d_ff and the heads came out, in words
    warnings: list[str] = field(default_factory=list)
    explain: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rule(self) -> str:
        """The parametrization's rule."""
        return self.run.parametrization.rule

    @property
    def readout_form(self) -> str:
        """The muP readout form of the table."""
        return self.run.parametrization.readout_form

    def lr_schedule(self) -> Any:
        """The planned lr multiplier per step (sizeup.schedules.Schedule), counting tokens
        through the batch ramp when there is one: the run's own (RunConfig.lr_schedule)."""
        return self.run.lr_schedule()

    def ramp(self) -> Any:
        """The planned batch ramp in tokens (sizeup.schedules.BatchRamp), or None."""
        return self.run.ramp()

    def run_config(self) -> RunConfig:
        """The RunConfig that trains this plan with `sizeup train` (sizeup's GPT): its ModelSpec
        (GQA, MoE, tied embeddings, d_ff as planned), the recipe's ParamSpec (the proxy as the
        base when its lr transferred, else the target itself; the Table 8 readout), the
        OptimSpec at the planned peak (betas, eps, momentum and Muon's lr moved to the target's
        batch, so base_batch_size is None), the ScheduleSpec, and the batch in sequences with
        its ramp and micro-batch."""
        return self.run

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict; the keys "peak_lr", "batch_tokens", "params", "tokens", "flops" and
        "layers" are the command-line contract; "run_config" is the run in its sections (what
        run.json holds)."""
        d = {k: v for k, v in asdict(self).items() if k != "run"}
        for k in ("loss_interval", "loss_prediction_interval"):
            if d[k] is not None:
                d[k] = list(d[k])
        d["run_config"] = self.run.sections()
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
            ("batch", self._batch_text()),
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
        if self.measured_rules:
            rows.append(("measured rules", "; ".join(m["text"] for m in self.measured_rules)))
        return rows + [
            ("predicted loss", self._loss_text()),
            ("extrapolation", self._extrapolation_text()),
            ("time", self._time_text()),
            ("cost", self._cost_text()),
        ]

    def _explained(self, name: str) -> dict[str, Any] | None:
        return next((e for e in self.explain if e["name"] == name), None)

    def _shape_text(self) -> str:
        """Depth, width as heads x head size, d_ff with its rounding, MoE, vocabulary, context."""
        m = self.run.model
        kv = f", {m.kv_heads} key/value heads" if m.kv_heads != m.heads else ""
        moe = ""
        if m.n_experts:
            moe = (
                f", MoE {m.n_experts} experts (top {m.top_k}, {m.n_shared_experts} shared, "
                f"hidden {m.moe_hidden:,}, first {m.first_dense} dense)"
            )
        vocab = self._explained("vocab_size")
        source = f" ({vocab['formula']})" if vocab else ""
        return (
            f"depth {m.depth}, width {m.width:,} ({m.heads} heads x {m.head_size}{kv}), "
            f"{self.rounding.split('; ')[0]}{moe}, vocabulary {m.vocab_size:,}{source}, "
            f"context {m.seq_len:,}"
        )

    def _batch_text(self) -> str:
        text = (
            f"{_fmt(self.batch_tokens)} tokens = {self.batch_sequences} sequences "
            f"({self.batch_rounding})"
        )
        micro = self.run.data.micro_batch_size
        if micro is not None:
            text += f"; micro-batches of {micro} sequences per GPU (gradient accumulation)"
        return text

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
                "none: no proxy given (--base-width, --lr, --base-batch-tokens, --base-tokens), "
                "so the lr comes from the laws (or --lr) and the table is the target's own"
            )
        parts = [f"{self.width_ratio:.4g}x the proxy's width"]
        if self.proxy.get("batch_tokens"):
            parts.append(f"{self.batch_ratio:.4g}x its batch")
        if self.proxy.get("tokens"):
            parts.append(f"{self.data_ratio:.4g}x its tokens")
        text = ", ".join(parts)
        alpha = self.recipe.get("optimizer", {}).get("data_exponent", 0.0)
        if alpha:
            text += f"; lr x (tokens ratio)^{alpha:g}"
        return text

    def _loss_text(self) -> str:
        if self.loss is not None:
            band = ""
            if self.loss_interval is not None and self.loss_interval[0] != self.loss_interval[1]:
                band = f" (90% bootstrap {self.loss_interval[0]:.4f}-{self.loss_interval[1]:.4f})"
            if self.loss_prediction_interval is not None:
                lo, hi = self.loss_prediction_interval
                band = (
                    f" (90% prediction interval {lo:.4f}-{hi:.4f}: where a run's measured loss "
                    f"lands, the fit's noise included; the law itself "
                    f"{self.loss_interval[0]:.4f}-{self.loss_interval[1]:.4f})"
                )
            return f"{self.loss:.4f}{band}"
        name = self.preset["name"]
        if "loss" not in self.preset.get("provides", []):
            return (
                f"- (no loss law in preset {name}; --preset chinchilla, epoch or a `sizeup fit` "
                "fit.json predicts one)"
            )
        return f"- (preset {name}'s loss law is not in C = 6ND terms)"

    def _extrapolation_text(self) -> str:
        if not self.extrapolation:
            return "- (the laws state no fitted range; --fit-range Cmin,Cmax gives one)"
        return extrapolation_text(self.extrapolation)

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
            [r["tensor"], r["role"] + ("*" if self._orthogonalised(r) else "")]
            + [g(r[k]) for k in keys]
            for r in self.layers
        ]

    def table_title(self) -> str:
        """What the per-layer table is (shared by Markdown and rich)."""
        form = "Table 8 (readout multiplier 1/n)" if self.readout_form == "table8" else "Table 3"
        return (
            f"rule {self.rule}, {self.run.optimizer.name}, readout in the {form} form; the "
            "plan's run as `sizeup train` builds it, values from its optimizer"
            + (
                f" (* {self.run.optimizer.name}'s orthogonalised update)"
                if any(self._orthogonalised(r) for r in self.layers)
                else ""
            )
        )

    def _orthogonalised(self, row: dict[str, Any]) -> bool:
        """Whether a layer row gets the run's orthogonalised update (Muon's, Dion's hidden
        matrices) rather than its Adam side."""
        name = self.run.optimizer.name
        return get_optimizer(name).orthogonal and row["optimizer"] == name

    def to_markdown(self) -> str:
        """The plan as a Markdown document (summary, per-layer table, warnings, derivations)."""
        out = ["# sizeup plan", "", "| quantity | value |", "|---|---|"]
        out += [f"| {k} | {v} |" for k, v in self.summary_rows()]
        out += ["", f"## Per-layer table ({self.table_title()})", ""]
        head = self.layer_header()
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(r) + " |" for r in self.layer_rows()]
        if self.comparison is not None:
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
        """Write out_dir/plan.json, out_dir/plan.md and out_dir/run.json (the run in its
        sections: `sizeup train -c out_dir/run.json`), and with a comparison of laws
        out_dir/compare_lr.png (each law's lr against tokens); return the JSON path."""
        d = Path(out_dir)
        d.mkdir(parents=True, exist_ok=True)
        (d / "plan.json").write_text(self.to_json())
        (d / "plan.md").write_text(self.to_markdown())
        (d / "run.json").write_text(json.dumps(self.run.sections(), indent=2))
        if self.comparison is not None:
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
    parts += [f"base depth {proxy['depth']}"] if proxy.get("depth") else []
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
    model: ModelSpec | None = None,
    parametrization: ParamSpec | None = None,
    optimizer: OptimSpec | str | None = None,
    shape_rule: ShapeRule | None = None,
    proxy: Proxy | None = None,
    laws: Laws | None = None,
    batch: BatchOptions | None = None,
    hardware: Hardware | None = None,
    checks: Checks | None = None,
    study: Study | None = None,
    **options: Any,
) -> Plan:
    """Plan the target run: shape, tokens, FLOPs, batch, steps, peak lr, schedule, per-layer
    table, predicted loss, time and cost, with warnings and the derivation of every number.

    Inputs are records and/or flat options that fill their fields (sizeup.plan.options): the
    target (``compute``, ``params``, ``tokens``, ``tokens_per_param``); the model's ModelSpec
    fields (``width`` and ``depth`` for an explicit shape, ``n_kv_head``, ``d_ff``, the MoE
    fields, ...; a ModelSpec given whole is an explicit shape); the recipe's ParamSpec fields
    (``rule``, ``base_width``: the proxy, ``base_depth``, ``readout_form``, ...) and OptimSpec
    fields (``optimizer``, ``lr``: the proxy's tuned lr, or the target's own without a proxy,
    ``weight_decay``, ``base_tokens``, ``data_exponent``, ...); the ScheduleSpec fields
    (``schedule``, ``warmup``, ...); and the plan's own records: ShapeRule (``aspect_ratio``,
    ...), Proxy (``batch_tokens``, the proxy's batch), Laws (``preset``, ``lr_law``, ...),
    BatchOptions (``batch_tokens``, ``ramp``, ...), Hardware (``gpu``, ``n_gpus``, ...),
    Checks. ``study``: a sweep study read as the proxy (``sizeup.plan.study.read_study``).
    A record's fields count as given where its author named them (``Record.given``).
    """
    if isinstance(optimizer, str):  # its main field, as RunConfig(optimizer="muon") takes it
        options, optimizer = {**options, "optimizer": optimizer}, None
    given = dict(
        target=target,
        model=model,
        parametrization=parametrization,
        optimizer=optimizer,
        shape_rule=shape_rule,
        proxy=proxy,
        laws=laws,
        batch=batch,
        hardware=hardware,
        checks=checks,
    )
    if model is not None:  # a ModelSpec given whole is an explicit shape
        options = {"width": model.width, "depth": model.depth, **options}
    inp = PlanInputs.build(given, options, study)
    p = _plan(inp)
    if study is not None:  # what the study supports only in part, first (sizeup.plan.study)
        p.warnings[:0] = list(study.warnings)
    return p


def _plan(inp: PlanInputs) -> Plan:
    """The stages in order (module doc), then the Plan record."""
    law = inp.laws.resolve()
    size = size_stage(inp.target, inp.model, inp.shape_rule, law)
    model = size.value.model
    budget = budget_stage(inp.target, size.value, law, inp.checks)
    batch = batch_stage(inp.batch, inp.laws, law, budget.value, model)
    ramp = ramp_stage(inp.batch, law, batch.value, budget.value, model)
    steps = ramp.value.steps if ramp.value is not None else batch.value.steps
    opt_given = {**PLAN_OPTIMIZER, **inp.optimizer}
    proxy = _proxy_view(inp, opt_given)
    # the recipe's optimizer; its lr is a placeholder until the lr stage decides one
    recipe_opt = OptimSpec(**{**opt_given, "lr": opt_given.get("lr", 1.0)})
    ratios = ratio_stage(proxy, model, batch.value, budget.value, inp.checks.extrapolation_limit)
    lr = lr_stage(
        inp.laws,
        law,
        budget.value,
        model,
        batch.value,
        (proxy, opt_given.get("lr")),
        recipe_opt,
        ratios.value,
    )
    sched = schedule_stage(inp.schedule, inp.batch, lr.value.optimizer.name, steps)
    run = run_stage(inp, model, lr.value, sched.value, batch.value, ramp.value, proxy)
    table = table_stage(run.value)
    loss = loss_stage(law, size.value.params, budget.value.tokens)
    cost = cost_stage(inp.hardware, budget.value.flops_exact)
    predicted = loss.value.value if loss.value is not None else None
    verdict = checks_stage(
        inp.checks, inp.laws, law, budget.value, size.value, batch.value, predicted
    )
    stages = [size, budget, batch, ramp, ratios, lr, sched, run, table, loss, cost, verdict]
    p = _assemble(inp, law, stages, proxy, recipe_opt)
    if inp.laws.compare_laws:
        p.comparison = compare_laws(p, inp.laws.compare_laws, inp.batch).to_dict()
    return p


def _proxy_view(inp: PlanInputs, opt: dict[str, Any]) -> ProxyView | None:
    """The proxy as the stages read it: the ParamSpec's base width, the OptimSpec's lr and
    tokens, the Proxy record's batch in tokens (None without a proxy)."""
    if inp.proxy is None:
        return None
    batch = next((m.value for m in inp.measured if m.name == "batch"), None)
    return ProxyView(
        width=inp.parametrization["base_width"],
        depth=inp.parametrization.get("base_depth"),
        lr=opt.get("lr"),
        batch_tokens=inp.proxy.batch_tokens,
        tokens=opt.get("base_tokens"),
        record=inp.proxy,
        batch_exponent=batch,
    )


def measured_rules(measured: tuple[Any, ...], ratios: Any) -> list[dict[str, Any]]:
    """The study's measured exponents as the plan records them: each with the default it
    replaced (the horizon: OptimSpec's data_exponent; the batch: the square-root rule's 1/2),
    and how far the plan applies it against how far it was measured (``measured_over``: the
    study's largest over smallest axis value; ``applied_over``: the plan's data or batch ratio
    against the proxy; ``factor``: how far past the measured span, 1 within it)."""
    out = []
    for m in measured:
        default = OptimSpec().data_exponent if m.name == "horizon" else SQRT_RULE
        span = max(m.values) / min(m.values)
        ratio = ratios.data if m.name == "horizon" else ratios.batch
        applied = max(ratio, 1 / ratio)
        text = m.text(default) + f"; measured over {span:.3g}x, applied over {applied:.3g}x"
        out.append(
            {
                **m.to_dict(),
                "replaces": default,
                "measured_over": span,
                "applied_over": applied,
                "factor": max(1.0, applied / span),
                "text": text,
            }
        )
    return out


def run_stage(
    inp: PlanInputs,
    model: ModelSpec,
    lr: LearningRate,
    sched: Any,
    batch: Batch,
    ramp: Any,
    proxy: ProxyView | None,
) -> Stage[RunConfig]:
    """The RunConfig of the plan's decisions: the model, the recipe's parametrization (the
    proxy as its base when its lr transferred, else the target itself: a law's lr is the
    target's own; depth scaling only with a transfer), the optimizer at the target, the
    schedule and the batch in sequences with its ramp and the micro-batch that fits."""
    param = {**inp.parametrization}
    if not lr.transferred:
        param.update(base_width=model.width, base_depth=None, base_head_dim=None)
    else:
        param.setdefault("base_head_dim", _base_head_dim(model, param["base_width"]))
    seq = model.seq_len
    # every stage of the ramp (the run may end before its last: the table shows those reached)
    stages = None if ramp is None else tuple((t, int(b) // seq) for t, b in ramp.ramp.stages)
    warns = []
    if stages is not None and stages[-1][1] != batch.sequences:
        warns.append(
            f"the batch ramp stops at {stages[-1][1] * seq:,} tokens, short of the planned "
            f"{batch.tokens:,}: the critical batch never reaches it in this run, so the run "
            "trains at the ramp's last batch"
        )
    data = DataSpec(batch_size=stages[-1][1] if stages else batch.sequences, batch_ramp=stages)
    run = RunConfig(
        model=model,
        parametrization=ParamSpec(**param),
        optimizer=lr.optimizer,
        schedule=sched,
        data=data,
        fsdp=inp.hardware.gpu is not None and inp.hardware.n_gpus > 1,
    )
    micro, ex, micro_warns = _micro_batch(run, inp.hardware, inp.data)
    run = run.replace(micro_batch_size=micro) if micro is not None else run
    return Stage(run, ex, warns + micro_warns)


def _base_head_dim(model: ModelSpec, base_width: int) -> int | None:
    """The base's head size when the target's does not divide the base width: the largest
    power-of-two fraction of it that does (a narrow proxy); None when it divides."""
    hd = model.head_dim
    if base_width % hd == 0 or model.n_head is not None:
        return None
    while base_width % hd and hd > 2:
        hd //= 2
    return hd


def _micro_batch(
    run: RunConfig, hw: Hardware, given: dict[str, Any]
) -> tuple[int | None, list[dict[str, Any]], list[str]]:
    """The micro-batch (sequences per GPU per pass): given, else with --gpu the largest divisor
    of every per-GPU batch whose training memory (sizeup.train.build.memory_estimate: weights,
    gradients and Adam state, sharded over the GPUs with FSDP, plus the pass's activations)
    fits 90% of the GPU's memory; None when the whole per-GPU batch fits, or without a GPU."""
    if "micro_batch_size" in given:
        m = given["micro_batch_size"]
        return m, [note("micro_batch_size", m, "given")], []
    memory = hw.gpu_memory or (gpu_memory_gib(hw.gpu) if hw.gpu is not None else None)
    if memory is None:
        return None, [], []
    per_gpu = [b // hw.n_gpus for b in run.data.batches() if b % hw.n_gpus == 0]
    if len(per_gpu) != len(run.data.batches()):
        return None, [], [f"the batch does not split evenly over {hw.n_gpus} GPUs"]
    budget = 0.9 * memory * 2**30
    common = math.gcd(*per_gpu)
    for m in sorted((d for d in range(1, common + 1) if common % d == 0), reverse=True):
        _, need = memory_estimate(run.replace(micro_batch_size=m), world_size=hw.n_gpus)
        if need <= budget:
            micro = None if m == max(per_gpu) else m
            ex = note(
                "micro_batch_size",
                micro or "the whole per-GPU batch",
                "largest divisor of the per-GPU batch whose memory fits 90% of the GPU "
                "(sizeup.train.build.memory_estimate)",
                per_gpu=max(per_gpu),
                gib_needed=round(need / 2**30, 2),
                gib_per_gpu=memory,
            )
            return micro, [ex], []
    return (
        None,
        [],
        [
            f"even one sequence per pass does not fit {memory:g} GiB per GPU (weights, gradients "
            "and Adam state alone): use more GPUs or a smaller model"
        ],
    )


def _assemble(
    inp: PlanInputs, law: Any, stages: list[Stage], proxy: ProxyView | None, recipe: OptimSpec
) -> Plan:
    """The Plan record from the stages' values; explain and warnings in stage order."""
    size, budget, batch, ramp, ratios, lr, sched, run, table, loss, cost, verdict = (
        s.value for s in stages
    )
    model = run.model
    return Plan(
        run=run,
        preset=law.to_dict(),
        model={
            **model.to_dict(),
            "heads": model.heads,
            "head_size": model.head_size,
            "kv_heads": model.kv_heads,
            "d_ff": model.ffn_hidden,
        },
        params=size.params,
        params_non_embedding=size.params_non_embedding,
        params_active=params(model, active=True) if model.n_experts else None,
        tokens=budget.tokens,
        tokens_per_param=budget.tokens_per_param,
        flops=budget.flops,
        flops_formula=budget.formula,
        flops_exact=budget.flops_exact,
        batch_tokens=batch.tokens,
        batch_sequences=batch.sequences,
        batch_rounding=batch.rounding,
        steps=run.schedule.steps,
        peak_lr=run.optimizer.lr,
        lr_source=lr.source,
        warmup_steps=run.schedule.warmup,
        schedule=schedule_dict(run.schedule, run.optimizer.lr),
        width_ratio=ratios.width,
        batch_ratio=ratios.batch,
        data_ratio=ratios.data,
        layers=table,
        recipe={
            "parametrization": run.parametrization.to_dict(),  # as run: its base is the proxy
            "optimizer": {**recipe.to_dict(), "lr": proxy.lr if proxy is not None else None},
        },
        proxy=_proxy_dict(proxy),
        loss=loss.value if loss is not None else None,
        loss_interval=loss.law_interval if loss is not None else None,
        loss_prediction_interval=loss.prediction_interval if loss is not None else None,
        extrapolation=verdict.extrapolation,
        measured_rules=measured_rules(inp.measured, ratios),
        time_s=cost.time_s if cost is not None else None,
        gpu_hours=cost.gpu_hours if cost is not None else None,
        cost=cost.cost if cost is not None else None,
        hardware=cost.hardware if cost is not None else None,
        optimum=verdict.optimum,
        critical_batch=verdict.critical_batch,
        batch_ramp=ramp.table if ramp is not None else None,
        batch_transfer=lr.moved,
        size_target=None if size.target is None else {"size": size.target, "is": size.target_is},
        rounding=rounding_text(model, model_template(inp.model, law), inp.shape_rule),
        warnings=[w for s in stages for w in s.warnings],
        explain=[e for s in stages for e in s.explain],
    )


def _proxy_dict(proxy: ProxyView | None) -> dict[str, Any] | None:
    """The proxy as plan.json records it."""
    if proxy is None:
        return None
    r = proxy.record
    return {
        "width": proxy.width,
        "depth": proxy.depth,
        "lr": proxy.lr,
        "batch_tokens": proxy.batch_tokens,
        "tokens": proxy.tokens,
        "tuned_width": r.tuned_width,
        "seq_len": r.seq_len,
        "vocab_size": r.vocab_size,
        "source": r.source,
    }
