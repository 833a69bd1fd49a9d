"""FSDP2 (fully_shard) on 2 gloo processes follows the one-process run (same global batch) for
muP with AdamW and with Muon; the parametrization read from the sharded model, and one made
after sharding, is the unwrapped one's; --fsdp without a process group is refused by name.

The ranks write their results to files and the test judges those: gloo's teardown can abort a
process after a clean run (a torch bug), so exit codes alone would not tell."""

from __future__ import annotations

import json
import multiprocessing as mp
import subprocess
import sys

import pytest
import torch
from small_configs import SMALL_GPT

from sizeup.config import RunConfig
from sizeup.errors import ConfigError
from sizeup.train import run

SMALL = dict(SMALL_GPT, steps=10, rule="mup", weight_decay=0.1, grad_clip=1.0)
# Newton-Schulz in float32: in bf16 the last bits of a gradient summed in another order (two
# ranks) flip roundings, which moves the loss by ~2e-4 after 10 steps; that is bf16, not FSDP.
RUNS = {
    "adamw": dict(optimizer="adamw", lr=3e-3, spectral_every=5),
    "muon": dict(optimizer="muon", lr=0.02, ns_dtype="float32"),
}


def _tables(cfg: RunConfig) -> dict:
    """The table and weights of a run's model parametrized after fully_shard."""
    from sizeup.parametrization import get_parametrization
    from sizeup.train.build import build_models, parametrize_run
    from sizeup.train.fsdp import shard
    from sizeup.wrapping import full_tensor

    torch.manual_seed(cfg.run.seed)
    model, base, delta = build_models(cfg)
    shard(model)
    parametrize_run(cfg, model, base, delta)
    rows = get_parametrization(model).rows()
    weights = {n: full_tensor(p.detach()).tolist() for n, p in model.named_parameters()}
    return {"rows": rows, "weights": weights}


def _worker(rank: int, world: int, store: str, out: str) -> None:
    import torch.distributed as dist

    from sizeup.parametrization import get_parametrization
    from sizeup.train import build

    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world, init_method=f"file://{store}")
    try:
        res = {}
        for name, kw in RUNS.items():
            cfg = RunConfig(**SMALL, **kw, fsdp=True)
            r = run(cfg, rank=rank, world_size=world)
            res[name] = {
                "train": r.train_loss,
                "val": r.final_val_loss,
                "spectral": r.diagnostics.get("spectral"),
            }
        cfg = RunConfig(**SMALL, fsdp=True)
        res["built_rows"] = get_parametrization(build(cfg, rank, world).model).rows()
        res["after"] = _tables(cfg.replace(fsdp=False))
        with open(f"{out}.{rank}.json", "w") as f:
            json.dump(res, f)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_fsdp_two_processes_match_one(tmp_path):
    from sizeup.train import build

    ctx = mp.get_context("spawn")
    out = str(tmp_path / "rank")
    procs = [
        ctx.Process(target=_worker, args=(r, 2, str(tmp_path / "store"), out)) for r in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=600)
    got = [json.loads((tmp_path / f"rank.{r}.json").read_text()) for r in range(2)]
    for name, kw in RUNS.items():
        single = run(RunConfig(**SMALL, **kw))
        for g in got:
            tl = g[name]["train"]
            assert len(tl) == len(single.train_loss) == 10
            assert max(abs(a - b) for a, b in zip(tl, single.train_loss)) <= 1e-5, name
            assert abs(g[name]["val"] - single.final_val_loss) <= 1e-5, name
        if name == "adamw":  # the spectral monitor reads whole (gathered) weights
            ref = single.diagnostics["spectral"][-1]
            mine = got[0][name]["spectral"][-1]
            assert mine.keys() == ref.keys()
            assert all(abs(mine[k] - ref[k]) <= 1e-4 * max(1, abs(ref[k])) for k in ref)
    built = build(RunConfig(**SMALL))
    rows = json.loads(json.dumps(built.parametrization.rows()))  # as the ranks wrote them
    weights = {n: p.detach().tolist() for n, p in built.model.named_parameters()}
    for g in got:
        assert g["built_rows"] == rows  # read from the sharded model: the unwrapped table
        assert g["after"]["rows"] == rows  # parametrize after fully_shard: the same table
        for n, w in weights.items():  # and the same init, to float rounding
            a, b = torch.tensor(g["after"]["weights"][n]), torch.tensor(w)
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_fsdp_without_a_process_group_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="fsdp=True.*torchrun"):
        run(RunConfig(**{**SMALL, "steps": 2}, fsdp=True))
    r = subprocess.run(
        [sys.executable, "-m", "sizeup", "train", "--fsdp", "--steps", "2", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "fsdp=True" in r.stderr and "torchrun" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "result.json").exists()
    with pytest.raises(ConfigError, match="noise_every"):
        RunConfig(fsdp=True, noise_every=5)
