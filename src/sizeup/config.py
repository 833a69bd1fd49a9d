"""The typed records that stages pass to each other: RunConfig in, RunResult out.

Both are flat dataclasses that round-trip through JSON, so a sweep axis can name any field and
a stored trial can be rebuilt exactly from its row.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sizeup.choices import (
    ATTN_SCALES,
    COOLDOWNS,
    DTYPES,
    INIT_STD_MODES,
    MODELS,
    MUON_SCALES,
    OPTIMIZERS,
    RULES,
    SCHEDULES,
    AttnScale,
    Cooldown,
    DType,
    InitStd,
    Model,
    MuonScale,
    Optimizer,
    Rule,
    Schedule,
)
from sizeup.errors import ConfigError, check_choice, check_number_or_choice, check_positive
from sizeup.schedules import (
    DEEPSEEK_LLM_MILESTONES,
    BatchRamp,
    make_schedule,
    parse_milestones,
    parse_ramp,
)
from sizeup.schedules import Schedule as LrSchedule

# (fraction of the run's tokens, lr multiplier) pairs of a multistep schedule, and the stages
# (from_tokens, batch_size) of a batch ramp (batch in sequences, or examples for the MLP).
Milestones = tuple[tuple[float, float], ...]
RampStages = tuple[tuple[float, int], ...]


@dataclass
class RunConfig:
    """Everything one training run needs; every field can be a sweep axis."""

    # model
    model: Model = "gpt"  # "gpt" (byte-level LM) or "mlp" (teacher classification)
    width: int = 128  # d_model for the GPT, hidden width for the MLP
    depth: int = 2  # transformer blocks, or hidden layers of the MLP
    head_dim: int = 32  # GPT: n_head = width // head_dim
    seq_len: int = 128  # GPT context length
    vocab_size: int = 256  # byte-level by default
    mlp_ratio: float = 8 / 3  # GPT: SwiGLU hidden = round(mlp_ratio * width), at every width
    attn_scale: AttnScale = "1/d"  # muP wants 1/d; "1/sqrt(d)" is SP's choice
    qk_norm: bool = False
    tie_embeddings: bool = False
    z_loss: float = 0.0
    # parametrization
    rule: Rule = "mup"
    base_width: int = 32
    base_depth: int | None = None  # None: no depth scaling of residual branches
    depth_exponent: float = 0.5
    # sigma, the base init std: "model" (the model's own init: 0.02 for the GPT, 1/sqrt(fan_in)
    # for the MLP, as they declare), "fan_in" (1/sqrt(base fan_in)) or a positive number
    init_std: InitStd = "model"
    zero_readout: bool = False
    zero_query: bool = False
    # optimizer
    # "adamw_schedulefree": Defazio et al. 2024 (extra sizeup[schedulefree]); evaluated at its
    # averaged weights (the trainer switches the optimizer's eval/train modes)
    optimizer: Optimizer = "adamw"
    lr: float = 3e-3
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8  # Adam eps of the base model (scaled per tensor, see scale_eps)
    scale_eps: bool = True  # Adam eps follows each tensor's gradient scale (rules.eps_mult)
    momentum: float = 0.9  # SGD momentum; Muon momentum
    muon_scale: MuonScale = "spectral"
    muon_lr: float | None = None  # Muon's lr for the hidden matrices (None: the same lr)
    # Newton-Schulz precision: bfloat16 as torch.optim.Muon; float32 makes runs that sum
    # gradients in another order (DDP, FSDP) agree to float32 rounding, not bf16's
    ns_dtype: DType = "bfloat16"
    grad_clip: float = 0.0  # 0 disables
    # batch
    batch_size: int = 16  # sequences (GPT) or examples (MLP) per step (the full batch)
    base_batch_size: int | None = None  # with batch_size: transfer lr, betas, eps
    # horizon: with base_tokens, lr x (D / base_tokens)^data_exponent, D the tokens of the run
    # (the optimal lr falls as training gets longer: Bjorck et al. 2024, "Scaling optimal LR
    # across token horizons"; the planner's alpha_data). None: no horizon transfer.
    base_tokens: int | None = None
    data_exponent: float = 0.0
    # Batch ramp-up (schedules.BatchRamp; DeepSeek-V2/V3 grow the batch over their first tokens,
    # MiniMax-01 where the critical batch lets it double): stages (from_tokens, batch_size), the
    # first from 0, the last batch_size; a step's batch is its stage's at the tokens seen before
    # it. `sizeup plan --batch-ramp` gives them (plan.json "run_config"). None: no ramp.
    batch_ramp: RampStages | None = None
    # schedule (schedules.py): constant, cosine, wsd, multistep, power; linear warmup
    steps: int = 200
    warmup: int = 0
    schedule: Schedule = "constant"
    decay_frac: float = 0.2  # WSD and power: fraction of steps in the cooldown
    cooldown: Cooldown = "linear"
    # multistep: (fraction of the run's tokens, lr multiplier) pairs; None: DeepSeek LLM's
    # ((0.8, 0.316), (0.9, 0.1)) (DeepSeek-AI 2024, section 2.3)
    milestones: Milestones | None = None
    # power: lr = min(lr, power_a n^power_b), n the tokens seen before the step, then the
    # decay_frac cooldown (Shen et al. 2024, "Power Scheduler"); both needed, no default
    power_a: float | None = None
    power_b: float | None = None
    # data
    data: str = "builtin"  # "builtin", a text file, a uint16 .bin memmap, or "teacher"
    val_frac: float = 0.05
    eval_every: int = 0  # 0: evaluate at the start and the end only
    eval_batches: int = 4
    # run
    seed: int = 0
    device: str = "cpu"
    dtype: DType = "float32"
    threads: int = 1  # torch threads per run on CPU
    diverge_factor: float = 3.0  # loss above factor x initial loss counts as diverged
    log_every: int = 1
    spectral_every: int = 0  # >0: log ||W||, ||dW|| and alignment of every Linear every k steps
    noise_every: int = 0  # >0: log the gradient noise scale B_simple every k steps
    # stability proxies (Wortsman et al. 2023): >0 logs every k steps, on the first val batch
    attn_logits_every: int = 0  # the largest attention logit per block and attention entropy
    output_logits_every: int = 0  # output logits: largest |logit|, mean logit, log Z
    # scale-out and GPU (docs/training.md); none changes the trajectory beyond float rounding
    fsdp: bool = False  # shard params, grads and optimizer state with FSDP2 (under torchrun)
    compile: bool = False  # torch.compile the model the step calls
    autocast: bool = False  # bf16 autocast of forward and backward (weights stay in dtype)
    peak_flops: float | None = None  # one device's peak FLOP/s for MFU (None: from its name)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError naming the first field whose value is not allowed. Every field is
        first read strictly by its declared type (``parse_field``), so a file, a sweep axis and
        ``--set`` give the same value: numeric strings become numbers (YAML 1.1 reads 3e-3 as a
        string), "yes"/"no" booleans, and anything else is refused, never guessed."""
        for f in dataclasses.fields(self):
            setattr(self, f.name, parse_field(f.name, getattr(self, f.name)))
        self._check_choices()
        self._check_counts()
        self._check_shapes()
        self._check_rates()
        self._check_schedule()
        if self.fsdp and self.noise_every:
            raise ConfigError(
                "noise_every",
                self.noise_every,
                "0 with fsdp=True (the noise-scale monitor takes gradients with autograd.grad, "
                "outside FSDP2's gradient reduce-scatter)",
            )
        self.init_std = check_number_or_choice("init_std", self.init_std, INIT_STD_MODES)

    def _check_choices(self) -> None:
        for name, choices in (
            ("model", MODELS),
            ("rule", RULES),
            ("optimizer", OPTIMIZERS),
            ("schedule", SCHEDULES),
            ("cooldown", COOLDOWNS),
            ("attn_scale", ATTN_SCALES),
            ("muon_scale", MUON_SCALES),
            ("dtype", DTYPES),
            ("ns_dtype", DTYPES),
        ):
            check_choice(name, getattr(self, name), choices)

    def _check_counts(self) -> None:
        """Positive integers, optional ones, and numbers that must be >= 0."""
        for name in _POSITIVE_INTS:
            check_positive(name, getattr(self, name), integer=True)
        for name in ("base_depth", "base_batch_size", "base_tokens"):
            if getattr(self, name) is not None:
                check_positive(name, getattr(self, name), integer=True)
        for name in _NON_NEGATIVE:
            if getattr(self, name) < 0:
                raise ConfigError(name, getattr(self, name), "a number >= 0")

    def _check_shapes(self) -> None:
        """The base must not be larger than the model, and GPT widths split into heads."""
        if self.base_width > self.width:
            raise ConfigError(
                "base_width",
                self.base_width,
                f"at most width={self.width} (the base model must not be larger)",
            )
        for name in ("width", "base_width"):
            if self.model == "gpt" and getattr(self, name) % self.head_dim:
                raise ConfigError(
                    name, getattr(self, name), f"a multiple of head_dim={self.head_dim}"
                )

    def _check_rates(self) -> None:
        """Learning rates, eps, betas, momentum, fractions and the warmup length."""
        for name in ("lr", "eps", "diverge_factor"):
            check_positive(name, getattr(self, name))
        if not math.isfinite(self.lr):
            raise ConfigError("lr", self.lr, "a finite positive number")
        for name in ("muon_lr", "peak_flops"):
            if getattr(self, name) is not None:
                check_positive(name, getattr(self, name))
        if self.warmup < 0 or self.warmup > self.steps:
            raise ConfigError("warmup", self.warmup, f"between 0 and steps={self.steps}")
        if not 0.0 <= self.decay_frac <= 1.0:
            raise ConfigError("decay_frac", self.decay_frac, "a fraction in [0, 1]")
        if not 0.0 <= self.val_frac < 0.5:
            raise ConfigError("val_frac", self.val_frac, "a fraction in [0, 0.5)")
        for name in ("beta1", "beta2", "momentum"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(name, getattr(self, name), "a number in [0, 1)")

    def _check_schedule(self) -> None:
        """The power schedule's parameters, the ramp's last batch, and the schedule itself
        (built once here, so a bad combination is refused before any run starts)."""
        if self.schedule == "power" and (self.power_a is None or self.power_b is None):
            raise ConfigError(
                "power_a" if self.power_a is None else "power_b",
                None,
                "a number with schedule='power' (lr = min(lr, power_a n^power_b), n tokens "
                "seen; Shen et al. 2024 fit both on their runs, sizeup has no default)",
            )
        if self.batch_ramp is not None and self.batch_ramp[-1][1] != self.batch_size:
            raise ConfigError(
                "batch_ramp",
                self.batch_ramp,
                f"stages whose last batch is batch_size={self.batch_size} (the full batch: "
                "validation, batch transfer and the memory check use it)",
            )
        self.lr_schedule()

    # --- what the run follows ------------------------------------------------------------
    @property
    def tokens_per_sequence(self) -> int:
        """Tokens per sequence: seq_len for the GPT, 1 for the MLP (whose "tokens" are
        examples)."""
        return self.seq_len if self.model == "gpt" else 1

    def ramp(self) -> BatchRamp | None:
        """The batch ramp in tokens (schedules.BatchRamp), or None without batch_ramp."""
        if self.batch_ramp is None:
            return None
        return BatchRamp(self.batch_ramp).scaled(self.tokens_per_sequence)

    def tokens_for(self, steps: int) -> int:
        """Tokens (examples for the MLP) seen in the first ``steps`` optimizer steps, through
        the ramp when there is one."""
        ramp = self.ramp()
        if ramp is None:
            return steps * self.tokens_per_step
        return int(ramp.tokens_before(steps))

    def batch_window(self, step: int) -> tuple[int, int]:
        """(sequences seen before optimizer step ``step``, its batch in sequences): where the
        step's batch starts in the run's stream of sequences, and how many it takes (examples
        for the MLP). Without a ramp (step x batch_size, batch_size)."""
        ramp = self.ramp()
        if ramp is None:
            return step * self.batch_size, self.batch_size
        n = ramp.tokens_before(step)
        per = self.tokens_per_sequence
        return int(n) // per, ramp.batch_at(n) // per

    def lr_schedule(self) -> LrSchedule:
        """The run's lr multiplier per step (schedules.Schedule): ``schedule`` with its warmup,
        cooldown and kind's parameters; "multistep" and "power" count the tokens seen through
        the ramp, and "power" reads lr as its peak."""
        kw: dict[str, Any] = {}
        if self.schedule == "multistep":
            kw["milestones"] = self.milestones or DEEPSEEK_LLM_MILESTONES
        if self.schedule == "power":
            kw.update(power_a=self.power_a, power_b=self.power_b, peak_lr=self.lr)
        if self.schedule in ("multistep", "power"):
            kw.update(batch_tokens=self.tokens_per_step, ramp=self.ramp())
        return make_schedule(
            self.schedule,
            self.steps,
            warmup=self.warmup,
            decay_frac=self.decay_frac,
            cooldown=self.cooldown,
            **kw,
        )

    # --- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field (JSON-safe)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        """Build from a dict, naming any unknown field (a stored config of an older sizeup,
        with init_mode, is read as the init_std it meant)."""
        d = _legacy_init(d)
        known = {f.name for f in dataclasses.fields(cls)}
        for k in d:
            if k not in known:
                raise ConfigError(k, d[k], "a RunConfig field: " + ", ".join(sorted(known)))
        return cls(**d)

    @classmethod
    def from_file(cls, path: str | Path) -> RunConfig:
        """Load from a YAML, TOML or JSON file."""
        return cls.from_dict(load_mapping(path))

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)

    def trial_id(self) -> str:
        """A stable 12-hex id from the config's content (same config, same id).

        Only fields that differ from their defaults enter the hash, so a later sizeup that adds
        a field (with a default) keeps the ids of existing studies and resumes them.
        """
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        changed = {k: v for k, v in self.to_dict().items() if v != defaults[k]}
        blob = json.dumps(changed, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    @property
    def tokens(self) -> int:
        """Tokens (GPT) or examples (MLP) the whole run trains on: D = steps x tokens/step."""
        return self.steps * self.tokens_per_step

    @property
    def tokens_per_step(self) -> int:
        """Tokens (GPT) or examples (MLP) consumed per optimizer step at the full batch (a
        ramped run's steps before its last stage take fewer: ``tokens_for``)."""
        return self.batch_size * self.tokens_per_sequence


_POSITIVE_INTS = (
    "width",
    "depth",
    "head_dim",
    "seq_len",
    "vocab_size",
    "base_width",
    "batch_size",
    "steps",
    "eval_batches",
    "threads",
    "log_every",
)
_NON_NEGATIVE = (
    "weight_decay",
    "grad_clip",
    "z_loss",
    "eval_every",
    "spectral_every",
    "noise_every",
    "attn_logits_every",
    "output_logits_every",
)


_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")
_DEVICE = re.compile(r"(cpu|mps|meta|cuda(:\d+)?)")


def parse_field(name: str, value: Any) -> Any:
    """``value`` read as RunConfig field ``name`` wants it, or a ConfigError naming the field:
    the one place where a config value from a file, an axis or ``--set`` gets its type."""
    kind, optional = _FIELD_KINDS[name]
    if optional and (
        value is None or (isinstance(value, str) and value.lower() in ("none", "null"))
    ):
        return None
    if kind is bool:
        return _parse_bool(name, value)
    if kind in (int, float):
        return _parse_number(name, value, kind)
    if kind == "init_std":
        return check_number_or_choice(name, value, INIT_STD_MODES)
    if kind == "milestones":
        return parse_milestones(value)
    if kind == "ramp":
        return parse_ramp(value, name)
    if kind == "choice":
        return value  # checked against its vocabulary in _check_choices
    if not isinstance(value, str):
        raise ConfigError(name, value, "a string")
    if name == "device" and not _DEVICE.fullmatch(value):
        raise ConfigError(name, value, "a torch device: 'cpu', 'cuda', 'cuda:N' or 'mps'")
    return value


def _parse_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise ConfigError(name, value, "true or false (also yes/no, on/off, 1/0)")


def _parse_number(name: str, value: Any, kind: type) -> int | float:
    what = "an integer" if kind is int else "a finite number"
    x = value
    if isinstance(value, str):
        try:
            x = float(value.strip())
        except ValueError:
            raise ConfigError(name, value, what) from None
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        raise ConfigError(name, value, what)
    if kind is int:
        if x != int(x):
            raise ConfigError(name, value, what)
        return int(x)
    return float(x) if not isinstance(x, int) else x


def _field_kinds() -> dict[str, tuple[Any, bool]]:
    """Field name -> (int | float | bool | str | "init_std" | "milestones" | "ramp", optional),
    from the annotations."""
    out = {}
    for f in dataclasses.fields(RunConfig):
        t = str(f.type)
        optional = "None" in t
        base = t.replace("| None", "").strip()
        kinds = {
            "int": int,
            "float": float,
            "bool": bool,
            "str": str,
            "InitStd": "init_std",
            "Milestones": "milestones",
            "RampStages": "ramp",
        }
        kind = kinds.get(base, "choice")  # the Literal vocabularies of sizeup.choices
        out[f.name] = (kind, optional)
    return out


_FIELD_KINDS = _field_kinds()


def _legacy_init(d: dict[str, Any]) -> dict[str, Any]:
    """Older configs had init_mode (auto | fixed | fan_in) beside a numeric init_std: auto was
    0.02 for the GPT and fan_in for the MLP, which is what each model now declares ("model")."""
    if "init_mode" not in d:
        return d
    d = dict(d)
    mode, std = d.pop("init_mode"), d.get("init_std", 0.02)
    if mode == "fan_in" or (mode == "auto" and d.get("model", "gpt") == "mlp"):
        d["init_std"] = "fan_in" if mode == "fan_in" else "model"
    elif mode == "auto" and std == 0.02:
        d["init_std"] = "model"
    return d


def load_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML, TOML or JSON file into a dict; a file that is missing, not UTF-8 text or
    not valid in its format gets a ConfigError naming it and the parser's first complaint."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError("config", str(p), "an existing .yaml, .yml, .toml or .json file")
    suffix = p.suffix.lower()
    if suffix not in _PARSERS:
        raise ConfigError("config", str(p), "a file ending in .yaml, .yml, .toml or .json")
    kind, parse = _PARSERS[suffix]
    try:
        data = parse(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError("config", str(p), f"UTF-8 text ({e.reason} at byte {e.start})") from None
    except ValueError as e:  # json, tomllib and yaml (via _yaml) all raise ValueErrors
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError("config", str(p), f"valid {kind} ({first})") from None
    if not isinstance(data, dict):
        raise ConfigError("config", str(p), "a mapping of field: value at the top level")
    return data


def _yaml(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ValueError(f"{getattr(e, 'problem', None) or e}{where}") from None


def _toml(text: str) -> Any:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    return tomllib.loads(text)


_PARSERS = {
    ".yaml": ("YAML", _yaml),
    ".yml": ("YAML", _yaml),
    ".toml": ("TOML", _toml),
    ".json": ("JSON", json.loads),
}


@dataclass
class RunResult:
    """What one run produced: curves, final numbers, cost and whether it diverged."""

    config: dict[str, Any]
    steps: list[int] = field(default_factory=list)  # steps at which train loss was logged
    train_loss: list[float] = field(default_factory=list)
    val_steps: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    initial_val_loss: float = math.nan
    final_train_loss: float = math.nan  # mean of the last few logged train losses
    final_val_loss: float = math.nan
    tokens: int = 0
    flops: float = 0.0
    params: int = 0
    tokens_per_s: float = 0.0
    wall_time: float = 0.0
    step_time: float = math.nan  # median seconds per optimizer step (after the first)
    mfu: float = math.nan  # model FLOPs utilisation against the devices' peak (NaN: unknown)
    peak_flops: float = math.nan  # one device's peak FLOP/s the MFU is measured against
    device_name: str = ""  # e.g. "NVIDIA H100 80GB HBM3" or "cpu"
    world_size: int = 1
    resumed_from: int | None = None  # the checkpoint step a resumed run continued from
    diverged: bool = False
    diverged_step: int | None = None
    error: str | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (NaN and inf become None)."""
        return json_safe(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunResult:
        """Rebuild from to_dict() output (None floats back to NaN)."""
        d = dict(d)
        for k in (
            "initial_val_loss",
            "final_train_loss",
            "final_val_loss",
            "step_time",
            "mfu",
            "peak_flops",
        ):
            if d.get(k) is None:
                d[k] = math.nan
        for k in ("train_loss", "val_loss"):
            d[k] = [math.nan if v is None else v for v in d.get(k, [])]
        return cls(**d)

    def save(self, path: str | Path) -> None:
        """Write as indented JSON (strict: no NaN tokens)."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False))

    @property
    def loss(self) -> float:
        """The headline loss: final validation loss, or final train loss when no val split."""
        return self.final_val_loss if math.isfinite(self.final_val_loss) else self.final_train_loss


def json_safe(x: Any) -> Any:
    """Nested dicts/lists made strict-JSON-safe: NaN and inf become None, numpy scalars Python."""
    if hasattr(x, "item") and not isinstance(x, (list, dict)):  # numpy / torch scalars
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    return x
