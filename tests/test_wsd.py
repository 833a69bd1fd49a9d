"""WSD cooldown branches reproduce the full WSD run they stand for (bit for bit, clipping and
divergence included), and feed approach 2."""

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


def _full(cfg: RunConfig, steps: int, f: float, cooldown: str):
    return run(cfg.replace(schedule="wsd", steps=steps, decay_frac=f, cooldown=cooldown))


def test_branch_equals_the_full_wsd_run():
    """A branch from the stable trunk at (1-f)T, cooled for fT steps, is the WSD run of length T
    that `sizeup train` runs, bit for bit, with gradient clipping and warmup on."""
    cfg = CFG.replace(grad_clip=0.05)
    pts = wsd_branches(cfg, [6, 16, 32], decay_frac=0.25, cooldown="1-sqrt")
    assert [p.steps for p in pts] == [6, 16, 32] and [p.branch_step for p in pts] == [4, 12, 24]
    for p in pts:
        full = _full(cfg, p.steps, 0.25, "1-sqrt")
        assert p.tokens == full.tokens and p.params == full.params
        assert p.loss == full.final_val_loss, (p.steps, p.loss, full.final_val_loss)
    assert pts[2].loss < pts[1].loss < pts[0].loss


def test_cooldown_inside_warmup_equals_the_full_run():
    # T = 6 with warmup 5 and f = 0.5: the cooldown starts at step 3, still in the warmup; the
    # branch multiplies warmup and cooldown as the full run's schedule does.
    cfg = CFG.replace(warmup=5, grad_clip=0.05)
    (p,) = wsd_branches(cfg, [6], decay_frac=0.5, cooldown="linear")
    assert p.branch_step == 3
    assert p.loss == _full(cfg, 6, 0.5, "linear").final_val_loss


def test_diverged_branches_are_the_diverged_runs():
    # SGD at a large lr blows the loss past 3x its start within a few steps: the trunk (and so
    # every later branch) stops there as `sizeup train` does; an early branch cools down first.
    cfg = CFG.replace(optimizer="sgd", lr=3.0, warmup=0)
    totals = [4, 8, 40]
    pts = wsd_branches(cfg, totals, decay_frac=0.5, cooldown="linear")
    fulls = [_full(cfg, T, 0.5, "linear") for T in totals]
    assert [f.diverged for f in fulls] == [math.isnan(p.loss) for p in pts]
    assert fulls[-1].diverged
    for p, f in zip(pts, fulls):
        assert p.loss == f.final_val_loss or (math.isnan(p.loss) and math.isnan(f.final_val_loss))


def test_bad_branch_input():
    with pytest.raises(ConfigError, match="total_steps"):
        wsd_branches(CFG, [])
    with pytest.raises(ConfigError, match="decay_frac"):
        wsd_branches(CFG, [10], decay_frac=0.0)
    with pytest.raises(ConfigError, match="warmup=4"):
        wsd_branches(CFG, [3, 10])  # no WSD run of 3 steps has a 4-step warmup


def test_diverged_branch_is_nan_not_an_error():
    pts = wsd_branches(CFG.replace(rule="sp", lr=1e30), [8])
    assert math.isnan(pts[0].loss)
