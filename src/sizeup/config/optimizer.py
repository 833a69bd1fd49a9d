"""OptimSpec: the optimizer, its settings at the base model, and the rules that move them.

``lr`` is the base model's eta: the parametrization gives each tensor its multiple of it, the
batch transfer (``base_batch_size``) and the horizon transfer (``base_tokens``,
``data_exponent``) move it to the run's batch and length. ``name`` is an entry of the optimizer
registry (sizeup.registry), which says which of these settings the optimizer reads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sizeup.choices import DType, MuonScale
from sizeup.config.fields import Bounds, Record, non_negative, positive, spec
from sizeup.errors import ConfigError
from sizeup.registry import get_optimizer, optimizer_names

# Learning rates: torch's optimizers apply lr x a tensor's multiplier (up to width / base width,
# at most 2**26) as a float32 scalar, which overflows past 3.4e38 (a traceback mid-step); 1e30
# x 2**26 stays inside it, and 1e30 still lets a test force a divergence.
RATE = Bounds(0, 1e30, lo_open=True, why="torch applies lr x multiplier as a float32")


@dataclass(frozen=True)
class OptimSpec(Record):
    """The optimizer of a run (or a plan's recipe) and its transfer rules."""

    SECTION = "optimizer"
    SHORTHAND = "name"

    name: str = spec(
        "adamw",
        "Optimizer: a name in sizeup.registry (docs/optim.md has one section per optimizer).",
        flat="optimizer",
        choices=optimizer_names,
    )
    lr: float = spec(
        3e-3,
        "Base learning rate eta (the base model's, at its batch and length).",
        aliases=("base_lr",),
        bounds=RATE,
    )
    weight_decay: float = spec(
        0.0, "Weight decay lambda, torch AdamW's at the base width: lr x lambda per step."
    )
    beta1: float = spec(0.9, "Adam beta1.")
    beta2: float = spec(0.95, "Adam beta2.")
    eps: float = spec(1e-8, "Adam eps of the base model (scaled per tensor with scale_eps).")
    momentum: float = spec(0.9, "SGD and Muon momentum.")
    nesterov: bool = spec(True, "Nesterov momentum (SGD, Muon).")
    muon_scale: MuonScale = spec(
        "spectral", "Muon's update scale: spectral sqrt(fan_out/fan_in), original or rms."
    )
    muon_lr: float | None = spec(None, "Muon's lr for the hidden matrices (None: lr).", bounds=RATE)
    ns_dtype: DType | None = spec(
        "bfloat16",
        "Newton-Schulz precision (bf16 as torch.optim.Muon; float32 makes DDP/FSDP agree to "
        "float32 rounding; None: the gradient's own).",
    )
    # Scion settings (Pethick et al. 2025, sizeup.optim.scion): the form and the norm balls' radii
    scion_constrained: bool = spec(
        False,
        "Scion's constrained form (Frank-Wolfe: W <- (1-lr) W + lr rho lmo(d); weight_decay "
        "must then be 0) instead of the unconstrained one (W <- W + lr rho lmo(d)).",
    )
    scion_radius: float = spec(
        50.0,
        "Scion's radius rho of the input, hidden and vector norm balls (the paper's GPT: 50).",
        bounds=Bounds(0, 1e30, lo_open=True, why="a norm ball's radius is positive"),
    )
    scion_readout_radius: float = spec(
        3000.0,
        "Scion's radius rho of the readout's norm ball (the paper's GPT: 60 x 50 = 3000).",
        bounds=Bounds(0, 1e30, lo_open=True, why="a norm ball's radius is positive"),
    )
    # Dion settings (sizeup.optim.dion; its momentum mu is ``momentum``, its scale muon_scale)
    dion_rank: float = spec(
        1.0,
        "Dion's rank as a fraction of min(fan_out, fan_in): r = ceil(fraction x min) (1: full "
        "rank; the paper also runs 1/4 and 1/16). Dion's momentum mu is `momentum`.",
        bounds=Bounds(0, 1, lo_open=True, why="a fraction of min(fan_out, fan_in)"),
    )
    # Adafactor / SOAP / Shampoo settings
    decay_rate: float = spec(
        -0.8,
        "Adafactor: second-moment decay beta2_t = min(beta2, 1 - t^decay_rate) (Shazeer & Stern "
        "2018, sec. 7.2).",
        bounds=Bounds(-1, 0, hi_open=True, why="1 - t^c grows towards 1 only for c < 0"),
    )
    clip_threshold: float = spec(
        1.0,
        "Adafactor: update clipping d, the largest RMS of an update (Shazeer & Stern 2018, sec. 6).",
        bounds=Bounds(0, None, lo_open=True, why="the update is divided by max(1, RMS / d)"),
    )
    precondition_frequency: int = spec(
        10,
        "SOAP and Shampoo: steps between recomputing the preconditioner (SOAP's eigenbasis, "
        "Shampoo's inverse roots).",
        bounds=Bounds(1, 2**63 - 1, why="a number of steps"),
    )
    shampoo_exponent: float = spec(
        0.25,
        "Shampoo: the update is L^-e G R^-e (Gupta et al. 2018: e = 1/4 for a matrix).",
        bounds=Bounds(0, 0.5, lo_open=True, why="e = 1/2 already whitens each side fully"),
    )
    shampoo_damping: float = spec(
        1e-6,
        "Shampoo: damping relative to each preconditioner's largest eigenvalue (L + d lmax I).",
        bounds=Bounds(0, 1, lo_open=True, why="a zero eigenvalue's inverse root is infinite"),
    )
    grad_clip: float = spec(0.0, "Clip the gradient norm to this (0: off).")
    base_batch_size: int | None = spec(
        None, "Batch transfer: the batch lr, betas, eps were tuned at (square-root rule)."
    )
    base_tokens: int | None = spec(
        None, "Horizon transfer: the tokens lr was tuned at; lr x (D / base_tokens)^alpha."
    )
    data_exponent: float = spec(
        0.0, "Horizon transfer exponent alpha_data (< 0: longer runs, smaller lr; Bjorck 2024)."
    )

    def check(self) -> None:
        """Finite positive rates, betas and momentum in [0, 1), positive transfer bases."""
        positive(self, "lr", "eps", "muon_lr")
        if not math.isfinite(self.lr):
            raise ConfigError("lr", self.lr, "a finite positive number")
        non_negative(self, "weight_decay", "grad_clip")
        for name in ("beta1", "beta2", "momentum"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(name, getattr(self, name), "a number in [0, 1)")
        positive(self, "base_batch_size", "base_tokens", integer=True)
        if self.base_batch_size is not None and get_optimizer(self.name).batch_moves is None:
            raise ConfigError(
                "base_batch_size",
                self.base_batch_size,
                f"None for optimizer={self.name!r} (no batch-transfer rule is known for it)",
            )

    @property
    def betas(self) -> tuple[float, float]:
        """(beta1, beta2)."""
        return (self.beta1, self.beta2)
