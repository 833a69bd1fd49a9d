"""The figures, read off their matplotlib objects: legends inside the figure, panels and shared
axes, labels that say what is drawn and in which unit, the coordinate check's tolerance band
and named offenders, grid-edge optima marked as bounds, fits that show what they dropped and
label their log axes 1e18-style."""

from __future__ import annotations

import re

import numpy as np
import pytest
from matplotlib.collections import PolyCollection

from sizeup.diagnostics.coord_check import CoordCheckResult, ModuleCurve
from sizeup.diagnostics.plots import MIN_SPAN, coord_check_figure
from sizeup.figures import pyplot, tick_text
from sizeup.laws import ChinchillaLaw
from sizeup.laws import chinchilla as ch
from sizeup.laws.plots import approach3_figure, envelope_figure, isoflops_figure
from sizeup.sweep import run_sweep
from sizeup.sweep.plots import (
    EDGE_GID,
    loss_label,
    plot_lr_curves,
    plot_transfer_curves,
    rule_off_first,
)
from sizeup.sweep.store import Store
from sizeup.sweep.testing import NoisySynthetic
from sizeup.sweep.transfer import analyze_transfer


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    pyplot().close("all")


def _inside(fig, artist) -> bool:
    """Whether ``artist`` (a legend, a text) is drawn wholly inside ``fig``."""
    fig.canvas.draw()
    box, frame = artist.get_window_extent(), fig.bbox
    return (
        box.x0 >= frame.x0 - 0.5
        and box.y0 >= frame.y0 - 0.5
        and box.x1 <= frame.x1 + 0.5
        and box.y1 <= frame.y1 + 0.5
    )


def _clear_of(fig, a, b) -> bool:
    """Whether artists ``a`` and ``b`` do not overlap on the canvas."""
    fig.canvas.draw()
    return not a.get_window_extent().overlaps(b.get_window_extent())


# --- coordinate check ---------------------------------------------------------------------
def _curve(name: str, slopes: list[float], sizes: list[int], vanishes: bool = False):
    """A module whose size grows like size^slope at each step (seed noise 0.01)."""
    sizes_ = [[(s / sizes[0]) ** k for s in sizes] for k in slopes]
    m = ModuleCurve(
        name=name,
        kind="hidden",
        l1=sizes_,
        rms=sizes_,
        slopes=list(slopes),
        band=(-0.6, 0.1) if vanishes else (-0.1, 0.1),
        stderr=[0.01] * len(slopes),
        vanishes=vanishes,
        delta_l1=sizes_,
        delta_rms=sizes_,
        delta_slopes=list(slopes),
        delta_stderr=[0.01] * len(slopes),
    )
    m.passed = not any(m.fails(t) for t in range(1, len(slopes)))
    return m


def _coord_result(axis: str, sizes: list[int], many: int = 6) -> CoordCheckResult:
    mods = [
        _curve("blocks.0.attn.c_attn", [0.0, 0.5, 0.6], sizes),
        _curve("logits", [-0.5, -0.2, -0.1], sizes, vanishes=True),
    ]
    mods += [_curve(f"blocks.{i}.mlp.c_proj", [0.0, 0.03, -0.02], sizes) for i in range(many)]
    return CoordCheckResult(
        axis=axis,
        sizes=sizes,
        steps=2,
        stat="l1",
        tolerance=0.1,
        judge_from=1,
        modules=mods,
        loss=[[3.0] * len(sizes)] * 3,
        settings={"model": "gpt", "rule": "sp", "optimizer": "adamw", "lr": 0.01},
    )


def test_coord_check_legend_band_and_offenders():
    r = _coord_result("width", [64, 128, 256, 512, 1024])
    fig = coord_check_figure(r)
    panels = [ax for ax in fig.axes if ax.axison]
    assert len(panels) == r.steps + 1 and len(fig.axes) == r.steps + 2  # + the legend's
    legend = fig.axes[-1].get_legend()
    assert _inside(fig, legend)  # outside the panels, inside the saved figure
    assert _clear_of(fig, legend, fig._suptitle)
    assert all(_clear_of(fig, legend, ax) for ax in panels)
    labels = [t.get_text() for t in legend.get_texts()]
    assert "blocks.0.attn.c_attn  +0.60  FAIL" in labels  # slope in every entry
    assert any(lab.startswith("logits*  -0.10") for lab in labels)
    assert any("slopes that pass" in lab for lab in labels)
    for t, ax in enumerate(panels):
        bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
        names = [x.get_text() for x in ax.texts]
        if t == 0:  # init: not judged, so no band and no offender
            assert not bands and not names
            continue
        assert bands  # the band of slopes that pass, shaded
        assert names == [f"blocks.0.attn.c_attn {r.modules[0].slopes[t]:+.2f}"]
        assert all(_inside(fig, x) for x in ax.texts)
    assert panels[0].get_ylabel() == "mean |x|"


def test_coord_check_legend_keeps_offenders_when_there_are_many_modules():
    fig = coord_check_figure(_coord_result("width", [64, 128, 256], many=40))
    legend = fig.axes[-1].get_legend()
    labels = [t.get_text() for t in legend.get_texts()]
    assert len(labels) < 10 and any("FAIL" in lab for lab in labels)
    assert "41 passing modules not listed" in legend.get_title().get_text()
    assert _inside(fig, legend)


def test_depth_panels_span_a_decade():
    r = _coord_result("depth", [2, 4, 8])
    fig = coord_check_figure(r)
    for ax in fig.axes[:-1]:
        lo, hi = ax.get_xlim()
        assert hi / lo >= MIN_SPAN
        assert [int(v) for v in ax.get_xticks()] == [2, 4, 8]


def test_a_real_coord_check_draws(tmp_path):
    from sizeup.config import RunConfig
    from sizeup.diagnostics.coord_check import coord_check
    from sizeup.diagnostics.plots import plot_coord_check

    r = coord_check(RunConfig(model="mlp", rule="sp"), widths=(64, 128), steps=1, seeds=1)
    fig = coord_check_figure(r)
    assert _inside(fig, fig.axes[-1].get_legend())
    assert plot_coord_check(r, tmp_path / "cc.png").stat().st_size > 5000


# --- transfer -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def edge_study(tmp_path_factory):
    """SP and muP over widths 32..256, lrs 2^-10..2^-5: SP's optimum at width 256 (2^-11)
    lies below the grid."""
    db = tmp_path_factory.mktemp("study") / "s.db"
    spec = {
        "base": {"steps": 5},
        "axes": {"rule": ["mup", "sp"], "width": [32, 64, 256], "lr": {"log2": [-10, -5]}},
        "seeds": 2,
    }
    run_sweep(spec, db, runner=NoisySynthetic(0.02), progress=False)
    return db


def test_lr_curves_rule_off_left_shared_axes_edge_marked(edge_study):
    rep = analyze_transfer(edge_study)
    assert [g.group["rule"] for g in rep.groups] == ["mup", "sp"]  # alphabetical
    rep.groups = rule_off_first(rep.groups)
    fig = plot_lr_curves(rep, labels={"rule=sp": "SP", "rule=mup": "muP"})
    left, right = fig.axes
    assert left.get_title().startswith("SP\n") and right.get_title().startswith("muP\n")
    assert left.get_shared_x_axes().joined(left, right)
    assert left.get_shared_y_axes().joined(left, right)
    assert left.get_ylabel() == "validation loss (nats/token)"

    edge = [ln for ln in left.get_lines() if ln.get_gid() == EDGE_GID]
    assert len(edge) == 1 and edge[0].get_marker() == "<"  # points past the low edge
    assert [t.get_text() for t in left.texts] == ["≤ $2^{-10}$"]
    assert not [ln for ln in right.get_lines() if ln.get_gid() == EDGE_GID]
    (legend,) = fig.legends
    assert _inside(fig, legend)
    assert {"diverged", "transferred lr", "beyond the grid: a bound"} <= {
        t.get_text() for t in legend.get_texts()
    }


def test_rule_off_first_orders_every_demo_axis():
    from types import SimpleNamespace

    from sizeup.demo import AXES, settings_for

    for axis in AXES:
        s = settings_for(axis)
        groups = [SimpleNamespace(group=dict(v.fields)) for v in reversed(s.variants)]
        first = rule_off_first(groups)[0].group
        assert first == s.off.fields, axis


def test_loss_label_names_the_loss_and_its_unit():
    assert loss_label("loss") == "validation loss (nats/token)"
    assert loss_label("final_train_loss", "mlp") == "training loss (nats/example)"
    assert loss_label("accuracy") == "accuracy"


def test_training_curves_side_by_side(edge_study):
    rep = analyze_transfer(edge_study)
    with Store(edge_study, readonly=True) as st:
        trials = st.trials()
    fig = plot_transfer_curves(trials, rep, ylabel="training loss (nats/token), running mean")
    a, b = fig.axes
    assert a.get_shared_y_axes().joined(a, b) and a.get_lines() and b.get_lines()
    assert a.get_ylabel().startswith("training loss (nats/token)")
    assert _inside(fig, fig.legends[0])


def test_cli_transfer_plot_puts_sp_left(edge_study, tmp_path, monkeypatch):
    import sizeup.sweep.plots as plots
    from sizeup.cli import main

    drawn = []
    real = plots.plot_lr_curves

    def spy(*a, **kw):
        drawn.append(real(*a, **kw))
        return drawn[-1]

    monkeypatch.setattr(plots, "plot_lr_curves", spy)
    main(["transfer", str(edge_study), "--plot", str(tmp_path / "lr.png")])
    assert (tmp_path / "lr.png").stat().st_size > 5000
    left = drawn[0].axes[0]
    assert left.get_title().startswith("rule=sp")
    assert left.get_ylabel() == "validation loss (nats/token)"


def test_cli_transfer_plot_names_the_mlp_loss_per_example(tmp_path, monkeypatch):
    # the study's model is read from its trials' configs (their ModelSpec's name)
    import sizeup.sweep.plots as plots
    from sizeup.cli import main

    db = tmp_path / "mlp.db"
    spec = {
        "base": {"steps": 5, "model": "mlp"},
        "axes": {"width": [32, 64], "lr": {"log2": [-10, -5]}},
        "seeds": 1,
    }
    run_sweep(spec, db, runner=NoisySynthetic(0.02), progress=False)
    drawn = []
    real = plots.plot_lr_curves
    monkeypatch.setattr(
        plots, "plot_lr_curves", lambda *a, **kw: drawn.append(real(*a, **kw)) or drawn[-1]
    )
    main(["transfer", str(db), "--plot", str(tmp_path / "lr.png")])
    assert drawn[0].axes[0].get_ylabel() == "validation loss (nats/example)"


# --- fits ---------------------------------------------------------------------------------
TRUE = ChinchillaLaw(E=1.8, A=400.0, B=2000.0, alpha=0.34, beta=0.36)


@pytest.fixture(scope="module")
def grid():
    """5 budgets x 7 sizes from TRUE (0.3% noise), one run 30% too high."""
    rng = np.random.default_rng(0)
    rows = []
    for C in np.geomspace(1e18, 1e21, 5):
        n_opt, _ = TRUE.optimal(C)
        for f in np.geomspace(1 / 8, 8, 7):
            n = n_opt * f
            rows.append((n, C / (6 * n), TRUE.loss(n, C / (6 * n)) * np.exp(rng.normal(0, 3e-3))))
    N, D, L = (np.array(a) for a in zip(*rows))
    L[3] *= 1.3
    return N, D, L


def _compute_ticks(fig, ax) -> list[str]:
    fig.canvas.draw()
    return [t.get_text() for t in ax.get_xticklabels() if t.get_text()]


def test_isoflops_keyed_by_budget_with_curves_and_dropped(grid):
    N, D, L = grid
    N2, D2, L2, dropped = ch.drop_highest(N, D, L, 1)
    C = 6 * N * D
    keep = np.setdiff1d(np.arange(N.size), dropped)
    fit = ch.fit_approach2(N2, D2, L2, C=C[keep])
    fig = isoflops_figure(fit, dropped=(N[dropped], L[dropped], C[dropped]))
    left, right, bar = fig.axes
    assert bar.get_ylabel() == "compute budget C (FLOPs)"  # the key to the colours
    curves = [ln for ln in left.get_lines() if len(ln.get_xdata()) == 100]
    assert len(curves) == len(fit.curves) >= 4  # an interpolating curve per budget
    assert len({ln.get_color() for ln in curves}) == len(curves)  # a colour per budget
    texts = [t.get_text() for t in left.get_legend().get_texts()]
    assert "fit per budget: parabola in log N" in texts and "minimum: N_opt" in texts
    assert "dropped (1, not fitted)" in texts
    for ax in (left, right):
        assert _inside(fig, ax.get_legend())
    # every line on the law panel is in its legend
    assert all(not ln.get_label().startswith("_") for ln in right.get_lines())
    ticks = _compute_ticks(fig, right)
    assert ticks and all(re.fullmatch(r"\de\d+", t) for t in ticks), ticks
    assert all(
        re.fullmatch(r"\de\d+", t) for t in [t.get_text() for t in bar.get_yticklabels()] if t
    )


def test_isoflops_draws_akima_interpolants(grid):
    N, D, L = grid
    fit = ch.fit_approach2(N, D, L, method="akima")
    fig = isoflops_figure(fit)
    left = fig.axes[0]
    assert len([ln for ln in left.get_lines() if len(ln.get_xdata()) == 100]) == len(fit.curves)
    assert "fit per budget: Akima interpolant" in [
        t.get_text() for t in left.get_legend().get_texts()
    ]


def test_approach3_shows_what_it_dropped_and_labels_every_line(grid):
    N, D, L = grid
    fit = ch.fit_approach3(N, D, L, drop_highest_k=2, bootstrap=5)
    fig = approach3_figure(fit, N, D, L)
    left, right = fig.axes[:2]
    hollow = [
        c
        for c in left.collections
        if c.get_label().startswith("dropped") and len(c.get_offsets()) == 2
    ]
    assert hollow and len(hollow[0].get_facecolors()) == 0  # hollow markers
    for ax in (left, right):
        assert all(not ln.get_label().startswith("_") for ln in ax.get_lines())
        assert all(not c.get_label().startswith("_") for c in ax.collections)
        assert _inside(fig, ax.get_legend())
    assert all(re.fullmatch(r"\de\d+", t) for t in _compute_ticks(fig, left))


def test_envelope_colours_runs_by_size(grid):
    N, D, L = grid
    fit = ch.fit_approach1(N, D, L)
    fig = envelope_figure(fit, N, L, 6 * N * D)
    assert fig.axes[2].get_ylabel() == "parameters N (colour of a run)"
    assert "lower envelope (the points fitted)" in [
        t.get_text() for t in fig.axes[0].get_legend().get_texts()
    ]


def test_tick_text():
    assert [tick_text(v) for v in (1e18, 3e19, 2.5, 300.0, 1e-5, 0.5)] == [
        "1e18",
        "3e19",
        "2.5",
        "300",
        "1e-5",
        "0.5",
    ]


def test_isoflops_shows_the_budgets_it_skipped(grid):
    """A budget whose lowest run is its smallest model gives no bracketed minimum: the fit
    leaves it out of the power laws, says why (fit.json, the table) and the plot still draws
    its runs, as grey crosses with a legend entry and a count in the title."""
    N, D, L = grid
    C = 6 * N * D
    top = C > 5e20  # the largest budget: keep only its 3 smallest models (minimum at the edge)
    order = np.argsort(N[top])
    idx = np.flatnonzero(top)[order[:3]]
    keep = np.concatenate([np.flatnonzero(~top), idx])
    fit = ch.fit_approach2(N[keep], D[keep], L[keep])
    assert len(fit.curves) == 4 and len(fit.skipped) == 1
    (b,) = fit.skipped
    assert b["reason"] == "lowest loss at the largest model: the minimum is not bracketed"
    assert b["C"] == pytest.approx(1e21, rel=1e-6) and len(b["N"]) == 3
    assert fit.to_dict()["skipped_budgets"] == [{"C": b["C"], "reason": b["reason"]}]
    left = isoflops_figure(fit).axes[0]
    texts = [t.get_text() for t in left.get_legend().get_texts()]
    assert "runs of a budget left out: no bracketed minimum" in texts
    assert "1 budget without one: x" in left.get_title()
    crosses = [c for c in left.collections if len(c.get_offsets()) == 3]
    assert crosses, "the skipped budget's runs are drawn"
