"""Training: build a run from its RunConfig, train it (one process or under torchrun), and WSD
cooldown branches from one stable trunk."""

from sizeup.train.build import DTYPES, Built, Callback, build, build_models, sigma_for
from sizeup.train.distributed import run_distributed
from sizeup.train.loop import evaluate, run

__all__ = [
    "DTYPES",
    "Built",
    "Callback",
    "build",
    "build_models",
    "evaluate",
    "run",
    "run_distributed",
    "sigma_for",
]
