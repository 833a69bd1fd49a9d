"""Each `sizeup demo` study, on a reduced grid that still checks its direction (slow: real
training, about 1-2 minutes each on 2 cores).

Every reduced grid is a subset of its `--quick` study (same base config, same trial ids), so
its direction was checked on the three seed sets of docs/transfer.md from those studies' own
trials before it was written here (docs/transfer.md, "CI"). One torch thread per run makes each
study bit-reproducible on one machine, but not across machines: a study's numbers move with the
CPU's kernels (on a machine with AVX-512 and AMX, CompleteP's regret interval reached
[0, 0.0128] where this machine measures [0, 0.0001]: issue 23). So a bound is set by what the
claim needs, relative to a yardstick measured in the same run (the same kernels) where the
claim allows, and each test states how far its figures spread over the three seed sets.
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
    drifts was [0.81, 2.03] (seeds 0-2), [1.05, 2.28] (3-5), [0.69, 2.28] (6-8): the yardstick
    is muP's drift in the same run, and the lower end clears 0.3 by 0.39 octaves or more. On
    the quick studies' optima SP's fell 1.45, 1.68, 1.58 octaves from width 32 to 128 (SP's
    Adam optimum ~ 1/width predicts 2; 1.44 on this grid, seeds 0-2) and muP's moved 0.04,
    0.04, 0.13 (0.05): the 1-octave line between them is half the predicted fall (the claim's
    own scale, not a measured one), 0.45 octaves from the nearest figure."""
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
    grid lr batch 4's optimum snaps to, and on seeds 6-8 it flips: docs/transfer.md.)
    Bounds: the rise must exceed 0.7, about half the square-root rule's 1.5 octaves (the
    claim's scale, 0.49 below the smallest figure); the shift with the rule is bounded by the
    rise measured in the same run."""
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
    +0.48 octaves (on this grid, seeds 0-2: -0.95 without the rule, +0.57 with it).
    Both bounds are relative to the same run: without the rule the two intervals lie apart;
    with it the optimum falls less than a quarter of what it falls without (it rose in all
    three seed sets: the bound, about -0.25, lies 0.46 or more below every figure)."""
    s = _reduced("steps", [100, 800], list(range(-10, -5)), ["off", "on"], [0, 1, 2])
    out = _run(tmp_path, s)
    short, long = (Estimate.from_dict(out["off"]["optimal_log2_lr"][k]) for k in ("100", "800"))
    assert long.hi < short.lo, (short, long)
    fall = _opt(out, "off", 800) - _opt(out, "off", 100)  # < 0: the optimum falls
    shift = _opt(out, "on", 800) - _opt(out, "on", 100)
    assert shift > fall / 4, (shift, fall, out["on"]["optimal_log2_lr"])


def test_completep_keeps_the_shallow_lr(tmp_path):
    """Depths 2 and 8, lr 2^-10..2^-6, seeds 0-2 (60 runs): with CompleteP's residual scaling
    (alpha 1) depth 2's lr is (near) the best lr at depth 8 too, and the deeper model is better
    there.

    "Near" is measured against what the claim is about, in the same run: what going 4x deeper
    gains at the transferred lr (CompleteP's loss at depth 2 minus at depth 8). Reusing depth
    2's lr must cost less than a third of that gain, at the upper end of the regret's
    interval. The old absolute bound (0.01) sat inside the movement of CPU kernels: on a
    machine with AVX-512 and AMX the interval reached [0, 0.0128] (issue 23), 0.18 of a gain of
    ~0.07. On this grid (this machine) the figures were, seeds 0-2 / 3-5 / 6-8: CompleteP's
    regret 0 [0, 0.0001] / 0 [0, 0] / 0 [0, 0.0008], its gain 0.070 / 0.067 / 0.048, so the
    upper end was at most 0.02 of the gain (a third of the smallest gain, 0.016, is still above
    the AMX machine's 0.0128).

    The unscaled variant's regret is no yardstick here: without depth scaling the optimum
    barely moves either (0.16-0.32 octaves, docs/transfer.md), so its regret is small and
    noisy (0.035 [0, 0.18] / 0.008 [0, 0.045] / 0.014 [0, 0.080] on this grid; on seeds 3-5
    below the 0.0128 CompleteP's regret reached on the AMX machine). What depth scaling buys is
    "deeper is better at the shallow lr": without it depth 8 is worse than depth 2 there
    (2.335 vs 2.315 / 2.321 vs 2.285 / 2.320 vs 2.297)."""
    s = _reduced("depth", [2, 8], list(range(-10, -5)), ["off", "completep"], [0, 1, 2])
    out = _run(tmp_path, s)
    cp = out["completep"]
    gain = cp["loss_at_transferred_lr"]["2"] - cp["loss_at_transferred_lr"]["8"]
    regret = _e(out, "completep", "regret_at_largest")
    assert regret.hi < gain / 3, (regret, gain)
    assert cp["largest_is_best"] is True


def test_qk_norm_stops_attention_logit_growth(tmp_path):
    """Widths 32 and 128 at lr 2^-8 and 2^-5, seeds 0-1 (16 runs): at the higher lr the
    largest attention logit of the width-128 model grows to hundreds without QK-norm and stays
    near 16 with it (Wortsman et al. 2023, attention-logit growth). On the quick studies (three
    seeds each) it was 670 vs 16 (seeds 0-2), 604 vs 16 (3-5), 518 vs 15 (6-8): 42x, 38x, 35x.

    Both bounds are relative to the same run. Without QK-norm the logit is over 10x the
    QK-norm model's (on this grid: 440 vs 17.9 on seeds 0-1, 526 vs 16.3 on seeds 3-4). With
    QK-norm it stays near where it is at lr 2^-8: under 4x that with 8x the lr (8.6 -> 17.9,
    2.1x, on seeds 0-1; 9.2 -> 16.3, 1.8x, on seeds 3-4), where without it grows 34x and 40x
    (12.9 -> 440, 13.3 -> 526). An absolute bound (it was 40) would tie the claim to this
    machine's kernels; the logit's scale at the low lr comes from the same ones."""
    from sizeup.report.stability import final_monitors
    from sizeup.sweep import Store

    s = _reduced("stability", [32, 128], [-8, -5], ["neither", "qk_norm"], [0, 1])
    _run(tmp_path, s)
    with Store(next(tmp_path.glob("*.db")), readonly=True) as st:
        m = final_monitors(st.trials(), "width", 128)
    low, lr = 2.0**-8, 2.0**-5
    neither, qk = m[(False, 0.0, lr)]["attn_max"], m[(True, 0.0, lr)]["attn_max"]
    qk_low = m[(True, 0.0, low)]["attn_max"]
    assert neither > 10 * qk, (neither, qk)
    assert qk < 4 * qk_low, (qk, qk_low)
