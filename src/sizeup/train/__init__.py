"""Training: build a run from its RunConfig, train it (one process or under torchrun), and WSD
cooldown branches from one stable trunk, all through one step (sizeup.train.step)."""

from sizeup.train.build import DTYPES, Built, Callback, build, build_models, sigma_for
from sizeup.train.distributed import run_distributed
from sizeup.train.loop import run
from sizeup.train.step import Trainer, evaluate, forward_loss

__all__ = [
    "DTYPES",
    "Built",
    "Callback",
    "Trainer",
    "build",
    "build_models",
    "evaluate",
    "forward_loss",
    "run",
    "run_distributed",
    "sigma_for",
]
