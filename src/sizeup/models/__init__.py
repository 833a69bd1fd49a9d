"""Reference models: a modern byte-level GPT and a ReLU MLP, built from a RunConfig."""

from __future__ import annotations

import torch.nn as nn

from sizeup.config import RunConfig
from sizeup.models.gpt import GPT, GPTConfig
from sizeup.models.mlp import MLP

__all__ = ["GPT", "GPTConfig", "MLP", "build_model", "gpt_config", "num_params"]


def gpt_config(cfg: RunConfig, width: int | None = None, depth: int | None = None) -> GPTConfig:
    """The GPTConfig a RunConfig describes (width/depth override cfg.width/cfg.depth)."""
    return GPTConfig(
        d_model=cfg.width if width is None else width,
        n_layer=cfg.depth if depth is None else depth,
        head_dim=cfg.head_dim,
        vocab_size=cfg.vocab_size,
        seq_len=cfg.seq_len,
        mlp_ratio=cfg.mlp_ratio,
        attn_scale=cfg.attn_scale,
        qk_norm=cfg.qk_norm,
        tie_embeddings=cfg.tie_embeddings,
        z_loss=cfg.z_loss,
    )


def build_model(cfg: RunConfig, width: int | None = None, depth: int | None = None) -> nn.Module:
    """The model cfg.model names, at cfg's shape unless width/depth override it (plain init)."""
    if cfg.model == "gpt":
        return GPT(gpt_config(cfg, width, depth))
    from sizeup.data import teacher_dims

    in_dim, n_classes = teacher_dims(cfg)
    return MLP(
        in_dim,
        cfg.width if width is None else width,
        cfg.depth if depth is None else depth,
        n_classes,
    )


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
