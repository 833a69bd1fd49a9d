"""ParamSpec: how a model is parametrized, exactly the options of ``sizeup.parametrize``.

A run's ``parametrization`` section, the planner's recipe and ``parametrize(model, base,
options=ParamSpec(...))`` are this one record, so a setting made anywhere reaches every stage
(docs/architecture.md). ``base_width`` is where sizeup builds the base model itself (a run, a
plan's proxy); ``parametrize`` is handed the base model instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from sizeup.choices import InitStd, ReadoutForm, Rule
from sizeup.config.fields import DEPTH, DIM, Record, positive, spec
from sizeup.errors import ConfigError


@dataclass(frozen=True)
class ParamSpec(Record):
    """The parametrization: the rule, the base it scales from, init and depth scaling."""

    SECTION = "parametrization"

    rule: Rule = spec(
        "mup",
        "Rule: sp (the model as written), mup (Tensor Programs V, Table 3), mup_simple (SP "
        "init, hidden lr / m), spectral (Yang-Simon-Bernstein 2023).",
    )
    base_width: int = spec(32, "Width of the base (proxy) model the rule scales from.", bounds=DIM)
    base_head_dim: int | None = spec(
        None, "The base model's head size (None: the model's head_dim).", bounds=DIM
    )
    base_depth: int | None = spec(
        None,
        "Depth scaling: the base's blocks; residual branches x (L / base_depth)^-alpha.",
        bounds=DEPTH,
    )
    depth_exponent: float = spec(
        0.5, "Depth scaling exponent alpha: 0.5 Depth-muP, 1.0 CompleteP (with base_depth)."
    )
    sigma: InitStd = spec(
        "model",
        "Base init std: 'model' (the model's own init), 'fan_in' (1/sqrt(fan_in)) or a number.",
        aliases=("init_std",),
    )
    zero_readout: bool = spec(False, "Zero-initialise the readout (Tensor Programs V, D.2).")
    zero_query: bool = spec(False, "Zero-initialise the attention queries.")
    zero_router: bool = spec(False, "Zero-initialise MoE routers (tokens tie until updated).")
    readout_form: ReadoutForm = spec(
        "table3",
        "muP readout: table3 (init sigma / m) or table8 (multiplier 1/m, mup's MuReadout).",
    )
    scale_eps: bool = spec(True, "Adam eps per tensor, following its gradient scale.")

    def check(self) -> None:
        """Positive base sizes and depth exponent."""
        positive(self, "base_width", "base_depth", "base_head_dim", integer=True)
        if not self.depth_exponent > 0:
            raise ConfigError("depth_exponent", self.depth_exponent, "a positive number (0.5 or 1)")
