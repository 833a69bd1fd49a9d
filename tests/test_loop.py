"""`sizeup demo --axis plan` (sizeup.loop) end to end at CI size: proxy study, steps study and
its measured horizon exponent, a WSD ladder and its approach-3 fit, a plan at >= 10x the
ladder's compute, the target trained from run.json at and around the planned lr, the score."""

from __future__ import annotations

import json
import math

from sizeup.config import RunConfig
from sizeup.loop import MIN_COMPUTE_RATIO, run_loop


def test_the_loop_end_to_end_at_ci_size(tmp_path):
    summary = run_loop(tmp_path, "ci", workers=1, progress=False)
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["verdict"] == summary["verdict"]
    assert summary["verdict"].startswith("The plan's lr ")
    assert summary["target"]["compute_over_ladder"] >= MIN_COMPUTE_RATIO
    sc = summary["score"]
    # the target study: every lr x seed, the planned lr among them exactly as run.json has it
    planned = RunConfig.from_file(tmp_path / "plan" / "run.json")
    assert planned.optimizer.lr in sc["lrs"] and sc["plan"]["lr"] == planned.optimizer.lr
    assert len(sc["lrs"]) == 4 and all(len(r) == 2 for r in sc["losses"])
    lo, hi = sc["plan"]["prediction_interval"]
    assert lo < sc["plan"]["predicted_loss"] < hi
    assert sc["plan"]["inside_interval"] == (lo <= sc["plan"]["measured_loss"] <= hi)
    assert math.isfinite(sc["plan"]["loss_error_pct"])
    # the plan used the measured exponent, the comparison the fixed -1/2
    alpha = summary["horizon_exponent"]["estimate"]["value"]
    assert sc["plan"]["data_exponent"] == alpha and sc["fixed_exponent"]["data_exponent"] == -0.5
    assert summary["target"]["measured_rules"][0]["name"] == "horizon"
    html = (tmp_path / "report.html").read_text()
    assert "octaves" in html and "prediction interval" in html
