"""The Ray executor: same losses as the local executor for the same seeds; dead workers are
retried once then recorded failed."""

from __future__ import annotations

import pytest

from sizeup.sweep import RayExecutor, Store, run_sweep
from sizeup.sweep.testing import synthetic_run

ray = pytest.importorskip("ray", reason='the Ray executor needs pip install "sizeup[ray]"')

# a tiny real GPT: two lrs x two seeds, a few seconds each
SPEC = {
    "base": {
        "width": 32,
        "depth": 1,
        "seq_len": 32,
        "batch_size": 4,
        "steps": 8,
        "eval_batches": 1,
        "rule": "mup",
    },
    "axes": {"lr": [2.0**-8, 2.0**-6], "seed": [0, 1]},
}


@pytest.fixture(scope="module")
def ray_local():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.slow
def test_ray_matches_local(tmp_path, ray_local):
    run_sweep(SPEC, tmp_path / "local.db", progress=False)
    rep = run_sweep(SPEC, tmp_path / "ray.db", executor=RayExecutor(), progress=False)
    assert rep.counts["done"] == 4
    with Store(tmp_path / "local.db") as a, Store(tmp_path / "ray.db") as b:
        la = {t.id: t.result.train_loss for t in a.trials()}
        lb = {t.id: t.result.train_loss for t in b.trials()}
    assert la.keys() == lb.keys()
    for k in la:
        assert la[k] == lb[k]  # bit for bit: same seed, one thread, same code path
    assert len({tuple(v) for v in la.values()}) == 4  # the seeds and lrs really differ


@pytest.mark.slow
def test_ray_records_crashes_and_dead_workers(tmp_path, ray_local):
    spec = {"axes": {"lr": [2.0**-8], "data": ["builtin", "crash", "die"]}}
    rep = run_sweep(spec, tmp_path / "s.db", executor="ray", runner=synthetic_run, progress=False)
    assert rep.counts["done"] == 1 and rep.counts["failed"] == 2
    with Store(tmp_path / "s.db") as st:
        errors = {t.config.data: t.error for t in st.trials("failed")}
    assert "synthetic crash" in errors["crash"]
    assert "ray task failed after 1 retry" in errors["die"]
