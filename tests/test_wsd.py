"""WSD cooldown branches reproduce the full WSD run they stand for, and feed approach 2."""

from __future__ import annotations

import math

import pytest

from sizeup.config import RunConfig
from sizeup.errors import ConfigError
from sizeup.train import run
from sizeup.train.wsd import wsd_branches

CFG = RunConfig(
    width=64,
    base_width=32,
    head_dim=16,
    seq_len=32,
    batch_size=8,
    lr=3e-3,
    warmup=4,
    eval_batches=2,
)


def test_branch_equals_the_full_wsd_run():
    """A branch from the stable trunk at (1-f)T, cooled for fT steps, is the WSD run of length T."""
    pts = wsd_branches(CFG, [16, 32], decay_frac=0.25, cooldown="1-sqrt")
    assert [p.steps for p in pts] == [16, 32] and [p.branch_step for p in pts] == [12, 24]
    for p in pts:
        full = run(CFG.replace(schedule="wsd", steps=p.steps, decay_frac=0.25, cooldown="1-sqrt"))
        assert p.tokens == full.tokens
        assert abs(p.loss - full.final_val_loss) <= 1e-6, (p.loss, full.final_val_loss)
    assert pts[1].loss < pts[0].loss


def test_bad_branch_input():
    with pytest.raises(ConfigError, match="total_steps"):
        wsd_branches(CFG, [])
    with pytest.raises(ConfigError, match="decay_frac"):
        wsd_branches(CFG, [10], decay_frac=0.0)


def test_diverged_branch_is_nan_not_an_error():
    pts = wsd_branches(CFG.replace(rule="sp", lr=1e30), [8])
    assert math.isnan(pts[0].loss)
