"""benchmarks/bench_optim.py in its --quick mode (CI): it times every registered optimizer, a
newly registered one included (the toy Signum), and writes its JSON; the figures of a tiny run
mean nothing, so only their presence is checked."""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path

from test_registry import SIGNUM

import sizeup.registry as registry
from sizeup.registry import optimizer_names

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_bench_optim_quick_writes_every_optimizer(tmp_path, monkeypatch):
    monkeypatch.setitem(registry._OPTIMIZERS, SIGNUM.name, SIGNUM)
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    bench_optim = importlib.import_module("bench_optim")
    out = tmp_path / "optim.json"
    bench_optim.main(["--quick", "--out", str(out)])
    got = json.loads(out.read_text())
    assert got["quick"] is True and list(got["optimizers"]) == list(optimizer_names())
    for name, row in got["optimizers"].items():
        if "skipped" in row:
            assert row["skipped"], name  # a reason is given
            continue
        assert math.isfinite(row["ratio"]) and row["ratio"] > 0, name
        assert row["step_s"] > 0 and row["plain_adamw_step_s"] > 0, name
    assert "ratio" in got["optimizers"]["signum"]  # the newcomer is timed
