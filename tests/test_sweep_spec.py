"""Sweep specs: expansion into trials, stable ids, and clear errors before anything runs."""

from __future__ import annotations

import pytest

from sizeup.errors import ConfigError, SizeupError
from sizeup.sweep import SweepSpec, load_spec, lr_grid


def test_grid_is_cartesian_product_in_axis_order():
    spec = SweepSpec(base={"steps": 5}, axes={"width": [32, 64], "lr": [1e-3, 2e-3, 4e-3]})
    trials = spec.trials()
    assert len(trials) == 6
    assert [(t.get("width"), t.get("lr")) for t in trials[:3]] == [
        (32, 1e-3),
        (32, 2e-3),
        (32, 4e-3),
    ]
    assert all(t.schedule.steps == 5 for t in trials)


def test_zip_moves_fields_together():
    spec = SweepSpec(
        axes={"width": [32, 64], "zip": {"rule": ["sp", "mup"], "attn_scale": ["1/sqrt(d)", "1/d"]}}
    )
    pairs = {(t.get("width"), t.get("rule"), t.get("attn_scale")) for t in spec.trials()}
    assert pairs == {
        (32, "sp", "1/sqrt(d)"),
        (32, "mup", "1/d"),
        (64, "sp", "1/sqrt(d)"),
        (64, "mup", "1/d"),
    }


def test_log2_axis_gives_exact_powers_of_two():
    assert lr_grid(-10, -7) == [2.0**-10, 2.0**-9, 2.0**-8, 2.0**-7]
    assert lr_grid(-2, -1, step=0.5) == [0.25, 2**-1.5, 0.5]


def test_trial_ids_are_stable_and_duplicates_dropped():
    a = SweepSpec(axes={"lr": [1e-3, 1e-3, 2e-3]}).trials()
    b = SweepSpec(axes={"lr": [2e-3, 1e-3]}).trials()
    assert len(a) == 2
    assert {t.trial_id() for t in a} == {t.trial_id() for t in b}


@pytest.mark.parametrize(
    "spec, field",
    [
        ({"axes": {"widht": [32, 64]}}, "widht"),  # unknown field (typo)
        ({"base": {"lrr": 1e-3}}, "lrr"),  # unknown base field
        ({"axes": {"width": []}}, "axes.width"),  # empty axis
        ({"axes": {"lr": [1e-3, 0.0]}}, "lr"),  # non-positive lr
        ({"axes": {"lr": [-1e-3]}}, "lr"),
        ({"axes": {"zip": {"rule": ["sp", "mup"], "lr": [1e-3]}}}, "zip[0]"),  # ragged zip
        ({"axes": {"lr": {"log2": [-4]}}}, "axes.lr"),  # bad generator
        ({"axs": {"lr": [1e-3]}}, "axs"),  # unknown top-level key
    ],
)
def test_bad_specs_name_the_field(spec, field):
    with pytest.raises(ConfigError) as e:
        SweepSpec.from_dict(spec)
    assert e.value.field == field
    assert isinstance(e.value, SizeupError)


def test_yaml_and_toml_files(tmp_path):
    y = tmp_path / "s.yaml"
    y.write_text("base: {steps: 7}\naxes:\n  width: [32, 64]\n  lr: {log2: [-9, -8]}\n")
    t = tmp_path / "s.toml"
    t.write_text("[base]\nsteps = 7\n[axes]\nwidth = [32, 64]\nlr = {log2 = [-9, -8]}\n")
    ys, ts = load_spec(y), load_spec(t)
    assert ys.name == "s"
    assert [c.trial_id() for c in ys.trials()] == [c.trial_id() for c in ts.trials()]
    assert len(ys) == 4


def test_bad_file_fails_before_running(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("axes:\n  width: [32, 64]\n  lr: [0.001, -1]\n")
    with pytest.raises(ConfigError, match="lr=-1"):
        load_spec(bad)
