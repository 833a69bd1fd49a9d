"""`sizeup demo`: does the lr tuned small stay optimal big? Measured, with seeds and intervals,
on a laptop CPU.

One study per axis, each the same model trained over a grid of lrs (powers of two) at every
value of the axis, once with the transfer rule for that axis on and once with it off, on the
built-in Shakespeare corpus with a small GPT and Adam, every point with several seeds:

- ``width``: standard parametrization (SP) vs muP (Tensor Programs V);
- ``depth``: no residual scaling vs branch multiplier (L/L0)^-alpha with alpha = 1/2
  (Depth-muP, Tensor Programs VI) and alpha = 1 (CompleteP, Dey et al. 2025);
- ``batch``: at a fixed token budget, the same lr at every batch vs the square-root batch rule
  (lr x b^1/2, beta -> 1 - b(1 - beta), eps x b^-1/2; Malladi et al. 2022);
- ``steps`` (horizon): the same lr at every length vs lr x (D/D0)^alpha_data (Bjorck et al.
  2024), with alpha_data fixed beforehand (docs/transfer.md says how);
- ``stability``: QK-norm and z-loss on and off over a wide lr range at two widths, with the
  lr sensitivity and the attention- and output-logit monitors of Wortsman et al. 2023.

The transfer analysis (sizeup.sweep.transfer) pools the seeds: optimal lr per axis value with
its interval, drift with and without the rule, regret at the largest value. The settings were
chosen by experiment (docs/sweeps.md, docs/transfer.md); every check in summary.json was fixed
before the studies that docs/transfer.md reports were run.
"""

from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from sizeup import __version__
from sizeup.config import json_safe
from sizeup.errors import ConfigError, check_choice
from sizeup.registry import get_optimizer
from sizeup.report.transfer import demo_page
from sizeup.sweep import Store, SweepSpec, run_sweep
from sizeup.sweep.executors import Runner
from sizeup.sweep.transfer import analyze_transfer, drift_difference, group_value
from sizeup.train.loop import device_name

AXES = ("width", "depth", "batch", "steps", "stability")
AXIS_FIELD = {
    "width": "width",
    "depth": "depth",
    "batch": "batch_size",
    "steps": "steps",
    "stability": "width",
}


@dataclass
class Variant:
    """One arm of a study: RunConfig fields that switch a rule on or off."""

    key: str  # summary.json key, e.g. "mup"
    name: str  # for people, e.g. "muP"
    fields: dict[str, Any]
    rule_on: bool


def study_base() -> dict[str, Any]:
    """The model and training every study starts from (docs/sweeps.md: how it was found)."""
    return dict(
        model="gpt",
        depth=2,
        head_dim=32,
        base_width=32,
        seq_len=64,
        batch_size=16,
        # a constant lr after a short warmup: a cooldown (wsd) flattens SP's curves at the
        # wide end and hides part of its drift (docs/sweeps.md)
        steps=300,
        warmup=10,
        schedule="constant",
        optimizer="adamw",
        # head_dim is fixed, so width grows by adding heads and the attention scale does not
        # change with width: both rules use the usual 1/sqrt(d_head), and at the base width
        # SP and muP are the very same model (their curves coincide at width 32)
        attn_scale="1/sqrt(d)",
        # QK-norm: without it single runs of the wider models scatter by ~0.1 nats from seed
        # to seed (attention-logit blow-ups), which drowns the width effect (docs/sweeps.md)
        qk_norm=True,
        eval_batches=8,
        threads=1,
        # Newton-Schulz (Muon, Dion, Scion) in float32: on a CPU without bf16 matrix units (this
        # project's AMD EPYC) a bf16 768x256 iteration took 1.53 s against 0.055 s in float32
        ns_dtype="float32",
    )


SP = Variant("sp", "SP", {"rule": "sp"}, False)
MUP = Variant("mup", "muP", {"rule": "mup"}, True)


@dataclass
class DemoSettings:
    """What a study sweeps: axis values x lr exponents (log2) x variants x seeds."""

    axis: str = "width"
    values: list[Any] = field(default_factory=lambda: [32, 64, 128, 256])
    lr_exps: list[float] = field(default_factory=lambda: [-11, -10, -9, -8, -7, -6, -5])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    base: dict[str, Any] = field(default_factory=study_base)
    variants: list[Variant] = field(default_factory=lambda: [SP, MUP])
    moves_with: dict[str, list[Any]] = field(default_factory=dict)  # zipped with the values
    question: str = "Tune the lr on the smallest model, use it on the widest: does it still work?"

    def __post_init__(self) -> None:
        check_choice("axis", self.axis, AXES)
        keys = {tuple(sorted(v.fields)) for v in self.variants}
        if len(self.variants) < 2 or len(keys) != 1:
            raise ConfigError(
                "variants",
                [v.key for v in self.variants],
                "two or more variants that set the same RunConfig fields",
            )
        if not any(not v.rule_on for v in self.variants):
            raise ConfigError("variants", [v.key for v in self.variants], "one with the rule off")
        for k, vals in self.moves_with.items():
            if len(vals) != len(self.values):
                raise ConfigError(f"moves_with.{k}", vals, f"{len(self.values)} values")

    @property
    def field(self) -> str:
        """The RunConfig field the axis moves."""
        return AXIS_FIELD[self.axis]

    @property
    def widths(self) -> list[Any]:
        """The axis values (the name from when the demo only swept width)."""
        return self.values

    @property
    def off(self) -> Variant:
        """The variant with the rule off (the baseline)."""
        return next(v for v in self.variants if not v.rule_on)

    def spec(self) -> dict[str, Any]:
        """The sweep spec: the axis (with what moves with it) x lr x variants x seeds."""
        fields = sorted(self.variants[0].fields)
        zips = [{f: [v.fields[f] for v in self.variants] for f in fields}]
        axes: dict[str, Any] = {"lr": [2.0**e for e in self.lr_exps]}
        if self.moves_with:
            zips.append({self.field: list(self.values), **self.moves_with})
        else:
            axes[self.field] = list(self.values)
        return {
            "name": f"demo-{self.axis}",
            "base": self.base,
            "axes": axes,
            "zip": zips,
            "seeds": list(self.seeds),
        }


def _study(axis: str, **kw: Any) -> DemoSettings:
    return DemoSettings(axis=axis, **kw)


# --- the studies (FULL: `sizeup demo --axis A`; QUICK: `--quick`, each < 10 min on 2 cores) --
FULL = DemoSettings()
QUICK = DemoSettings(lr_exps=[-11, -10, -9, -8, -7], base={**study_base(), "batch_size": 8})

_DEPTH_VARIANTS = [
    Variant("off", "no residual scaling", {"base_depth": None, "depth_exponent": 0.5}, False),
    Variant("depth_mup", "Depth-muP (alpha 1/2)", {"base_depth": 2, "depth_exponent": 0.5}, True),
    Variant("completep", "CompleteP (alpha 1)", {"base_depth": 2, "depth_exponent": 1.0}, True),
]
_BATCH_VARIANTS = [
    Variant("off", "same lr at every batch", {"base_batch_size": None}, False),
    Variant("on", "square-root batch rule", {"base_batch_size": 4}, True),
]
# alpha_data for the horizon rule, fixed from a pilot study on seeds outside the reported sets
# (docs/transfer.md)
DATA_EXPONENT = -0.5
_STEPS_BASE_TOKENS = 100 * 8 * 64  # the shortest run: 100 steps of 8 x 64 tokens
_STEPS_VARIANTS = [
    Variant("off", "same lr at every length", {"base_tokens": None, "data_exponent": 0.0}, False),
    Variant(
        "on",
        "lr x (D/D0)^alpha_data",
        {"base_tokens": _STEPS_BASE_TOKENS, "data_exponent": DATA_EXPONENT},
        True,
    ),
]
_STABILITY_VARIANTS = [
    Variant("neither", "neither", {"qk_norm": False, "z_loss": 0.0}, False),
    Variant("qk_norm", "QK-norm", {"qk_norm": True, "z_loss": 0.0}, True),
    Variant("z_loss", "z-loss 1e-4", {"qk_norm": False, "z_loss": 1e-4}, True),
    Variant("both", "QK-norm + z-loss", {"qk_norm": True, "z_loss": 1e-4}, True),
]

_QUICK_BASE = {**study_base(), "batch_size": 8, "rule": "mup"}
_DEPTH_Q = "Tune the lr on the shallowest model, use it on the deepest: does it still work?"
# batch: the token budget is fixed (4 x 64 x 800 = 204,800 tokens), so steps fall as the batch
# grows (the square-root rule's SDE argument compares runs over the same samples)
_BATCH: dict[str, Any] = dict(
    values=[4, 8, 16, 32],
    variants=_BATCH_VARIANTS,
    moves_with={"steps": [800, 400, 200, 100], "warmup": [20, 10, 5, 3]},
    question="At a fixed token budget, tune the lr at the smallest batch and use it at the "
    "largest: does it still work?",
)
_STEPS: dict[str, Any] = dict(
    values=[100, 200, 400, 800],
    variants=_STEPS_VARIANTS,
    question="Tune the lr on the shortest run, use it on the longest: does it still work?",
)
_STABILITY: dict[str, Any] = dict(
    lr_exps=list(range(-10, -2)),
    base={**_QUICK_BASE, "attn_logits_every": 50, "output_logits_every": 50},
    variants=_STABILITY_VARIANTS,
    question="How much loss does an lr off its optimum cost, with and without QK-norm and z-loss "
    "(Wortsman et al. 2023)? Also the attention logits and log Z at the end of training.",
)
STUDIES: dict[str, tuple[DemoSettings, DemoSettings]] = {
    "width": (FULL, QUICK),
    "depth": (
        _study(
            "depth",
            values=[2, 4, 8, 16],
            lr_exps=[-11, -10, -9, -8, -7, -6, -5],
            base={**_QUICK_BASE, "width": 32},
            variants=_DEPTH_VARIANTS,
            question=_DEPTH_Q,
        ),
        _study(
            "depth",
            values=[2, 4, 8],
            lr_exps=[-10, -9, -8, -7, -6, -5],
            base={**_QUICK_BASE, "width": 32},
            variants=_DEPTH_VARIANTS,
            question=_DEPTH_Q,
        ),
    ),
    "batch": (
        _study("batch", **_BATCH, lr_exps=list(range(-12, -4)), base={**_QUICK_BASE, "width": 64}),
        _study("batch", **_BATCH, lr_exps=list(range(-11, -4)), base={**_QUICK_BASE, "width": 32}),
    ),
    "steps": (
        _study("steps", **_STEPS, lr_exps=list(range(-12, -4)), base={**_QUICK_BASE, "width": 64}),
        _study("steps", **_STEPS, lr_exps=list(range(-11, -4)), base={**_QUICK_BASE, "width": 32}),
    ),
    "stability": (
        _study("stability", **_STABILITY, values=[32, 64, 128, 256]),
        _study("stability", **_STABILITY, values=[32, 128]),
    ),
}


def lr_shift(optimizer: str, lr_exps: list[float]) -> int:
    """Octaves to move a study's lr grid for ``optimizer``: round(log2(typical_lr) - the grid's
    centre), with the registry entry's typical_lr (0 where it is None: the grid was made for
    AdamW); the grid keeps its width and spacing."""
    typical = get_optimizer(optimizer).typical_lr
    if typical is None:
        return 0
    return round(math.log2(typical) - (min(lr_exps) + max(lr_exps)) / 2)


def with_optimizer(s: DemoSettings, optimizer: str) -> DemoSettings:
    """Study ``s`` with ``optimizer`` as its base optimizer and its lr grid moved by
    ``lr_shift`` (the variants, values and seeds stay the study's)."""
    if optimizer == s.base.get("optimizer", "adamw"):
        return s
    shift = lr_shift(optimizer, s.lr_exps)
    return replace(
        s, base={**s.base, "optimizer": optimizer}, lr_exps=[e + shift for e in s.lr_exps]
    )


def settings_for(
    axis: str = "width", quick: bool = False, optimizer: str = "adamw"
) -> DemoSettings:
    """The study `sizeup demo --axis AXIS [--quick] [--optimizer NAME]` runs."""
    check_choice("axis", axis, AXES)
    full, fast = STUDIES[axis]
    return with_optimizer(fast if quick else full, optimizer)


def optimizer_of(s: DemoSettings) -> str:
    """The study's base optimizer."""
    return str(s.base.get("optimizer", "adamw"))


def store_name(axis: str, quick: bool, optimizer: str = "adamw") -> str:
    """The study file inside the demo folder (the width names predate the other axes; AdamW's
    names predate the other optimizers, so studies of two optimizers never share a file)."""
    stem = "demo" if axis == "width" else f"demo-{axis}"
    if optimizer != "adamw":
        stem += f"-{optimizer}"
    return f"{stem}-quick.db" if quick else f"{stem}.db"


def run_demo(
    out: str | Path,
    quick: bool = False,
    workers: int = 2,
    settings: DemoSettings | None = None,
    runner: Runner | None = None,
    progress: bool = True,
    axis: str | None = None,
    seeds: list[int] | None = None,
    optimizer: str = "adamw",
    stack: int = 1,
) -> dict[str, Any]:
    """Run (or resume) one study, analyse transfer, write report.html and summary.json.

    ``seeds`` replaces the study's seed set (the docs measure three disjoint sets);
    ``optimizer`` picks the shipped study's base optimizer (``with_optimizer``). ``stack``:
    trials of one shape trained together (run_sweep's ``stack``; 1: one at a time).
    """

    s = settings or settings_for(axis or "width", quick, optimizer)
    if seeds is not None:
        s = replace(s, seeds=list(seeds))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    spec = SweepSpec.from_dict(s.spec())
    t0 = time.perf_counter()
    # the study lives next to the report, so an interrupted demo resumes where it stopped
    db = out / store_name(s.axis, quick and settings is None, optimizer_of(s))
    rep = run_sweep(
        spec,
        db,
        workers=workers,
        runner=runner,
        progress=progress,
        order="largest_first",
        stack=stack,
    )
    ids = {c.trial_id() for c in spec.trials()}
    analysis, trials = _analyse(db, ids, s)
    summary = _summary(analysis, s, rep, trials, time.perf_counter() - t0, quick)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))

    names = {g.label: variant_of(s, g.group).name for g in analysis.groups}
    demo_page(analysis, trials, summary, s, names).write(out / "report.html")
    return summary


def _analyse(db: Path, ids: set[str], s: DemoSettings) -> tuple[Any, list[Any]]:
    """The transfer analysis of this spec's trials (the file may hold others), grouped by the
    variants' fields, groups in the order of the variants."""

    with Store(db, readonly=True) as st:
        df = st.to_frame()
        trials = [t for t in st.trials() if t.id in ids]
    df = df[df["id"].isin(ids)]
    analysis = analyze_transfer(df, axis=s.field, group_by=sorted(s.variants[0].fields))
    order = {v.key: i for i, v in enumerate(s.variants)}
    analysis.groups.sort(key=lambda g: order.get(variant_of(s, g.group).key, 99))
    return analysis, trials


def variant_of(s: DemoSettings, group: dict[str, Any]) -> Variant:
    """The variant whose fields a transfer group has."""

    for v in s.variants:
        if all(group_value(v.fields[k]) == group_value(group.get(k)) for k in v.fields):
            return v
    raise ConfigError("group", group, "one of the study's variants")


def study_wall_time(trials: list[Any]) -> float:
    """Seconds during which at least one of the study's trials was running: the union of
    their [started, finished] intervals. It belongs to the study, so re-running a finished
    demo (which runs nothing) keeps it, and a resumed study does not count the pause."""
    spans = sorted(
        (t.started, t.finished) for t in trials if t.started is not None and t.finished is not None
    )
    total, end = 0.0, -math.inf
    for a, b in spans:
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def _group_summary(g: Any) -> dict[str, Any]:
    """One variant's figures for summary.json: every optimum and drift as an Estimate dict
    (value, bound, interval), never a bare number for a bound."""
    return {
        "drift_octaves": g.drift.to_dict(),
        "optimal_log2_lr": {str(p.value): p.optimum.to_dict() for p in g.points},
        "best_loss": {str(p.value): p.best_grid_loss for p in g.points},
        "transfer_grid_lr": g.transfer_grid_lr,
        "loss_at_transferred_lr": {str(p.value): p.loss_at_transfer for p in g.points},
        "regret": {str(p.value): p.regret_est.to_dict() for p in g.points},
        "regret_at_largest": g.regret_at_largest.to_dict(),
        "lr_sensitivity": {str(p.value): p.lr_sensitivity.to_dict() for p in g.points},
        "largest_is_best": g.largest_is_best,
        "largest_is_best_share": g.largest_is_best_share,
        "optimum_at_grid_edge": g.edge_warning,
        "seeds": g.n_seeds,
        "enough": g.enough,
    }


def checks(s: DemoSettings, groups: dict[str, Any]) -> dict[str, bool]:
    """The pass/fail claims of a study, fixed before it was measured (docs/transfer.md).

    Transfer axes: each rule-on variant drifts less than the rule-off one, with the 90%
    intervals apart (on's upper end below off's lower end); and (``_paired``, added after the
    first width seed set, docs/transfer.md) the paired interval of how much more off drifts
    than on (``drift_difference``: the same seed resamples for both) lies above 0, which the
    noise the two share (the same model at the base value) does not widen. Width and depth also ask, for each
    rule-on variant, that the largest model is the best at the transferred lr (muP's "wider is
    better"; deeper, with residual scaling). Stability: QK-norm lowers the lr sensitivity at the
    largest width, intervals apart.
    """
    off = groups[s.off.key]
    out: dict[str, bool] = {}
    if s.axis == "stability":
        sens = {k: g.points[-1].lr_sensitivity for k, g in groups.items()}
        out["qk_norm_lowers_lr_sensitivity"] = _apart(sens["qk_norm"], sens["neither"])
        return out

    largest = {"width": "widest", "depth": "deepest"}.get(s.axis)
    for v in s.variants:
        if v.rule_on:
            on = groups[v.key]
            out[f"{v.key}_drifts_less_than_{s.off.key}"] = _apart(on.drift, off.drift)
            d = drift_difference(off, on)
            out[f"{v.key}_drifts_less_than_{s.off.key}_paired"] = bool(
                d.has_interval and d.lo > 0 and not d.lo_open
            )
            if largest:
                out[f"{v.key}_{largest}_is_best"] = bool(on.largest_is_best)
    return out


def describe_checks(s: DemoSettings) -> dict[str, str]:
    """Each key ``checks`` can give, said in words for the report."""
    if s.axis == "stability":
        return {
            "qk_norm_lowers_lr_sensitivity": "QK-norm lowers the lr sensitivity at the largest "
            "width (90% intervals apart)"
        }
    off = s.off
    largest = {"width": "widest", "depth": "deepest"}.get(s.axis)
    out: dict[str, str] = {}
    for v in s.variants:
        if not v.rule_on:
            continue
        key = f"{v.key}_drifts_less_than_{off.key}"
        out[key] = f"{v.name}'s optimal lr drifts less than {off.name}'s (90% intervals apart)"
        out[key + "_paired"] = (
            f"{v.name} drifts less than {off.name}, paired over the same seed resamples "
            "(the interval of the difference lies above 0)"
        )
        if largest:
            out[f"{v.key}_{largest}_is_best"] = (
                f"with {v.name}, the {largest} model is the best at the transferred lr"
            )
    return out


def reproduce_command(s: DemoSettings, quick: bool) -> str | None:
    """The `sizeup demo` command that runs study ``s``, or None when ``s`` is not a shipped
    study (settings made in Python: run_demo(settings=...))."""
    opt = optimizer_of(s)
    shipped = replace(settings_for(s.axis, quick, opt), seeds=list(s.seeds))
    if shipped != s:
        return None
    seeds = ",".join(str(x) for x in s.seeds)
    named = "" if opt == "adamw" else f" --optimizer {opt}"
    return f"sizeup demo --axis {s.axis}{' --quick' if quick else ''}{named} --seeds {seeds}"


def _apart(small: Any, large: Any) -> bool:
    """``small``'s interval lies wholly below ``large``'s (neither missing)."""
    if not (small.has_interval and large.has_interval):
        return False
    return bool(small.hi < large.lo and not small.hi_open)


def _summary(
    analysis: Any, s: DemoSettings, rep: Any, trials: list[Any], wall: float, quick: bool
) -> dict:

    groups = {variant_of(s, g.group).key: g for g in analysis.groups}
    found = checks(s, groups) if analysis.enough else {}
    summary: dict[str, Any] = {
        "axis": s.axis,
        "optimizer": optimizer_of(s),
        "field": s.field,
        "variants": {v.key: {"name": v.name, "rule_on": v.rule_on} for v in s.variants},
        "checks": found,
        "check_descriptions": describe_checks(s),
        "all_checks_pass": bool(found) and all(found.values()),
        "quick": quick,
        "command": reproduce_command(s, quick),
        "sizeup_version": __version__,
        "settings": asdict(s),
        "trials": rep.counts,
        "trials_run_now": rep.ran,
        "wall_time_s": study_wall_time(trials),
        "wall_time_this_call_s": wall,
        "interval": {"level": analysis.level, "method": "bootstrap over seeds, t-corrected"},
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "device": device_name(str(s.base.get("device", "cpu"))),
    }
    for key, g in groups.items():
        summary[key] = _group_summary(g)
    if s.axis != "stability" and analysis.enough:
        off = groups[s.off.key]
        for v in s.variants:
            if v.rule_on:
                d = drift_difference(off, groups[v.key])
                summary[v.key]["drift_less_than_off"] = d.to_dict()
    return json_safe(summary)
