"""The planner's own inputs, as records declared once.

What the plan shares with a run is not here: the model's architecture is a ModelSpec, its
parametrization a ParamSpec, its optimizer an OptimSpec and its schedule a ScheduleSpec
(sizeup.config), given by the same names as `sizeup train` takes them (``--width``, ``--rule``,
``--lr``, ``--schedule``). The records below hold what only a plan has: the target (budget,
size, tokens), the rule that picks a shape for a size, the proxy's batch, the laws, the batch
and ramp choices, the hardware and the warning thresholds.

Every field carries its command-line help (sizeup.config.fields.spec); the command line and
``plan(**options)`` are generated from these declarations and the shared ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sizeup.choices import COMPUTE_CONVENTIONS, PRESET_NAMES, RAMP_MODES, RampMode
from sizeup.config import ModelSpec
from sizeup.config.fields import Record, fraction, positive, spec
from sizeup.errors import ConfigError, check_choice, check_positive
from sizeup.flops import gpt_params, md_flops_per_token

# The planner's defaults for a shape nobody gave (its ModelSpec fields): heads of 128, a 2048
# context, and a 32k vocabulary when neither the user nor the preset names one.
DEFAULT_VOCAB = 32000
PLAN_MODEL = {"head_dim": 128, "seq_len": 2048, "vocab_size": DEFAULT_VOCAB}
# Its recipe's defaults where they differ from a run's (OptimSpec): decay 0.1.
PLAN_OPTIMIZER = {"weight_decay": 0.1}


def _numbers(field_name: str, value: Any, n: int, what: str) -> tuple[float, ...] | None:
    """n comma-separated numbers (a string from the command line) or a sequence of n numbers."""
    if value is None:
        return None
    try:
        parts = value.split(",") if isinstance(value, str) else list(value)
        out = tuple(float(x) for x in parts)
    except (TypeError, ValueError) as e:
        raise ConfigError(field_name, value, what) from e
    if len(out) != n:
        raise ConfigError(field_name, value, what)
    return out


# ----------------------------------------------------------------------------- target


@dataclass(frozen=True)
class Target(Record):
    """What to plan for: a compute budget, a size, tokens, or tokens per parameter (or an
    explicit shape: --width and --depth)."""

    SECTION = "target"

    compute: float | None = spec(None, "Target compute budget C in FLOPs.")
    params: float | None = spec(None, "Target total parameters N.")
    tokens: float | None = spec(None, "Training tokens D.")
    tokens_per_param: float | None = spec(None, "Tokens per parameter D/N.")

    def check(self) -> None:
        """Positive numbers; tokens or tokens per parameter, not both."""
        if self.compute is not None and not 0 < self.compute < math.inf:
            raise ConfigError(
                "compute",
                self.compute,
                "a finite positive number of FLOPs (a zero budget trains nothing)",
            )
        positive(self, "params", "tokens", "tokens_per_param")
        if self.tokens is not None and self.tokens_per_param is not None:
            raise ConfigError(
                "tokens_per_param",
                self.tokens_per_param,
                f"left out when tokens={self.tokens:g} is given (give one of the two)",
            )


# ----------------------------------------------------------------------------- shape


# The planner's hardware-friendly defaults: matrix dimensions that tile evenly on tensor cores
# (multiples of 64/128) and head counts that tensor parallelism can split (multiples of 8).
FFN_MULTIPLE = 128
HEAD_MULTIPLE = 8


@dataclass(frozen=True)
class ShapeRule(Record):
    """How the planner shapes a model: the family rule that picks width and depth for a target
    size (width ~ aspect_ratio x depth, head counts a multiple of head_multiple), and how d_ff
    is rounded (up to a multiple of ffn_multiple) for any shape, given or picked."""

    SECTION = "shape rule"

    aspect_ratio: float = spec(128.0, "Family rule: width / depth.")
    head_multiple: int = spec(
        HEAD_MULTIPLE,
        "Family rule: head counts a multiple of this, or a power of two below it (tensor "
        "parallelism splits them; 1: any count).",
    )
    ffn_multiple: int = spec(
        FFN_MULTIPLE,
        "Round d_ff up to a multiple of this (tensor-core friendly; 1: the nearest integer).",
    )

    def check(self) -> None:
        """Positive ratio and multiples."""
        positive(self, "aspect_ratio")
        positive(self, "head_multiple", "ffn_multiple", integer=True)


def round_up(x: float, multiple: int) -> int:
    """The smallest multiple of ``multiple`` at or above ``x`` (``round(x)`` for multiple 1)."""
    if multiple <= 1:
        return int(round(x))
    return int(math.ceil(round(x, 6) / multiple)) * multiple


def friendly_heads(heads: int, multiple: int) -> bool:
    """A head count tensor parallelism can split: a multiple of ``multiple``, or a power of two
    below it (small models)."""
    if multiple <= 1 or heads % multiple == 0:
        return True
    return heads < multiple and heads & (heads - 1) == 0


def rounded(model: ModelSpec, rule: ShapeRule) -> ModelSpec:
    """``model`` with its d_ff settled: as given, else mlp_ratio x width rounded up to a
    multiple of ffn_multiple (and mlp_ratio = d_ff / width, so the record reads the same at
    every width, the base's included)."""
    if model.d_ff is not None:
        return model
    d_ff = round_up(model.mlp_ratio * model.width, rule.ffn_multiple)
    return model.replace(d_ff=d_ff, mlp_ratio=d_ff / model.width)


def rounding_text(model: ModelSpec, template: ModelSpec, rule: ShapeRule) -> str:
    """How d_ff (and the head count) came out, in words, for the plan's summary: as given, or
    the template's mlp_ratio x width rounded up to a multiple of ffn_multiple."""
    text = f"d_ff {model.ffn_hidden:,}"
    exact = template.mlp_ratio * model.width
    if template.d_ff is not None:
        text += " (given)"
    elif rule.ffn_multiple > 1:
        how = "," if abs(exact - model.ffn_hidden) < 1e-6 else f" = {exact:,.1f} rounded up to"
        text += f" ({template.mlp_ratio:.4g} x width{how} a multiple of {rule.ffn_multiple})"
    return text + f"; width {model.width:,} = {model.heads} heads x {model.head_size}"


def params(model: ModelSpec, embeddings: bool = True, active: bool = False) -> int:
    """Parameter count of the GPT ``model`` describes (sizeup.flops.gpt_params); ``active``:
    those one token uses (an MoE's top_k routed experts; every parameter of a dense model)."""
    return int(gpt_params(model, embeddings=embeddings, active=active))


def flops_per_token(model: ModelSpec, convention: str) -> float:
    """Training FLOPs per token under a law's convention: 6N for "6ND" (N the parameters a
    token uses: all of a dense model's, an MoE's active ones), DeepSeek's M for "MD"."""
    if convention == "6ND":
        return 6.0 * params(model, active=True)
    return md_flops_per_token(model)


# The deepest family shape the planner searches (deeper than any transformer trained: DeepNet's
# 1,000 layers); a larger target needs an explicit --width and --depth.
MAX_FAMILY_DEPTH = 2000


def _band(centre: float) -> tuple[int, int]:
    """The head counts tried around ``centre`` (the aspect ratio's): within a factor 1.25."""
    return max(1, math.floor(centre / 1.25)), max(1, math.ceil(centre * 1.25))


def shape_for(
    size: float,
    template: ModelSpec,
    rule: ShapeRule | None = None,
    convention: str = "6ND",
) -> ModelSpec:
    """The family shape (width ~ aspect_ratio x depth, a multiple of head_dim) whose size is
    closest in log to ``size``: total parameters for "6ND", FLOPs per token M for "MD". The
    template gives everything but width, depth and heads (head_dim, vocabulary, context, MLP
    ratio, tied embeddings, the MoE fields, and a fixed key/value head count for GQA: only head
    counts it divides qualify). Hardware-friendly by default (ShapeRule)."""
    rule = rule or ShapeRule()
    check_positive("size", size)
    check_choice("convention", convention, COMPUTE_CONVENTIONS)
    hd, kv = template.head_dim, template.n_kv_head

    def measure(s: ModelSpec) -> float:
        return params(s) if convention == "6ND" else flops_per_token(s, "MD")

    def at(depth: int, heads: int, kv_heads: int | None) -> ModelSpec:
        s = template.replace(
            width=heads * hd, depth=depth, n_head=None, n_kv_head=kv_heads, d_ff=None
        )
        return rounded(s, rule)

    deepest = at(MAX_FAMILY_DEPTH, _band(rule.aspect_ratio * MAX_FAMILY_DEPTH / hd)[1], None)
    if size > 1.25 * measure(deepest):
        # beyond the deepest shape the rule builds, the search would try every depth and
        # heads count up to it (minutes) and return a shape far smaller than asked
        unit = "parameters" if convention == "6ND" else "FLOPs per token (M)"
        raise ConfigError(
            "size",
            f"{size:.4g}",
            f"at most {1.25 * measure(deepest):.3g} {unit} for a family shape (the rule's "
            f"deepest, depth {MAX_FAMILY_DEPTH} x width {deepest.width:,}, has "
            f"{measure(deepest):.3g}); give --width and --depth for a larger model",
        )
    best: tuple[float, ModelSpec] | None = None
    for L in range(1, MAX_FAMILY_DEPTH + 1):
        # widths in head_dim steps (of the allowed head counts) within a band around the
        # aspect ratio; over the depths this lands within a few % of the target.
        lo, hi = _band(rule.aspect_ratio * L / hd)
        for heads in range(lo, hi + 1):
            if (kv is not None and heads % kv) or not friendly_heads(heads, rule.head_multiple):
                continue
            s = at(L, heads, kv)
            # Size error first (in 1% bins); among near-ties, the one closest to the aspect ratio.
            err = round(abs(math.log(measure(s) / size)) / 0.01) + abs(
                math.log(s.width / (rule.aspect_ratio * L))
            )
            if best is None or err < best[0]:
                best = (err, s)
        if measure(at(L, lo, None)) > 4 * size:
            break  # every later depth is well past the target
    if best is None:
        raise ConfigError(
            "n_kv_head",
            kv,
            "a number of heads that divides a head count near the family shape (e.g. 1, 2, 4, 8)",
        )
    return best[1]


# ----------------------------------------------------------------------------- proxy


@dataclass(frozen=True)
class Proxy(Record):
    """What the plan knows of the proxy beyond its ParamSpec (base width, depth, head size) and
    OptimSpec (its tuned lr, tokens): the batch its lr was tuned at, in tokens, and, from a
    study, the widest width tuned, the depth, context and vocabulary it was tuned at and where
    it came from."""

    SECTION = "proxy"

    batch_tokens: int | None = spec(
        None,
        "Proxy's batch in tokens (the batch its lr was tuned at).",
        flat="base_batch_tokens",
        aliases=("base_batch",),
    )
    tuned_width: int | None = spec(None, "The widest width tuned (a study's).", cli=False)
    depth: int | None = spec(None, "The depth the proxy was tuned at (a study's).", cli=False)
    seq_len: int | None = spec(None, "The proxy's context (a study's).", cli=False)
    vocab_size: int | None = spec(None, "The proxy's vocabulary (a study's).", cli=False)
    source: str = spec("given", "Where the proxy came from.", cli=False)

    def check(self) -> None:
        """Positive sizes."""
        positive(
            self, "batch_tokens", "tuned_width", "depth", "seq_len", "vocab_size", integer=True
        )


# ----------------------------------------------------------------------------- laws


@dataclass(frozen=True)
class Laws(Record):
    """Where size, tokens, batch and lr come from when the target or proxy leaves them open."""

    SECTION = "laws"

    preset: Any = spec(
        "chinchilla",
        "Laws: " + ", ".join(PRESET_NAMES) + ", or a `sizeup fit` fit.json / folder.",
    )
    lr_law: Any = spec(None, "eta(C) as 'coef,exponent'.")
    batch_law: Any = spec(None, "B(C) in tokens as 'coef,exponent'.")
    lr_nd_law: Any = spec(None, "eta(N, D) = coef N^a D^b as 'coef,a,b'.")
    batch_d_law: Any = spec(None, "B(D) in tokens as 'coef,exponent'.")
    fit_range: Any = spec(None, "Compute range the law was fitted on, 'Cmin,Cmax'.")
    compare_laws: Any = spec(
        None,
        "Compare presets for this target, e.g. 'deepseek-v1,steplaw' or 'all': lr, batch, "
        "steps, warmup, schedule, loss, and where each law's fitting setup differs.",
    )

    def check(self) -> None:
        """Laws as numbers (coefficient first and positive), the fit range, preset names."""
        for name, n in (("lr_law", 2), ("batch_law", 2), ("lr_nd_law", 3), ("batch_d_law", 2)):
            what = f"{n} comma-separated numbers, the coefficient first and > 0"
            v = _numbers(name, getattr(self, name), n, what)
            if v is not None and not v[0] > 0:
                raise ConfigError(name, getattr(self, name), what)
            object.__setattr__(self, name, v)
        what = "'Cmin,Cmax' in FLOPs, 0 < Cmin < Cmax (finite)"
        rng = _numbers("fit_range", self.fit_range, 2, what)
        if rng is not None and not 0 < rng[0] < rng[1] < math.inf:
            raise ConfigError("fit_range", self.fit_range, what)
        object.__setattr__(self, "fit_range", rng)
        object.__setattr__(self, "compare_laws", _preset_list(self.compare_laws))

    def resolve(self) -> Any:
        """The LawPreset: a preset name, a fit.json path or folder, or a LawPreset."""
        from sizeup.laws.presets import LawPreset, get_preset, load_fit

        p = self.preset
        if isinstance(p, LawPreset):
            return p
        if isinstance(p, (str, Path)) and str(p) in PRESET_NAMES:
            return get_preset(str(p))
        if isinstance(p, (str, Path)) and (str(p).endswith(".json") or Path(p).is_dir()):
            return load_fit(p)
        raise ConfigError(
            "preset",
            p,
            "one of "
            + ", ".join(PRESET_NAMES)
            + ", a `sizeup fit` output (fit.json or its folder), or a LawPreset",
        )


def _preset_list(value: Any) -> tuple[str, ...] | None:
    """'a,b' or a sequence of preset names (or 'all') as a tuple of names."""
    if value is None:
        return None
    names = value.split(",") if isinstance(value, str) else list(value)
    names = [str(n).strip() for n in names if str(n).strip()]
    if names == ["all"]:
        return PRESET_NAMES
    allowed = "comma-separated preset names (" + ", ".join(PRESET_NAMES) + ") or 'all'"
    if not names or any(n not in PRESET_NAMES for n in names):
        raise ConfigError("compare_laws", value, allowed)
    return tuple(dict.fromkeys(names))


# ----------------------------------------------------------------------------- batch


@dataclass(frozen=True)
class BatchOptions(Record):
    """The target's batch (when given), its rounding, its ramp-up, and the warmup rule (the
    schedule's own fields are the ScheduleSpec's)."""

    SECTION = "batch"

    batch_tokens: float | None = spec(None, "Batch in tokens (overrides the laws).")
    batch_multiple: int = spec(8, "Round the batch to a multiple of this many sequences.")
    warmup_frac: float = spec(0.01, "Warmup as a fraction of the steps (unless --warmup).")
    ramp: RampMode | None = spec(
        None,
        "Ramp the batch up, doubling from --ramp-start-batch: 'tokens' (evenly over "
        "--ramp-tokens, as DeepSeek-V2/V3) or 'loss' (as the predicted loss lets the critical "
        "batch double, as MiniMax-01).",
        aliases=("batch_ramp",),
    )
    ramp_start_batch: float | None = spec(None, "Ramp: the first batch, in tokens.")
    ramp_tokens: float | None = spec(None, "Ramp 'tokens': tokens to reach the full batch.")

    def check(self) -> None:
        """Positive batches, a fraction for the warmup, what a ramp needs."""
        positive(self, "batch_tokens", "ramp_start_batch", "ramp_tokens")
        positive(self, "batch_multiple", integer=True)
        fraction("warmup_frac", self.warmup_frac, hi=0.999999)
        if self.ramp is None:
            return
        check_choice("ramp", self.ramp, RAMP_MODES)
        if self.ramp_start_batch is None:
            raise ConfigError(
                "ramp_start_batch", None, "the ramp's first batch in tokens (with --ramp)"
            )
        if self.ramp == "tokens" and self.ramp_tokens is None:
            raise ConfigError(
                "ramp_tokens", None, "the tokens over which the batch ramps (--ramp tokens)"
            )


# ----------------------------------------------------------------------------- hardware, checks


@dataclass(frozen=True)
class Hardware(Record):
    """What the run trains on, for wall time, cost and the micro-batch that fits."""

    SECTION = "hardware"

    gpu: Any = spec(None, "GPU type (sizeup.flops.GPU_PEAK_FLOPS) or peak FLOP/s.")
    n_gpus: int = spec(1, "Number of GPUs.")
    mfu: float = spec(0.4, "Model FLOPs utilisation for time and cost.")
    gpu_price: float | None = spec(None, "Price per GPU-hour.")
    gpu_memory: float | None = spec(
        None,
        "Memory per GPU in GiB, for the micro-batch (default: the GPU's, sizeup.flops.GPU_MEMORY_GIB).",
    )

    def check(self) -> None:
        """A GPU name or positive FLOP/s, positive counts and price, MFU in (0, 1]."""
        if isinstance(self.gpu, str):
            try:
                object.__setattr__(self, "gpu", float(self.gpu))
            except ValueError:
                pass  # a name, checked by sizeup.flops.peak_flops
        positive(self, "n_gpus", integer=True)
        fraction("mfu", self.mfu, lo_open=True)
        positive(self, "gpu_price", "gpu_memory")


@dataclass(frozen=True)
class Checks(Record):
    """Thresholds of the plan's errors and warnings."""

    SECTION = "checks"

    critical_batch: float | None = spec(None, "Critical batch in tokens (warn above it).")
    min_tokens_per_param: float = spec(1.0, "Refuse plans with fewer tokens per parameter.")
    optimum_tolerance: float = spec(
        4.0, "Warn when tokens per parameter are this far from the law's optimum."
    )
    extrapolation_limit: float = spec(
        100.0, "Warn when C is this far outside the law's fitted range."
    )

    def check(self) -> None:
        """Positive thresholds."""
        positive(self, "critical_batch", "optimum_tolerance", "extrapolation_limit")
        if self.min_tokens_per_param < 0:
            raise ConfigError("min_tokens_per_param", self.min_tokens_per_param, "a number >= 0")


__all__ = [
    "DEFAULT_VOCAB",
    "BatchOptions",
    "Checks",
    "Hardware",
    "Laws",
    "Proxy",
    "ShapeRule",
    "Target",
    "flops_per_token",
    "params",
    "round_up",
    "rounded",
    "shape_for",
]
