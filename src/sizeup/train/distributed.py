"""Entry point under ``torchrun``: one process group, each rank a slice of the global batch
(DDP), or a shard of every tensor as well (FSDP2, ``cfg.run.fsdp``)."""

from __future__ import annotations

import os
from typing import Any

from sizeup.config import RunConfig, RunResult
from sizeup.data import check_divisible
from sizeup.train.loop import run


def launched() -> bool:
    """True inside a process that torchrun started (it sets the rendezvous variables)."""
    return "MASTER_ADDR" in os.environ and "RANK" in os.environ


def _init_group(cfg: RunConfig, world: int) -> bool:
    """Init the process group from torchrun's environment (gloo on CPU, NCCL on CUDA, each
    rank on its own GPU: LOCAL_RANK); True when this call made it."""
    import torch
    import torch.distributed as dist

    if dist.is_initialized() or not launched() or (world == 1 and not cfg.run.fsdp):
        return False
    if cfg.run.device.startswith("cuda"):
        # "cuda" then means this rank's GPU (torch.device("cuda") is the current device).
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cfg.run.device.startswith("cuda") else "gloo")
    return True


def run_distributed(cfg: RunConfig, **kwargs: Any) -> RunResult:
    """Entry for ``torchrun``: init the process group from the environment and run (keyword
    arguments go to ``sizeup.train.run``). The group is destroyed explicitly at the end (gloo
    can abort at interpreter exit otherwise)."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    check_divisible(cfg, world)  # before the process group: every batch splits over the ranks
    own = _init_group(cfg, world)
    try:
        return run(cfg, rank=rank, world_size=world, **kwargs)
    finally:
        if own and dist.is_initialized():
            dist.destroy_process_group()
