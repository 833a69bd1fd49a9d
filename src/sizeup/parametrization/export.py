"""Export a parametrized model to a plain checkpoint: every forward multiplier folded into the
weights, so the unmodified architecture (a plain module, or ``from_pretrained`` of a transformers
model's ``save_pretrained`` folder) computes the same outputs without sizeup.

What is folded, and where (each multiplier is a scalar on a map that is linear in one tensor):

    multiplier                              folded into
    weight multiplier w (Table 8 readout    the weight: W x w (a router's weight likewise)
    1/m, abc_shift)
    branch multiplier b (depth scaling      the branch's last weight and bias: W x b, bias x b
    (L/L0)^-alpha on residual_out)          (an MoE's experts: each expert's down projection)
    embedding output                        the table
    tied readout 1/m (shares the            the final norm before it (sizeup_hints["final_norm"]):
    embedding's tensor)                     logits = W (c norm(x)) = c W norm(x); the embedding
                                            keeps its values
    attention logit scale s (attn_scale)    the queries: the query norm's gain when the model has
                                            one (it would undo a scaled projection), else the
                                            query projection (q_proj, q, GPT-2's c_attn query
                                            columns), by s / s_own; the module keeps s_own, which
                                            the architecture computes from its config

A norm is only used when scaling its parameters scales its output (checked on a probe input:
RMSNorm and LayerNorm with gain and bias pass; a (1 + w) gain would not). Where no such place
exists the export stops with an ExportError naming the module and the multiplier; nothing is
half-done, since the export works on a copy. What the copy computes differs from the original
only where a multiplier moved: the final hidden state under a tied readout (scaled by c) and
the query projections (scaled by s / s_own) - never the logits.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from sizeup.errors import ExportError
from sizeup.parametrization.attention import AttnScale, restore_scales
from sizeup.parametrization.hooks import ATTR, remove_hooks
from sizeup.parametrization.layout import is_conv1d, linear_in_input
from sizeup.wrapping import canonical_name, unwrap

# The parameter an MoE experts module's output is linear in (its last matmul): transformers'
# down_proj (and down_proj_bias), sizeup's GPT down, older Mixtral w2.
BRANCH_OUT_PARAMS = ("down_proj", "down", "w2")
_PROBE_RTOL = 1e-4


class Exportable(Protocol):
    """What export reads of a Parametrization (sizeup.parametrization.core)."""

    model: nn.Module
    module_multipliers: dict[str, tuple[float, float]]
    attention: dict[str, AttnScale]
    tied: dict[str, str]
    hints: dict[str, Any]


def export(p: Exportable, model: nn.Module | None = None) -> nn.Module:
    """A copy of ``model`` (default: the parametrized model; a wrapped one is unwrapped) with
    every forward multiplier folded into its weights and sizeup's hooks and records removed:
    the plain architecture, same outputs. ExportError names a multiplier that cannot be folded."""
    src = unwrap(model) if model is not None else p.model
    out = copy.deepcopy(src)
    for mod in out.modules():
        remove_hooks(mod)
    if hasattr(out, ATTR):
        delattr(out, ATTR)
    mods = {canonical_name(n): m for n, m in out.named_modules()}
    with torch.no_grad():
        for name, (w, b) in p.module_multipliers.items():
            if name in p.tied:
                _fold_tied(mods, name, w * b, p)
            else:
                _fold_module(mods[name], name, w, b)
        for name, s in p.attention.items():
            if s.scale != s.own:
                _fold_attention(mods[name], name, s)
    restore_scales(out, p.attention)
    return out


def _scale_(t: torch.Tensor | None, factor: float) -> None:
    if t is not None and factor != 1.0:
        t.mul_(factor)


def _fold_module(mod: nn.Module, name: str, w: float, b: float) -> None:
    """A weight multiplier w and a branch multiplier b into the module's own tensors."""
    if isinstance(mod, nn.Embedding):
        _scale_(mod.weight, w * b)
    elif linear_in_input(mod):
        _scale_(mod.weight, w * b)
        _scale_(getattr(mod, "bias", None), b)
    else:
        if w != 1.0:
            _scale_(_router_weight(mod, name, w), w)
        if b != 1.0:
            out_name = _branch_param(mod, name, b)
            _scale_(getattr(mod, out_name), b)
            _scale_(getattr(mod, f"{out_name}_bias", None), b)


def _router_weight(mod: nn.Module, name: str, w: float) -> torch.Tensor:
    """The one 2-D weight of a module whose output reads weight x input (an MoE router)."""
    params = dict(mod.named_parameters(recurse=False))
    weight = params.get("weight")
    if set(params) != {"weight"} or weight.ndim != 2:
        raise ExportError(
            f"{name}: its weight multiplier {w:g} cannot be folded: a {type(mod).__name__} is "
            "not a Linear, and has not one 2-D 'weight' (as a router's F.linear(x, weight))"
        )
    return weight


def _branch_param(mod: nn.Module, name: str, b: float) -> str:
    """The parameter a non-Linear residual branch's output is linear in (its last matmul)."""
    params = dict(mod.named_parameters(recurse=False))
    for cand in BRANCH_OUT_PARAMS:
        if cand in params:
            return cand
    raise ExportError(
        f"{name}: its branch multiplier {b:g} cannot be folded: a {type(mod).__name__} is not a "
        f"Linear and has none of {', '.join(BRANCH_OUT_PARAMS)} (the last matmul of an MoE's "
        "experts); point residual_out at the branch's last Linear instead"
    )


def _fold_tied(mods: dict[str, nn.Module], name: str, factor: float, p: Exportable) -> None:
    """A tied readout's multiplier into the final norm before it (the shared tensor is also the
    embedding, so it cannot carry the readout's factor)."""
    norm_name = p.hints.get("final_norm")
    if not norm_name or norm_name not in mods:
        raise ExportError(
            f"{name}.weight: the tied readout's multiplier {factor:g} cannot be folded: the "
            f"weight is {p.tied[name]}, shared with the embedding, and the model declares no "
            "norm before the readout (sizeup_hints['final_norm'])"
        )
    _scale_norm(mods[norm_name], norm_name, factor, f"the tied readout {name}'s multiplier")


def _scale_norm(norm: nn.Module, name: str, factor: float, what: str) -> None:
    """Multiply a norm's gain (and bias) by ``factor``, checking on a probe input that its output
    scales by ``factor`` (else restore it and raise ExportError naming it)."""
    params = list(norm.parameters(recurse=False))
    if not params:
        raise ExportError(f"{name}: {what} ({factor:g}) cannot be folded: the norm has no gain")
    dim = params[0].shape[-1]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, dim, generator=gen).to(params[0])
    before = norm(x)
    saved = [t.clone() for t in params]
    for t in params:
        t.mul_(factor)
    after = norm(x)
    if not torch.allclose(after, factor * before, rtol=_PROBE_RTOL, atol=1e-6 * factor):
        for t, s in zip(params, saved):
            t.copy_(s)
        raise ExportError(
            f"{name}: {what} ({factor:g}) cannot be folded: scaling the {type(norm).__name__}'s "
            "parameters does not scale its output (a (1 + w) gain?)"
        )


def _fold_attention(attn: nn.Module, name: str, s: AttnScale) -> None:
    """The ratio of sizeup's logit scale to the architecture's own into the queries."""
    r = s.scale / s.own
    q_norm = getattr(attn, "q_norm", None)
    if isinstance(q_norm, nn.Module) and any(True for _ in q_norm.parameters()):
        _scale_norm(q_norm, f"{name}.q_norm", r, f"the attention scale of {name}")
        return
    for proj in ("q_proj", "q"):
        lin = getattr(attn, proj, None)
        if isinstance(lin, nn.Linear):
            _scale_(lin.weight, r)
            _scale_(lin.bias, r)
            return
    c_attn = getattr(attn, "c_attn", None)
    if is_conv1d(c_attn) and not getattr(attn, "is_cross_attention", False):
        q = slice(0, int(attn.split_size))  # GPT-2: columns [q | k | v] of x @ W
        _scale_(c_attn.weight[:, q], r)
        _scale_(c_attn.bias[q], r)
        return
    raise ExportError(
        f"{name}: its attention logit scale {s.scale:g} (the architecture computes {s.own:g}) "
        "cannot be folded: no query norm (q_norm) or query projection (q_proj, q, c_attn) found"
    )


def save(exported: nn.Module, out: str | Path) -> Path:
    """Write an exported model: ``save_pretrained`` for a transformers model (a folder that
    ``from_pretrained`` reads), else ``out/model.pt`` (the state_dict) and, when the model has
    a config with ``to_dict``, ``out/config.json``. Returns the folder."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if hasattr(exported, "save_pretrained"):
        exported.save_pretrained(out)
        return out
    torch.save(exported.state_dict(), out / "model.pt")
    cfg = getattr(exported, "config", None)
    if hasattr(cfg, "to_dict"):
        import json

        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
    return out
