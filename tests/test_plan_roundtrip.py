"""plan -> run.json -> `sizeup train`: the run trains exactly the planned model (the same
parameter count, the same per-layer table), for a dense, a GQA, a Table 8 readout and an MoE
shape, through the command line as a user types it; and a study -> `plan --from-study` ->
run.json the same way.

Before the records, run.json dropped the experts (an MoE plan trained a dense model with mlp_ratio
2.75), the key/value heads and the readout form; here every ModelSpec and ParamSpec field the
plan decided reaches the run, because run.json *is* the plan's RunConfig."""

from __future__ import annotations

import json

import pytest

from sizeup.cli import main
from sizeup.config import OptimSpec, ParamSpec, RunConfig
from sizeup.models import num_params
from sizeup.plan import Proxy, Target, plan
from sizeup.plan.table import COLUMNS
from sizeup.train import build

TARGET = ["--preset", "chinchilla", "--tokens", "5e7", "--batch-tokens", "4096"]
TARGET += ["--seq-len", "64", "--vocab-size", "256", "--head-dim", "32"]
PROXY = ["--base-width", "64", "--lr", "3e-3", "--base-batch-tokens", "1024"]
SHAPES = {
    "dense": ["--width", "256", "--depth", "2"],
    "gqa": ["--width", "256", "--depth", "2", "--n-kv-head", "2"],
    "table8": ["--width", "256", "--depth", "2", "--readout-form", "table8", "--sigma", "0.02"],
    "moe": ["--width", "256", "--depth", "3", "--n-experts", "4", "--top-k", "2"]
    + ["--n-shared-experts", "1", "--expert-hidden", "96", "--first-dense", "1"],
}


def _plan(tmp_path, shape: list[str], capsys) -> tuple[dict, RunConfig]:
    main(["plan", *TARGET, *PROXY, *shape, "--out", str(tmp_path), "--format", "json"])
    capsys.readouterr()
    plan = json.loads((tmp_path / "plan.json").read_text())
    return plan, RunConfig.from_file(tmp_path / "run.json")


def _parametrize_table(run_json, capsys) -> list[dict]:
    """`sizeup parametrize -c run.json`'s per-tensor table (the run `sizeup train` builds),
    folded into tensor classes as the plan folds its own."""
    from sizeup.optim import collapse

    main(["parametrize", "-c", str(run_json), "--no-table", "--format", "json"])
    tensors = json.loads(capsys.readouterr().out)["tensors"]
    return collapse(tensors, COLUMNS)


@pytest.mark.parametrize("case", list(SHAPES))
def test_plan_run_json_trains_the_planned_model(case, tmp_path, capsys):
    plan, cfg = _plan(tmp_path, SHAPES[case], capsys)
    built = build(cfg)
    assert num_params(built.model) == plan["params"]  # the same model, tensor for tensor
    # the per-layer table `sizeup train` builds from run.json is the plan's, value for value
    got = {r["tensor"]: r for r in _parametrize_table(tmp_path / "run.json", capsys)}
    assert set(got) == {r["tensor"] for r in plan["layers"]}
    for row in plan["layers"]:
        for k in ("init_std", "multiplier", "lr", "beta1", "beta2", "eps", "decay_per_step"):
            want, have = row[k], got[row["tensor"]][k]
            assert (want is None) == (have is None), (row["tensor"], k)
            if want is not None:
                assert have == pytest.approx(want, rel=1e-12), (row["tensor"], k)
    m = built.model.config
    if case == "gqa":
        assert (m.n_head, m.n_kv_head) == (8, 2) and cfg.model.n_kv_head == 2
    if case == "table8":
        assert cfg.parametrization.readout_form == "table8"
        assert built.parametrization.effective_multiplier("lm_head.weight") == pytest.approx(0.25)
    if case == "moe":
        assert (m.n_experts, m.top_k, m.n_shared_experts, m.first_dense) == (4, 2, 1, 1)
        assert m.expert_hidden == 96 and plan["params_active"] < plan["params"]
    # and it trains, as planned (a few of its steps)
    main(
        [
            "train",
            "-c",
            str(tmp_path / "run.json"),
            "--steps",
            "2",
            "--warmup",
            "0",
            "-q",
            "--format",
            "json",
        ]
    )
    result = json.loads(capsys.readouterr().out)
    assert result["params"] == num_params(built.model, non_embedding=True)


def test_study_to_plan_to_run(tmp_path, capsys):
    """A (tiny) study's proxy -> `plan --from-study` -> run.json: the run is parametrized from
    the study's base width with the study's recipe, at the transferred lr."""
    from sizeup.sweep import run_sweep

    study = tmp_path / "study.db"
    base = dict(width=32, base_width=32, depth=1, head_dim=16, seq_len=32, batch_size=8)
    spec = {
        "base": {**base, "steps": 20, "eval_batches": 1, "weight_decay": 0.05, "sigma": 0.02},
        "axes": {"width": [32, 64], "lr": {"log2": [-9, -3]}},
    }
    run_sweep(spec, study, progress=False)
    target = ["--width", "128", "--depth", "2", "--head-dim", "16", "--seq-len", "32"]
    target += ["--vocab-size", "256", "--batch-tokens", "512", "--tokens", "1e7"]
    main(
        [
            "plan",
            "--from-study",
            str(study),
            *target,
            "--out",
            str(tmp_path / "p"),
            "--format",
            "json",
        ]
    )
    capsys.readouterr()
    plan = json.loads((tmp_path / "p" / "plan.json").read_text())
    cfg = RunConfig.from_file(tmp_path / "p" / "run.json")
    assert cfg.parametrization.base_width == 32 and cfg.parametrization.sigma == 0.02
    assert cfg.optimizer.weight_decay == 0.05 and cfg.optimizer.lr == plan["peak_lr"]
    # 256 -> 512 tokens per step: the square-root rule moved the study's lr by 2^1/2
    assert plan["peak_lr"] == pytest.approx(plan["proxy"]["lr"] * 2**0.5, rel=1e-12)
    got = {r["tensor"]: r for r in _parametrize_table(tmp_path / "p" / "run.json", capsys)}
    for row in plan["layers"]:
        assert got[row["tensor"]]["lr"] == pytest.approx(row["lr"], rel=1e-12)


def test_the_planner_picks_a_micro_batch_that_fits_the_gpu():
    """With --gpu, the micro-batch is the largest divisor of the per-GPU batch whose memory
    (weights, gradients and Adam state sharded over the GPUs, plus one pass's activations:
    sizeup.train.build.memory_estimate, the estimate `sizeup train` checks) fits 90% of it."""
    from sizeup.plan import plan
    from sizeup.train.build import memory_estimate

    kw = dict(preset="chinchilla", width=4096, depth=32, tokens=1e11, batch_tokens=2**22)
    p = plan(**kw, gpu="H100", n_gpus=64)
    micro = p.run.data.micro_batch_size
    per_gpu = p.run.data.batch_size // 64
    assert micro is not None and per_gpu % micro == 0 and micro < per_gpu
    budget = 0.9 * 80 * 2**30
    assert memory_estimate(p.run, world_size=64)[1] <= budget
    bigger = [m for m in range(micro + 1, per_gpu + 1) if per_gpu % m == 0]
    assert memory_estimate(p.run.replace(micro_batch_size=bigger[0]), world_size=64)[1] > budget
    assert "micro-batches of" in dict(p.summary_rows())["batch"]
    # no GPU: no micro-batch (the run takes its batch in one pass); one given wins
    assert plan(**kw).run.data.micro_batch_size is None
    assert plan(**kw, micro_batch_size=4).run.data.micro_batch_size == 4


def test_records_given_whole_plan_as_the_same_flat_options():
    """A record's fields count where its author named them, at their defaults too: an
    OptimSpec(lr=3e-3) (the run's default lr) is the proxy's tuned lr, not "no lr" (it once
    fell back to deepseek-v1's eta(C) law silently)."""
    flat = plan(
        params=1e9, tokens=2e10, rule="mup", base_width=256, base_depth=4, lr=3e-3,
        weight_decay=0.1, base_tokens=2e9, data_exponent=-0.12, base_batch_tokens=131072,
        batch_tokens=2**20,
    )  # fmt: skip
    records = plan(
        Target(params=1e9, tokens=2e10),
        parametrization=ParamSpec(rule="mup", base_width=256, base_depth=4),
        optimizer=OptimSpec(lr=3e-3, weight_decay=0.1, base_tokens=2e9, data_exponent=-0.12),
        proxy=Proxy(batch_tokens=131072),
        batch_tokens=2**20,
    )
    assert records.lr_source == flat.lr_source == "transfer from the proxy"
    assert records.to_dict() == flat.to_dict()
    assert records.run == flat.run
