"""`sizeup demo`: the summary.json contract, the report, and the command line."""

from __future__ import annotations

import json

import pytest

import sizeup.demo as demo
from sizeup.cli import main
from sizeup.demo import DemoSettings, run_demo
from sizeup.sweep.testing import synthetic_run


def _check_contract(summary: dict) -> None:
    assert isinstance(summary["sp"]["drift_octaves"], float)
    assert isinstance(summary["mup"]["drift_octaves"], float)
    assert isinstance(summary["mup"]["widest_is_best"], bool)


def test_summary_and_report_with_a_stand_in_trainer(tmp_path):
    # synthetic_run: muP's optimum fixed at 2^-8, SP's one octave lower per doubling of width
    s = DemoSettings(lr_exps=[-12, -11, -10, -9, -8, -7, -6])
    summary = run_demo(tmp_path, settings=s, runner=synthetic_run, workers=1, progress=False)
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    _check_contract(on_disk)
    # widths 32..256: three doublings, so SP's synthetic optimum moves 3 octaves
    assert s.widths[-1] // s.widths[0] == 8
    assert on_disk["sp"]["drift_octaves"] == pytest.approx(3.0)
    assert on_disk["mup"]["drift_octaves"] == pytest.approx(0.0, abs=1e-9)
    assert on_disk["mup"]["widest_is_best"] and on_disk["all_checks_pass"]
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 3
    assert "what muP buys you" in html
    # a second call resumes: nothing reruns
    again = run_demo(tmp_path, settings=s, runner=synthetic_run, workers=1, progress=False)
    assert again["trials_run_now"] == 0


@pytest.mark.slow
def test_cli_demo_quick_with_tiny_real_runs(tmp_path, monkeypatch):
    # the real trainer on a tiny grid, through the command line; the science (drift figures)
    # is measured by the full demo, see docs/sweeps.md
    tiny = DemoSettings(
        widths=[32, 64],
        lr_exps=[-8, -6],
        base={
            **DemoSettings().base,
            "steps": 6,
            "warmup": 0,
            "seq_len": 32,
            "batch_size": 4,
            "eval_batches": 1,
            "depth": 1,
        },
    )
    monkeypatch.setattr(demo, "QUICK", tiny)
    main(["demo", "--quick", "--out", str(tmp_path), "--workers", "2"])  # returns on success
    summary = json.loads((tmp_path / "summary.json").read_text())
    _check_contract(summary)
    assert summary["trials"]["done"] + summary["trials"]["diverged"] == 8
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


@pytest.mark.slow
def test_quick_demo_shows_what_mup_buys(tmp_path):
    """The real `sizeup demo --quick` (48 GPT runs, ~3 min on 2 cores): SP's optimal lr drifts
    >= 2 octaves across widths 32..256, muP's <= 1, and under muP the widest model is best at
    the lr tuned on the smallest. One torch thread per run makes it bit-reproducible."""
    s = run_demo(tmp_path, quick=True, progress=False)
    assert s["sp"]["drift_octaves"] >= 2.0, s["sp"]
    assert s["mup"]["drift_octaves"] <= 1.0, s["mup"]
    assert s["mup"]["widest_is_best"] is True
    assert (tmp_path / "report.html").stat().st_size > 10_000
    assert json.loads((tmp_path / "summary.json").read_text())["mup"]["widest_is_best"] is True
