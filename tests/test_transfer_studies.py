"""Each `sizeup demo` study, on a reduced grid that still checks its direction (slow: real
training, about 1-2 minutes each on 2 cores).

Every reduced grid is a subset of its `--quick` study (same base config, same trial ids), so
its direction was checked on the three seed sets of docs/transfer.md from those studies' own
trials before it was written here (docs/transfer.md, "CI"). One torch thread per run makes each
study bit-reproducible on one machine; the assertions keep a margin for another machine's
floating point.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from sizeup.demo import run_demo, settings_for
from sizeup.sweep.estimate import Estimate

pytestmark = pytest.mark.slow


def _reduced(axis: str, values: list, lr_exps: list, keys: list[str], seeds: list[int]):
    """The quick study of ``axis`` restricted to some values, lrs, variants and seeds."""
    s = settings_for(axis, quick=True)
    keep = [s.values.index(v) for v in values]
    return replace(
        s,
        values=list(values),
        lr_exps=list(lr_exps),
        variants=[v for v in s.variants if v.key in keys],
        seeds=list(seeds),
        moves_with={k: [vals[i] for i in keep] for k, vals in s.moves_with.items()},
    )


def _run(tmp_path, settings) -> dict:
    return run_demo(tmp_path, settings=settings, workers=2, progress=False)


def _e(summary: dict, key: str, name: str) -> Estimate:
    return Estimate.from_dict(summary[key][name])


def test_width_sp_drifts_more_than_mup(tmp_path):
    """Widths 32 and 128, lr 2^-11..2^-7, seeds 0-2 (60 runs): SP's optimum falls, muP's stays.
    On the quick studies' own trials (docs/transfer.md) the paired interval of how much more SP
    drifts was [0.81, 2.03] (seeds 0-2), [1.05, 2.28] (3-5), [0.69, 2.28] (6-8)."""
    s = _reduced("width", [32, 128], [-11, -10, -9, -8, -7], ["sp", "mup"], [0, 1, 2])
    out = _run(tmp_path, s)
    more = _e(out, "mup", "drift_less_than_off")
    assert more.lo > 0.3, more
    assert _e(out, "sp", "drift_octaves").value > 1.0 > _e(out, "mup", "drift_octaves").value


def _opt(summary: dict, key: str, value) -> float:
    """A variant's optimal log2 lr at one axis value (its point value)."""
    return Estimate.from_dict(summary[key]["optimal_log2_lr"][str(value)]).value


def test_batch_optimum_rises_without_the_rule(tmp_path):
    """Batches 4 and 32 at a fixed token budget, lr 2^-10..2^-6, seeds 0-2 (60 runs). Without
    the rule the optimal lr rises with the batch (the square-root rule predicts log2(sqrt 8) =
    1.5 octaves); with the rule it moves less. On the quick studies' trials (this grid) the
    rise without the rule was 1.38 (seeds 0-2), 1.39 (3-5), 1.19 (6-8) octaves and the shift
    with it -0.42, -0.83, -0.69. (The regret at batch 32 is not asserted: it hangs on which
    grid lr batch 4's optimum snaps to, and on seeds 6-8 it flips: docs/transfer.md.)"""
    s = _reduced("batch", [4, 32], list(range(-10, -5)), ["off", "on"], [0, 1, 2])
    out = _run(tmp_path, s)
    rise = _opt(out, "off", 32) - _opt(out, "off", 4)
    shift = _opt(out, "on", 32) - _opt(out, "on", 4)
    assert rise > 0.7, out["off"]["optimal_log2_lr"]
    assert abs(shift) < rise - 0.3, (shift, rise)


def test_steps_optimum_falls_without_the_horizon_rule(tmp_path):
    """Runs of 100 and 800 steps, lr 2^-10..2^-6, seeds 0-2 (60 runs): with the same lr the
    optimum falls about an octave as the run grows 8x, the two 90% intervals apart; with
    lr x (D/D0)^-1/2 it does not fall (it rises a little: the rule over-corrects). On the
    quick studies' trials, log2 lr* at 100 / 800 steps without the rule: -7.47 [-7.57, -7.36] /
    -8.48 [-9.04, -7.96] (seeds 0-2), -7.39 [-7.56, -7.21] / -8.40 [-9.06, -7.72] (3-5),
    -7.39 [-7.68, -7.10] / -8.48 [-9.00, -7.95] (6-8); with it the optimum moved +0.42, +0.21,
    +0.48 octaves."""
    s = _reduced("steps", [100, 800], list(range(-10, -5)), ["off", "on"], [0, 1, 2])
    out = _run(tmp_path, s)
    short, long = (Estimate.from_dict(out["off"]["optimal_log2_lr"][k]) for k in ("100", "800"))
    assert long.hi < short.lo, (short, long)
    assert _opt(out, "on", 800) - _opt(out, "on", 100) > -0.2, out["on"]["optimal_log2_lr"]


def test_completep_keeps_the_shallow_lr(tmp_path):
    """Depths 2 and 8, lr 2^-10..2^-6, seeds 0-2 (60 runs): with CompleteP's residual scaling
    (alpha 1) depth 2's lr is the best lr at depth 8 too (regret 0 [0, 0] on seeds 0-2 and
    3-5, 0 [0, 0.001] on 6-8) and the deeper model is better there."""
    s = _reduced("depth", [2, 8], list(range(-10, -5)), ["off", "completep"], [0, 1, 2])
    out = _run(tmp_path, s)
    regret = _e(out, "completep", "regret_at_largest")
    assert regret.hi < 0.01, regret
    assert out["completep"]["largest_is_best"] is True


def test_qk_norm_stops_attention_logit_growth(tmp_path):
    """Widths 32 and 128 at lr 2^-8 and 2^-5, seeds 0-1 (16 runs): at the higher lr the
    largest attention logit of the width-128 model grows to hundreds without QK-norm and stays
    near 16 with it (Wortsman et al. 2023, attention-logit growth). On the quick studies (three
    seeds each) it was 670 vs 16 (seeds 0-2), 604 vs 16 (3-5), 518 vs 15 (6-8)."""
    from sizeup.report.stability import final_monitors
    from sizeup.sweep import Store

    s = _reduced("stability", [32, 128], [-8, -5], ["neither", "qk_norm"], [0, 1])
    _run(tmp_path, s)
    with Store(next(tmp_path.glob("*.db")), readonly=True) as st:
        m = final_monitors(st.trials(), "width", 128)
    lr = 2.0**-5
    neither, qk = m[(False, 0.0, lr)]["attn_max"], m[(True, 0.0, lr)]["attn_max"]
    assert neither > 10 * qk, (neither, qk)
    assert qk < 40, qk
