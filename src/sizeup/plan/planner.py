"""The target-run planner: from a tuned proxy and fitted (or published) laws to a complete plan.

"I tuned at 40M; what do I run at 7B on 2T tokens?" ``plan(...)`` answers with the model shape,
parameters, tokens, FLOPs, batch, steps, peak lr, warmup and WSD schedule, the per-layer table
(init std, multiplier, lr, wd, Adam betas and eps), the predicted loss, wall time and cost, and
warnings. Every number carries its derivation (formula and inputs) for ``--explain``.

Where the numbers come from:

* size and tokens: the target (compute C, params N, tokens D, tokens per parameter) plus the
  law's compute-optimal allocation for what the target leaves open (``LawPreset.optimal``);
* compute: the law's convention, "6ND" (N = total parameters) or "MD" (DeepSeek LLM,
  M = 72 n_layer d^2 + 12 n_layer d l_seq non-embedding FLOPs per token);
* batch: an explicit batch, else the law's B(C), else a user B(D) law, else the proxy's batch;
* peak lr: a user eta(N, D) law, else transfer from the proxy (eta_base * b^1/2 * d^alpha_data,
  with muP's per-layer multipliers from ``sizeup.parametrization.rules``), else the law's eta(C);
* per-layer table: the rules table applied to the GPT's tensor classes with the width ratio
  n = d/d_base, the batch ratio b = B/B_base (``sizeup.optim.transfer_batch``) and the data ratio
  d = D/D_base; residual-out init x (2L)^-1/2 (GPT-2); the readout in the Table 8 form by default.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sizeup.errors import ConfigError, check_choice, check_positive
from sizeup.parametrization import rules

# Tensor classes of the built-in GPT (sizeup.models.GPT module names) and their muP roles.
# "residual" marks the outputs of residual branches, whose init gets the (2L)^-1/2 factor.
GPT_TENSORS: tuple[tuple[str, str, bool], ...] = (
    ("wte", "input", False),
    ("blocks.*.ln1", "vector", False),
    ("blocks.*.attn.q", "hidden", False),
    ("blocks.*.attn.k", "hidden", False),
    ("blocks.*.attn.v", "hidden", False),
    ("blocks.*.attn.o", "hidden", True),
    ("blocks.*.ln2", "vector", False),
    ("blocks.*.mlp.gate", "hidden", False),
    ("blocks.*.mlp.up", "hidden", False),
    ("blocks.*.mlp.down", "hidden", True),
    ("ln_f", "vector", False),
    ("lm_head", "readout", False),
)

FALLBACK_BATCH_PRESET = "deepseek-v1"  # eta(C), B(C) used when nothing else gives them


# ----------------------------------------------------------------------------- records


@dataclass
class Shape:
    """A GPT shape (sizeup.models.GPTConfig names); n_head defaults to d_model / head_dim."""

    n_layer: int
    d_model: int
    n_head: int | None = None
    head_dim: int | None = None
    n_kv_head: int | None = None
    vocab_size: int = 32000
    seq_len: int = 2048
    mlp_ratio: float = 8 / 3
    tie_embeddings: bool = False

    def __post_init__(self) -> None:
        check_positive("n_layer", self.n_layer, integer=True)
        check_positive("d_model", self.d_model, integer=True)
        check_positive("vocab_size", self.vocab_size, integer=True)
        check_positive("seq_len", self.seq_len, integer=True)
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

    @property
    def d_ff(self) -> int:
        """SwiGLU hidden size, round(mlp_ratio * d_model) as in sizeup.models.GPT."""
        return int(round(self.mlp_ratio * self.d_model))

    def params(self, embeddings: bool = True) -> int:
        """Parameter count (sizeup.laws.flops.gpt_params)."""
        from sizeup.laws.flops import gpt_params

        return int(gpt_params(embeddings=embeddings, **asdict(self)))

    def flops_per_token(self, convention: str) -> float:
        """Training FLOPs per token: 6N (total params) for "6ND", DeepSeek's M for "MD"."""
        from sizeup.laws.flops import flops_per_token

        if convention == "6ND":
            return 6.0 * self.params()
        return flops_per_token("deepseek", self.n_layer, self.d_model, self.seq_len)

    def exact_flops_per_token(self) -> float:
        """Every matmul of the built-in GPT, causal attention (sizeup.laws.flops)."""
        from sizeup.laws.flops import gpt_exact_flops_per_token

        return float(gpt_exact_flops_per_token(causal=True, **asdict(self)))


@dataclass
class Proxy:
    """The small model that was tuned: its width, depth, tuned hyperparameters and budget."""

    width: int
    depth: int | None = None
    lr: float | None = None  # tuned peak lr (the global eta of the parametrization)
    batch_tokens: int | None = None
    tokens: float | None = None
    rule: str = "mup"
    sigma: float = 0.02  # base init std
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.1  # independent (not multiplied by lr), so it does not transfer

    def __post_init__(self) -> None:
        check_positive("base_width", self.width, integer=True)
        if self.depth is not None:
            check_positive("base_depth", self.depth, integer=True)
        for name in ("lr", "batch_tokens", "tokens"):
            v = getattr(self, name)
            if v is not None:
                check_positive(f"base_{name}", v, integer=name == "batch_tokens")
        check_choice("rule", self.rule, rules.RULES)
        check_positive("sigma", self.sigma)
        check_positive("eps", self.eps)
        if self.weight_decay < 0:
            raise ConfigError("weight_decay", self.weight_decay, "a number >= 0")
        for i, b in enumerate(self.betas):
            if not 0.0 <= b < 1.0:
                raise ConfigError(f"beta{i + 1}", b, "a number in [0, 1)")


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
    loss: float | None = None
    loss_interval: tuple[float, float] | None = None
    time_s: float | None = None
    gpu_hours: float | None = None
    cost: float | None = None
    hardware: dict[str, Any] | None = None
    optimum: dict[str, Any] | None = None  # the law's compute-optimal size and tokens at C
    critical_batch: float | None = None
    warnings: list[str] = field(default_factory=list)
    explain: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict; the keys "peak_lr", "batch_tokens", "params", "tokens", "flops" and
        "layers" are the command-line contract."""
        d = asdict(self)
        if d["loss_interval"] is not None:
            d["loss_interval"] = list(d["loss_interval"])
        return d

    def to_json(self) -> str:
        """The plan as indented JSON."""
        return json.dumps(self.to_dict(), indent=2)

    def summary_rows(self) -> list[tuple[str, str]]:
        """(quantity, value) rows of the headline numbers, shared by Markdown and rich."""
        s = self.shape
        rows = [
            ("laws", f"{self.preset['name']} ({self.preset['source']})"),
            (
                "shape",
                f"n_layer={s['n_layer']}, d_model={s['d_model']}, n_head={s['n_head']}, "
                f"head_dim={s['head_dim']}, n_kv_head={s['n_kv_head']}, d_ff={s['d_ff']}, "
                f"vocab={s['vocab_size']}, seq_len={s['seq_len']}",
            ),
            (
                "params",
                f"{_fmt(self.params)} total, {_fmt(self.params_non_embedding)} non-embedding",
            ),
            ("tokens", f"{_fmt(self.tokens)} ({self.tokens_per_param:.1f} tokens/param)"),
            (
                "FLOPs",
                f"{self.flops:.3e} ({self.flops_formula}); exact GPT count {self.flops_exact:.3e}",
            ),
            (
                "batch",
                f"{_fmt(self.batch_tokens)} tokens = {self.batch_sequences} sequences "
                f"({self.batch_rounding})",
            ),
            ("steps", f"{self.steps:,}"),
            ("peak lr", f"{self.peak_lr:.4g} ({self.lr_source})"),
            (
                "schedule",
                f"WSD: warmup {self.warmup_steps:,}, stable {self.schedule['stable_steps']:,}, "
                f"{self.schedule['cooldown']} decay {self.schedule['decay_steps']:,} steps",
            ),
            (
                "ratios",
                f"width n={self.width_ratio:.4g}, batch b={self.batch_ratio:.4g}, "
                f"data d={self.data_ratio:.4g}, alpha_data={self.data_exponent:g}",
            ),
        ]
        if self.loss is not None:
            band = ""
            if self.loss_interval is not None and self.loss_interval[0] != self.loss_interval[1]:
                band = f" (90% bootstrap {self.loss_interval[0]:.4f}-{self.loss_interval[1]:.4f})"
            rows.append(("predicted loss", f"{self.loss:.4f}{band}"))
        if self.time_s is not None and self.hardware is not None:
            h = self.hardware
            t = f"{self.time_s / 86400:.2f} days on {h['n_gpus']} x {h['gpu']} at MFU {h['mfu']:g}"
            t += f" ({_fmt(self.gpu_hours)} GPU-hours)"
            if self.cost is not None:
                t += f", cost {self.cost:,.0f} at {h['gpu_price']:g}/GPU-hour"
            rows.append(("time", t))
        return rows

    def layer_header(self) -> list[str]:
        """Column names of the per-layer table."""
        return ["tensor", "role", "init std", "mult", "lr", "wd", "beta1", "beta2", "eps"]

    def layer_rows(self) -> list[list[str]]:
        """The per-layer table as strings."""

        def g(v: Any) -> str:
            return "-" if v is None else f"{v:.3g}"

        return [
            [
                r["tensor"],
                r["role"],
                g(r["init_std"]),
                g(r["multiplier"]),
                g(r["lr"]),
                g(r["wd"]),
                g(r["beta1"]),
                g(r["beta2"]),
                g(r["eps"]),
            ]
            for r in self.layers
        ]

    def to_markdown(self) -> str:
        """The plan as a Markdown document (summary, per-layer table, warnings, derivations)."""
        out = ["# sizeup plan", "", "| quantity | value |", "|---|---|"]
        out += [f"| {k} | {v} |" for k, v in self.summary_rows()]
        out += [
            "",
            f"## Per-layer table (rule {self.rule}, readout in the "
            f"{'Table 8' if self.readout_form == 'table8' else 'Table 3'} form, "
            "residual-out init x (2L)^-1/2)",
            "",
        ]
        head = self.layer_header()
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(r) + " |" for r in self.layer_rows()]
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
        """Write out_dir/plan.json and out_dir/plan.md; return the JSON path."""
        d = Path(out_dir)
        d.mkdir(parents=True, exist_ok=True)
        (d / "plan.json").write_text(self.to_json())
        (d / "plan.md").write_text(self.to_markdown())
        return d / "plan.json"


# ----------------------------------------------------------------------------- helpers


def _fmt(x: float) -> str:
    """Human-friendly big number: 6.9B, 2T, 9.4M."""
    x = float(x)
    for unit, v in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(x) >= v:
            return f"{x / v:.3g}{unit}"
    return f"{x:.4g}"


def _fmt_any(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _fmt_inputs(inputs: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_fmt_any(v)}" for k, v in inputs.items()) or "no inputs"


def _resolve_preset(preset: Any) -> Any:
    """A LawPreset from a name, a fit.json path, or a LawPreset."""
    from sizeup.laws.presets import PRESET_NAMES, LawPreset, get_preset, load_fit

    if isinstance(preset, LawPreset):
        return preset
    if isinstance(preset, (str, Path)) and str(preset) in PRESET_NAMES:
        return get_preset(str(preset))
    if isinstance(preset, (str, Path)) and (str(preset).endswith(".json") or Path(preset).is_dir()):
        return load_fit(preset)
    raise ConfigError(
        "preset",
        preset,
        "one of "
        + ", ".join(PRESET_NAMES)
        + ", a `sizeup fit` output (fit.json or its folder), or a LawPreset",
    )


def _as_law(field_name: str, value: Any, n: int) -> tuple[float, ...] | None:
    """User-supplied law coefficients: a tuple of n numbers, coefficient first and positive."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = tuple(float(x) for x in value.split(","))
        except ValueError as e:
            raise ConfigError(field_name, value, f"{n} comma-separated numbers") from e
    value = tuple(float(x) for x in value)
    if len(value) != n or not value[0] > 0:
        raise ConfigError(field_name, value, f"{n} numbers, the coefficient first and > 0")
    return value


def shape_for(
    size: float,
    *,
    convention: str = "6ND",
    aspect_ratio: float = 128.0,
    head_dim: int = 128,
    vocab_size: int = 32000,
    seq_len: int = 2048,
    mlp_ratio: float = 8 / 3,
    n_kv_head_ratio: int = 1,
    tie_embeddings: bool = False,
) -> Shape:
    """The family shape (d_model ~ aspect_ratio * n_layer, a multiple of head_dim) whose size is
    closest in log to ``size``: total parameters for "6ND", FLOPs per token M for "MD"."""
    check_positive("size", size)
    check_positive("aspect_ratio", aspect_ratio)
    check_positive("head_dim", head_dim, integer=True)
    check_choice("convention", convention, ("6ND", "MD"))

    def measure(s: Shape) -> float:
        return s.params() if convention == "6ND" else s.flops_per_token("MD")

    best: tuple[float, Shape] | None = None
    for L in range(1, 2001):
        # d_model in head_dim steps within a band around the aspect ratio: finer than one
        # layer's worth of parameters, so the shape lands within about 1% of the target.
        centre = aspect_ratio * L / head_dim
        lo, hi = max(1, math.floor(centre / 1.25)), max(1, math.ceil(centre * 1.25))
        for heads in range(lo, hi + 1):
            d = heads * head_dim
            kv = heads // n_kv_head_ratio if heads % n_kv_head_ratio == 0 else heads
            s = Shape(
                n_layer=L,
                d_model=d,
                n_head=heads,
                head_dim=head_dim,
                n_kv_head=kv,
                vocab_size=vocab_size,
                seq_len=seq_len,
                mlp_ratio=mlp_ratio,
                tie_embeddings=tie_embeddings,
            )
            got = measure(s)
            # Size error first (in 1% bins); among near-ties, the one closest to the aspect ratio.
            err = round(abs(math.log(got / size)) / 0.01) + abs(math.log(d / (aspect_ratio * L)))
            if best is None or err < best[0]:
                best = (err, s)
        smallest = Shape(
            n_layer=L,
            d_model=lo * head_dim,
            n_head=lo,
            head_dim=head_dim,
            vocab_size=vocab_size,
            seq_len=seq_len,
            mlp_ratio=mlp_ratio,
        )
        if measure(smallest) > 4 * size:
            break  # every later depth is well past the target
    assert best is not None
    return best[1]


def layer_table(
    *,
    lr: float,
    n_layer: int,
    width_ratio: float = 1.0,
    batch_ratio: float = 1.0,
    data_ratio: float = 1.0,
    data_exponent: float = 0.0,
    rule: str = "mup",
    sigma: float = 0.02,
    betas: tuple[float, float] = (0.9, 0.95),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    readout_form: str = "table8",
    optimizer: str = "adamw",
    d_model: int | None = None,
    base_depth: int | None = None,
    depth_exponent: float | None = None,
    lr_includes_transfer: bool = False,
    scale_eps: bool = True,
) -> list[dict[str, Any]]:
    """The per-layer "how to scale" table for the GPT's tensor classes, from the rules table.

    lr is the base model's tuned eta; each row's lr is eta * lr_mult(rule, role) * b^1/2 * d^alpha
    (b = batch_ratio, d = data_ratio, alpha = data_exponent), betas 1 - b(1 - beta) and eps
    b^-1/2 (sizeup.optim.transfer_batch, square-root rule) x rules.eps_mult (with scale_eps),
    residual-out init x (2L)^-1/2.
    With lr_includes_transfer=True, lr already holds the b and d factors (a law's eta).
    """
    check_positive("lr", lr)
    check_positive("n_layer", n_layer, integer=True)
    for name, v in (
        ("width_ratio", width_ratio),
        ("batch_ratio", batch_ratio),
        ("data_ratio", data_ratio),
    ):
        check_positive(name, v)
    check_choice("rule", rule, rules.RULES)
    check_choice("readout_form", readout_form, ("table3", "table8"))
    check_choice("optimizer", optimizer, ("adamw", "muon"))
    family = rules.optimizer_family(optimizer)
    n = width_ratio
    # Batch transfer from the optim engineer's helper; integer batches with the ratio preserved.
    base_b = 1_000_000
    t_lr, t_betas, t_eps = _transfer(1.0, betas, eps, batch_ratio, base_b)
    lr_factor = 1.0 if lr_includes_transfer else t_lr * data_ratio**data_exponent
    branch_mult, block_lr = (1.0, 1.0)
    if depth_exponent is not None and base_depth is not None:
        branch_mult, block_lr = rules.depth_factors(n_layer, base_depth, depth_exponent, family)
    d = d_model or 1
    rows = []
    for tensor, role, residual in GPT_TENSORS:
        # m_in, m_out: which side of the tensor is width (muP roles, DESIGN.md).
        m_in = n if role in ("hidden", "readout") else 1.0
        m_out = n if role in ("hidden", "input", "vector") else 1.0
        fan_in = int(round(d * (m_in if role != "input" else 1.0))) or 1
        fan_out = int(round(d * (m_out if role != "readout" else 1.0))) or 1
        is_muon = family == "muon" and role == "hidden"
        std = rules.init_std(rule, role, sigma, m_in, fan_in, fan_out)
        lr_mult = rules.lr_mult(rule, role, family, m_in, m_out, is_muon)
        mult = rules.multiplier(rule, role, m_in, readout_form)
        in_block = tensor.startswith("blocks.")
        eps_f = (
            rules.eps_mult(rule, role, m_out, mult, branch_mult if in_block else 1.0)
            if scale_eps
            else 1.0
        )
        if rule == "mup" and readout_form == "table8" and std is not None:
            f_init, f_lr = rules.table8_shift(role, m_in, family)
            std, lr_mult = std * f_init, lr_mult * f_lr
        if residual and std is not None:
            std /= math.sqrt(2 * n_layer)  # GPT-2: residual-branch outputs init / sqrt(2L)
        if residual:
            mult *= branch_mult
        if tensor.startswith("blocks."):
            lr_mult *= block_lr
        # Weight decay is independent (not x lr) and width-free; none on norm gains
        # (the same convention as sizeup.parametrization.core).
        wd = 0.0 if role == "vector" else weight_decay
        rows.append(
            {
                "tensor": tensor,
                "role": role,
                "m_in": m_in,
                "m_out": m_out,
                "init_std": std,
                "multiplier": mult,
                "lr_mult": lr_mult,
                "lr": lr * lr_factor * lr_mult,
                "wd": wd,
                "beta1": None if is_muon else t_betas[0],
                "beta2": None if is_muon else t_betas[1],
                "eps": None if is_muon else t_eps * eps_f,
                "optimizer": "muon" if is_muon else "adamw",
            }
        )
    return rows


def _transfer(
    lr: float, betas: tuple[float, float], eps: float, batch_ratio: float, base_batch: int
) -> tuple[float, tuple[float, ...], float]:
    """sizeup.optim.transfer_batch for a batch ratio (betas clipped at 0 past the rule's range)."""
    from sizeup.optim.transfer import transfer_batch

    target = max(1, int(round(batch_ratio * base_batch)))
    return transfer_batch(lr, betas, eps, target, base_batch, clip=True)


def _round_batch(batch_tokens: float, seq_len: int, multiple: int) -> tuple[int, str]:
    """Round a batch in tokens to whole sequences, a multiple of ``multiple`` (at least one)."""
    seqs = batch_tokens / seq_len
    rounded = max(multiple, int(round(seqs / multiple)) * multiple)
    return rounded, (
        f"{seqs:.1f} sequences of {seq_len} rounded to {rounded}, a multiple of {multiple}"
    )


# ----------------------------------------------------------------------------- the planner


def plan(
    *,
    compute: float | None = None,
    params: float | None = None,
    tokens: float | None = None,
    tokens_per_param: float | None = None,
    preset: Any = "chinchilla",
    shape: Shape | None = None,
    n_layer: int | None = None,
    d_model: int | None = None,
    n_head: int | None = None,
    head_dim: int = 128,
    n_kv_head: int | None = None,
    vocab_size: int = 32000,
    seq_len: int = 2048,
    mlp_ratio: float = 8 / 3,
    tie_embeddings: bool = False,
    aspect_ratio: float = 128.0,
    proxy: Proxy | None = None,
    batch_tokens: float | None = None,
    batch_multiple: int = 8,
    lr_law: Any = None,
    batch_law: Any = None,
    lr_nd_law: Any = None,
    batch_d_law: Any = None,
    data_exponent: float = 0.0,
    depth_exponent: float | None = None,
    readout_form: str = "table8",
    optimizer: str = "adamw",
    scale_eps: bool = True,
    warmup: int | None = None,
    warmup_frac: float = 0.01,
    decay_frac: float = 0.2,
    cooldown: str = "linear",
    gpu: str | float | None = None,
    n_gpus: int = 1,
    mfu: float = 0.4,
    gpu_price: float | None = None,
    critical_batch: float | None = None,
    fit_range: tuple[float, float] | None = None,
    min_tokens_per_param: float = 1.0,
    optimum_tolerance: float = 4.0,
    extrapolation_limit: float = 100.0,
) -> Plan:
    """Plan the target run: shape, tokens, FLOPs, batch, steps, peak lr, schedule, per-layer
    table, predicted loss, time and cost, with warnings and the derivation of every number.

    Target: ``compute`` (FLOPs), or ``params``, or ``params`` and ``tokens`` (or
    ``tokens_per_param``), or an explicit shape (``shape`` or ``n_layer`` + ``d_model``).
    Laws: ``preset`` ("chinchilla", "epoch", "deepseek-v1", a fit.json, a LawPreset) and
    user coefficients ``lr_law``/``batch_law`` = (coef, exponent) in C, ``lr_nd_law`` =
    (coef, a_N, a_D) for eta = coef N^a_N D^a_D, ``batch_d_law`` = (coef, exponent) in D.
    ``scale_eps``: the per-layer Adam eps follows each tensor's gradient scale (rules.eps_mult).
    """
    ex: list[dict[str, Any]] = []
    warns: list[str] = []

    def note(name: str, value: Any, formula: str, **inputs: Any) -> None:
        ex.append({"name": name, "value": value, "formula": formula, "inputs": inputs})

    # ---- inputs
    for name, v in (
        ("compute", compute),
        ("params", params),
        ("tokens", tokens),
        ("tokens_per_param", tokens_per_param),
        ("batch_tokens", batch_tokens),
        ("critical_batch", critical_batch),
        ("gpu_price", gpu_price),
    ):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0):
            what = (
                "a positive number of FLOPs (a zero budget trains nothing)"
                if name == "compute"
                else "a positive number"
            )
            raise ConfigError(name, v, what)
    check_positive("batch_multiple", batch_multiple, integer=True)
    check_positive("n_gpus", n_gpus, integer=True)
    check_choice("cooldown", cooldown, ("linear", "1-sqrt", "exponential"))
    if not 0 < mfu <= 1:
        raise ConfigError("mfu", mfu, "a fraction in (0, 1]")
    if not 0 <= decay_frac < 1:
        raise ConfigError("decay_frac", decay_frac, "a fraction in [0, 1)")
    if not 0 <= warmup_frac < 1:
        raise ConfigError("warmup_frac", warmup_frac, "a fraction in [0, 1)")
    if tokens is not None and tokens_per_param is not None:
        raise ConfigError(
            "tokens_per_param",
            tokens_per_param,
            f"left out when tokens={tokens:g} is given (give one of the two)",
        )
    lr_law_c = _as_law("lr_law", lr_law, 2)
    batch_law_c = _as_law("batch_law", batch_law, 2)
    lr_nd = _as_law("lr_nd_law", lr_nd_law, 3)
    batch_d = _as_law("batch_d_law", batch_d_law, 2)
    law = _resolve_preset(preset)
    conv = law.compute
    k_name = (
        "C = 6 N D (N = total parameters)"
        if conv == "6ND"
        else "C = M D (M = 72 n_layer d^2 + 12 n_layer d l_seq, DeepSeek LLM)"
    )

    family = dict(
        head_dim=head_dim,
        vocab_size=vocab_size,
        seq_len=seq_len,
        mlp_ratio=mlp_ratio,
        tie_embeddings=tie_embeddings,
    )

    # ---- shape: explicit, from params, or from the compute-optimal size at C
    if shape is None and (n_layer is not None or d_model is not None):
        if n_layer is None or d_model is None:
            raise ConfigError(
                "n_layer/d_model",
                (n_layer, d_model),
                "both given for an explicit shape (or neither)",
            )
        shape = Shape(
            n_layer=n_layer,
            d_model=d_model,
            n_head=n_head,
            head_dim=None if n_head is not None else head_dim,
            n_kv_head=n_kv_head,
            vocab_size=vocab_size,
            seq_len=seq_len,
            mlp_ratio=mlp_ratio,
            tie_embeddings=tie_embeddings,
        )
    explicit_shape = shape is not None
    if shape is not None:
        N = shape.params()
        note(
            "params",
            N,
            "sum of the GPT's tensors (sizeup.laws.flops.gpt_params)",
            **{k: v for k, v in asdict(shape).items() if v is not None},
        )
        if params is not None and abs(math.log(N / params)) > math.log(1.1):
            raise ConfigError(
                "params",
                params,
                f"within 10% of the explicit shape's {N:,} parameters (or leave params out)",
            )
    else:
        if params is not None:
            size_target, what = float(params), "params"
            if conv == "MD":
                shape = shape_for(params, convention="6ND", aspect_ratio=aspect_ratio, **family)
        elif compute is not None:
            if tokens is not None:
                size_target, what = compute / tokens, "C / D"
            elif tokens_per_param is not None and conv == "6ND":
                size_target, what = math.sqrt(compute / (6.0 * tokens_per_param)), "sqrt(C / (6 r))"
            elif tokens_per_param is not None:
                raise ConfigError(
                    "tokens_per_param",
                    tokens_per_param,
                    f"only with a 6ND law (preset {law.name!r} counts C = M D); "
                    "give tokens or params",
                )
            else:
                size_target, _ = law.optimal(compute)
                what = "N_opt(C)" if conv == "6ND" else "M_opt(C)"
                note("size_opt", size_target, f"compute-optimal {what} from {law.name}", C=compute)
            if conv == "6ND" and what == "C / D":
                size_target /= 6.0
        else:
            raise ConfigError(
                "target", None, "one of compute, params, or an explicit shape (n_layer and d_model)"
            )
        if shape is None:
            shape = shape_for(size_target, convention=conv, aspect_ratio=aspect_ratio, **family)
        N = shape.params()
        note(
            "params",
            N,
            f"family shape (d_model ~ {aspect_ratio:g} n_layer, head_dim {head_dim}) "
            f"closest to the target {what}",
            target=size_target,
            n_layer=shape.n_layer,
            d_model=shape.d_model,
        )
    n_emb = shape.params(embeddings=False)
    per_token = shape.flops_per_token(conv)  # 6N or M

    # ---- tokens
    if tokens is not None:
        D = float(tokens)
        note("tokens", D, "given")
    elif compute is not None:
        # Spend the budget exactly; a tokens_per_param target only chose the shape.
        D = compute / per_token
        note(
            "tokens",
            D,
            "D = C / (6N)" if conv == "6ND" else "D = C / M",
            C=compute,
            per_token_flops=per_token,
        )
    elif tokens_per_param is not None:
        D = tokens_per_param * N
        note("tokens", D, "D = r N", r=tokens_per_param, N=N)
    else:
        # Only the size is fixed: train it compute-optimally, i.e. at the C where size_opt(C) = size.
        size = N if conv == "6ND" else per_token
        lo, hi = 1e6, 1e40  # bisection in log C; size_opt(C) increases with C
        for _ in range(200):
            mid = math.sqrt(lo * hi)
            lo, hi = (mid, hi) if law.optimal(mid)[0] < size else (lo, mid)
        D = law.optimal(math.sqrt(lo * hi))[1]
        note(
            "tokens",
            D,
            f"compute-optimal D_opt(C) at the C where the {law.name} size_opt(C) equals this model",
            size=size,
        )
    C = per_token * D
    size_fixed = explicit_shape or params is not None
    if compute is not None and abs(math.log(C / compute)) > math.log(1.01) and not size_fixed:
        # compute and tokens fixed the size; the family shape can only come close to it.
        note("compute_rounding", C / compute, "C(shape, D) / C_target: the nearest family shape")
    elif compute is not None and abs(math.log(C / compute)) > math.log(1.01):
        raise ConfigError(
            "compute",
            compute,
            f"consistent with the rest of the target: {k_name} gives {C:.4g} "
            f"for params={N:,} and tokens={D:.4g} (give two of compute, params "
            "or shape, tokens)",
        )
    note("flops", C, k_name, per_token_flops=per_token, D=D)
    r = D / N
    note("tokens_per_param", r, "D / N", D=D, N=N)
    if r < min_tokens_per_param:
        n_max = math.sqrt(C / (6.0 * min_tokens_per_param)) if conv == "6ND" else None
        allowed = (
            f"at most {n_max:.4g} parameters for compute={C:.4g} (at least "
            f"{min_tokens_per_param:g} token per parameter)"
            if n_max
            else f"at least {min_tokens_per_param:g} token per parameter"
        )
        raise ConfigError(
            "params",
            N,
            f"{allowed}; this target leaves {D:.4g} tokens "
            f"({r:.3g} per parameter): the model is larger than the budget allows",
        )
    flops_exact = shape.exact_flops_per_token() * D
    note(
        "flops_exact",
        flops_exact,
        "every matmul of the GPT, causal attention, x3 for backward",
        per_token=shape.exact_flops_per_token(),
        D=D,
    )

    # ---- batch size
    if batch_tokens is not None:
        B_raw, b_src = float(batch_tokens), "given"
        note("batch_raw", B_raw, "given")
    elif batch_law_c is not None:
        B_raw, b_src = batch_law_c[0] * C ** batch_law_c[1], "user B(C)"
        note("batch_raw", B_raw, "B = c C^e (user)", c=batch_law_c[0], e=batch_law_c[1], C=C)
    elif law.batch_law is not None:
        B_raw, b_src = law.batch_tokens(C), f"{law.name} B(C)"
        note(
            "batch_raw",
            B_raw,
            f"B = {law.batch_law.coef:g} C^{law.batch_law.exponent:g} ({law.name})",
            C=C,
        )
    elif batch_d is not None:
        B_raw, b_src = batch_d[0] * D ** batch_d[1], "user B(D)"
        note("batch_raw", B_raw, "B = c D^e (user)", c=batch_d[0], e=batch_d[1], D=D)
    else:
        # No batch law: a published B(C) beats reusing the proxy's (far too small) batch.
        from sizeup.laws.presets import get_preset

        fb = get_preset(FALLBACK_BATCH_PRESET)
        C_md = flops_per_token_md(shape) * D
        B_raw, b_src = fb.batch_tokens(C_md), f"{FALLBACK_BATCH_PRESET} B(C) (fallback)"
        note(
            "batch_raw",
            B_raw,
            f"B = {fb.batch_law.coef:g} C^{fb.batch_law.exponent:g} with "
            "C = M D (DeepSeek LLM; no batch law in the preset)",
            C=C_md,
        )
        warns.append(
            f"preset {law.name!r} has no batch-size law; the batch comes from "
            f"{FALLBACK_BATCH_PRESET}'s B(C). Pass batch_tokens or a batch law to choose."
        )
    seqs, rounding = _round_batch(B_raw, shape.seq_len, batch_multiple)
    B = seqs * shape.seq_len
    note(
        "batch_tokens",
        B,
        "round(B / seq_len / m) * m * seq_len",
        B=B_raw,
        seq_len=shape.seq_len,
        m=batch_multiple,
    )
    steps = int(math.ceil(D / B))
    note("steps", steps, "ceil(D / B)", D=D, B=B)
    if steps < 1 or D < B:
        raise ConfigError("tokens", D, f"at least one batch ({B:,} tokens)")

    # ---- ratios against the proxy
    if proxy is not None:
        n_ratio = shape.d_model / proxy.width
        b_ratio = B / proxy.batch_tokens if proxy.batch_tokens else 1.0
        d_ratio = D / proxy.tokens if proxy.tokens else 1.0
        note(
            "width_ratio",
            n_ratio,
            "n = d_model / base_width",
            d_model=shape.d_model,
            base_width=proxy.width,
        )
        note("batch_ratio", b_ratio, "b = B / B_base", B=B, B_base=proxy.batch_tokens or B)
        note("data_ratio", d_ratio, "d = D / D_base", D=D, D_base=proxy.tokens or D)
        if n_ratio < 1:
            raise ConfigError(
                "base_width", proxy.width, f"at most the target d_model={shape.d_model}"
            )
    else:
        n_ratio = b_ratio = d_ratio = 1.0

    # ---- peak lr
    law_lr = law.lr(C) if law.lr_law is not None else None
    if lr_law_c is not None:
        law_lr = lr_law_c[0] * C ** lr_law_c[1]
    transfer_lr = False
    if lr_nd is not None:
        lr, lr_src = lr_nd[0] * N ** lr_nd[1] * D ** lr_nd[2], "user eta(N, D)"
        note("peak_lr", lr, "eta = c N^a D^b (user)", c=lr_nd[0], a=lr_nd[1], b=lr_nd[2], N=N, D=D)
    elif proxy is not None and proxy.lr is not None:
        t_lr, _, _ = _transfer(proxy.lr, proxy.betas, proxy.eps, b_ratio, 1_000_000)
        lr = t_lr * d_ratio**data_exponent
        lr_src, transfer_lr = "transfer from the proxy", True
        note(
            "peak_lr",
            lr,
            "eta = eta_base * b^1/2 * d^alpha_data (global eta; per-layer "
            "multipliers in the table)",
            eta_base=proxy.lr,
            b=b_ratio,
            d=d_ratio,
            alpha_data=data_exponent,
        )
        if law_lr is not None and max(lr / law_lr, law_lr / lr) > 2:
            warns.append(
                f"the transferred peak lr {lr:.3g} differs from the law's {law_lr:.3g} "
                "by more than 2x; check the proxy's tuning or the law's range."
            )
    elif law_lr is not None:
        lr = law_lr
        lr_src = "user eta(C)" if lr_law_c is not None else f"{law.name} eta(C)"
        c, e = lr_law_c if lr_law_c is not None else (law.lr_law.coef, law.lr_law.exponent)
        note("peak_lr", lr, f"eta = {c:g} C^{e:g}", C=C)
    else:
        from sizeup.laws.presets import get_preset

        fb = get_preset(FALLBACK_BATCH_PRESET)
        C_md = flops_per_token_md(shape) * D
        lr, lr_src = fb.lr(C_md), f"{FALLBACK_BATCH_PRESET} eta(C) (fallback)"
        note(
            "peak_lr",
            lr,
            f"eta = {fb.lr_law.coef:g} C^{fb.lr_law.exponent:g} with C = M D "
            "(DeepSeek LLM; no lr law in the preset and no proxy lr)",
            C=C_md,
        )
        warns.append(
            f"preset {law.name!r} has no learning-rate law and no proxy lr was given; "
            f"the peak lr comes from {FALLBACK_BATCH_PRESET}'s eta(C). Pass a proxy "
            "(base lr, width, batch, tokens) to transfer your own tuning."
        )

    # ---- schedule (WSD)
    wu = int(warmup) if warmup is not None else max(1, int(round(warmup_frac * steps)))
    if not 0 <= wu < steps:
        raise ConfigError("warmup", warmup, f"a number of steps in [0, {steps})")
    decay = int(round(decay_frac * steps))
    stable = max(0, steps - wu - decay)
    sched = {
        "kind": "wsd",
        "warmup_steps": wu,
        "stable_steps": stable,
        "decay_steps": decay,
        "cooldown": cooldown,
        "decay_frac": decay_frac,
        "peak_lr": lr,
    }
    note(
        "warmup_steps",
        wu,
        "given" if warmup is not None else "round(warmup_frac * steps)",
        warmup_frac=warmup_frac,
        steps=steps,
    )
    note(
        "schedule",
        f"{wu}/{stable}/{decay}",
        "WSD warmup / stable / decay = steps - warmup - "
        "round(decay_frac * steps) / round(decay_frac * steps)",
        decay_frac=decay_frac,
    )

    # ---- per-layer table
    rule = proxy.rule if proxy is not None else "sp"
    sigma = proxy.sigma if proxy is not None else 0.02
    betas = proxy.betas if proxy is not None else (0.9, 0.95)
    eps = proxy.eps if proxy is not None else 1e-8
    wd = proxy.weight_decay if proxy is not None else 0.1
    base_lr = proxy.lr if transfer_lr else lr
    # A law's eta is already the target's own lr (fitted on models at their own width), so
    # its table has no width multipliers; only a transferred eta gets muP's 1/n.
    layers = layer_table(
        lr=base_lr,
        n_layer=shape.n_layer,
        width_ratio=n_ratio if transfer_lr else 1.0,
        batch_ratio=b_ratio,
        data_ratio=d_ratio,
        data_exponent=data_exponent if transfer_lr else 0.0,
        rule=rule,
        sigma=sigma,
        betas=betas,
        eps=eps,
        weight_decay=wd,
        readout_form=readout_form,
        optimizer=optimizer,
        d_model=shape.d_model,
        base_depth=proxy.depth if proxy is not None else None,
        depth_exponent=depth_exponent,
        lr_includes_transfer=not transfer_lr,
        scale_eps=scale_eps,
    )
    if b_ratio > 1 and any(1 - b_ratio * (1 - b) < 0 for b in betas):
        warns.append(
            f"the batch ratio b={b_ratio:.3g} pushes 1 - b(1 - beta) below 0 for "
            f"betas={betas}; those betas are clipped to 0 (the square-root rule only "
            "holds for moderate batch ratios; tune betas at a closer proxy batch)."
        )
    note(
        "layers",
        f"{len(layers)} tensor classes",
        "init: rules.init_std (x (2L)^-1/2 on residual outputs); lr: eta x rules.lr_mult "
        "x b^1/2 x d^alpha; betas 1 - b(1 - beta); eps x b^-1/2 x rules.eps_mult; wd "
        "independent, 0 on gains",
        rule=rule,
        n=n_ratio,
        b=b_ratio,
        d=d_ratio,
        alpha_data=data_exponent,
        L=shape.n_layer,
        readout_form=readout_form,
    )

    # ---- predicted loss
    loss = interval = None
    if law.loss_law is not None and conv == "6ND":
        loss, lo, hi = law.loss_interval(N, D)
        interval = (lo, hi)
        note("loss", loss, "L = E + A / N^alpha + B / D^beta", **law.loss_law.to_dict(), N=N, D=D)

    # ---- time and cost
    time_s = gpu_hours = cost = None
    hw = None
    if gpu is not None:
        from sizeup.laws.flops import peak_flops, training_time_s

        time_s = training_time_s(flops_exact, gpu, mfu, n_gpus)
        gpu_hours = time_s / 3600 * n_gpus
        hw = {
            "gpu": str(gpu),
            "n_gpus": n_gpus,
            "mfu": mfu,
            "peak_flops": peak_flops(gpu),
            "gpu_price": gpu_price,
        }
        note(
            "time_s",
            time_s,
            "flops_exact / (n_gpus * peak * mfu)",
            flops_exact=flops_exact,
            n_gpus=n_gpus,
            peak=peak_flops(gpu),
            mfu=mfu,
        )
        if gpu_price is not None:
            cost = gpu_hours * gpu_price
            note("cost", cost, "gpu_hours * gpu_price", gpu_hours=gpu_hours, gpu_price=gpu_price)

    # ---- warnings
    b_crit, crit_src = _critical_batch(critical_batch, law, C, loss)
    if b_crit is not None:
        note("critical_batch", b_crit, crit_src, C=C, loss=loss if loss is not None else "-")
        if B > b_crit:
            warns.append(
                f"the batch {B:,} tokens exceeds the critical batch {b_crit:,.0f} "
                f"({crit_src}): past it, more tokens per step buy little loss per "
                "token (wasted compute)."
            )
    try:
        size_opt, d_opt = law.optimal(C)
    except ConfigError:
        size_opt = d_opt = None
    optimum = None
    if size_opt is not None:
        optimum = {
            "size": size_opt,
            "tokens": d_opt,
            "compute": C,
            "size_is": "N, total parameters" if conv == "6ND" else "M, FLOPs per token",
        }
        size_now = N if conv == "6ND" else per_token
        r_opt, r_now = d_opt / size_opt, D / size_now
        unit = "tokens per parameter" if conv == "6ND" else "tokens per FLOP/token (D/M)"
        note("optimum_ratio", r_opt, f"D_opt(C) / size_opt(C) ({law.name})", C=C)
        if max(r_now / r_opt, r_opt / r_now) > optimum_tolerance:
            warns.append(
                f"{unit}: {r_now:.3g} is far (>{optimum_tolerance:g}x) from the law's "
                f"compute-optimal {r_opt:.3g} at C={C:.3g}; fine when inference cost "
                "matters, but not the loss-optimal use of this budget."
            )
    fr = fit_range or _fit_range(law)
    if fr is not None:
        lo_c, hi_c = fr
        if C > extrapolation_limit * hi_c or C < lo_c / extrapolation_limit:
            warns.append(
                f"C={C:.3g} is more than {extrapolation_limit:g}x outside the law's fitted "
                f"range [{lo_c:.3g}, {hi_c:.3g}] FLOPs: the plan extrapolates."
            )
    if proxy is not None and n_ratio > extrapolation_limit * 10:
        warns.append(
            f"width ratio n={n_ratio:.3g}: transfer from a proxy this small is "
            "unverified; check with a coordinate check at an intermediate width."
        )

    return Plan(
        preset=law.to_dict(),
        shape={**asdict(shape), "d_ff": shape.d_ff},
        params=N,
        params_non_embedding=n_emb,
        tokens=D,
        tokens_per_param=r,
        flops=C,
        flops_formula=k_name,
        flops_exact=flops_exact,
        batch_tokens=B,
        batch_sequences=seqs,
        batch_rounding=f"{b_src}: {B_raw:,.0f} tokens = {rounding}",
        steps=steps,
        peak_lr=lr,
        lr_source=lr_src,
        warmup_steps=wu,
        schedule=sched,
        width_ratio=n_ratio,
        batch_ratio=b_ratio,
        data_ratio=d_ratio,
        data_exponent=data_exponent,
        readout_form=readout_form,
        rule=rule,
        layers=layers,
        loss=loss,
        loss_interval=interval,
        time_s=time_s,
        gpu_hours=gpu_hours,
        cost=cost,
        hardware=hw,
        optimum=optimum,
        critical_batch=b_crit,
        warnings=warns,
        explain=ex,
    )


def flops_per_token_md(shape: Shape) -> float:
    """DeepSeek LLM's M = 72 n_layer d^2 + 12 n_layer d l_seq for a shape."""
    return shape.flops_per_token("MD")


# Kaplan et al. 2020, "Scaling Laws for Neural Language Models", eq. (5.3) and section 5.1:
# B_crit(L) = B* / L^(1/alpha_B), B* ~ 2e8 tokens, alpha_B ~ 0.21 (L in nats on WebText2).
KAPLAN_B_STAR = 2e8
KAPLAN_ALPHA_B = 0.21


def _critical_batch(
    given: float | None, law: Any, C: float, loss: float | None
) -> tuple[float | None, str]:
    """Critical batch in tokens: given > the fit's own law (fit.json "critical_batch", a number
    or {coef, exponent} in C) > Kaplan's B_crit(L) at the predicted loss > unknown."""
    if given is not None:
        return float(given), "given"
    cb = (getattr(law, "extra", None) or {}).get("critical_batch")
    if isinstance(cb, (int, float)) and cb > 0:
        return float(cb), f"{law.name} fit"
    if isinstance(cb, dict) and "coef" in cb and "exponent" in cb:
        return float(cb["coef"]) * C ** float(cb["exponent"]), f"{law.name} fit B_crit(C)"
    if loss is not None:
        return (
            KAPLAN_B_STAR / loss ** (1 / KAPLAN_ALPHA_B),
            "Kaplan et al. 2020 B_crit(L) = 2e8 / L^(1/0.21) at the predicted loss; rough "
            "outside WebText2",
        )
    return None, "unknown"


def _fit_range(law: Any) -> tuple[float, float] | None:
    """The compute range a law was fitted on, when its record says (fit.json: C_min/C_max)."""
    extra = getattr(law, "extra", None) or {}
    for lo_k, hi_k in (("C_min", "C_max"), ("compute_min", "compute_max")):
        if extra.get(lo_k) and extra.get(hi_k):
            return float(extra[lo_k]), float(extra[hi_k])
    rng = extra.get("fit_range") or extra.get("compute_range")
    if isinstance(rng, (list, tuple)) and len(rng) == 2:
        return float(rng[0]), float(rng[1])
    return None
