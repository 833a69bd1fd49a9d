"""Every choice vocabulary of sizeup, declared once, as a type.

A field that takes one of a few names (a rule, an optimizer, a schedule, ...) is typed with the
``Literal`` below; the tuple next to it is what validation (``errors.check_choice``), command-line
help (``choices_help``) and docs read. Adding a choice means adding it here and to the code that
implements it, nowhere else (docs/architecture.md, "One source of truth").
"""

from __future__ import annotations

from typing import Literal, Union, get_args

# --- parametrization (parametrization/rules.py) --------------------------------------------
Rule = Literal["sp", "mup", "mup_simple", "spectral"]
Role = Literal["input", "hidden", "readout", "vector"]
ReadoutForm = Literal["table3", "table8"]
# Which column of the rules table an optimizer reads (AdamW and Muon's AdamW side share "adam";
# "lmo": the optimizer's own per-role norm already makes every update width-correct, as Scion's
# LMOs and AGD's layer-normalised steps do, so the table's lr column is 1 for every tensor).
OptFamily = Literal["adam", "sgd", "muon", "lmo"]
# The base init std sigma: "model" (what the base model's own init gives each tensor: declared by
# the model's sizeup_hints["init_std"], else measured), "fan_in" (1/sqrt(base fan_in)), or a
# positive number. A model's hint takes a number or "fan_in" (InitStdHint).
InitStdMode = Literal["model", "fan_in"]
InitStd = Union[float, InitStdMode]
InitStdHint = Union[float, Literal["fan_in"]]
# Where a tensor's sigma came from (Parametrization tables).
InitSource = Literal["model hint", "measured", "given"]

# --- optimizers and schedules (optim/, schedules.py) ----------------------------------------
MuonScale = Literal["spectral", "original", "rms"]
# Learning-rate schedules (schedules.Schedule); "multistep": DeepSeek LLM's steps, "power": Shen
# et al. 2024's Power scheduler (their parameters are RunConfig fields: milestones, power_a/b).
Schedule = Literal["constant", "cosine", "wsd", "multistep", "power"]
Cooldown = Literal["linear", "1-sqrt", "exponential"]
# How the planner builds a batch ramp-up (schedules.BatchRamp): on a token schedule
# (DeepSeek-V2/V3) or when the predicted loss crosses the critical-batch law's thresholds
# (MiniMax-01). A run follows the stages it gives (RunConfig.batch_ramp).
RampMode = Literal["tokens", "loss"]

# --- models and runs (models/, config.py) ---------------------------------------------------
Model = Literal["gpt", "mlp"]
AttnScale = Literal["1/d", "1/sqrt(d)"]
# Hugging Face transformers families sizeup knows by name (sizeup.models.hf): their module names
# (roles, residual branches, routers, the final norm) and which config fields are width.
HFArch = Literal["llama", "qwen3", "gpt2", "qwen3_moe", "mixtral", "olmoe"]
DType = Literal["float32", "float64", "bfloat16"]
# Where a run's metrics go (train/loggers.py): `--log KIND:TARGET`.
LogKind = Literal["jsonl", "tensorboard", "wandb"]

# --- diagnostics, sweeps, laws ---------------------------------------------------------------
CoordStat = Literal["l1", "rms"]
Executor = Literal["local", "ray"]
SweepOrder = Literal["spec", "largest_first"]
ComputeConvention = Literal["6ND", "MD"]
# Published laws (laws/presets.py registers one factory per name).
PresetName = Literal["chinchilla", "epoch", "deepseek-v1", "steplaw", "kaplan", "minicpm"]
# What a preset can give: a peak lr, a batch size, a critical batch size, a loss.
LawKind = Literal["lr", "batch", "critical_batch", "loss"]
# What "N" meant where a law was fitted: all parameters, parameters without the embeddings
# (Kaplan, Step Law, MiniCPM), or non-embedding FLOPs per token M (DeepSeek LLM).
NDefinition = Literal["total", "non-embedding", "flops-per-token"]
BatchUnit = Literal["tokens", "sequences"]
# How a law fit's bootstrap resamples (laws/chinchilla.py resample_kind) and what it holds out.
Resample = Literal["auto", "points", "parametric"]
Holdout = Literal["none", "largest-budget"]

# --- the command line (cli/output.py) --------------------------------------------------------
# How a command prints its tables: rich (boxes and colour, for a terminal), markdown (full-width
# pipe tables that read anywhere: logs, files, issues) or json (one document on stdout).
OutputFormat = Literal["rich", "markdown", "json"]

RULES: tuple[Rule, ...] = get_args(Rule)
ROLES: tuple[Role, ...] = get_args(Role)
READOUT_FORMS: tuple[ReadoutForm, ...] = get_args(ReadoutForm)
OPT_FAMILIES: tuple[OptFamily, ...] = get_args(OptFamily)
INIT_STD_MODES: tuple[InitStdMode, ...] = get_args(InitStdMode)
INIT_SOURCES: tuple[InitSource, ...] = get_args(InitSource)
MUON_SCALES: tuple[MuonScale, ...] = get_args(MuonScale)
SCHEDULES: tuple[Schedule, ...] = get_args(Schedule)
RAMP_MODES: tuple[RampMode, ...] = get_args(RampMode)
COOLDOWNS: tuple[Cooldown, ...] = get_args(Cooldown)
MODELS: tuple[Model, ...] = get_args(Model)
ATTN_SCALES: tuple[AttnScale, ...] = get_args(AttnScale)
HF_ARCHS: tuple[HFArch, ...] = get_args(HFArch)
DTYPES: tuple[DType, ...] = get_args(DType)
LOG_KINDS: tuple[LogKind, ...] = get_args(LogKind)
COORD_STATS: tuple[CoordStat, ...] = get_args(CoordStat)
EXECUTORS: tuple[Executor, ...] = get_args(Executor)
SWEEP_ORDERS: tuple[SweepOrder, ...] = get_args(SweepOrder)
COMPUTE_CONVENTIONS: tuple[ComputeConvention, ...] = get_args(ComputeConvention)
PRESET_NAMES: tuple[PresetName, ...] = get_args(PresetName)
LAW_KINDS: tuple[LawKind, ...] = get_args(LawKind)
N_DEFINITIONS: tuple[NDefinition, ...] = get_args(NDefinition)
BATCH_UNITS: tuple[BatchUnit, ...] = get_args(BatchUnit)
RESAMPLES: tuple[Resample, ...] = get_args(Resample)
HOLDOUTS: tuple[Holdout, ...] = get_args(Holdout)
OUTPUT_FORMATS: tuple[OutputFormat, ...] = get_args(OutputFormat)


def choices_help(choices: tuple[str, ...]) -> str:
    """'a | b | c', for command-line help."""
    return " | ".join(choices)
