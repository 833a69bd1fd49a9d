"""RunSpec and MonitorSpec: where and how a run executes, and what it watches while it does.

None of these changes the training trajectory beyond float rounding (except ``seed``), which is
why FSDP, compilation and autocast are settings of the run rather than of the model.
"""

from __future__ import annotations

from dataclasses import dataclass

from sizeup.choices import DType
from sizeup.config.fields import Bounds, Record, non_negative, positive, spec

# Seeds: numpy's generators take only non-negative seeds; below 2**63 a seed, and the seed + k
# of a check's k-th seed, stays within torch.manual_seed's 64 bits and SQLite's integers.
MAX_SEED = 2**63 - 1
SEED_WHY = "numpy takes non-negative seeds; torch and the study store 64-bit integers"
# Threads: the largest two-socket servers have 768 hardware threads; more threads than the
# machine has only make every op wait on the others (and a config may travel to another host,
# so the cap is not this machine's count).
MAX_THREADS = 1024
THREADS_WHY = "the largest machines have 768 hardware threads"


@dataclass(frozen=True)
class RunSpec(Record):
    """The seed, device, precision and scale-out of a run."""

    SECTION = "run"

    seed: int = spec(
        0,
        "Seed of the init and the data order.",
        bounds=Bounds(0, MAX_SEED, why=SEED_WHY),
    )
    device: str = spec("cpu", "Torch device: cpu, cuda, cuda:N or mps.")
    dtype: DType = spec("float32", "Weights' dtype: float32, float64 or bfloat16.")
    threads: int = spec(
        1,
        "Torch threads per run on CPU.",
        bounds=Bounds(1, MAX_THREADS, why=THREADS_WHY),
    )
    diverge_factor: float = spec(3.0, "A loss above this x the initial loss counts as diverged.")
    fsdp: bool = spec(False, "Shard parameters, gradients and optimizer state with FSDP2.")
    compile: bool = spec(False, "torch.compile the model the step calls.")
    autocast: bool = spec(
        False, "bf16 autocast of forward and backward (weights stay in dtype).", aliases=("bf16",)
    )
    peak_flops: float | None = spec(
        None, "One device's peak FLOP/s for MFU (None: from the device's name)."
    )

    def check(self) -> None:
        """Positive thread count, divergence factor and peak."""
        positive(self, "threads", integer=True)
        positive(self, "diverge_factor", "peak_flops")


@dataclass(frozen=True)
class MonitorSpec(Record):
    """What a run logs besides its loss (each every k steps; 0: off)."""

    SECTION = "monitor"

    log_every: int = spec(1, "Record the train loss every k steps.")
    spectral_every: int = spec(0, "Log ||W||, ||dW|| and alignment of every Linear every k steps.")
    noise_every: int = spec(0, "Log the gradient noise scale B_simple every k steps.")
    attn_logits_every: int = spec(
        0, "Log the largest attention logit per block and attention entropy every k steps."
    )
    output_logits_every: int = spec(
        0, "Log the output logits (largest |logit|, mean, log Z) every k steps."
    )

    def check(self) -> None:
        """Positive log_every, non-negative monitor periods."""
        positive(self, "log_every", integer=True)
        non_negative(
            self, "spectral_every", "noise_every", "attn_logits_every", "output_logits_every"
        )
