"""`sizeup demo --axis critical-batch`: the McCandlish fit recovers known S_min and B_noise with
intervals that cover, steps-to-target by hand, the study end to end with a stand-in trainer and
(slow) with the real one, and the command line's refusals."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from test_report import html_problems

from sizeup.cli import main
from sizeup.config import RunConfig, RunResult
from sizeup.critbatch import (
    CritBatchSettings,
    analyse,
    run_critical_batch,
    settings_for,
    smooth,
    steps_to_target,
)
from sizeup.errors import ConfigError
from sizeup.laws.critical_batch import fit_tradeoff
from sizeup.sweep.estimate import Estimate

# --------------------------------------------------------------------------- the fit
B = np.array([4.0, 8.0, 16.0, 32.0, 64.0])


def test_the_fit_recovers_s_min_and_b_noise_from_exact_data():
    # S = S_min (1 + B_noise / B) with S_min = 100, B_noise = 16 (McCandlish et al. 2018,
    # eq. 2.11): by hand S = 500, 300, 200, 150, 125 at B = 4 ... 64
    S = np.array([500.0, 300.0, 200.0, 150.0, 125.0])
    assert np.allclose(S, 100 * (1 + 16 / B))
    for relative in (False, True):
        f = fit_tradeoff(B, S, 2.5, relative=relative, level=0.9)
        assert f.S_min == pytest.approx(100, rel=1e-9)
        assert f.B_crit == pytest.approx(16, rel=1e-9)
        assert f.E_min == pytest.approx(1600, rel=1e-9)
        assert f.bound == "=" and f.lo == pytest.approx(16, rel=1e-3)
    # the default (linear least squares, no interval) is the fit it always was
    f = fit_tradeoff(B, S)
    assert (f.S_min, f.E_min) == pytest.approx((100, 1600)) and math.isnan(f.lo)


def test_the_profile_interval_covers_the_truth_with_noise():
    # multiplicative scatter of a few percent (two seeds: x and 1/x), the truth S_min 100,
    # B_noise 16
    noise = np.array([1.05, 0.96, 1.03, 0.97, 1.02])
    S = 100 * (1 + 16 / B)
    for b, s in ((B, S * noise), (np.r_[B, B], np.r_[S * noise, S / noise])):
        f = fit_tradeoff(b, s, relative=True, level=0.9)
        assert f.lo < 16 < f.hi and f.bound == "="
        assert f.B_crit == pytest.approx(16, rel=0.1)
    # wider scatter, wider interval
    f1 = fit_tradeoff(B, S * noise, relative=True, level=0.9)
    f2 = fit_tradeoff(B, S * noise**3, relative=True, level=0.9)
    assert f2.hi - f2.lo > f1.hi - f1.lo


def test_steps_that_fall_as_1_over_b_give_only_a_lower_bound():
    # S = 1000 / B: perfect scaling at every batch measured, no S_min seen
    f = fit_tradeoff(
        B, 1000 / B * np.array([1.05, 0.96, 1.03, 0.97, 1.02]), level=0.9, relative=True
    )
    assert f.bound == ">=" and math.isinf(f.hi) and f.lo > B.max()


# --------------------------------------------------------------------------- steps to target
def test_smoothing_and_steps_to_target_by_hand():
    loss = [5.0, 4.0, 3.0, 2.0, 3.0, 1.0, 1.0]
    # centred mean over 3: (5+4)/2, (5+4+3)/3, (4+3+2)/3, (3+2+3)/3, (2+3+1)/3, (3+1+1)/3, 1
    assert smooth(loss, 3) == pytest.approx([4.5, 4.0, 3.0, 8 / 3, 2.0, 5 / 3, 1.0])
    steps = list(range(7))
    # smoothed first <= 2.5 at index 4 (2.0): 5 steps taken; raw first <= 2.5 at index 3
    assert steps_to_target(steps, loss, 2.5, 3) == 5.0
    assert steps_to_target(steps, loss, 2.5, 1) == 4.0
    assert math.isnan(steps_to_target(steps, loss, 0.5, 3))
    # a divergence: nothing after it counts, not even through the window
    assert math.isnan(steps_to_target(steps, [5.0, 4.0, math.nan, 1.0, 1.0, 1.0, 1.0], 2.0, 1))


# --------------------------------------------------------------------------- the study
S_MIN, B_NOISE, OPT_LOG2 = 40.0, 12.0, -7.0


def stand_in(config: RunConfig) -> RunResult:
    """A run whose loss decays as exp(-3 s / S) with S = S_MIN (1 + B_NOISE / B), slower by
    2^((log2 lr - OPT_LOG2 - shift)^2) off the lr optimum (which moves half an octave per
    doubling of B from 16; muon's sits 2 octaves higher)."""
    b, lr = config.data.batch_size, config.optimizer.lr
    opt = OPT_LOG2 + 0.5 * math.log2(b / 16) + (2.0 if config.optimizer.name == "muon" else 0)
    bn = B_NOISE * (2 if config.optimizer.name == "muon" else 1)
    scale = S_MIN * (1 + bn / b) * 2.0 ** ((math.log2(lr) - opt) ** 2)
    n = config.schedule.steps
    init, floor = 5.5, 2.0
    curve = [floor + (init - floor) * math.exp(-3 * (s + 1) / scale) for s in range(n)]
    return RunResult(
        config=config.to_dict(),
        steps=list(range(n)),
        train_loss=curve,
        val_steps=[0, n],
        val_loss=[init, curve[-1]],
        initial_val_loss=init,
        final_train_loss=curve[-1],
        final_val_loss=curve[-1],
        tokens=config.tokens_for(n),
    )


def small(optimizers=("adamw", "muon")) -> CritBatchSettings:
    return CritBatchSettings(
        optimizers=list(optimizers),
        batch_sizes=[4, 8, 16, 32],
        lr_offsets=[-1.0, 0.0, 1.0],
        seeds=[0],
        sequences=1600,
        min_steps=100,
        window=1,
        target_margin=0.1,
    )


def test_the_study_recovers_b_noise_and_writes_its_page(tmp_path, monkeypatch):
    import sizeup.registry as registry

    # muon's grid sits on its typical lr: 2 octaves above AdamW's centre here
    monkeypatch.setitem(
        registry._OPTIMIZERS,
        "muon",
        registry.OptimizerEntry(**{**registry.get_optimizer("muon").__dict__, "typical_lr": 2**-6}),
    )
    s = small()
    assert s.lr_exps("adamw", 16) == [-9.0, -8.0, -7.0]
    assert s.lr_exps("muon", 64) == [-6.0, -5.0, -4.0]  # -8 + 2 (shift) + 1 (sqrt rule)
    summary = run_critical_batch(tmp_path, settings=s, runner=stand_in, workers=1, progress=False)
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    for opt, bn in (("adamw", B_NOISE), ("muon", 2 * B_NOISE)):
        e = Estimate.from_dict(on_disk["b_crit"][opt])
        # steps are whole numbers: B_noise comes back to a few percent
        assert e.bound == "=" and e.value == pytest.approx(bn, rel=0.06)
        assert e.lo <= bn <= e.hi
    best = {(c["optimizer"], c["batch_size"]): c["best_log2_lr"] for c in on_disk["cells"]}
    assert best[("adamw", 4)] == pytest.approx(-8.0) and best[("muon", 32)] == pytest.approx(-4.5)
    assert on_disk["sentence"].startswith("B_crit (sequences of 64 tokens, 90% interval): adamw ")
    assert "target loss" in on_disk["sentence"]
    # every optimum sits on the top edge of its 3-lr grid (adamw at B = 4: 2^-8 in -10..-8), so
    # each of the 8 cells got one lr beyond it, and then its best lr is inside what it tried
    assert on_disk["trials"]["done"] == 24 + 8
    assert not any(c["lr_at_grid_edge"] for c in on_disk["cells"])
    html = (tmp_path / "report.html").read_text()
    assert html_problems(html) == []
    assert html.count("data:image/png;base64,") == 2 and on_disk["sentence"][:40] in html
    # a second call resumes: nothing runs again
    again = run_critical_batch(tmp_path, settings=s, runner=stand_in, workers=1, progress=False)
    assert again["trials_run_now"] == 0 and again["b_crit"] == summary["b_crit"]


def test_the_target_is_what_every_cell_reaches():
    s = small(("adamw",))
    cfgs = [RunConfig.from_dict(s.base).replace(**p) for p in _points(s)]
    trials = [_Trial(c, stand_in(c)) for c in cfgs]
    a = analyse(s, trials)
    assert all(c.ok for c in a.cells)
    # at its best lr a cell ends at 2 + 3.5 exp(-3 n / scale) after its n = 100 + 1600 / B
    # steps, scale = 40 (1 + 12 / B): 3 n / scale = 9.375, 9, 8.571, 8.182 at B = 4, 8, 16, 32;
    # the highest end loss (B = 32: 2 + 3.5 e^-8.182 = 2.000979) is what every cell reaches,
    # and the target lies 10% of the way from it back to 5.5
    floor = 2.0 + 3.5 * math.exp(-3 * 150 / (S_MIN * (1 + B_NOISE / 32)))
    assert floor == pytest.approx(2.000979, abs=1e-6)
    assert a.target == pytest.approx(floor + 0.1 * (5.5 - floor), rel=1e-9)


class _Trial:
    def __init__(self, config, result):
        self.config, self.result = config, result


def _points(s):
    spec = s.spec()
    z = spec["zip"][0]
    return [{k: z[k][i] for k in z} for i in range(len(z["lr"]))]


def test_quick_study_shape_and_bad_settings():
    q = settings_for(quick=True, optimizers=["adamw", "muon"])
    assert q.optimizers == ["adamw", "muon"] and len(q.seeds) >= 1
    with pytest.raises(ConfigError, match="optimizer"):
        CritBatchSettings(optimizers=["adamw", "nope"])
    with pytest.raises(ConfigError, match="batch_sizes"):
        CritBatchSettings(batch_sizes=[4, 8])


def test_cli_refuses_a_bad_optimizer_in_one_line(tmp_path, capsys):
    for args, field in (
        (["--axis", "critical-batch", "--optimizers", "adamw,nope"], "optimizers="),
        (["--axis", "critical-batch", "--optimizers", "adamw,adamw"], "optimizers="),
        (["--axis", "width", "--optimizers", "adamw,muon"], "optimizers="),
        (["--axis", "critical-batch", "--optimizer", "muon"], "optimizer="),
    ):
        with pytest.raises(SystemExit) as e:
            main(["demo", "--out", str(tmp_path / "d"), *args])
        assert e.value.code == 2
        err = capsys.readouterr().err.strip()
        assert field in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "d").exists()


@pytest.mark.slow
def test_cli_quick_study_with_tiny_real_runs(tmp_path, monkeypatch, capsys):
    # the real trainer through the command line on a tiny study (2 optimizers, 3 batch sizes,
    # 12-24 steps): the files and the sentence, not the science
    import sizeup.critbatch as critbatch

    tiny = CritBatchSettings(
        optimizers=["adamw", "sgd"],
        batch_sizes=[2, 4, 8],
        lr_offsets=[-1.0, 0.0, 1.0],
        seeds=[0],
        base={**critbatch.QUICK.base, "seq_len": 32, "eval_batches": 1},
        sequences=32,
        min_steps=8,
        window=4,
        extend=0,
    )
    monkeypatch.setattr(critbatch, "QUICK", tiny)
    args = ["demo", "--axis", "critical-batch", "--quick", "--optimizers", "adamw,sgd"]
    main([*args, "--out", str(tmp_path), "--workers", "2"])
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert out.startswith("B_crit (sequences of 32 tokens, 90% interval): adamw ")
    assert out.splitlines()[0] == summary["sentence"]
    assert summary["trials"]["done"] + summary["trials"]["diverged"] == 18
    assert summary["command"] == (
        "sizeup demo --axis critical-batch --quick --optimizers adamw,sgd --seeds 0"
    )
    assert {c["optimizer"] for c in summary["cells"]} == {"adamw", "sgd"}
    assert (tmp_path / "demo-critical-batch-quick.db").exists()
    assert html_problems((tmp_path / "report.html").read_text()) == []
