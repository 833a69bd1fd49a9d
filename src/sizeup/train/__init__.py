"""Training: build a run from its RunConfig, train it (one process, or under torchrun with DDP
or FSDP2), checkpoint and resume it, log its metrics, and WSD cooldown branches from one stable
trunk, all through one step (sizeup.train.step)."""

from sizeup.train.build import (
    DTYPES,
    Built,
    Callback,
    build,
    build_models,
    optimizer_for,
    parametrize_run,
    parametrized,
)
from sizeup.train.distributed import run_distributed
from sizeup.train.loggers import (
    JsonlLogger,
    MetricsLogger,
    TensorBoardLogger,
    WandbLogger,
    make_logger,
)
from sizeup.train.loop import Checkpointing, run
from sizeup.train.step import Trainer, evaluate, forward_loss

__all__ = [
    "DTYPES",
    "Built",
    "Callback",
    "Checkpointing",
    "JsonlLogger",
    "MetricsLogger",
    "TensorBoardLogger",
    "Trainer",
    "WandbLogger",
    "build",
    "build_models",
    "evaluate",
    "forward_loss",
    "make_logger",
    "run",
    "optimizer_for",
    "parametrize_run",
    "parametrized",
    "run_distributed",
]
