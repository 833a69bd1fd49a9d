"""One resume harness for the optimizer tests: a config trained straight, and the same config
trained for ``split`` steps, saved, loaded into a fresh Trainer and trained to the end (as
`sizeup train --resume` does)."""

from __future__ import annotations

from pathlib import Path

from sizeup.config import RunConfig
from sizeup.train import Trainer, build


def straight_and_resumed(cfg: RunConfig, tmp_path: Path, split: int):
    """(straight trainer, its losses, resumed trainer, its losses) over the schedule's steps; the
    resumed one is checked to restart at ``split``."""
    straight = Trainer.from_built(cfg, build(cfg))
    straight.start()
    ref: list[float] = []
    straight.advance(cfg.schedule.steps, on_step=lambda s, v: ref.append(v))
    first = Trainer.from_built(cfg, build(cfg))
    first.start()
    got: list[float] = []
    first.advance(split, on_step=lambda s, v: got.append(v))
    side = first.save(tmp_path, cfg)
    resumed = Trainer.from_built(cfg, build(cfg))
    resumed.load(side, cfg)
    assert resumed.step == split
    resumed.advance(cfg.schedule.steps, on_step=lambda s, v: got.append(v))
    return straight, ref, resumed, got
