"""Issue 23, items 10 and 11: advice far outside what the study or the law supports is refused
(exit 2, one line, the number it would have given) or flagged (a warning printed and kept in
plan.json), never silent.

The studies are built trial by trial in a real store (sizeup.sweep.Store): the synthetic
trainer's curves (sizeup.sweep.testing: muP's optimum at 2^-8 at every width), with chosen
trials left queued or given chosen losses.
"""

from __future__ import annotations

import json
import math
import re

import pytest
from test_inputs import assert_named, cli

from sizeup.config import RunConfig
from sizeup.errors import ConfigError
from sizeup.plan import plan, read_study
from sizeup.sweep import Store
from sizeup.sweep.testing import synthetic_run

BASE = dict(steps=5, head_dim=16, seq_len=32, batch_size=8, depth=2, base_width=32)
TARGET = dict(tokens=1e8, width=256, depth=2, head_dim=16, seq_len=32, vocab_size=256)
TARGET["batch_tokens"] = 256  # the proxy's: no batch transfer unless a test asks
TARGET_FLAGS = ["--tokens", "1e8", "--width", "256", "--depth", "2", "--head-dim", "16"]
TARGET_FLAGS += ["--seq-len", "32", "--vocab-size", "256", "--batch-tokens", "256"]


def _study(path, widths=(32, 64), lrs=range(-12, -4), *, queued=(), losses=None):
    """A muP study: every (width, log2 lr) trial run by the synthetic trainer, except those in
    ``queued`` (left unfinished) and those in ``losses`` (their final loss replaced; None:
    diverged)."""
    losses = losses or {}
    configs = {
        (w, e): RunConfig(**BASE, width=w, lr=2.0**e, rule="mup") for w in widths for e in lrs
    }
    with Store(path) as st:
        st.add(list(configs.values()))
        for key, cfg in configs.items():
            if key in queued:
                continue
            tid = cfg.trial_id()
            assert st.claim(tid)
            res = synthetic_run(cfg)
            if key in losses:
                loss = losses[key]
                res.diverged = loss is None
                res.final_val_loss = res.final_train_loss = math.nan if loss is None else loss
            st.record(tid, res)
    return path


def _plan_cli(db, *extra):
    return cli("plan", "--from-study", db, "--format", "json", *TARGET_FLAGS, *extra)


# --- a study with unfinished trials ---------------------------------------------------------
def test_unfinished_trials_are_said_and_the_plan_uses_the_finished_ones(tmp_path):
    # half the trials (every other lr at both widths) never ran: the optimum is still bracketed
    queued = {(w, e) for w in (32, 64) for e in range(-12, -4) if e % 2}
    db = _study(tmp_path / "s.db", queued=queued)
    r = _plan_cli(db, "--out", tmp_path / "plan")
    assert r.returncode == 0, r.stderr
    said = [w for w in json.loads(r.stdout)["warnings"] if "unfinished" in w]
    assert said and "8 of 16 trials of the study are unfinished (queued 8)" in said[0]
    assert "only the 8 finished" in said[0]
    kept = json.loads((tmp_path / "plan" / "plan.json").read_text())["warnings"]
    assert said[0] in kept  # recorded, not only printed


def test_too_few_finished_lrs_at_the_widest_width_are_refused(tmp_path):
    queued = {(64, e) for e in range(-12, -4) if e not in (-9, -8)}  # two lrs left at 64
    db = _study(tmp_path / "s.db", queued=queued)
    with pytest.raises(ConfigError, match="width 64 has 2 finished lrs.*at least 3"):
        read_study(db)


def test_a_width_without_finished_trials_is_named(tmp_path):
    # the "best lr nan is at the edge of the grid"
    queued = {(128, e) for e in range(-12, -4)}
    db = _study(tmp_path / "s.db", widths=(32, 64, 128), queued=queued)
    with pytest.raises(ConfigError) as e:
        read_study(db)
    assert "width 128 has no finished trial" in str(e.value) and "nan" not in str(e.value)
    assert_named(_plan_cli(db), "width 128 has no finished trial", "queued 8")


# --- an lr grid with a gap next to the optimum -----------------------------------------------
def test_an_optimum_next_to_a_gap_in_the_lr_grid_is_refused_with_its_lr(tmp_path):
    # the 29-octave gap: the lrs above the optimum 2^-8 jump to 2^21 (a collapsed run's
    # finite loss there), so the parabola's vertex lies somewhere in the gap
    lrs = [-11, -10, -9, -8, 21]
    db = _study(tmp_path / "s.db", lrs=lrs, losses={(32, 21): 2.2, (64, 21): 2.2})
    with pytest.raises(ConfigError) as e:
        read_study(db)
    text = str(e.value)
    assert "29 octaves" in text and "2^-8" in text and "2^21" in text
    assert re.search(r"would have planned from lr [0-9.e+-]+", text), text
    assert_named(_plan_cli(db), "29 octaves", "add lrs between")


def test_a_decade_grid_is_not_a_gap(tmp_path):
    # 1e-4, 1e-3, 1e-2 (3.3 octaves apart): coarse, common, and brackets the optimum
    db = tmp_path / "s.db"
    with Store(db) as st:
        for w in (32, 64):
            for lr in (1e-4, 1e-3, 3e-3, 1e-2, 3e-2):
                cfg = RunConfig(**BASE, width=w, lr=lr, rule="mup")
                st.add([cfg])
                st.claim(cfg.trial_id())
                st.record(cfg.trial_id(), synthetic_run(cfg))
    assert math.isfinite(read_study(db).optimizer["lr"])


# --- the batch transfer far outside the proxy's batch ----------------------------------------
def test_a_far_batch_transfer_flags_the_lr_it_gives(tmp_path):
    db = _study(tmp_path / "s.db")  # proxy batch 8 x 32 = 256 tokens
    p = plan(study=read_study(db), **{**TARGET, "batch_tokens": 2**20})
    assert p.batch_ratio == 4096
    lr_warn = [w for w in p.warnings if "peak lr" in w and "batch" in w]
    assert lr_warn, p.warnings
    assert "b = 4096" in lr_warn[0] and f"{p.peak_lr:.3g}" in lr_warn[0]
    assert "x64" in lr_warn[0]  # the square-root rule's factor on the lr
    # a moderate batch ratio transfers without a word about the lr
    q = plan(study=read_study(db), **{**TARGET, "batch_tokens": 2048})
    assert not [w for w in q.warnings if "peak lr" in w and "batch" in w]


# --- depth ------------------------------------------------------------------------------------
def test_a_depth_jump_without_depth_scaling_is_flagged(tmp_path):
    db = _study(tmp_path / "s.db")  # depth 2
    p = plan(study=read_study(db), **{**TARGET, "depth": 17})
    said = [w for w in p.warnings if "depth" in w]
    assert said and "17 layers" in said[0] and "depth 2" in said[0]
    assert "--base-depth 2" in said[0]
    # with depth scaling the lr is meant to transfer across depth: no warning
    q = plan(study=read_study(db), **{**TARGET, "depth": 17, "base_depth": 2})
    assert not [w for w in q.warnings if "depth scaling" in w]
    # the study's own depth: nothing to say
    assert not [w for w in plan(study=read_study(db), **TARGET).warnings if "layers" in w]


# --- a law far outside its fitted range (item 11) ----------------------------------------------
@pytest.mark.parametrize("preset", ["chinchilla", "epoch", "deepseek-v1"])
def test_presets_know_the_compute_they_were_fitted_on(preset):
    from sizeup.laws.presets import get_preset

    law = get_preset(preset)
    lo, hi = law.fit_range
    assert 1e15 < lo < hi < 1e23 and law.fit_range_source


def test_a_target_far_outside_the_law_s_range_is_flagged_with_the_factor(tmp_path):
    # a 1e24-FLOP run (a 7B-class model) from Chinchilla's fit on 6e18..3e21
    r = cli("plan", "--compute", "1e24", "--format", "json", "--out", tmp_path / "p")
    assert r.returncode == 0, r.stderr
    said = [w for w in json.loads(r.stdout)["warnings"] if "fitted range" in w]
    assert len(said) == 1, said
    assert "3.3e+02x above" in said[0] and "3e+21" in said[0], said[0]  # 1e24 / 3e21
    kept = json.loads((tmp_path / "p" / "plan.json").read_text())["warnings"]
    assert said[0] in kept
    # inside the range: no such line
    inside = plan(compute=1e20)
    assert not [w for w in inside.warnings if "fitted range" in w]
