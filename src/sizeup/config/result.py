"""RunResult: what one run produced, and the JSON helpers every record's file uses."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class RunResult:
    """What one run produced: curves, final numbers, cost and whether it diverged."""

    config: dict[str, Any]
    steps: list[int] = field(default_factory=list)  # steps at which train loss was logged
    train_loss: list[float] = field(default_factory=list)
    val_steps: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    initial_val_loss: float = math.nan
    final_train_loss: float = math.nan  # mean of the last few logged train losses
    final_val_loss: float = math.nan
    tokens: int = 0
    flops: float = 0.0
    params: int = 0
    tokens_per_s: float = 0.0
    wall_time: float = 0.0
    step_time: float = math.nan  # median seconds per optimizer step (after the first)
    mfu: float = math.nan  # model FLOPs utilisation against the devices' peak (NaN: unknown)
    peak_flops: float = math.nan  # one device's peak FLOP/s the MFU is measured against
    device_name: str = ""  # e.g. "NVIDIA H100 80GB HBM3" or "cpu"
    world_size: int = 1
    resumed_from: int | None = None  # the checkpoint step a resumed run continued from
    diverged: bool = False
    diverged_step: int | None = None
    error: str | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (NaN and inf become None)."""
        return json_safe(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunResult:
        """Rebuild from to_dict() output (None floats back to NaN)."""
        d = dict(d)
        for k in (
            "initial_val_loss",
            "final_train_loss",
            "final_val_loss",
            "step_time",
            "mfu",
            "peak_flops",
        ):
            if d.get(k) is None:
                d[k] = math.nan
        for k in ("train_loss", "val_loss"):
            d[k] = [math.nan if v is None else v for v in d.get(k, [])]
        return cls(**d)

    def save(self, path: str | Path) -> None:
        """Write as indented JSON (strict: no NaN tokens)."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False))

    @property
    def loss(self) -> float:
        """The headline loss: final validation loss, or final train loss when no val split."""
        return self.final_val_loss if math.isfinite(self.final_val_loss) else self.final_train_loss


def json_safe(x: Any) -> Any:
    """Nested dicts/lists made strict-JSON-safe: NaN and inf become None, numpy scalars Python."""
    if hasattr(x, "item") and not isinstance(x, (list, dict)):  # numpy / torch scalars
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    return x
