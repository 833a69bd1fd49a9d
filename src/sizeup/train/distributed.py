"""Entry point under ``torchrun``: one process group, each rank a slice of the global batch."""

from __future__ import annotations

import os

from sizeup.config import RunConfig, RunResult
from sizeup.errors import ConfigError
from sizeup.train.loop import run


def run_distributed(cfg: RunConfig) -> RunResult:
    """Entry for ``torchrun``: init the process group from the environment (gloo on CPU) and run."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("gloo" if cfg.device == "cpu" else "nccl")
    if cfg.batch_size % world:
        raise ConfigError("batch_size", cfg.batch_size, f"a multiple of the world size {world}")
    try:
        return run(cfg, rank=rank, world_size=world)
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()
