"""Reference models: a modern byte-level GPT and a ReLU MLP, built from a ModelSpec through the
model registry (sizeup.registry), so a family someone registers is built the same way."""

from __future__ import annotations

import torch.nn as nn

from sizeup.config.model import ModelSpec
from sizeup.models.gpt import GPT, GPTConfig, gpt_config
from sizeup.models.mlp import MLP
from sizeup.registry import get_model

__all__ = ["GPT", "GPTConfig", "MLP", "build_model", "gpt_config", "num_params"]


def build_model(spec: ModelSpec) -> nn.Module:
    """The model a ModelSpec describes (its family's registered builder; plain init)."""
    return get_model(spec.name).builder()(spec)


def num_params(model: nn.Module, non_embedding: bool = False) -> int:
    """Number of distinct parameters (tied tensors once). ``non_embedding`` leaves out every
    nn.Embedding table (Kaplan et al. 2020 count N without them; a readout tied to the input
    table is then left out too). The one parameter count of sizeup: runs, WSD points, FLOPs."""
    n = sum(p.numel() for p in model.parameters())
    if non_embedding:
        tables = {
            id(m.weight): m.weight.numel() for m in model.modules() if isinstance(m, nn.Embedding)
        }
        n -= sum(tables.values())
    return n
