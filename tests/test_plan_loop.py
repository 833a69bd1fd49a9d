"""Closing the loop (issue 22): the plan's loss with a prediction interval and its extrapolation
beyond the fitted ranges; the exponents a study measured, carried into a plan."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from sizeup.errors import ConfigError
from sizeup.laws import load_fit
from sizeup.laws.chinchilla import fit_approach3
from sizeup.plan import plan

# A law with round numbers: E = 2, A = B = 1000, alpha = beta = 1/2, so at N = 1e6 and D = 1e8
# L = 2 + 1000 / 1e3 + 1000 / 1e4 = 3.1 (by hand).
LAW = {"E": 2.0, "A": 1000.0, "B": 1000.0, "alpha": 0.5, "beta": 0.5}


def _fit_json(tmp_path, *, samples=None, noise=None, ranges=None):
    d = dict(LAW)
    if samples is not None:
        d["samples"] = samples
    if noise is not None:
        d["noise"] = noise
    if ranges is not None:
        d["fit_ranges"] = ranges
    (tmp_path / "fit.json").write_text(json.dumps(d))
    return tmp_path / "fit.json"


def test_prediction_interval_is_the_law_times_the_t_noise(tmp_path):
    # every bootstrap law is the point law, so the interval is 3.1 exp(sigma t_{0.05,0.95}(dof))
    # with t_{0.95}(10) = 1.8125 (Student t table, e.g. Abramowitz & Stegun table 26.10)
    rows = [[LAW[k] for k in ("E", "A", "B", "alpha", "beta")]] * 20000
    law = load_fit(_fit_json(tmp_path, samples=rows, noise={"sigma_log_loss": 0.01, "dof": 10}))
    lo, hi = law.prediction_interval(1e6, 1e8)
    assert hi == pytest.approx(3.1 * math.exp(0.01 * 1.8125), rel=5e-4)
    assert lo == pytest.approx(3.1 * math.exp(-0.01 * 1.8125), rel=5e-4)
    # the law's own interval is a point: no parameter uncertainty
    assert law.loss_interval(1e6, 1e8) == pytest.approx((3.1, 3.1, 3.1))


def test_prediction_interval_needs_the_noise(tmp_path):
    rows = [[LAW[k] for k in ("E", "A", "B", "alpha", "beta")]] * 10
    assert load_fit(_fit_json(tmp_path, samples=rows)).prediction_interval(1e6, 1e8) is None


def test_plan_carries_the_prediction_interval_and_its_extrapolation(tmp_path):
    rng = np.random.default_rng(0)
    base = np.array([LAW[k] for k in ("E", "A", "B", "alpha", "beta")])
    rows = (base * (1 + 0.01 * rng.standard_normal((400, 5)))).tolist()
    ranges = {"N": [1e5, 1e6], "D": [1e7, 1e8], "C": [6e12, 6e14]}
    path = _fit_json(
        tmp_path, samples=rows, noise={"sigma_log_loss": 0.02, "dof": 8}, ranges=ranges
    )
    p = plan(preset=str(path), params=1e7, tokens=1e9, batch_tokens=2**16, seq_len=512)
    lo, hi = p.loss_prediction_interval
    assert lo < p.loss_interval[0] <= p.loss <= p.loss_interval[1] < hi
    rows_by = {r["quantity"]: r for r in p.extrapolation}
    # tokens 1e9 against a fitted 1e7..1e8: 10x above (by hand)
    assert rows_by["tokens"]["side"] == "above"
    assert rows_by["tokens"]["factor"] == pytest.approx(10.0)
    assert rows_by["params"]["factor"] == pytest.approx(p.params / 1e6)
    assert rows_by["compute"]["factor"] == pytest.approx(p.flops / 6e14)
    assert rows_by["compute"]["source"] == "the fitted points (fit.json fit_ranges)"
    d = json.loads(p.to_json())
    assert d["loss_prediction_interval"] == [lo, hi]
    assert [r["quantity"] for r in d["extrapolation"]] == ["compute", "params", "tokens"]
    text = dict(p.summary_rows())
    assert "prediction interval" in text["predicted loss"]
    assert "tokens 1e+09 10x above the fitted 1e+07 to 1e+08" in text["extrapolation"]


def test_inside_the_fitted_range_says_so(tmp_path):
    ranges = {"N": [1e5, 1e8], "D": [1e7, 1e10], "C": [1e12, 1e20]}
    p = plan(preset=str(_fit_json(tmp_path, ranges=ranges)), params=1e7, tokens=5e8, seq_len=512)
    assert {r["side"] for r in p.extrapolation} == {"inside"}
    assert all(r["factor"] == 1.0 for r in p.extrapolation)
    assert p.loss_prediction_interval is None  # no bootstrap: no interval claimed


def test_preset_range_is_compute_only():
    p = plan(preset="chinchilla", compute=1e25)
    (row,) = p.extrapolation
    assert row["quantity"] == "compute" and row["side"] == "above"
    lo, hi = row["fitted"]
    assert row["factor"] == pytest.approx(1e25 / hi)


def test_fit_records_its_ranges():
    # ranges of the fitted points: min and max of N, D and 6ND, by hand from the grid below
    N = np.array([1e6, 2e6, 4e6, 1e6, 2e6, 4e6, 8e6])
    D = np.array([1e8, 1e8, 1e8, 4e8, 4e8, 4e8, 2e8])
    L = 2.0 + 1000 / np.sqrt(N) + 1000 / np.sqrt(D)
    fit = fit_approach3(N, D, L)
    r = fit.to_dict()["fit_ranges"]
    assert r["N"] == [1e6, 8e6] and r["D"] == [1e8, 4e8]
    assert r["C"] == pytest.approx([6 * 1e6 * 1e8, 6 * 8e6 * 2e8])


# --- measured exponents carried into plans (sizeup.sweep.exponents)
TRUE_ALPHA = -0.3  # the synthetic steps study's optima fall as D^-0.3


def _steps_runner(config):
    """synthetic_run with the optimum at 2^-8 (D / D_100)^-0.3 in the lr the run trains with
    (its horizon rule applied), plus seed noise of 0.002 nats per trial."""
    from sizeup.sweep.testing import _gauss, synthetic_run

    res = synthetic_run(config)
    o = config.optimizer
    lr = o.lr
    if o.base_tokens is not None:
        lr *= (config.tokens_for(config.schedule.steps) / o.base_tokens) ** o.data_exponent
    opt = -8.0 + TRUE_ALPHA * math.log2(config.schedule.steps / 100)
    d = math.log2(lr) - opt
    final = 2.0 + 0.1 * d * d + 0.002 * _gauss("trial", config.trial_id())
    res.final_val_loss = res.final_train_loss = final
    res.val_loss[-1] = res.train_loss[-1] = final
    res.diverged, res.error = False, None
    return res


@pytest.fixture(scope="module")
def steps_study(tmp_path_factory):
    from sizeup.sweep import run_sweep

    path = tmp_path_factory.mktemp("steps") / "steps.db"
    base_tokens = 100 * 8 * 64
    spec = {
        "base": {"head_dim": 16, "seq_len": 64, "batch_size": 8, "rule": "mup"},
        "axes": {"steps": [100, 200, 400, 800], "lr": {"log2": [-11, -5]}},
        "zip": [{"base_tokens": [None, base_tokens], "data_exponent": [0.0, -0.5]}],
        "seeds": [0, 1, 2],
    }
    run_sweep(spec, path, runner=_steps_runner, progress=False)
    return path


def test_steps_study_measures_the_horizon_exponent(steps_study):
    from sizeup.sweep.exponents import measure_exponent, save_exponent, study_exponent

    off = measure_exponent(steps_study, "steps")  # the group with the rule off
    assert off.name == "horizon" and off.group == "base_tokens=None, data_exponent=0"
    assert off.value == pytest.approx(TRUE_ALPHA, abs=0.03)
    assert off.estimate.lo < TRUE_ALPHA < off.estimate.hi
    assert off.values == (100, 200, 400, 800)
    # the rule-on group trained at lr (D/D0)^-0.5: its base-lr optima rise as D^+0.2, and the
    # rule's own -0.5 is added back
    on = measure_exponent(steps_study, "steps", {"data_exponent": -0.5})
    assert on.value == pytest.approx(TRUE_ALPHA, abs=0.03)
    saved = save_exponent(steps_study, "steps")
    assert study_exponent(steps_study, "steps") == saved  # read back from the store's meta
    assert saved.text(0.0).startswith("horizon exponent -0.3")


def _proxy_study(path):
    from sizeup.sweep import run_sweep
    from sizeup.sweep.testing import synthetic_run

    spec = {
        "base": {"steps": 100, "head_dim": 16, "seq_len": 64, "batch_size": 8, "rule": "mup"},
        "axes": {"width": [32, 64], "lr": {"log2": [-11, -5]}},
    }
    run_sweep(spec, path, runner=synthetic_run, progress=False)
    return path


def test_the_measured_horizon_exponent_moves_the_plan_lr(steps_study, tmp_path):
    from sizeup.plan import read_study

    proxy = _proxy_study(tmp_path / "proxy.db")
    target = dict(width=256, depth=2, head_dim=16, seq_len=64, vocab_size=256)
    target.update(tokens=1e8, batch_tokens=8 * 64)
    fixed = plan(study=read_study(proxy), data_exponent=-0.5, **target)
    measured = plan(study=read_study(proxy, horizon_study=steps_study), **target)
    m = measured.measured_rules[0]
    alpha = m["estimate"]["value"]
    d = 1e8 / (100 * 8 * 64)  # the target's tokens over the proxy's, by hand
    assert measured.data_ratio == pytest.approx(d)
    # -0.3 falls less than -0.5: the longer target keeps a higher lr, by d^(alpha + 0.5)
    assert measured.peak_lr > fixed.peak_lr
    assert measured.peak_lr / fixed.peak_lr == pytest.approx(d ** (alpha + 0.5), rel=1e-9)
    assert measured.run.optimizer.lr == measured.peak_lr
    # measured over 100..800 steps (8x), applied over d: d / 8 past the measured span
    assert (m["measured_over"], m["applied_over"]) == (8.0, pytest.approx(d))
    assert m["factor"] == pytest.approx(d / 8)
    rows = dict(measured.summary_rows())
    assert (
        "horizon exponent -0.3" in rows["measured rules"]
        and "instead of 0" in rows["measured rules"]
    )
    with pytest.raises(ConfigError, match="data_exponent"):
        plan(study=read_study(proxy, horizon_study=steps_study), data_exponent=-0.5, **target)


def test_a_measured_batch_exponent_replaces_the_square_root(tmp_path):
    from sizeup.plan import read_study
    from sizeup.plan.options import Study
    from sizeup.sweep.estimate import Estimate
    from sizeup.sweep.exponents import MeasuredExponent

    base = read_study(_proxy_study(tmp_path / "proxy.db"))
    m = MeasuredExponent("batch", "batch_size", Estimate(0.3, "=", 0.2, 0.4), (4, 32), "g", "b.db")
    study = Study(base.proxy, base.parametrization, base.optimizer, (), (m,))
    target = dict(width=256, depth=2, head_dim=16, seq_len=64, vocab_size=256, tokens=1e8)
    sqrt = plan(study=base, batch_tokens=16 * 8 * 64, **target)
    measured = plan(study=study, batch_tokens=16 * 8 * 64, **target)
    # batch ratio 16: b^0.3 instead of b^0.5, a factor 16^-0.2 (by hand)
    assert measured.peak_lr / sqrt.peak_lr == pytest.approx(16**-0.2, rel=1e-9)
    assert measured.measured_rules[0]["replaces"] == 0.5


def test_plan_cli_prints_the_measured_exponent(steps_study, tmp_path, capsys):
    from sizeup.cli import main

    proxy = _proxy_study(tmp_path / "proxy.db")
    shape = ["--width", "256", "--depth", "2", "--head-dim", "16", "--seq-len", "64"]
    shape += ["--vocab-size", "256", "--tokens", "1e8", "--batch-tokens", "512"]
    main(["plan", "--from-study", str(proxy), "--horizon-study", str(steps_study), *shape])
    out = capsys.readouterr().out
    assert "measured rules" in out and "horizon exponent -0.3" in out and "extrapolation" in out
    main(
        [
            "plan",
            "--from-study",
            str(proxy),
            "--horizon-study",
            str(steps_study),
            *shape,
            "--format",
            "json",
        ]
    )
    d = json.loads(capsys.readouterr().out)
    assert d["measured_rules"][0]["replaces"] == 0.0
    assert d["run_config"]["optimizer"]["lr"] == d["peak_lr"]
    with pytest.raises(SystemExit):
        main(["plan", "--horizon-study", str(steps_study), *shape])
    assert "horizon_study" in capsys.readouterr().err


def test_demo_axis_plan_runs_the_loop(monkeypatch, tmp_path, capsys):
    import sizeup.loop as loop
    from sizeup.cli import main

    seen = {}

    def fake(out, mode, *, settings=None, workers=2, **_):
        seen.update(out=out, mode=mode, settings=settings, workers=workers)
        return {"verdict": "The plan's lr was within 0.10 octaves of the best measured."}

    monkeypatch.setattr(loop, "run_loop", fake)
    main(["demo", "--axis", "plan", "--quick", "--out", str(tmp_path / "d"), "--workers", "1"])
    assert seen["mode"] == "quick" and seen["settings"] is None and seen["workers"] == 1
    assert "within 0.10 octaves" in capsys.readouterr().out
    main(["demo", "--axis", "plan", "--quick", "--out", str(tmp_path / "d"), "--seeds", "3,4"])
    assert seen["settings"].seeds == [3, 4] and seen["settings"].target_seeds == [3, 4]


TRUE_BATCH = 0.3  # the synthetic batch study's optima rise as B^0.3


def _batch_runner(config):
    """synthetic_run with the optimum at 2^-8 (B / 4)^0.3 in the lr the run trains with (the
    square-root rule applied where the trial has a base_batch_size), no noise."""
    from sizeup.sweep.testing import synthetic_run

    res = synthetic_run(config)
    lr, B = config.optimizer.lr, config.data.batch_size
    if config.optimizer.base_batch_size is not None:
        lr *= math.sqrt(B / config.optimizer.base_batch_size)
    d = math.log2(lr) - (-8.0 + TRUE_BATCH * math.log2(B / 4))
    final = 2.0 + 0.1 * d * d
    res.final_val_loss = res.final_train_loss = res.val_loss[-1] = res.train_loss[-1] = final
    res.diverged, res.error = False, None
    return res


def test_batch_study_measures_the_batch_exponent(tmp_path):
    from sizeup.sweep import run_sweep
    from sizeup.sweep.exponents import measure_exponent

    spec = {
        "base": {"head_dim": 16, "seq_len": 64, "rule": "mup"},
        "axes": {"lr": {"log2": [-11, -5]}, "base_batch_size": [None, 4]},
        "zip": [{"batch_size": [4, 8, 16, 32], "steps": [80, 40, 20, 10]}],  # fixed tokens
    }
    db = tmp_path / "batch.db"
    run_sweep(spec, db, runner=_batch_runner, progress=False)
    off = measure_exponent(db, "batch_size")  # the group without the rule
    assert off.name == "batch" and off.value == pytest.approx(TRUE_BATCH, abs=1e-6)
    # the rule-on group's base lr rises as B^(0.3 - 0.5): the rule's 1/2 is added back
    on = measure_exponent(db, "batch_size", {"base_batch_size": 4})
    assert on.value == pytest.approx(TRUE_BATCH, abs=1e-6)
    assert not off.estimate.has_interval  # one seed: no interval claimed


def test_failed_bootstrap_rows_leave_the_intervals_alone(tmp_path):
    # a resample that did not converge (NaN) or degenerated (alpha <= 0) is not a law: both
    # intervals are those of the valid rows alone (here identical, so 3.1 by hand)
    good = [LAW[k] for k in ("E", "A", "B", "alpha", "beta")]
    rows = [good] * 50 + [[float("nan")] * 5, [2.0, 1000.0, 1000.0, -0.1, 0.5]]
    noise = {"sigma_log_loss": 1e-9, "dof": 5}
    law = load_fit(_fit_json(tmp_path, samples=rows, noise=noise))
    assert law.loss_interval(1e6, 1e8) == pytest.approx((3.1, 3.1, 3.1))
    assert law.prediction_interval(1e6, 1e8) == pytest.approx((3.1, 3.1))
