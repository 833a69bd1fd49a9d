"""The attention logit scale, set by ``parametrize(attn_scale=...)`` on the model's own attention
modules instead of by editing the model's code.

muP scales attention logits by 1/d_head rather than 1/sqrt(d_head): after training, q and k are
correlated, so q.k grows like d, not sqrt(d) (Tensor Programs V, Yang et al. 2022, sec. 4 and
appendix J.2). The scale is anchored at the base, as microsoft/mup's README recommends ("use
8/d instead of 1/sqrt(d) for d = 64" keeps the base model as it was):

    "1/d"        scale = s_base * d_base / d
    "1/sqrt(d)"  scale = s_base * sqrt(d_base / d)     (what the architecture does already)

with s_base the base's own scale and d_base its head dim, so at the base's head dim nothing
changes and muP equals SP there. A width sweep that keeps head_dim fixed (more heads) never
changes the scale; one that keeps the head count (head_dim grows) does.

Attention modules are found by their fields: transformers' attention classes keep the scale in
``scaling`` and the head dim in ``head_dim`` and pass ``scaling`` to every attention kernel (eager,
sdpa, flash); sizeup's GPT keeps it in ``scale``. ``sizeup.parametrization.export`` folds a
changed scale into the query projection (or the query norm) so that a plain instance of the
architecture, which computes its own scale from its config, gives the same logits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import nn

from sizeup.choices import ATTN_SCALES
from sizeup.errors import ConfigError, check_choice
from sizeup.wrapping import canonical_name

SCALE_ATTRS = ("scaling", "scale")  # transformers' attention modules; sizeup's GPT
_DIGITS = re.compile(r"\.\d+\.")


@dataclass(frozen=True)
class AttnScale:
    """One attention module's logit scale: the field holding it, the architecture's own value
    (what a plain instance computes), the value sizeup set, and the head dims it came from."""

    attr: str
    own: float
    scale: float
    head_dim: int
    base_head_dim: int


def scale_attr(module: nn.Module) -> str | None:
    """The field holding an attention module's logit scale, or None for other modules."""
    if not isinstance(getattr(module, "head_dim", None), int):
        return None
    for attr in SCALE_ATTRS:
        v = getattr(module, attr, None)
        if isinstance(v, float):
            return attr
    return None


def attention_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Canonical name -> attention module (those with a head_dim and a float logit scale)."""
    return {canonical_name(n): m for n, m in model.named_modules() if scale_attr(m) is not None}


def plan_scales(
    model: nn.Module,
    base: nn.Module | None,
    attn_scale: str | None,
    previous: dict[str, AttnScale],
) -> dict[str, AttnScale]:
    """The logit scale of every attention module under ``attn_scale`` (None: keep what the
    model has, and what an earlier parametrize set). ``base``: the base model (None: the model
    is its own base); ``previous``: the records of an earlier parametrize of this model, whose
    ``own`` values are the architecture's."""
    if attn_scale is None:
        return dict(previous)
    check_choice("attn_scale", attn_scale, ATTN_SCALES)
    mods = attention_modules(model)
    if not mods:
        raise ConfigError(
            "attn_scale",
            attn_scale,
            "a model with attention modules that have a head_dim and a float 'scaling' "
            "(transformers) or 'scale' (sizeup's GPT) field; this model has none",
        )
    base_mods = attention_modules(base) if base is not None else mods
    power = 1.0 if attn_scale == "1/d" else 0.5
    out = {}
    for name, mod in mods.items():
        bmod = base_mods.get(name) or base_mods.get(_DIGITS.sub(".0.", name, count=1))
        if bmod is None:
            raise ConfigError("base", name, "a base model with the same attention modules")
        attr = scale_attr(mod)
        own = previous[name].own if name in previous else getattr(mod, attr)
        base_own = previous[name].own if base is None and name in previous else getattr(bmod, attr)
        d, d0 = mod.head_dim, bmod.head_dim
        out[name] = AttnScale(attr, own, base_own * (d0 / d) ** power, d, d0)
    return out


def apply_scales(model: nn.Module, scales: dict[str, AttnScale]) -> None:
    """Set each attention module's logit scale to the planned one."""
    mods = attention_modules(model)
    for name, s in scales.items():
        setattr(mods[name], s.attr, s.scale)


def restore_scales(model: nn.Module, scales: dict[str, AttnScale]) -> None:
    """Give each attention module the architecture's own scale back (export)."""
    mods = attention_modules(model)
    for name, s in scales.items():
        setattr(mods[name], s.attr, s.own)
