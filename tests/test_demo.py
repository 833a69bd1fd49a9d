"""`sizeup demo`: the summary.json contract for every axis, the report, resuming keeps the
study's wall time, the command line, and (slow) each study's direction on a reduced grid."""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import pytest
from small_configs import small_demo_settings

import sizeup.demo as demo
from sizeup.cli import main
from sizeup.demo import AXES, DemoSettings, run_demo, study_wall_time
from sizeup.sweep.estimate import Estimate
from sizeup.sweep.testing import NoisySynthetic, synthetic_run


def _check_contract(summary: dict) -> None:
    assert summary["axis"] in AXES and summary["variants"]
    for key in summary["variants"]:
        g = summary[key]
        for name in ("drift_octaves", "regret_at_largest"):
            e = g[name]
            assert set(e) == {"value", "bound", "lo", "hi", "lo_open", "hi_open"}
            assert e["bound"] in ("=", "<=", ">=")
        for e in g["optimal_log2_lr"].values():
            assert e["bound"] in ("=", "<=", ">=")
    assert isinstance(summary["checks"], dict)
    assert summary["wall_time_s"] >= 0


def test_summary_and_report_with_a_stand_in_trainer(tmp_path):
    # synthetic_run: muP's optimum fixed at 2^-8, SP's one octave lower per doubling of width
    s = DemoSettings(lr_exps=[-12, -11, -10, -9, -8, -7, -6])
    summary = run_demo(tmp_path, settings=s, runner=NoisySynthetic(0.05), workers=1, progress=False)
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    _check_contract(on_disk)
    assert s.widths[-1] // s.widths[0] == 8 and on_disk["sp"]["seeds"] == 3
    sp, mup = (Estimate.from_dict(on_disk[k]["drift_octaves"]) for k in ("sp", "mup"))
    # widths 32..256: three doublings, so SP's synthetic optimum moves 3 octaves
    assert sp.lo <= 3.0 <= sp.hi and mup.lo <= 0.0 <= mup.hi and mup.hi < sp.lo
    checks = on_disk["checks"]
    assert set(checks) == {
        "mup_drifts_less_than_sp",
        "mup_drifts_less_than_sp_paired",
        "mup_widest_is_best",
    }
    assert checks["mup_drifts_less_than_sp"] and checks["mup_drifts_less_than_sp_paired"]
    paired = Estimate.from_dict(on_disk["mup"]["drift_less_than_off"])
    assert paired.lo <= 3.0 <= paired.hi
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3  # lr curves, optima, training curves
    assert "sizeup demo: width" in html and "--seeds 0,1,2" in html
    # a second call resumes: nothing reruns, and the study keeps its own wall time
    again = run_demo(tmp_path, settings=s, runner=synthetic_run, workers=1, progress=False)
    assert again["trials_run_now"] == 0
    assert again["wall_time_s"] == pytest.approx(summary["wall_time_s"])


@pytest.mark.parametrize("axis", [a for a in AXES if a != "width"])
def test_every_axis_runs_with_a_stand_in_trainer(tmp_path, axis):
    s = small_demo_settings(axis)
    summary = run_demo(tmp_path, settings=s, runner=synthetic_run, workers=1, progress=False)
    _check_contract(summary)
    assert set(summary["variants"]) == {v.key for v in s.variants}
    assert (tmp_path / "report.html").stat().st_size > 10_000


def test_study_wall_time_is_the_union_of_trial_spans():
    t = [SimpleNamespace(started=a, finished=b) for a, b in ((0, 10), (5, 12), (20, 25))]
    t.append(SimpleNamespace(started=None, finished=None))
    assert study_wall_time(t) == 17.0


def test_cli_refuses_bad_axis_and_seeds(tmp_path, capsys):
    for args, field in ((["--axis", "height"], "axis"), (["--seeds", "1,1"], "seeds")):
        with pytest.raises(SystemExit) as e:
            main(["demo", "--out", str(tmp_path / "d"), *args])
        assert e.value.code == 2
        assert f"{field}=" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


@pytest.mark.slow
def test_cli_demo_quick_with_tiny_real_runs(tmp_path, monkeypatch):
    # the real trainer on a tiny grid, through the command line; the science is measured by
    # the studies below and in docs/transfer.md
    full, quick = demo.STUDIES["depth"]
    tiny = DemoSettings(
        axis="depth",
        values=[1, 2],
        lr_exps=[-8, -7, -6],
        seeds=[0],
        base={
            **quick.base,
            "steps": 6,
            "warmup": 0,
            "seq_len": 32,
            "batch_size": 4,
            "eval_batches": 1,
        },
        variants=[
            demo.Variant("off", "off", {"base_depth": None}, False),
            demo.Variant("on", "on", {"base_depth": 1}, True),
        ],
    )
    monkeypatch.setitem(demo.STUDIES, "depth", (full, tiny))
    main(
        [
            "demo",
            "--axis",
            "depth",
            "--quick",
            "--out",
            str(tmp_path),
            "--workers",
            "2",
            "--seeds",
            "5",
        ]
    )
    summary = json.loads((tmp_path / "summary.json").read_text())
    _check_contract(summary)
    assert summary["settings"]["seeds"] == [5]
    assert summary["trials"]["done"] + summary["trials"]["diverged"] == 12
    assert (tmp_path / "report.html").stat().st_size > 10_000


def test_cli_bad_sweep_file_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("axes:\n  width: [32, 64]\n  lr: []\n")
    with pytest.raises(SystemExit) as e:
        main(["sweep", str(bad), "--store", str(tmp_path / "s.db")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "axes.lr" in err and "non-empty" in err
    assert not (tmp_path / "s.db").exists()


def test_optimizer_moves_the_grid_and_reaches_the_runs(tmp_path, monkeypatch, capsys):
    # muon's typical_lr 0.02: log2 = -5.64; the quick width grid 2^-11..2^-7 is centred on -9,
    # so it moves round(-5.64 + 9) = 3 octaves, to 2^-8..2^-4; the full grid (centre -8) by
    # round(2.36) = 2, to 2^-9..2^-3; AdamW's (typical_lr None) stays
    from sizeup.registry import get_optimizer
    from sizeup.sweep import Store

    assert get_optimizer("muon").typical_lr == 0.02
    assert demo.lr_shift("muon", [-11, -10, -9, -8, -7]) == 3
    assert demo.settings_for("width", quick=True, optimizer="muon").lr_exps == [-8, -7, -6, -5, -4]
    assert demo.settings_for("width", optimizer="muon").lr_exps == list(range(-9, -2))
    assert demo.settings_for("width", quick=True) == demo.QUICK

    real = demo.run_demo

    def stand_in(*args, **kw):
        return real(*args, **kw, runner=synthetic_run, progress=False)

    monkeypatch.setattr(demo, "run_demo", stand_in)
    # the quick study's lr grid at two widths and two seeds (40 stand-in runs)
    full, quick = demo.STUDIES["width"]
    monkeypatch.setitem(
        demo.STUDIES, "width", (full, replace(quick, values=[32, 64], seeds=[0, 1]))
    )
    main(["demo", "--quick", "--optimizer", "muon", "--workers", "1", "--out", str(tmp_path)])
    capsys.readouterr()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["optimizer"] == "muon" and summary["settings"]["base"]["optimizer"] == "muon"
    assert summary["command"] == "sizeup demo --axis width --quick --optimizer muon --seeds 0,1"
    assert "sizeup demo: width with muon" in (tmp_path / "report.html").read_text()
    # its own study file, never AdamW's
    assert demo.store_name("width", True, "muon") == "demo-muon-quick.db"
    assert not (tmp_path / "demo-quick.db").exists()
    with Store(tmp_path / "demo-muon-quick.db", readonly=True) as st:
        configs = [t.config for t in st.trials()]
    assert {c.optimizer.name for c in configs} == {"muon"}
    assert sorted({c.optimizer.lr for c in configs}) == [2.0**e for e in range(-8, -3)]


def test_cli_refuses_a_bad_optimizer_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["demo", "--optimizer", "adamx", "--out", str(tmp_path / "d")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "optimizer=" in err and "adamw" in err
    assert not (tmp_path / "d").exists()
