"""The published laws side by side for one target run.

``compare_laws(plan, names, options)`` evaluates every named preset (sizeup.laws.presets)
at the plan's model and tokens, each in its own variables (N as its paper counted it, D, C in
its convention, a loss, the width), and returns one row per law: peak lr, batch in tokens
(rounded to whole sequences as the planner rounds), steps, warmup, the schedule the law was
fitted with, the AdamW timescale tau = B / (eta lambda D) (Bergsma et al. 2025, "Power Lines";
lambda is torch AdamW's weight decay of the recipe), the predicted loss where the law has one,
the critical batch where it has one, and the lines that say where the law's fitting setup
differs from this run (schedule, what N counts, model family, data, batch unit, optimizer).

A law in the loss (Kaplan's critical batch, MiniCPM's batch) is read at one loss for the
target: the plan's own predicted loss, else the first compared preset that predicts one, else
Chinchilla's; its row says which. ``plot_comparison`` draws each law's lr against tokens.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sizeup.errors import ConfigError
from sizeup.figures import pyplot
from sizeup.laws.presets import get_preset
from sizeup.plan.records import BatchOptions
from sizeup.plan.stages import law_point, round_batch
from sizeup.registry import get_optimizer
from sizeup.schedules import make_schedule, phases

LOSS_FALLBACK_PRESET = "chinchilla"  # predicts the loss a loss-read law needs, if nothing else does
TARGET_FAMILY = "sizeup GPT (pre-norm RMSNorm, RoPE, SwiGLU)"
N_WORDS = {
    "total": "total parameters",
    "non-embedding": "non-embedding parameters",
    "flops-per-token": "M, non-embedding FLOPs per token",
}


@dataclass
class LawRow:
    """One preset at the target: what it gives, and where its setup differs."""

    name: str
    source: str
    provides: list[str]
    peak_lr: float | None = None
    lr_formula: str = ""
    batch_tokens: int | None = None
    batch_formula: str = ""
    steps: int | None = None
    warmup_steps: int | None = None
    schedule: dict[str, Any] | None = None
    tau: float | None = None
    loss: float | None = None
    critical_batch: float | None = None
    differs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Comparison:
    """The rows, the target they were read at, and the loss the loss-read laws used."""

    target: dict[str, Any]
    loss: float | None
    loss_source: str
    rows: list[LawRow]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return asdict(self)


HEADER = ["law", "peak lr", "batch (tokens)", "steps", "warmup", "schedule", "tau", "loss"]


def table_rows(comparison: dict[str, Any]) -> list[list[str]]:
    """The comparison as strings, one list per law (HEADER's columns)."""

    def g(v: Any, fmt: str = ".3g") -> str:
        return "-" if v is None else format(v, fmt)

    out = []
    for r in comparison["rows"]:
        sched = r["schedule"]["kind"] if r["schedule"] else "-"
        out.append(
            [
                r["name"],
                g(r["peak_lr"]),
                "-" if r["batch_tokens"] is None else f"{r['batch_tokens']:,}",
                "-" if r["steps"] is None else f"{r['steps']:,}",
                "-" if r["warmup_steps"] is None else f"{r['warmup_steps']:,}",
                sched,
                g(r["tau"]),
                g(r["loss"], ".4f"),
            ]
        )
    return out


def to_markdown(comparison: dict[str, Any]) -> str:
    """The comparison as a Markdown section: the table, then each law's differences."""
    t = comparison["target"]
    out = [
        "## Published laws for this target",
        "",
        f"Target: {t['params']:,} parameters ({t['params_non_embedding']:,} non-embedding, "
        f"M = {t['flops_per_token_md']:.4g}), {t['tokens']:.4g} tokens; loss-read laws at "
        f"L = {_fmt(comparison['loss'])} ({comparison['loss_source']}).",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
    ]
    out += ["| " + " | ".join(r) + " |" for r in table_rows(comparison)]
    out.append("")
    for r in comparison["rows"]:
        out.append(f"- **{r['name']}** ({r['source']}): " + "; ".join(r["notes"] + r["differs"]))
    return "\n".join(out) + "\n"


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


# ----------------------------------------------------------------------------- evaluation


def compare_laws(plan: Any, names: tuple[str, ...], options: BatchOptions) -> Comparison:
    """Every named preset at the plan's model and tokens (see the module doc); the plan's
    recipe is its run's (``plan.run``)."""
    model = plan.run.model
    presets = [get_preset(n) for n in names]
    loss, source = _target_loss(plan, presets, model)
    point = law_point(model, plan.tokens, loss)
    target = {
        **{k: getattr(point, k) for k in ("params", "params_non_embedding", "tokens")},
        "flops_per_token_md": point.flops_per_token_md,
        "width": point.width,
        "schedule": plan.run.schedule.name,
    }
    rows = [_row(p, point, plan, options, source) for p in presets]
    return Comparison(target, loss, source, rows)


def _target_loss(plan: Any, presets: list[Any], model: Any) -> tuple[float | None, str]:
    """The loss a loss-read law is evaluated at: the plan's, else the first compared preset's
    prediction, else Chinchilla's (sizeup.laws.presets)."""
    if plan.loss is not None:
        return plan.loss, f"the plan's {plan.preset['name']} prediction"
    fallback = get_preset(LOSS_FALLBACK_PRESET)
    for p in [*presets, fallback]:
        if p.loss_law is not None:
            N = p.variables(law_point(model, plan.tokens))["N"]
            return float(p.loss_law.loss(N, plan.tokens)), f"{p.name}'s prediction"
    return None, "none"


def _value(law: Any, kind: str, point: Any, notes: list[str]) -> float | None:
    """The preset's law for ``kind`` at ``point``; None (and a note) outside its validity."""
    try:
        return law.value(kind, point)
    except ConfigError as e:
        notes.append(
            f"{kind}: {law.formula(kind)} does not hold here ({e.field}={e.value:.3g}; it "
            f"needs {e.allowed})"
        )
        return None


def _row(law: Any, point: Any, plan: Any, options: BatchOptions, loss_source: str) -> LawRow:
    row = LawRow(law.name, law.source, list(law.provides))
    row.peak_lr = _value(law, "lr", point, row.notes)
    row.lr_formula = law.formula("lr")
    row.critical_batch = _value(law, "critical_batch", point, row.notes)
    _batch(row, law, point, plan, options)
    _loss(row, law, point)
    if row.peak_lr is not None and row.batch_tokens is not None:
        _schedule(row, law, plan, options)
        wd = plan.run.optimizer.weight_decay
        if wd > 0:
            # Bergsma et al. 2025: tau = B / (eta lambda D), the fraction of the run over which
            # AdamW's decay averages the updates.
            row.tau = row.batch_tokens / (row.peak_lr * wd * point.tokens)
    if any("L" in law.needs(k) for k in ("batch", "critical_batch")):
        row.notes.append(f"read at L = {_fmt(point.loss)} ({loss_source})")
    row.differs = differences(law, point, plan)
    return row


def _batch(row: LawRow, law: Any, point: Any, plan: Any, options: BatchOptions) -> None:
    """The law's batch, else its critical batch (Kaplan et al. 2020 advise training near
    B_crit), in whole sequences as the planner rounds it, and the steps it makes."""
    raw = _value(law, "batch", point, row.notes)
    row.batch_formula = law.formula("batch")
    if raw is None and row.critical_batch is not None:
        raw, row.batch_formula = row.critical_batch, "B_crit: " + law.formula("critical_batch")
        row.notes.append("batch = the critical batch (Kaplan et al.: train near B_crit)")
    if raw is None:
        return
    seq_len = plan.run.model.seq_len
    row.batch_tokens = round_batch(raw, seq_len, options.batch_multiple)[0]
    row.steps = math.ceil(point.tokens / row.batch_tokens)


def _loss(row: LawRow, law: Any, point: Any) -> None:
    """L(N, D) with N as the law counts it (6ND loss laws)."""
    if law.loss_law is not None and law.compute == "6ND":
        row.loss = float(law.loss_law.loss(law.variables(point)["N"], point.tokens))


def _schedule(row: LawRow, law: Any, plan: Any, options: BatchOptions) -> None:
    """The schedule the law's lr belongs to (its setup's lr_schedule; the planner's warmup rule
    where the paper gave no warmup in steps), as a plan schedule dict."""
    spec = dict(law.setup.lr_schedule) if law.setup is not None else {}
    kind = spec.pop("kind", "constant")
    steps = row.steps
    wu = spec.pop("warmup_steps", None)
    if wu is None:
        wu = round(options.warmup_frac * steps)
        row.notes.append("warmup: sizeup's rule (the paper gives none in steps)")
    wu = int(min(max(1, wu), steps - 1))
    min_ratio = spec.pop("min_ratio", 0.0)
    if "min_lr" in spec:
        min_ratio = min(spec.pop("min_lr") / row.peak_lr, 0.99)
    decay_frac = spec.get("decay_frac", plan.run.schedule.decay_frac)
    ph = phases(kind, steps, wu, decay_frac)
    row.warmup_steps = wu
    row.schedule = {
        "kind": kind,
        "warmup_steps": wu,
        "stable_steps": ph.stable,
        "decay_steps": ph.decay,
        "cooldown": spec.get("cooldown", "linear"),
        "decay_frac": decay_frac,
        "min_ratio": min_ratio,
        "peak_lr": row.peak_lr,
        **({"milestones": [list(m) for m in spec["milestones"]]} if "milestones" in spec else {}),
    }


def differences(law: Any, point: Any, plan: Any) -> list[str]:
    """Where the law's fitting setup differs from this run: schedule, what N counts, the batch
    unit, the model family, the optimizer, and the data it was fitted on."""
    st = law.setup
    if st is None:
        return ["fitting setup unknown"]
    out = []
    kind = (st.lr_schedule or {}).get("kind")
    if kind != plan.schedule["kind"]:
        out.append(f"schedule: fitted with {st.schedule}; this plan uses {plan.schedule['kind']}")
    if st.n_definition != "total":
        n = law.variables(point)["N"]
        out.append(f"N = {N_WORDS[st.n_definition]}: {n:.4g} here (total {point.params:.4g})")
    if st.batch_unit != "tokens":
        out.append(f"batch fitted in {st.batch_unit}")
    out.append(f"model: {st.model_family}; this plan: {TARGET_FAMILY}")
    name = plan.run.optimizer.name
    if get_optimizer(name).family != "adam" or "Adam" not in st.optimizer:
        out.append(f"optimizer: fitted with {st.optimizer}; this plan: {name}")
    out.append(f"data: {st.data}")
    return out


# ----------------------------------------------------------------------------- plot


def plot_comparison(comparison: dict[str, Any], path: str | Path, n_points: int = 400) -> Path:
    """Each law's lr against tokens seen (its own batch, steps, warmup and schedule) in one
    PNG; laws without an lr or a batch are left out (their rows say so)."""
    fig, ax = pyplot().subplots(figsize=(7, 4))
    for r in comparison["rows"]:
        if r["schedule"] is None:
            continue
        sched = _law_schedule(r["schedule"], r["steps"], r["batch_tokens"])
        stride = max(1, r["steps"] // n_points)
        xs = list(range(0, r["steps"] + 1, stride))
        ax.plot(
            [s * r["batch_tokens"] for s in xs],
            [r["peak_lr"] * sched(s) for s in xs],
            label=f"{r['name']} ({r['schedule']['kind']})",
        )
    ax.set_xlabel("tokens seen")
    ax.set_ylabel("learning rate")
    ax.set_title("Each law's lr schedule for this target")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    pyplot().close(fig)
    return Path(path)


def _law_schedule(sched: dict[str, Any], steps: int, batch_tokens: int) -> Any:
    """A law's schedule dict as a sizeup.schedules.Schedule, to draw its lr."""
    kw: dict[str, Any] = {}
    if sched["kind"] == "multistep":
        kw.update(
            milestones=tuple(tuple(m) for m in sched["milestones"]), batch_tokens=batch_tokens
        )
    return make_schedule(
        sched["kind"],
        steps,
        warmup=sched["warmup_steps"],
        decay_frac=sched["decay_frac"],
        cooldown=sched["cooldown"],
        min_ratio=sched.get("min_ratio", 0.0),
        **kw,
    )
