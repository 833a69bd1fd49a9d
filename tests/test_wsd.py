"""WSD cooldown branches reproduce the full WSD run they stand for (bit for bit, clipping and
divergence included), and feed approach 2."""

from __future__ import annotations

import json
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


# --- `sizeup wsd`: the fit it writes, and what it says when no budget is bracketed -----------
def _synthetic_points(widths, steps, tokens_per_step=2048):
    """Branch points of a known law L = E + A/N^alpha + B/D^beta, N = 12 w^2 (two blocks)."""
    from sizeup.laws import ChinchillaLaw

    law = ChinchillaLaw(E=1.0, A=400.0, B=400.0, alpha=0.34, beta=0.36)
    return [
        dict(
            width=w,
            depth=2,
            params=24 * w * w,
            branch_step=int(0.8 * s),
            steps=s,
            tokens=s * tokens_per_step,
            flops=6.0 * 24 * w * w * s * tokens_per_step,
            loss=float(law.loss(24 * w * w, s * tokens_per_step)),
        )
        for w in widths
        for s in steps
    ]


def _wsd_cli(tmp_path, monkeypatch, widths, steps):
    import sizeup.cli.wsd as wsd_cli
    from sizeup.cli import main

    def fake_train(configs, totals, *args):
        return _synthetic_points([c.model.width for c in configs], totals)

    monkeypatch.setattr(wsd_cli, "_train", fake_train)
    main(["wsd", "--widths", widths, "--steps", steps, "--out", str(tmp_path)])


def test_wsd_cli_fits_approach2_when_budgets_are_bracketed(tmp_path, monkeypatch, capsys):
    steps = ",".join(str(2**k) for k in range(4, 13))
    _wsd_cli(tmp_path, monkeypatch, "32,64,96,128,192,256", steps)
    out = capsys.readouterr().out
    fit = json.loads((tmp_path / "fit.json").read_text())
    assert fit["approach"] == 2 and len(fit["optima"]) >= 2
    assert fit["a"] == pytest.approx(0.36 / 0.70, abs=0.05)  # beta / (alpha + beta)
    assert (tmp_path / "isoflops.png").stat().st_size > 1000
    assert f"wrote {tmp_path / 'points.csv'}, {tmp_path / 'fit.json'} and" in out
    assert "approach 2 on" in out


def test_wsd_cli_falls_back_to_approach3_and_says_what_would_bracket(tmp_path, monkeypatch, capsys):
    # wide models trained briefly: the narrowest width wins every shared budget
    _wsd_cli(tmp_path, monkeypatch, "256,384,512", "16,32,64,128,256")
    cap = capsys.readouterr()
    assert "no approach-2 fit" in cap.err
    assert "the narrowest width has the lowest loss at every shared budget" in cap.out
    assert "fell back to approach 3" in cap.out
    assert "to bracket it with approach 2 try --widths" in cap.out
    fit = json.loads((tmp_path / "fit.json").read_text())
    assert "fallback" in fit and fit["alpha"] == pytest.approx(0.34, rel=0.05)
    assert (tmp_path / "approach3.png").exists() and not (tmp_path / "isoflops.png").exists()


@pytest.mark.slow
def test_wsd_example_reduced_brackets_the_optimum(tmp_path, capsys):
    """The README's example, reduced (widths 8, 16, 32; branches up to 1280 steps; 3.6 minutes
    on 2 cores shared with other jobs): the tiny models' isoFLOP budgets bracket the optimum, so
    approach 2 writes fit.json and isoflops.png (measured: five budgets, N_opt ~ C^0.61)."""
    from sizeup.cli import main

    main(["wsd", "--widths", "8,16,32", "--steps", "80,160,320,640,1280", "--out", str(tmp_path)])
    fit = json.loads((tmp_path / "fit.json").read_text())
    assert fit["approach"] == 2 and len(fit["optima"]) >= 2 and 0.2 < fit["a"] < 0.8
    assert (tmp_path / "isoflops.png").stat().st_size > 1000
    assert "approach 2 on" in capsys.readouterr().out


def test_wsd_suggests_as_many_widths_as_approach2_needs(tmp_path, monkeypatch, capsys):
    # issue 23, item 13: an optimum below the base width merged the suggestion to --widths 8 (8,16),
    # which approach 2 cannot use (a profile needs PROFILE_SIZES sizes)
    import re

    import sizeup.cli.wsd as wsd_cli
    from sizeup.cli import main
    from sizeup.laws import ChinchillaLaw
    from sizeup.laws.chinchilla import PROFILE_SIZES

    # a law whose optimum is far narrower than the narrowest width allowed (the base width 8)
    law = ChinchillaLaw(E=1.0, A=40.0, B=4000.0, alpha=0.34, beta=0.36)

    def fake_train(configs, totals, *args):
        points = _synthetic_points([c.model.width for c in configs], totals)
        return [{**p, "loss": float(law.loss(p["params"], p["tokens"]))} for p in points]

    monkeypatch.setattr(wsd_cli, "_train", fake_train)
    main(["wsd", "--widths", "32,48,64", "--steps", "16,32,64,128", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    found = re.search(r"try --widths ([0-9,]+) --steps", out)
    assert found, out
    widths = [int(w) for w in found.group(1).split(",")]
    assert len(set(widths)) == len(widths) >= PROFILE_SIZES, out
    assert all(w % 8 == 0 and w >= 8 for w in widths)  # head size 8, base width 8


def test_bracketing_widths_never_name_fewer_sizes_than_a_profile_needs():
    from sizeup.cli.wsd import WSD_DEFAULTS, bracketing_widths
    from sizeup.config import RunConfig
    from sizeup.laws.chinchilla import PROFILE_SIZES

    cfg = RunConfig(**WSD_DEFAULTS)
    for w_opt in (0.1, 3.0, 8.0, 12.0, 40.0, 1e4):
        widths = bracketing_widths(w_opt, cfg)
        assert len(set(widths)) >= PROFILE_SIZES and widths == sorted(widths)
        assert min(widths) >= 8 and all(w % 8 == 0 for w in widths)
    assert bracketing_widths(64.0, cfg) == [32, 64, 128]  # centred where the floor allows
