"""Transfer analysis: the parabola vertex by hand, drift and regret on a synthetic study,
plots and the HTML report."""

from __future__ import annotations

import math

import pytest

from sizeup.errors import ConfigError
from sizeup.report import Report
from sizeup.sweep import Store, run_sweep
from sizeup.sweep.plots import plot_lr_curves, plot_optimal_lr
from sizeup.sweep.testing import synthetic_run
from sizeup.sweep.transfer import analyze_transfer, fit_optimum


def test_parabola_vertex_by_hand():
    # points (x=log2 lr, loss): (-1, 3), (0, 1), (1, 2). By hand: a = (3 + 2 - 2*1)/2 = 1.5,
    # b = (2 - 3)/2 = -0.5, vertex x = -b/(2a) = 1/6, loss = 1.5/36 - 0.5/6 + 1 = 23/24.
    lr, loss, edge = fit_optimum([0.5, 1.0, 2.0], [3.0, 1.0, 2.0])
    assert lr == pytest.approx(2 ** (1 / 6))
    assert loss == pytest.approx(23 / 24)
    assert not edge


def test_five_point_fit_recovers_an_exact_parabola():
    # y = (x - 0.3)^2 + 1 sampled at x = log2 lr = -2..2 (plus a far point outside the window):
    # least squares on exact data returns the true vertex x = 0.3, y = 1
    xs = [-4, -2, -1, 0, 1, 2]
    ys = [(x - 0.3) ** 2 + 1 + (5.0 if x == -4 else 0.0) for x in xs]
    lr, loss, _ = fit_optimum([2.0**x for x in xs], ys, window=2)
    assert math.log2(lr) == pytest.approx(0.3) and loss == pytest.approx(1.0)


def test_fit_skips_diverged_and_flags_edges():
    # the best point next to a diverged one is at the edge of the finite range
    lr, loss, edge = fit_optimum([1, 2, 4, 8], [3.0, 2.0, 1.0, math.nan])
    assert (lr, loss, edge) == (4.0, 1.0, True)
    # symmetric neighbours: the vertex is the grid point itself, unsorted input is fine
    lr, _, edge = fit_optimum([8, 2, 4], [2.0, 2.0, 1.0])
    assert lr == pytest.approx(4.0) and not edge
    assert math.isnan(fit_optimum([1, 2], [math.nan, math.nan])[0])


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    path = tmp_path_factory.mktemp("study") / "s.db"
    spec = {
        "base": {"steps": 5},
        "axes": {
            "rule": ["sp", "mup"],
            "width": [32, 64, 128, 256],
            "lr": {"log2": [-13, -5]},
            "seed": [0, 1],
        },
    }
    run_sweep(spec, path, runner=synthetic_run, progress=False)
    return path


def test_synthetic_study_drift_regret_and_largest(study):
    rep = analyze_transfer(study)  # groups found automatically: rule (seed is averaged)
    assert sorted(g.label for g in rep.groups) == ["rule=mup", "rule=sp"]
    mup, sp = rep.group(rule="mup"), rep.group(rule="sp")
    # synthetic_run puts muP's optimum at 2^-8 for every width and SP's one octave lower per
    # doubling: 32 -> 256 is 3 doublings, so 3 octaves of drift
    assert mup.drift_octaves == pytest.approx(0.0, abs=1e-6)
    assert sp.drift_octaves == pytest.approx(3.0, abs=1e-6)
    assert mup.transfer_grid_lr == 2.0**-8
    assert mup.largest_is_best and mup.max_regret == pytest.approx(0.0, abs=1e-6)
    # SP at 2^-8, width 256 is 3 octaves off: regret 0.1 * 3^2 = 0.9 (the synthetic parabola)
    assert sp.points[-1].regret == pytest.approx(0.9, abs=1e-3)
    assert not sp.largest_is_best
    assert mup.wider_is_better[2.0**-8] and not sp.wider_is_better[2.0**-8]
    d = rep.to_dict()
    assert d["groups"][0]["drift_octaves"] is not None


def test_diverged_trials_are_excluded(study):
    sp = analyze_transfer(study, group_by=["rule"]).group(rule="sp")
    widest = sp.points[-1]
    # synthetic divergence: more than 3 octaves above the optimum
    assert any(math.isnan(y) for y in widest.losses)
    assert math.isfinite(widest.opt_lr)


def test_bad_axis_names_the_field(study):
    with pytest.raises(ConfigError, match="axis"):
        analyze_transfer(study, axis="widht")
    with pytest.raises(ConfigError, match="study"):
        analyze_transfer(study.parent / "missing.db")


def test_plots_and_report(study, tmp_path):
    rep = analyze_transfer(study)
    fig = plot_lr_curves(rep)
    assert len(fig.axes) == 2
    page = Report("transfer").heading("curves").figure(fig, "loss vs lr")
    page.figure(plot_optimal_lr(rep), "optimal lr").table(rep.table())
    page.cards({"drift": 1.23}, good={"drift": True}).json(rep.to_dict())
    html = page.write(tmp_path / "r.html").read_text()
    assert html.count("data:image/png;base64,") == 2
    assert "<script" not in html and "http" not in html.split("<body>")[1]
    with Store(study) as st:
        assert len(st.to_dataframe()) == 144
