"""The planner's inputs, as typed records declared once.

Each record groups one concern of a plan: the target (budget, size, tokens), the shape (an
explicit GPT shape or the family rule), the proxy that was tuned and the recipe it was tuned
with (parametrization and optimizer settings, which the target must share for the tuning to
transfer), the laws, the batch and schedule, the hardware and the warning thresholds.

Every field carries its command-line help in its metadata (``opt``); ``sizeup.plan.options``
maps flat option names (``--base-lr``, ``--rule``, ...) onto these fields generically, so the
command line and ``plan(**options)`` are driven by these declarations and nothing else.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sizeup.choices import (
    COMPUTE_CONVENTIONS,
    COOLDOWNS,
    OPTIMIZERS,
    PRESET_NAMES,
    RAMP_MODES,
    READOUT_FORMS,
    RULES,
    SCHEDULES,
    Cooldown,
    Optimizer,
    RampMode,
    ReadoutForm,
    Rule,
    Schedule,
    choices_help,
)
from sizeup.errors import ConfigError, check_choice, check_positive


def opt(default: Any, help: str, *, cli: str | None = None, flag: str | None = None) -> Any:
    """A record field with its command-line help. ``cli`` renames the option (the flat name
    ``plan()`` also accepts); ``flag`` gives the switch spelling of a boolean."""
    meta = {"help": help}
    if cli is not None:
        meta["cli"] = cli
    if flag is not None:
        meta["flag"] = flag
    return field(default=default, metadata=meta)


def internal(default: Any = None) -> Any:
    """A record field that is not a command-line option (set by code, e.g. from a study)."""
    return field(default=default, metadata={"cli": False})


def _positive_or_none(record: Any, names: tuple[str, ...]) -> None:
    """Every named field is None or a positive number (bools are not numbers here)."""
    for name in names:
        v = getattr(record, name)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < math.inf:
            raise ConfigError(name, v, "a finite positive number")


def _fraction(name: str, value: float, closed_hi: bool = False) -> None:
    """value in [0, 1) (or (0, 1] with closed_hi), else a ConfigError naming the field."""
    ok = 0 < value <= 1 if closed_hi else 0 <= value < 1
    if not ok:
        raise ConfigError(
            name, value, "a fraction in (0, 1]" if closed_hi else "a fraction in [0, 1)"
        )


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


@dataclass
class Target:
    """What to plan for: a compute budget, a size, tokens, or tokens per parameter (or an
    explicit shape, in ShapeOptions)."""

    compute: float | None = opt(None, "Target compute budget C in FLOPs.")
    params: float | None = opt(None, "Target total parameters N.")
    tokens: float | None = opt(None, "Training tokens D.")
    tokens_per_param: float | None = opt(None, "Tokens per parameter D/N.")

    def __post_init__(self) -> None:
        c = self.compute
        if c is not None and (
            isinstance(c, bool) or not isinstance(c, (int, float)) or not 0 < c < math.inf
        ):
            raise ConfigError(
                "compute", c, "a finite positive number of FLOPs (a zero budget trains nothing)"
            )
        _positive_or_none(self, ("params", "tokens", "tokens_per_param"))
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
DEFAULT_VOCAB = 32000  # when neither the user nor the preset gives a vocabulary


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


@dataclass
class Shape:
    """A GPT shape (sizeup.models.GPTConfig names); n_head defaults to d_model / head_dim.
    The SwiGLU hidden size d_ff is mlp_ratio x d_model rounded up to a multiple of
    ``ffn_multiple`` (1: rounded to the nearest integer, as GPTConfig does), and the GPT is built
    with exactly that d_ff, so a plan's parameter count, FLOPs and per-layer table all see one
    model."""

    n_layer: int
    d_model: int
    n_head: int | None = None
    head_dim: int | None = None
    n_kv_head: int | None = None
    vocab_size: int = 32000
    seq_len: int = 2048
    mlp_ratio: float = 8 / 3
    tie_embeddings: bool = False
    ffn_multiple: int = 1
    n_experts: int = 0  # MoE (sizeup.models.GPTConfig): routed experts per block, 0 = dense
    top_k: int = 2
    n_shared_experts: int = 0
    expert_hidden: int | None = None
    first_dense: int = 0

    def __post_init__(self) -> None:
        for name in ("n_layer", "d_model", "vocab_size", "seq_len", "ffn_multiple"):
            check_positive(name, getattr(self, name), integer=True)
        check_positive("mlp_ratio", self.mlp_ratio)
        if self.n_head is None:
            hd = self.head_dim or min(128, self.d_model)
            check_positive("head_dim", hd, integer=True)
            if self.d_model % hd:
                raise ConfigError("head_dim", hd, f"a divisor of d_model={self.d_model}")
            self.n_head, self.head_dim = self.d_model // hd, hd
        check_positive("n_head", self.n_head, integer=True)
        if self.head_dim is None:
            if self.d_model % self.n_head:
                raise ConfigError("n_head", self.n_head, f"a divisor of d_model={self.d_model}")
            self.head_dim = self.d_model // self.n_head
        self.n_kv_head = self.n_kv_head or self.n_head
        if self.n_head % self.n_kv_head:
            raise ConfigError("n_kv_head", self.n_kv_head, f"a divisor of n_head={self.n_head}")
        self._d_ff = round_up(self.mlp_ratio * self.d_model, self.ffn_multiple)
        if self.gpt_config().mlp_hidden != self._d_ff:  # validates the GPT's own constraints
            raise ConfigError("mlp_ratio", self.mlp_ratio, "a ratio the GPT can build")

    def gpt_config(self) -> Any:
        """The built-in GPT's config for this shape (sizeup.models.GPTConfig)."""
        from sizeup.models.gpt import GPTConfig

        return GPTConfig(
            d_model=self.d_model,
            n_layer=self.n_layer,
            n_head=self.n_head,
            head_dim=self.head_dim,
            n_kv_head=self.n_kv_head,
            vocab_size=self.vocab_size,
            seq_len=self.seq_len,
            # the ratio that gives exactly d_ff (GPTConfig.mlp_hidden = round(ratio x d_model))
            mlp_ratio=round_up(self.mlp_ratio * self.d_model, self.ffn_multiple) / self.d_model,
            tie_embeddings=self.tie_embeddings,
            n_experts=self.n_experts,
            top_k=self.top_k,
            n_shared_experts=self.n_shared_experts,
            expert_hidden=self.expert_hidden,
            first_dense=self.first_dense,
        )

    @property
    def d_ff(self) -> int:
        """SwiGLU hidden size: mlp_ratio x d_model rounded up to a multiple of ffn_multiple."""
        return self._d_ff

    def rounding(self) -> str:
        """How d_ff (and the head count) came out, in words, for the plan's summary."""
        exact = self.mlp_ratio * self.d_model
        text = f"d_ff {self.d_ff:,}"
        if self.ffn_multiple > 1:
            text += f" = {self.mlp_ratio:.4g} x {self.d_model:,} = {exact:,.1f} rounded up to a multiple of {self.ffn_multiple}"
        return text + f"; d_model {self.d_model:,} = {self.n_head} heads x {self.head_dim}"

    def with_width(self, d_model: int, n_layer: int, head_dim: int | None = None) -> Shape:
        """The same family at another width and depth: head_dim kept (or given), GQA ratio kept
        where the head count allows, vocabulary, context, MLP ratio and expert count unchanged,
        expert size in proportion to the width."""
        hd = head_dim or self.head_dim
        while d_model % hd and hd > 2:
            hd //= 2  # a narrow proxy: the largest head_dim that divides its width
        heads = d_model // hd
        group = self.n_head // self.n_kv_head
        kv = heads // group if heads % group == 0 else heads
        eh = self.expert_hidden  # an MoE's experts keep their size relative to d_model
        eh = None if eh is None else max(1, round(eh * d_model / self.d_model))
        return dataclasses.replace(
            self,
            n_layer=n_layer,
            d_model=d_model,
            n_head=heads,
            head_dim=hd,
            n_kv_head=kv,
            expert_hidden=eh,
        )

    def to_dict(self) -> dict[str, Any]:
        """The fields plus d_ff."""
        return {**asdict(self), "d_ff": self.d_ff}

    def params(self, embeddings: bool = True, active: bool = False) -> int:
        """Parameter count (sizeup.laws.flops.gpt_params); ``active``: those one token uses
        (an MoE's top_k routed experts; every parameter of a dense model)."""
        from sizeup.laws.flops import gpt_params

        kw = asdict(self)
        return int(gpt_params(embeddings=embeddings, active=active, mlp_hidden=self.d_ff, **kw))

    def flops_per_token(self, convention: str) -> float:
        """Training FLOPs per token: 6N for "6ND" (N the parameters a token uses: all of a dense
        model's, an MoE's active ones), DeepSeek's M for "MD"."""
        from sizeup.laws.flops import flops_per_token

        if convention == "6ND":
            return 6.0 * self.params(active=True)
        return flops_per_token("deepseek", self.n_layer, self.d_model, self.seq_len)

    def exact_flops_per_token(self) -> float:
        """Every matmul of the built-in GPT, causal attention (sizeup.laws.flops)."""
        from sizeup.laws.flops import gpt_exact_flops_per_token

        return float(gpt_exact_flops_per_token(causal=True, mlp_hidden=self.d_ff, **asdict(self)))


@dataclass
class ShapeOptions:
    """An explicit shape (n_layer and d_model, optionally n_head, n_kv_head) or the family
    rule (aspect ratio, head_dim) that picks one for a target size."""

    n_layer: int | None = opt(None, "Explicit shape: number of blocks.")
    d_model: int | None = opt(None, "Explicit shape: model width.")
    n_head: int | None = opt(None, "Explicit shape: attention heads (default d_model / head_dim).")
    head_dim: int = opt(128, "Head dimension (family rule and default heads).")
    n_kv_head: int | None = opt(None, "Key/value heads (GQA); default n_head.")
    vocab_size: int | None = opt(
        None, f"Vocabulary size (default: the preset's, else {DEFAULT_VOCAB})."
    )
    seq_len: int = opt(2048, "Sequence length.")
    mlp_ratio: float = opt(8 / 3, "SwiGLU hidden size / d_model, before rounding.")
    ffn_multiple: int = opt(
        FFN_MULTIPLE,
        "Round d_ff up to a multiple of this (tensor-core friendly; 1: the nearest integer).",
    )
    head_multiple: int = opt(
        HEAD_MULTIPLE,
        "Family rule: head counts a multiple of this, or a power of two below it (tensor "
        "parallelism splits them; 1: any count).",
    )
    tie_embeddings: bool = opt(
        False, "Tie the LM head to the embedding.", flag="--tie-embeddings/--no-tie-embeddings"
    )
    aspect_ratio: float = opt(128.0, "Family rule: d_model / n_layer.")
    n_experts: int = opt(0, "MoE: routed experts per block (0: dense).")
    top_k: int = opt(2, "MoE: experts per token.")
    n_shared_experts: int = opt(0, "MoE: always-active (shared) experts.")
    expert_hidden: int | None = opt(None, "MoE: each expert's hidden size (default d_ff).")
    first_dense: int = opt(0, "MoE: leading blocks that stay dense.")

    def __post_init__(self) -> None:
        check_positive("aspect_ratio", self.aspect_ratio)
        for name in ("head_dim", "ffn_multiple", "head_multiple"):
            check_positive(name, getattr(self, name), integer=True)
        if self.vocab_size is not None:
            check_positive("vocab_size", self.vocab_size, integer=True)

    @classmethod
    def of(cls, shape: Shape) -> ShapeOptions:
        """Options that give exactly ``shape``."""
        return cls(**{f.name: getattr(shape, f.name) for f in dataclasses.fields(Shape)})

    def with_vocab(self, preset_vocab: int | None) -> ShapeOptions:
        """These options with the vocabulary settled: the given one, else the preset's, else
        DEFAULT_VOCAB."""
        if self.vocab_size is not None:
            return self
        return dataclasses.replace(self, vocab_size=preset_vocab or DEFAULT_VOCAB)

    def explicit(self) -> Shape | None:
        """The explicit shape, or None when the family rule is to pick one."""
        if self.n_layer is None and self.d_model is None:
            return None
        if self.n_layer is None or self.d_model is None:
            raise ConfigError(
                "n_layer/d_model",
                (self.n_layer, self.d_model),
                "both given for an explicit shape (or neither)",
            )
        return Shape(
            n_layer=self.n_layer,
            d_model=self.d_model,
            n_head=self.n_head,
            head_dim=None if self.n_head is not None else self.head_dim,
            n_kv_head=self.n_kv_head,
            **self.family(),
        )

    def family(self) -> dict[str, Any]:
        """What every shape of the family shares (shape_for's keyword arguments)."""
        return dict(
            vocab_size=self.vocab_size or DEFAULT_VOCAB,
            seq_len=self.seq_len,
            mlp_ratio=self.mlp_ratio,
            tie_embeddings=self.tie_embeddings,
            ffn_multiple=self.ffn_multiple,
            n_experts=self.n_experts,
            top_k=self.top_k,
            n_shared_experts=self.n_shared_experts,
            expert_hidden=self.expert_hidden,
            first_dense=self.first_dense,
        )


def shape_for(
    size: float,
    *,
    convention: str = "6ND",
    aspect_ratio: float = 128.0,
    head_dim: int = 128,
    vocab_size: int = DEFAULT_VOCAB,
    seq_len: int = 2048,
    mlp_ratio: float = 8 / 3,
    n_kv_head: int | None = None,
    tie_embeddings: bool = False,
    ffn_multiple: int = FFN_MULTIPLE,
    head_multiple: int = HEAD_MULTIPLE,
    **moe: Any,
) -> Shape:
    """The family shape (d_model ~ aspect_ratio * n_layer, a multiple of head_dim) whose size is
    closest in log to ``size``: total parameters for "6ND", FLOPs per token M for "MD".
    Hardware-friendly by default: d_ff a multiple of ``ffn_multiple`` and head counts a multiple
    of ``head_multiple`` (or a power of two below it). ``n_kv_head`` (GQA) keeps that many
    key/value heads: only head counts it divides qualify. ``moe``: the MoE fields of Shape
    (n_experts, top_k, ...), the same at every size."""
    check_positive("size", size)
    check_positive("aspect_ratio", aspect_ratio)
    check_positive("head_dim", head_dim, integer=True)
    check_choice("convention", convention, COMPUTE_CONVENTIONS)
    check_positive("head_multiple", head_multiple, integer=True)
    if n_kv_head is not None:
        check_positive("n_kv_head", n_kv_head, integer=True)
    common = dict(
        head_dim=head_dim,
        vocab_size=vocab_size,
        seq_len=seq_len,
        mlp_ratio=mlp_ratio,
        tie_embeddings=tie_embeddings,
        ffn_multiple=ffn_multiple,
        **moe,
    )

    def measure(s: Shape) -> float:
        return s.params() if convention == "6ND" else s.flops_per_token("MD")

    best: tuple[float, Shape] | None = None
    for L in range(1, 2001):
        # d_model in head_dim steps (of the allowed head counts) within a band around the
        # aspect ratio; over the depths this lands within a few % of the target.
        centre = aspect_ratio * L / head_dim
        lo, hi = max(1, math.floor(centre / 1.25)), max(1, math.ceil(centre * 1.25))
        for heads in range(lo, hi + 1):
            if (n_kv_head is not None and heads % n_kv_head) or not friendly_heads(
                heads, head_multiple
            ):
                continue
            kv = n_kv_head or heads
            s = Shape(n_layer=L, d_model=heads * head_dim, n_head=heads, n_kv_head=kv, **common)
            # Size error first (in 1% bins); among near-ties, the one closest to the aspect ratio.
            err = round(abs(math.log(measure(s) / size)) / 0.01) + abs(
                math.log(s.d_model / (aspect_ratio * L))
            )
            if best is None or err < best[0]:
                best = (err, s)
        if measure(Shape(n_layer=L, d_model=lo * head_dim, n_head=lo, **common)) > 4 * size:
            break  # every later depth is well past the target
    if best is None:
        raise ConfigError(
            "n_kv_head",
            n_kv_head,
            "a number of heads that divides a head count near the family shape (e.g. 1, 2, 4, 8)",
        )
    return best[1]


# ----------------------------------------------------------------------------- proxy


@dataclass
class Recipe:
    """How the proxy was parametrized and optimized; the target gets the same recipe, since a
    tuned lr only transfers under the parametrization it was tuned with."""

    rule: Rule = opt("mup", "Parametrization: " + choices_help(RULES) + ".")
    optimizer: Optimizer = opt("adamw", "Optimizer: " + choices_help(OPTIMIZERS) + ".")
    readout_form: ReadoutForm = opt(
        "table3", "muP readout form: table3 (init sigma/n) or table8 (multiplier 1/n)."
    )
    scale_eps: bool = opt(
        True,
        "Adam eps per tensor, following its gradient scale.",
        flag="--scale-eps/--no-scale-eps",
    )
    sigma: float | str | None = opt(
        None, "Base init std: a number, 'fan_in', or 'model' (the model's own init; the default)."
    )
    beta1: float = opt(0.9, "Adam beta1.")
    beta2: float = opt(0.95, "Adam beta2.")
    eps: float = opt(1e-8, "Adam eps at the base width.")
    weight_decay: float = opt(
        0.1, "Weight decay lambda (torch AdamW's, at the base width): lr x lambda per step."
    )
    momentum: float = opt(0.9, "SGD / Muon momentum.")
    depth_exponent: float | None = opt(
        None, "Depth-muP exponent: residual branches x (L/L_base)^-alpha (with --base-depth)."
    )
    muon_lr: float | None = opt(None, "Muon's lr for the hidden matrices (default: the lr).")

    def __post_init__(self) -> None:
        check_choice("rule", self.rule, RULES)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("readout_form", self.readout_form, READOUT_FORMS)
        self.sigma = _sigma(self.sigma)
        check_positive("eps", self.eps)
        if self.weight_decay < 0:
            raise ConfigError("weight_decay", self.weight_decay, "a number >= 0")
        for name in ("beta1", "beta2", "momentum"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(name, getattr(self, name), "a number in [0, 1)")
        _positive_or_none(self, ("depth_exponent", "muon_lr"))

    @property
    def betas(self) -> tuple[float, float]:
        """(beta1, beta2)."""
        return (self.beta1, self.beta2)


def _sigma(value: Any) -> float | str | None:
    """A base init std: a positive number, 'fan_in', or None/'model' for the model's own."""
    if value is None or value == "model":
        return None
    if value == "fan_in":
        return value
    try:
        s = float(value)
    except (TypeError, ValueError):
        s = math.nan
    if isinstance(value, bool) or not s > 0:
        raise ConfigError("sigma", value, "a positive number, 'fan_in' or 'model'")
    return s


@dataclass
class Proxy:
    """The small model that was tuned: its width and depth (the parametrization's base), its
    tuned peak lr (the global eta), batch and training tokens, and how it was trained."""

    width: int | None = opt(
        None, "Proxy d_model, the base of its parametrization (enables transfer).", cli="base_width"
    )
    depth: int | None = opt(None, "Proxy n_layer.", cli="base_depth")
    lr: float | None = opt(None, "Proxy's tuned peak lr (the global eta).", cli="base_lr")
    batch_tokens: int | None = opt(None, "Proxy's batch in tokens.", cli="base_batch")
    tokens: float | None = opt(None, "Proxy's training tokens.", cli="base_tokens")
    head_dim: int | None = opt(
        None, "Proxy head dimension (default: the target's).", cli="base_head_dim"
    )
    recipe: Recipe | None = internal()  # how it was trained, when known (a study)
    tuned_width: int | None = internal()  # the widest width of a study (where lr was read)
    seq_len: int | None = internal()  # a study's context and vocabulary, for the record: the
    vocab_size: int | None = internal()  # target's own are ShapeOptions'; batches are in tokens
    source: str = internal("given")

    def __post_init__(self) -> None:
        if self.width is None:
            raise ConfigError(
                "base_width",
                None,
                "given whenever a proxy setting (--base-lr, --base-batch, --base-tokens, "
                "--base-depth) is",
            )
        check_positive("base_width", self.width, integer=True)
        for name in ("depth", "head_dim", "batch_tokens"):
            if getattr(self, name) is not None:
                check_positive(f"base_{name}", getattr(self, name), integer=True)
        for name in ("lr", "tokens"):
            if getattr(self, name) is not None:
                check_positive(f"base_{name}", getattr(self, name))

    @classmethod
    def from_study(cls, path: str | Path, group: str | dict[str, Any] | None = None) -> Proxy:
        """The proxy a sweep study tuned, read through sizeup.sweep.Store: shape, batch,
        tokens and recipe of its trials, and the transfer analysis' optimal lr at the widest
        width (sizeup.plan.study; ``group`` picks one of several groups, e.g. "rule=mup")."""
        from sizeup.plan.study import study_proxy

        fields = study_proxy(path, group)
        return cls(recipe=Recipe(**fields.pop("recipe")), **fields)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (the recipe nested)."""
        return asdict(self)


# ----------------------------------------------------------------------------- laws


@dataclass
class Laws:
    """Where size, tokens, batch and lr come from when the target or proxy leaves them open."""

    preset: Any = opt(
        "chinchilla",
        "Laws: " + ", ".join(PRESET_NAMES) + ", or a `sizeup fit` fit.json / folder.",
    )
    lr_law: Any = opt(None, "eta(C) as 'coef,exponent'.")
    batch_law: Any = opt(None, "B(C) in tokens as 'coef,exponent'.")
    lr_nd_law: Any = opt(None, "eta(N, D) = coef N^a D^b as 'coef,a,b'.")
    batch_d_law: Any = opt(None, "B(D) in tokens as 'coef,exponent'.")
    data_exponent: float = opt(0.0, "alpha_data: lr x (D/D_base)^alpha_data.")
    fit_range: Any = opt(None, "Compute range the law was fitted on, 'Cmin,Cmax'.")
    compare_laws: Any = opt(
        None,
        "Compare presets for this target, e.g. 'deepseek-v1,steplaw' or 'all': lr, batch, "
        "steps, warmup, schedule, loss, and where each law's fitting setup differs.",
    )

    def __post_init__(self) -> None:
        for name, n in (("lr_law", 2), ("batch_law", 2), ("lr_nd_law", 3), ("batch_d_law", 2)):
            what = f"{n} comma-separated numbers, the coefficient first and > 0"
            v = _numbers(name, getattr(self, name), n, what)
            if v is not None and not v[0] > 0:
                raise ConfigError(name, getattr(self, name), what)
            setattr(self, name, v)
        self.fit_range = _numbers("fit_range", self.fit_range, 2, "'Cmin,Cmax' in FLOPs")
        self.compare_laws = _preset_list(self.compare_laws)

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


# ----------------------------------------------------------------------------- run


@dataclass
class ScheduleOptions:
    """The target's batch (when given, and its ramp-up) and its lr schedule."""

    batch_tokens: float | None = opt(None, "Batch in tokens (overrides the laws).")
    batch_multiple: int = opt(8, "Round the batch to a multiple of this many sequences.")
    schedule: Schedule | None = opt(
        None,
        "lr schedule: " + choices_help(SCHEDULES) + " (default wsd; constant for "
        "schedule-free AdamW).",
        cli="lr_schedule",
    )
    warmup: int | None = opt(None, "Warmup steps (default warmup_frac of the steps).")
    warmup_frac: float = opt(0.01, "Warmup as a fraction of the steps.")
    decay_frac: float = opt(0.2, "WSD and power: fraction of steps in the cooldown.")
    cooldown: Cooldown = opt("linear", "WSD and power cooldown: " + choices_help(COOLDOWNS) + ".")
    milestones: Any = opt(
        None,
        "multistep: 'q:m,q:m' (after fraction q of the tokens, lr x m); default DeepSeek "
        "LLM's 0.8:0.316,0.9:0.1.",
    )
    power_a: float | None = opt(
        None, "power: a in lr = min(peak, a n^b), n tokens seen (Shen et al. 2024)."
    )
    power_b: float | None = opt(None, "power: the exponent b (< 0).")
    batch_ramp: RampMode | None = opt(
        None,
        "Ramp the batch up, doubling from --ramp-start-batch: 'tokens' (evenly over "
        "--ramp-tokens, as DeepSeek-V2/V3) or 'loss' (as the predicted loss lets the critical "
        "batch double, as MiniMax-01).",
    )
    ramp_start_batch: float | None = opt(None, "Ramp: the first batch, in tokens.")
    ramp_tokens: float | None = opt(None, "Ramp 'tokens': tokens to reach the full batch.")

    def __post_init__(self) -> None:
        _positive_or_none(self, ("batch_tokens", "power_a", "ramp_start_batch", "ramp_tokens"))
        check_positive("batch_multiple", self.batch_multiple, integer=True)
        if self.schedule is not None:
            check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("cooldown", self.cooldown, COOLDOWNS)
        _fraction("decay_frac", self.decay_frac)
        _fraction("warmup_frac", self.warmup_frac)
        self.milestones = _milestones(self.milestones)
        if self.batch_ramp is not None:
            check_choice("batch_ramp", self.batch_ramp, RAMP_MODES)
            self._check_ramp()

    def _check_ramp(self) -> None:
        if self.ramp_start_batch is None:
            raise ConfigError(
                "ramp_start_batch", None, "the ramp's first batch in tokens (with --batch-ramp)"
            )
        if self.batch_ramp == "tokens" and self.ramp_tokens is None:
            raise ConfigError(
                "ramp_tokens", None, "the tokens over which the batch ramps (--batch-ramp tokens)"
            )


def _milestones(value: Any) -> tuple[tuple[float, float], ...] | None:
    """'0.8:0.316,0.9:0.1' or pairs as ((0.8, 0.316), (0.9, 0.1)) (sizeup.schedules reads them)."""
    from sizeup.schedules import parse_milestones

    return parse_milestones(value)


@dataclass
class Hardware:
    """What the run trains on, for wall time and cost."""

    gpu: str | float | None = opt(
        None, "GPU type (sizeup.laws.flops.GPU_PEAK_FLOPS) or peak FLOP/s."
    )
    n_gpus: int = opt(1, "Number of GPUs.")
    mfu: float = opt(0.4, "Model FLOPs utilisation for time and cost.")
    gpu_price: float | None = opt(None, "Price per GPU-hour.")

    def __post_init__(self) -> None:
        if isinstance(self.gpu, str):
            try:
                self.gpu = float(self.gpu)
            except ValueError:
                pass  # a name, checked by sizeup.laws.flops.peak_flops
        check_positive("n_gpus", self.n_gpus, integer=True)
        _fraction("mfu", self.mfu, closed_hi=True)
        _positive_or_none(self, ("gpu_price",))


@dataclass
class Checks:
    """Thresholds of the plan's errors and warnings."""

    critical_batch: float | None = opt(None, "Critical batch in tokens (warn above it).")
    min_tokens_per_param: float = opt(1.0, "Refuse plans with fewer tokens per parameter.")
    optimum_tolerance: float = opt(
        4.0, "Warn when tokens per parameter are this far from the law's optimum."
    )
    extrapolation_limit: float = opt(
        100.0, "Warn when C is this far outside the law's fitted range."
    )

    def __post_init__(self) -> None:
        _positive_or_none(self, ("critical_batch",))
        if self.min_tokens_per_param < 0:
            raise ConfigError("min_tokens_per_param", self.min_tokens_per_param, "a number >= 0")
        check_positive("optimum_tolerance", self.optimum_tolerance)
        check_positive("extrapolation_limit", self.extrapolation_limit)
