"""Each tensor's base init std sigma, and a rule's init applied by rescaling the model's own tensor.

sigma (``parametrize(sigma=...)``), per tensor:

    "model"   (default) the std the base model's own initialisation gives the tensor: declared by
              the model (``sizeup_hints["init_std"]``: a number, "fan_in", or {fnmatch pattern:
              either}; source "model hint"), else measured, the RMS of the base's tensor (source
              "measured"; the base must then hold real values, or be a base-shapes file with stds)
    "fan_in"  1/sqrt(base fan_in) (source "given")
    a number  that std for every matrix (source "given")

Why the model's own: microsoft/mup keeps every module's init and changes only what width changes
(Yang et al. 2022, Tensor Programs V, sec. 3 and the mup package's set_base_shapes), so a model
that is well initialised at the base width stays so at every width. Re-sampling every tensor with
N(0, 0.02) whatever the model's init cost a plain nn.Linear MLP 5-10% of its loss (issue #10).

The rule's init std (the target) is applied by multiplying the model's tensor by target / own,
own being the tensor's nominal std at its own shape (declared, else its RMS), so the distribution
keeps its shape (uniform for nn.Linear, orthogonal, truncated normal ...). A tensor is left bit for
bit as the model made it when target == own, which with sigma "model" is every tensor whose rule
factor is 1 at the base's shape: a tensor of the base's shape is a base tensor, so its own std is
its sigma. An all-zero tensor whose target is not 0 is sampled N(0, target). Tensors on the meta
device are never touched.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch

from sizeup.choices import INIT_STD_MODES
from sizeup.errors import ConfigError, check_number_or_choice
from sizeup.parametrization.shapes import BaseRef, tensor_rms

HINT_FIELD = "sizeup_hints['init_std']"
_SAME = 1e-12  # relative difference below which two stds are the same (float rounding)


def check_hint(hint: Any) -> Any:
    """The model's init_std hint, validated: None, a positive number, "fan_in", or a dict of
    fnmatch pattern -> either (a ConfigError names the entry otherwise)."""
    if hint is None:
        return None
    if isinstance(hint, Mapping):
        return {
            str(k): check_number_or_choice(f"{HINT_FIELD}[{k!r}]", v, ("fan_in",))
            for k, v in hint.items()
        }
    return check_number_or_choice(HINT_FIELD, hint, ("fan_in",))


def _declared(hint: Any, name: str, module: str) -> float | str | None:
    """What the model declares for one tensor (matching its parameter or module name)."""
    if not isinstance(hint, Mapping):
        return hint
    for pattern, value in hint.items():
        if fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(module, pattern):
            return value
    return None


def _std(value: float | str, fan_in: int) -> float:
    return 1.0 / math.sqrt(fan_in) if value == "fan_in" else float(value)


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= _SAME * max(abs(a), abs(b))


class SigmaResolver:
    """Where sigma and each tensor's own std come from, for one parametrize call.

    sigma: "model", "fan_in" or a number; hint: the model's checked init_std hint; base: the
    base's shapes and measured stds; fresh: the model has not been parametrized before, so a
    declared std still describes its tensors (else their RMS does).
    """

    def __init__(self, sigma: float | str, hint: Any, base: BaseRef, fresh: bool):
        self.sigma, self.hint, self.base, self.fresh = sigma, hint, base, fresh

    @property
    def model_mode(self) -> bool:
        """sigma is the model's own init (the default)."""
        return self.sigma == "model"

    def base_sigma(
        self, name: str, module: str, base_name: str, base_fan_in: int, own: float | None
    ) -> tuple[float | None, str | None]:
        """(sigma of the base's tensor, its source); (None, None) when it cannot be known.
        ``own``: the model's own std when the tensor has the base's shape (else None); such a
        tensor is a base tensor, so with sigma "model" its own std is its sigma."""
        if self.sigma not in INIT_STD_MODES:
            return float(self.sigma), "given"
        if self.sigma == "fan_in":
            return 1.0 / math.sqrt(base_fan_in), "given"
        declared = _declared(self.hint, name, module)
        if declared is not None:
            return _std(declared, base_fan_in), "model hint"
        measured = own if own is not None else self.base.stds.get(base_name)
        return (measured, "measured") if measured is not None else (None, None)

    def own_std(self, name: str, module: str, p: torch.Tensor, fan_in: int) -> float | None:
        """The tensor's nominal std at its own shape: declared (while the model is freshly
        made), else its RMS; 0 for an all-zero tensor; None on meta without a declaration."""
        declared = _declared(self.hint, name, module)
        rms = tensor_rms(p)
        if rms == 0.0:
            return 0.0
        if declared is not None and (self.fresh or rms is None):
            return _std(declared, fan_in)
        return rms

    def sp_sigma(self, own: float | None, fan_in: int) -> float | None:
        """What SP uses for this tensor at the model's width."""
        if self.sigma == "model":
            return own
        return _std(self.sigma, fan_in)

    def missing(self, name: str) -> ConfigError:
        """The error when a rule needs sigma for ``name`` and nothing gives it."""
        return ConfigError(
            "base",
            self.base.what,
            f"a materialized base model, whose init std can be measured ({name} has no values "
            "here), or a base-shapes file with init stds (save_base_shapes), or "
            f"sizeup_hints['init_std'] on the model, or pass sigma= (a number or 'fan_in')",
        )


@dataclass(frozen=True)
class InitStep:
    """What the init stage does to one tensor: keep it, zero it, multiply it by ``value``, or
    sample N(0, value) (an all-zero tensor whose target is not 0)."""

    action: Literal["keep", "zero", "scale", "sample"]
    value: float = 1.0


KEEP = InitStep("keep")


def plan_step(target: float | None, own: float | None) -> InitStep:
    """The step that takes a tensor whose nominal std is ``own`` to the rule's ``target``
    (keep it when they agree to float rounding)."""
    if target is None or own is None:
        return KEEP
    if target == 0.0:
        return InitStep("zero")
    if own == 0.0:
        return InitStep("sample", target)
    if _same(target, own):
        return KEEP
    return InitStep("scale", target / own)


@torch.no_grad()
def apply_step(p: torch.Tensor, step: InitStep) -> None:
    """Apply an InitStep in place (nothing on the meta device)."""
    if p.is_meta or step.action == "keep":
        return
    if step.action == "zero":
        p.zero_()
    elif step.action == "sample":
        p.normal_(0.0, step.value)
    else:
        p.mul_(step.value)
