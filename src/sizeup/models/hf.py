"""Hugging Face transformers models: what sizeup needs to know of a family, and tiny instances of
it at any width (the optional extra ``hf``: ``pip install 'sizeup[hf]'``).

sizeup parametrizes any ``nn.Module`` from its shapes alone; a family adds the names a shape cannot
tell (``sizeup_hints``, as sizeup's own GPT declares them): the blocks (depth), the residual-branch
outputs (depth multipliers), the queries (zero init), the MoE routers (readouts over a fixed number
of experts) and the final norm before the readout (where export folds a tied readout's
multiplier). ``hints(model)`` returns them for any model: its own ``sizeup_hints``, else those of
its transformers family, else none (roles are still inferred from the base).

``hf_model(arch, width, **overrides)`` builds a tiny model of a known family with
``AutoModelForCausalLM.from_config`` (no download, ever). Width sets the hidden size; the MLP and
expert sizes follow at the family's fixed ratio; the number of heads (and key/value heads) stays
fixed, so head_dim grows with width: muP's infinite-width limit for attention, where the 1/d
logit scale matters (Tensor Programs V, sec. 4), as in sizeup's own GPT coordinate check.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from sizeup.choices import HF_ARCHS
from sizeup.errors import ConfigError, check_choice

# Module names of the Llama-style decoders (Llama, Qwen3, Qwen3-MoE, Mixtral, OLMoE and most
# others): model.embed_tokens, model.layers.{i}.self_attn.{q,k,v,o}_proj, .mlp.{gate,up,down}_proj
# (dense) or .mlp.gate (router) + .mlp.experts (3-D expert tensors), model.norm, lm_head.
_DECODER_HINTS: dict[str, Any] = {
    "block": ["model.layers.*"],
    "residual_out": [
        "model.layers.*.self_attn.o_proj",
        "model.layers.*.mlp.down_proj",
        "model.layers.*.mlp.experts",
        "model.layers.*.mlp.shared_expert.down_proj",
    ],
    "query": ["model.layers.*.self_attn.q_proj"],
    "router": ["model.layers.*.mlp.gate"],
    "readout": ["lm_head"],
    "final_norm": "model.norm",
    "roles": {},
}
# GPT-2: Conv1D layers (weight stored in x out), fused q/k/v in c_attn (zero_query zeroes its
# first third), lm_head tied to transformer.wte.
_GPT2_HINTS: dict[str, Any] = {
    "block": ["transformer.h.*"],
    "residual_out": ["transformer.h.*.attn.c_proj", "transformer.h.*.mlp.c_proj"],
    "query": [],
    "fused_query": ["transformer.h.*.attn.c_attn"],  # zero_query zeroes its query third
    "router": [],
    "readout": ["lm_head"],
    "final_norm": "transformer.ln_f",
    "roles": {},
}


@dataclass(frozen=True)
class Family:
    """What sizeup knows of one transformers family: its hints, the config field that is the
    width, the fields that follow width at a fixed ratio, the head-count field (fixed) and the
    head_dim field (set to width / heads where the config has one), and a tiny default config."""

    hints: dict[str, Any]
    width: str
    ratios: dict[str, float]
    heads: str = "num_attention_heads"
    head_dim: str | None = "head_dim"
    tiny: dict[str, Any] = field(default_factory=dict)
    layers: str = "num_hidden_layers"


# Tiny defaults for checks and tests: byte vocabulary (the built-in corpus), two blocks, four
# heads, no dropout, no KV cache (training), no padding row in the embedding.
_TINY = {
    "vocab_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 256,
    "use_cache": False,
    "pad_token_id": None,
    "bos_token_id": 0,
    "eos_token_id": 0,
}
_MOE = {"num_experts_per_tok": 2, "output_router_logits": False}

FAMILIES: dict[str, Family] = {
    "llama": Family(
        _DECODER_HINTS,
        "hidden_size",
        {"intermediate_size": 2.0},
        tiny={**_TINY, "num_key_value_heads": 2},
    ),
    "qwen3": Family(
        _DECODER_HINTS,
        "hidden_size",
        {"intermediate_size": 2.0},
        tiny={**_TINY, "num_key_value_heads": 2},
    ),
    "gpt2": Family(
        _GPT2_HINTS,
        "n_embd",
        {"n_inner": 4.0},
        heads="n_head",
        head_dim=None,
        layers="n_layer",
        tiny={
            "vocab_size": 256,
            "n_layer": 2,
            "n_head": 4,
            "n_positions": 256,
            "resid_pdrop": 0.0,
            "embd_pdrop": 0.0,
            "attn_pdrop": 0.0,
            "use_cache": False,
            "bos_token_id": 0,
            "eos_token_id": 0,
        },
    ),
    "qwen3_moe": Family(
        _DECODER_HINTS,
        "hidden_size",
        {"intermediate_size": 2.0, "moe_intermediate_size": 0.5},
        tiny={**_TINY, **_MOE, "num_key_value_heads": 2, "num_experts": 4},
    ),
    "mixtral": Family(
        _DECODER_HINTS,
        "hidden_size",
        {"intermediate_size": 2.0},
        tiny={**_TINY, **_MOE, "num_key_value_heads": 2, "num_local_experts": 4},
    ),
    "olmoe": Family(
        _DECODER_HINTS,
        "hidden_size",
        {"intermediate_size": 0.5},
        head_dim=None,
        tiny={**_TINY, **_MOE, "num_experts": 4},
    ),
}
assert set(FAMILIES) == set(HF_ARCHS)  # choices.HFArch is the vocabulary; this is its table


def is_hf_model(model: nn.Module) -> bool:
    """A transformers model (without importing transformers): its class comes from the package
    and it carries a config with a model_type."""
    cfg = getattr(model, "config", None)
    return type(model).__module__.startswith("transformers.") and hasattr(cfg, "model_type")


def hints(model: nn.Module) -> dict[str, Any]:
    """The model's sizeup_hints: its own, else its transformers family's (a Llama-style decoder
    of an unlisted family gets the Llama names when it has them), else {}."""
    own = getattr(model, "sizeup_hints", None)
    if own:
        return dict(own)
    if not is_hf_model(model):
        return {}
    fam = FAMILIES.get(model.config.model_type)
    if fam is not None:
        return copy.deepcopy(fam.hints)
    names = {n for n, _ in model.named_modules()}
    return copy.deepcopy(_DECODER_HINTS) if "model.layers.0" in names else {}


def family(arch: str) -> Family:
    """The Family of a known architecture name (ConfigError naming the known ones)."""
    check_choice("hf", arch, HF_ARCHS)
    return FAMILIES[arch]


def require_transformers() -> Any:
    """The transformers package, or a ConfigError saying how to install it."""
    try:
        import transformers
    except ImportError:
        raise ConfigError(
            "hf",
            "transformers",
            "available once transformers is installed (pip install 'sizeup[hf]')",
        ) from None
    return transformers


def width_fields(arch: str, width: int, heads: int | None = None) -> dict[str, int]:
    """The config fields that width sets: the width, the MLP/expert sizes at the family's ratio,
    head_dim = width / heads (``heads`` fixed: the family's tiny default unless given)."""
    fam = family(arch)
    heads = int(fam.tiny[fam.heads] if heads is None else heads)
    if width % heads:
        raise ConfigError("width", width, f"a multiple of {fam.heads}={heads} ({arch})")
    out = {fam.width: width}
    out.update({k: max(1, round(r * width)) for k, r in fam.ratios.items()})
    if fam.head_dim is not None:
        out[fam.head_dim] = width // heads
    return out


def hf_config(arch: str, width: int, **overrides: Any) -> Any:
    """A tiny transformers config of ``arch`` at ``width`` (hidden size): the family's tiny
    defaults, then ``overrides`` (any config field except those width sets), then the width
    fields. A heads override changes the fixed head count."""
    tf = require_transformers()
    fam = family(arch)
    fields = {**fam.tiny, **overrides}
    fixed = width_fields(arch, width, fields[fam.heads])
    clash = sorted(set(overrides) & set(fixed))
    if clash:
        raise ConfigError(
            "--set", ",".join(clash), f"fields width does not set ({', '.join(fixed)} follow it)"
        )
    try:
        return tf.AutoConfig.for_model(arch, **{**fields, **fixed})
    except Exception as e:  # transformers validates configs its own way (e.g. an odd head_dim)
        raise ConfigError(f"{arch} config", {**overrides, **fixed}, f"a valid config ({e})") from e


def hf_model(arch: str, width: int, **overrides: Any) -> nn.Module:
    """A freshly initialised tiny causal LM of ``arch`` at ``width`` (from_config, no download),
    in train mode."""
    tf = require_transformers()
    model = tf.AutoModelForCausalLM.from_config(hf_config(arch, width, **overrides))
    return model.train()


def hf_factory(arch: str, **overrides: Any) -> Callable[[int], nn.Module]:
    """width -> hf_model(arch, width, **overrides), for coordinate checks and sweeps (checked
    once here, so a bad name or field fails before any training)."""
    fam = family(arch)
    hf_config(arch, int(overrides.get(fam.heads, fam.tiny[fam.heads])), **overrides)

    def build(width: int) -> nn.Module:
        return hf_model(arch, width, **overrides)

    build.__name__ = f"hf:{arch}"
    return build


def config_at(config: Any, width: int, layers: int | None = None) -> Any:
    """A copy of a known family's config at another width (and number of blocks): the width
    fields as ``width_fields`` sets them, heads kept. For the base of a trained model."""
    arch = config.model_type
    fam = family(arch)
    out = copy.deepcopy(config)
    for k, v in width_fields(arch, width, getattr(config, fam.heads)).items():
        setattr(out, k, v)
    if layers is not None:
        setattr(out, fam.layers, layers)
    return out
