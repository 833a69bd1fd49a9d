"""DataSpec: where a run's batches come from and how large they are.

``batch_size`` is the full batch of one optimizer step; ``micro_batch_size`` how many of its
sequences one forward and backward pass takes on each rank (gradient accumulation: the step is
the same, the memory the micro-batch's); ``batch_ramp`` grows the batch over the first tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

from sizeup.config.fields import Record, non_negative, positive, spec
from sizeup.errors import ConfigError
from sizeup.schedules import RampStages


@dataclass(frozen=True)
class DataSpec(Record):
    """The run's data source, batch and validation split."""

    SECTION = "data"
    SHORTHAND = "source"

    source: str = spec(
        "builtin",
        "builtin (the shipped corpus), teacher (the MLP's task), a text file, a uint16 .bin "
        "token file or a folder with train.bin/val.bin.",
        flat="data",
    )
    batch_size: int = spec(16, "Sequences (GPT) or examples (MLP) per optimizer step.")
    micro_batch_size: int | None = spec(
        None,
        "Sequences per forward/backward pass on each rank (gradient accumulation; None: the "
        "whole per-rank batch at once).",
    )
    batch_ramp: RampStages | None = spec(
        None,
        "Batch ramp-up: 'from_tokens:batch,...' stages, the first from 0, the last batch_size.",
    )
    val_frac: float = spec(0.05, "Fraction of a corpus held out for validation.")
    eval_every: int = spec(0, "Evaluate every k steps (0: at the start and the end only).")
    eval_batches: int = spec(4, "Validation batches per evaluation.")

    def check(self) -> None:
        """Positive batches, the ramp ending at batch_size, a micro-batch that divides it."""
        positive(self, "batch_size", "micro_batch_size", "eval_batches", integer=True)
        non_negative(self, "eval_every")
        if not 0.0 <= self.val_frac < 0.5:
            raise ConfigError("val_frac", self.val_frac, "a fraction in [0, 0.5)")
        if self.batch_ramp is not None and self.batch_ramp[-1][1] != self.batch_size:
            raise ConfigError(
                "batch_ramp",
                self.batch_ramp,
                f"stages whose last batch is batch_size={self.batch_size} (the full batch: "
                "validation, batch transfer and the memory check use it)",
            )

    def batches(self) -> tuple[int, ...]:
        """Every batch the run takes: each stage of its ramp, and batch_size."""
        return tuple(dict.fromkeys([b for _, b in self.batch_ramp or ()] + [self.batch_size]))
