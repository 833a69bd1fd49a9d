"""The registries: every optimizer and every model family sizeup can train, each registered once.

An entry is data plus the implementation it points at. The data (a name, which column of the
rules table an optimizer reads, what the batch transfer moves, which settings its tables show, a
model family's data kind) is what validation, command-line help, the planner and the coordinate
check read, without importing torch; the implementation is a callable, or its "module:function"
path, imported the first time something is built (so ``sizeup --help`` stays fast).

Adding an optimizer is one new module with its ``build(groups, spec, context)`` plus one call

    register_optimizer(OptimizerEntry("lion", "mypkg.lion:build", family="adam",
                                      reads=("beta1", "beta2"), batch_moves=("lr",)))

and `sizeup train --set optimizer=lion`, the coordinate check, sweeps and the planner's table take
it (docs/architecture.md, "Registries"); a model family is one ``register_model`` call. sizeup's
own entries are registered at the bottom of this file, the same way.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sizeup.choices import OPT_FAMILIES, OptFamily
from sizeup.errors import ConfigError, check_choice

# OptimSpec settings an optimizer's update may read besides lr and weight_decay; the batch
# transfer (square-root rule, sizeup.optim.transfer) knows how to move "lr", "betas", "eps" and
# "momentum".
HYPERPARAMETERS = (
    "beta1",
    "beta2",
    "eps",
    "momentum",
    "nesterov",
    "muon_scale",
    "muon_lr",
    # Scion (sizeup.optim.scion): its form and its norm balls' radii
    "scion_constrained",
    "scion_radius",
    "scion_readout_radius",
    # Dion (sizeup.optim.dion): its rank as a fraction of min(fan_out, fan_in)
    "dion_rank",
    # Adafactor / SOAP / Shampoo (sizeup.optim.library, sizeup.optim.shampoo)
    "decay_rate",
    "clip_threshold",
    "precondition_frequency",
    "shampoo_exponent",
    "shampoo_damping",
)
TRANSFERABLE = ("lr", "betas", "eps", "momentum")


def resolve(target: Callable[..., Any] | str) -> Callable[..., Any]:
    """A callable, or the one a "package.module:function" path names (imported now)."""
    if callable(target):
        return target
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class OptimizerEntry:
    """One optimizer: how to build it and what the rest of sizeup needs to know about it.

    ``build(groups, spec, context)`` returns the torch optimizer over sizeup's param groups (each
    group already holds its lr, weight_decay and, where the optimizer reads it, eps; context:
    ``sizeup.optim.BuildContext``). ``family``: the column of the rules table its per-tensor lr
    multipliers come from ("adam" for sign-like updates, "sgd" for raw gradients, "muon" for an
    orthogonalised update on hidden matrices with Adam's column elsewhere). ``reads``: the
    OptimSpec settings its update reads (shown in the tables, moved by the batch transfer where
    ``batch_moves`` says). ``batch_moves``: what the square-root batch transfer moves (a subset
    of TRANSFERABLE), or None where no rule is known (a batch transfer is then refused).
    ``orthogonal``: hidden matrices get an orthogonalised update (Muon's groups, muon_lr).
    ``switches_modes``: it trains at one point and evaluates at another (schedule-free AdamW).
    ``extra``: the pip extra its implementation needs. ``constant_schedule``: it needs no decay
    (the planner's default schedule is then constant). ``typical_lr``: a base lr at which
    sizeup's small study GPT trains well with it (its paper's or library's default, or a pilot
    run's; say which beside the entry): the demo centres its lr grid there (None: AdamW's grid)."""

    name: str
    build: Callable[..., Any] | str
    family: OptFamily
    reads: tuple[str, ...] = ()
    batch_moves: tuple[str, ...] | None = ("lr",)
    orthogonal: bool = False
    switches_modes: bool = False
    constant_schedule: bool = False
    extra: str | None = None
    typical_lr: float | None = None
    summary: str = ""
    # --- conformance (tests/test_optim_conformance.py): the model families it trains ---
    # None: every registered family; else the families its paper covers (AGD: fully-connected
    # nets), which the conformance suite then trains it on.
    models: tuple[str, ...] | None = None
    # Dion: ``state_shapes(param_shape, group) -> {slot: shape}`` (a callable or its
    # "module:function" path) for the optimizer-state slots not of the parameter's shape (Dion's
    # right factor Q), so a checkpoint's check knows them; None: every slot has the param's shape.
    state_shapes: Callable[..., Any] | str | None = None

    def __post_init__(self) -> None:
        check_choice("family", self.family, OPT_FAMILIES)
        for r in self.reads:
            check_choice("reads", r, HYPERPARAMETERS)
        for m in self.batch_moves or ():
            check_choice("batch_moves", m, TRANSFERABLE)

    @property
    def adam_like(self) -> bool:
        """Its update reads Adam's betas and eps (tables show them; eps follows the gradient)."""
        return "eps" in self.reads

    def builder(self) -> Callable[..., Any]:
        """The build function, imported on first use; a missing extra is named."""
        try:
            return resolve(self.build)
        except ImportError as e:
            hint = f" (pip install 'sizeup[{self.extra}]')" if self.extra else ""
            raise ConfigError(
                "optimizer", self.name, f"available once its package is installed{hint}: {e}"
            ) from None


@dataclass(frozen=True)
class ModelEntry:
    """One model family: how to build it from a ModelSpec and what its data and FLOPs are.

    ``build(spec)`` returns the model (plain init; sizeup.parametrize rescales it).
    ``data``: "tokens" (next-token prediction on text or token files, sequences of seq_len) or
    "teacher" (the synthetic classification task, one example per row). ``heads``: its width
    splits into attention heads, so the ModelSpec's head, GQA, MLP and MoE fields apply.
    ``flops_per_token(spec)``: training FLOPs per token (or example), forward and backward.
    ``check_widths``: the widths a coordinate check sweeps by default (wide enough that the
    first steps are more than noise)."""

    name: str
    build: Callable[..., Any] | str
    flops_per_token: Callable[..., float] | str
    data: str = "tokens"
    heads: bool = True
    check_widths: tuple[int, ...] = (64, 128, 256, 512)
    summary: str = ""

    def __post_init__(self) -> None:
        check_choice("data", self.data, ("tokens", "teacher"))

    def builder(self) -> Callable[..., Any]:
        """The build function ``(ModelSpec) -> nn.Module``, imported on first use."""
        return resolve(self.build)

    def flops(self, spec: Any) -> float:
        """Training FLOPs per token (or example) of the model ``spec`` describes."""
        return float(resolve(self.flops_per_token)(spec))


_OPTIMIZERS: dict[str, OptimizerEntry] = {}
_MODELS: dict[str, ModelEntry] = {}


def register_optimizer(entry: OptimizerEntry) -> OptimizerEntry:
    """Add (or replace) an optimizer under ``entry.name``."""
    _OPTIMIZERS[entry.name] = entry
    return entry


def register_model(entry: ModelEntry) -> ModelEntry:
    """Add (or replace) a model family under ``entry.name``."""
    _MODELS[entry.name] = entry
    return entry


def optimizer_names() -> tuple[str, ...]:
    """Every registered optimizer's name, in registration order."""
    return tuple(_OPTIMIZERS)


def model_names() -> tuple[str, ...]:
    """Every registered model family's name, in registration order."""
    return tuple(_MODELS)


def get_optimizer(name: str) -> OptimizerEntry:
    """The optimizer registered as ``name``, else a ConfigError listing them."""
    check_choice("optimizer", name, optimizer_names())
    return _OPTIMIZERS[name]


def get_model(name: str) -> ModelEntry:
    """The model family registered as ``name``, else a ConfigError listing them."""
    check_choice("model", name, model_names())
    return _MODELS[name]


def optimizer_family(name: str) -> OptFamily:
    """The column of the rules table an optimizer reads (AdamW, schedule-free AdamW: "adam")."""
    return get_optimizer(name).family


# --- sizeup's own entries -------------------------------------------------------------------
_ADAM = ("beta1", "beta2", "eps")
register_optimizer(
    OptimizerEntry(
        "adamw",
        "sizeup.optim.builders:adamw",
        family="adam",
        reads=_ADAM,
        batch_moves=("lr", "betas", "eps"),
        summary="torch.optim.AdamW (decay with torch's meaning at the base width)",
    )
)
register_optimizer(
    OptimizerEntry(
        "sgd",
        "sizeup.optim.builders:sgd",
        family="sgd",
        reads=("momentum", "nesterov"),
        batch_moves=("lr", "momentum"),
        # critbatch pilot: `sizeup sweep` of sizeup.demo.QUICK.base at width 64, rule mup, 300
        # steps, seed 7, lr 2^-9, 2^-7, ..., 2^-1: val loss 3.15, 2.54, 2.34, 2.87, diverged:
        # optimum ~2^-5.5, outside AdamW's quick width grid 2^-11..2^-7
        typical_lr=0.02,
        summary="SGD with (Nesterov) momentum and decoupled weight decay",
    )
)
register_optimizer(
    OptimizerEntry(
        "muon",
        "sizeup.optim.builders:muon",
        family="muon",
        reads=(*_ADAM, "momentum", "nesterov", "muon_scale", "muon_lr"),
        batch_moves=("lr", "betas", "eps", "momentum"),
        orthogonal=True,
        # Keller Jordan's default lr 0.02, and the critbatch pilot (as for sgd, lr 2^-11, 2^-9,
        # ..., 2^-3): val loss 2.72, 2.20, 2.147, 2.112, 2.234: optimum ~2^-5.5, outside 2^-11..2^-7
        typical_lr=0.02,
        summary="Muon (Newton-Schulz) on hidden matrices, AdamW elsewhere",
    )
)
register_optimizer(
    OptimizerEntry(
        "adamw_schedulefree",
        "sizeup.optim.builders:adamw_schedulefree",
        family="adam",
        reads=_ADAM,
        batch_moves=("lr", "betas", "eps"),
        switches_modes=True,
        constant_schedule=True,
        extra="schedulefree",
        summary="schedule-free AdamW (Defazio et al. 2024), evaluated at its average",
    )
)
# --- AGD ---
register_optimizer(
    OptimizerEntry(
        "agd",
        "sizeup.optim.agd:build",
        family="lmo",
        reads=(),
        # no batch rule is known: the paper's step size is computed from the gradient each step
        batch_moves=None,
        # Algorithm 1 of Bernstein et al. 2023 has no schedule (the step size is automatic)
        constant_schedule=True,
        typical_lr=1.0,  # the paper: lr is a gain on the automatic step, 1 = Algorithm 1
        summary="AGD, automatic gradient descent (Bernstein et al. 2023); lr is a gain, 1 = paper",
    )
)
# Scion (Pethick et al. 2025, arXiv:2502.07529): an LMO per role, eta shared by every tensor.
# typical_lr 2**-12: the paper's nanoGPT lr (github.com/LIONS-EPFL/scion README) and the best
# of a pilot on the demo's study GPT: for LR in 2**-14 .. 2**-8, sizeup.train.run(RunConfig(
# **sizeup.demo.study_base(), optimizer="scion", width=64, lr=LR, rule="mup")), seed 0, final
# val loss 2.146, 2.123, 2.095 (2**-12), 2.125, 2.123, diverged at 2**-8.
# batch_moves None: the paper states no batch-size rule for lr, momentum or the radii (its
# nanoGPT runs keep one batch), and the square-root rule's SDE argument (Malladi et al. 2022)
# is made for Adam's and SGD's updates, not for an LMO's fixed-norm step.
register_optimizer(
    OptimizerEntry(
        "scion",
        "sizeup.optim.scion:build",
        family="lmo",
        reads=("momentum", "scion_constrained", "scion_radius", "scion_readout_radius"),
        batch_moves=None,
        typical_lr=2.0**-12,
        summary="Scion (Pethick et al. 2025): norm-ball LMO per role, (un)constrained",
    )
)
# Dion (Ahn et al. 2025, arXiv 2504.05295): Muon's family and scale (its Algorithm 1 steps by
# sqrt(fan_out/fan_in), Muon's "spectral" mode), so the rules table and muon_lr apply unchanged.
# No batch-transfer rule of its own is published (the paper reports Dion's advantage over Muon
# growing with the batch, not a rule): Muon's square-root rule, momentum included. typical_lr:
# a pilot on the demo GPT (study_base, width 64, muP, 300 steps, seed 0): val loss 2.038, 1.997,
# 1.986, 2.018, 2.008 at lr 2^-8 ... 2^-4, best at 2^-6 (docs/optim.md, "Dion").
register_optimizer(
    OptimizerEntry(
        "dion",
        "sizeup.optim.dion:build",
        family="muon",
        reads=(*_ADAM, "momentum", "muon_scale", "muon_lr", "dion_rank"),
        batch_moves=("lr", "betas", "eps", "momentum"),
        orthogonal=True,
        typical_lr=2**-6,
        summary="Dion (low-rank power iteration, error feedback) on hidden matrices, AdamW "
        "elsewhere",
        state_shapes="sizeup.optim.dion:state_shapes",
    )
)
# --- lion, adafactor, soap, shampoo (sizeup.optim.library, sizeup.optim.shampoo) ------------
register_optimizer(
    OptimizerEntry(
        "lion",
        "sizeup.optim.library:lion",
        # the update is a sign: entries +-1, as Adam's (Chen et al. 2023, sec. 2)
        family="adam",
        reads=("beta1", "beta2"),
        # None: the square-root rule is derived from Adam's SDE (Malladi et al. 2022, "On the
        # SDEs and Scaling Rules for Adaptive Gradient Algorithms"), whose update divides by
        # sqrt(v); no batch rule has been derived for Lion's sign of an interpolation
        batch_moves=None,
        extra="optimizers",
        # a pilot (one seed each, sizeup.demo.study_base() at width 64, rule mup, 300 steps,
        # lr 2^-13, -11, -9, -7; final val loss 3.96, 2.51, 2.17, 2.40): 2^-9, half of AdamW's
        # best 2^-8 on the same grid (Chen et al. 2023 advise 3-10x smaller than AdamW's)
        typical_lr=2.0**-9,
        summary="Lion (Chen et al. 2023): sign of interpolated momentum, pytorch-optimizer",
    )
)
register_optimizer(
    OptimizerEntry(
        "adafactor",
        "sizeup.optim.library:adafactor",
        # relative_step=False, scale_parameter=False: Adam with a factored second moment and
        # update clipping (Shazeer & Stern 2018), entries of the update Theta(1) as Adam's
        family="adam",
        reads=("beta1", "beta2", "decay_rate", "clip_threshold"),
        # Adam's square-root rule (Malladi et al. 2022) for lr and the betas (beta2 is the cap
        # of its step-dependent decay); it reads no eps (its eps1 = 1e-30 is fixed)
        batch_moves=("lr", "betas"),
        extra="optimizers",
        # None: AdamW's grid (the pilot, as Lion's, lr 2^-10, -8, -6, -4: final val loss 2.32,
        # 2.12, 2.16, 2.28, best at AdamW's best 2^-8)
        typical_lr=None,
        summary="Adafactor (Shazeer & Stern 2018), external lr, pytorch-optimizer",
    )
)
register_optimizer(
    OptimizerEntry(
        "soap",
        "sizeup.optim.library:soap",
        # Adam in Shampoo's eigenbasis (Vyas et al. 2024): the rotation keeps the update's
        # Frobenius size Adam's (sizeup.parametrization.rules)
        family="adam",
        reads=("beta1", "beta2", "eps", "precondition_frequency"),
        # Adam's square-root rule (Malladi et al. 2022) in the rotated coordinates, which do
        # not depend on the gradient's scale
        batch_moves=("lr", "betas", "eps"),
        extra="optimizers",
        # the pilot (as Lion's, lr 2^-10, -8, -6, -4: final val loss 3.93, 2.11, 2.03, 2.22):
        # 2^-6, 4x AdamW's best 2^-8 there (pytorch-optimizer's default is 3e-3)
        typical_lr=2.0**-6,
        summary="SOAP (Vyas et al. 2024): Adam in Shampoo's eigenbasis, pytorch-optimizer",
    )
)
register_optimizer(
    OptimizerEntry(
        "shampoo",
        "sizeup.optim.shampoo:build",
        # grafted onto Adam: each matrix's step has Adam's Frobenius norm (sizeup.optim.shampoo)
        family="adam",
        reads=(
            "beta1",
            "beta2",
            "eps",
            "precondition_frequency",
            "shampoo_exponent",
            "shampoo_damping",
        ),
        # None: the square-root rule is Adam's (Malladi et al. 2022); the preconditioner's
        # direction has no derived batch rule
        batch_moves=None,
        # sizeup's own implementation: no extra
        extra=None,
        # None: AdamW's grid (the step size is Adam's, grafted; the pilot, as Lion's, lr 2^-10,
        # -8, -6, -4: final val loss 2.13, 2.02, 2.11, 2.30, best at AdamW's best 2^-8)
        typical_lr=None,
        summary="Shampoo (Gupta et al. 2018), exponent 1/4, Adam grafting; sizeup's own",
    )
)
register_model(
    ModelEntry(
        "gpt",
        "sizeup.models.gpt:from_spec",
        "sizeup.flops:spec_flops_per_token",
        data="tokens",
        heads=True,
        # at width 64 a GPT's heads are few, or narrow, and its first steps mostly noise
        check_widths=(128, 256, 512, 1024),
        summary="byte-level GPT: RMSNorm, RoPE, SwiGLU, GQA, optional QK-norm and MoE",
    )
)
register_model(
    ModelEntry(
        "mlp",
        "sizeup.models.mlp:from_spec",
        "sizeup.models.mlp:flops_per_example",
        data="teacher",
        heads=False,
        summary="ReLU MLP on the synthetic teacher task",
    )
)
