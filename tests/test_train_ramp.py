"""The trainer follows a batch ramp and the token-based schedules (multistep, power) exactly as
planned, draws batch k as a pure function of k, and evaluates schedule-free AdamW at its
averaged weights; bad values are refused by name."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from sizeup.config import RunConfig
from sizeup.errors import ConfigError
from sizeup.schedules import DEEPSEEK_LLM_MILESTONES, BatchRamp
from sizeup.train import Trainer, build, run

TINY = dict(
    model="gpt",
    width=32,
    depth=1,
    head_dim=16,
    base_width=32,
    seq_len=8,
    batch_size=8,
    eval_batches=1,
)
# 2 sequences (16 tokens) a step until 32 tokens, then 4 (32 tokens) until 96, then 8 (64).
RAMP = "0:2,32:4,96:8"


class Lines:
    """An in-memory metrics logger."""

    def __init__(self) -> None:
        self.rows: dict[int, dict] = {}

    def log(self, step: int, metrics: dict) -> None:
        self.rows.setdefault(step, {}).update(metrics)

    def close(self) -> None:
        pass


def test_trainer_follows_the_ramp_by_hand():
    cfg = RunConfig(**TINY, steps=6, batch_ramp=RAMP)
    # steps 0-1 take 2 sequences from 0 and 16 tokens seen; steps 2-3 take 4 from 32 and 64;
    # steps 4-5 take 8 from 96 and 160: 16 + 16 + 32 + 32 + 64 + 64 = 224 tokens in 6 steps.
    assert [cfg.batch_window(k) for k in range(6)] == [
        (0, 2),
        (2, 2),
        (4, 4),
        (8, 4),
        (12, 8),
        (20, 8),
    ]
    assert [cfg.tokens_for(k) for k in range(7)] == [0, 16, 32, 64, 96, 160, 224]
    data = build(cfg).data
    assert [tuple(data.batch_at(k)[0].shape) for k in range(6)] == [(2, 8)] * 2 + [(4, 8)] * 2 + [
        (8, 8)
    ] * 2
    lines = Lines()
    res = run(cfg, loggers=[lines])
    assert res.tokens == 224 == BatchRamp(((0, 16), (32, 32), (96, 64))).tokens_before(6)
    assert res.tokens == cfg.ramp().tokens_before(cfg.schedule.steps)
    assert [lines.rows[k]["train/tokens"] for k in range(6)] == [16, 32, 64, 96, 160, 224]
    assert res.flops == 6.0 * res.params * 224


def test_power_lr_at_each_step_follows_the_tokens_of_the_ramp():
    a, b, lr = 0.08, -0.5, 0.01
    cfg = RunConfig(**TINY, steps=6, batch_ramp=RAMP, schedule="power", power_a=a, power_b=b, lr=lr)
    # lr = min(lr, a n^b), n the tokens before the step (n = 0: the peak); the last
    # round(0.2 * 6) = 1 step cools down linearly from the value reached, p = 0: the same value.
    seen = [0, 16, 32, 64, 96, 160]
    want = [1.0] + [min(1.0, a * n**b / lr) for n in seen[1:]]
    assert want[1] == 1.0 and want[2] == 1.0  # a n^b above the peak early on: capped
    assert [cfg.lr_schedule()(k) for k in range(6)] == pytest.approx(want)
    assert want[3] == pytest.approx(1.0) and want[5] == pytest.approx(0.08 / 160**0.5 / 0.01)
    built = build(cfg)
    t = Trainer.from_built(cfg, built)
    used = []
    for k in range(6):
        t.advance(k + 1)
        used.append(t.lrs[0] / built.optimizer.param_groups[0]["initial_lr"])
    assert used == pytest.approx(want, rel=1e-12)


def test_multistep_counts_the_ramp_tokens():
    cfg = RunConfig(**TINY, steps=6, batch_ramp=RAMP, schedule="multistep")
    # DeepSeek LLM's milestones by default: x0.316 after 80% of 224 tokens (179.2), x0.1 after
    # 90% (201.6). Before step 5 only 160 are seen: all six steps run at the peak; at step 6
    # (the end value) 224.
    assert cfg.lr_schedule().milestones == DEEPSEEK_LLM_MILESTONES
    assert cfg.lr_schedule().values() == [1.0] * 6 and cfg.lr_schedule()(6) == 0.1
    # milestones at 40% and 60% of the tokens: 89.6 and 134.4
    m = cfg.replace(milestones="0.4:0.5,0.6:0.25").lr_schedule()
    assert m.values() == [1.0, 1.0, 1.0, 1.0, 0.5, 0.25]


def test_ramped_stream_is_the_full_batch_stream_regrouped():
    """Step k takes the sequences from the number seen before it on: the ramped run sees the
    full-batch run's sequences in the same order, grouped into smaller steps; the full-batch
    run's batches are the ones sizeup always drew."""
    full = build(RunConfig(**TINY, steps=4)).data
    ramped = build(RunConfig(**TINY, steps=6, batch_ramp=RAMP)).data
    stream = torch.cat([full.batch_at(k)[0] for k in range(4)])
    got = torch.cat([ramped.batch_at(k)[0] for k in range(6)])
    assert torch.equal(got, stream[:28])
    assert torch.equal(ramped.batch_at(3)[0], ramped.batch_at(3)[0])  # a pure function of k
    hi = len(full.train) - 8
    starts = np.random.default_rng([0, 2]).integers(0, hi, size=8)
    assert torch.equal(full.batch_at(2)[0], full._gather(full.train, starts)[0])
    # the MLP's examples too
    mlp = dict(model="mlp", width=16, depth=1, base_width=16, batch_size=8, eval_batches=1)
    full = build(RunConfig(**mlp, steps=4)).data
    ramped = build(RunConfig(**mlp, steps=6, batch_ramp="0:2,4:4,12:8")).data
    xs = torch.cat([ramped.batch_at(k)[0] for k in range(6)])
    assert torch.equal(xs, torch.cat([full.batch_at(k)[0] for k in range(4)])[: len(xs)])


def test_ddp_ranks_split_each_ramped_batch():
    from sizeup.data import make_data

    cfg = RunConfig(**TINY, steps=6, batch_ramp=RAMP)
    one = make_data(cfg)
    two = [make_data(cfg, rank=r, world_size=2) for r in range(2)]
    for k in range(6):
        assert torch.equal(torch.cat([d.batch_at(k)[0] for d in two]), one.batch_at(k)[0])
    with pytest.raises(ConfigError, match="batch_ramp=.*multiples of world_size=4"):
        make_data(cfg, rank=0, world_size=4)


def test_wsd_branch_of_a_ramped_run_is_the_ramped_wsd_run():
    from sizeup.train.wsd import wsd_branches

    cfg = RunConfig(**TINY, steps=6, batch_ramp=RAMP, decay_frac=0.5)
    (point,) = wsd_branches(cfg, [6])
    alone = run(cfg.replace(schedule="wsd"))
    assert point.tokens == alone.tokens == 224
    assert point.loss == alone.final_val_loss


def test_plan_run_config_is_the_planned_ramp_and_schedule():
    from sizeup.plan import plan

    p = plan(
        preset="chinchilla",
        n_layer=4,
        d_model=256,
        head_dim=32,
        seq_len=256,
        vocab_size=256,
        tokens=2e8,
        batch_tokens=2**16,
        lr_schedule="power",
        power_a=0.5,
        power_b=-0.51,
        batch_ramp="tokens",
        ramp_start_batch=2**14,
        ramp_tokens=2e7,
    )
    cfg = RunConfig.from_dict(json.loads(json.dumps(p.to_dict()["run_config"])))
    assert cfg.data.batch_ramp == ((0.0, 64), (1e7, 128), (2e7, 256)) and cfg.data.batch_size == 256
    assert cfg.ramp() == p.ramp() and cfg.schedule.steps == p.steps
    assert cfg.lr_schedule() == p.lr_schedule()  # the same schedule, so the same lr each step
    assert cfg.tokens_for(cfg.schedule.steps) == p.ramp().tokens_before(p.steps) >= p.tokens
    rows = p.batch_ramp
    assert [cfg.tokens_for(r["from_step"]) for r in rows] == [r["from_tokens"] for r in rows]
    assert [cfg.batch_window(r["from_step"])[1] * 256 for r in rows] == [
        r["batch_tokens"] for r in rows
    ]


def test_plan_run_config_builds_the_planned_table():
    """With a proxy transfer (batch included) the run config's optimizer holds the per-layer
    lr, betas and eps the plan's table shows."""
    from sizeup.plan import plan
    from sizeup.plan.table import layer_rows

    p = plan(
        preset="chinchilla",
        n_layer=2,
        d_model=128,
        head_dim=32,
        seq_len=64,
        vocab_size=256,
        tokens=2e7,
        batch_tokens=2**12,
        base_width=64,
        base_lr=3e-3,
        base_batch=2**10,
        lr_schedule="multistep",
    )
    cfg = p.run_config().replace(threads=1)
    assert cfg.optimizer.base_batch_size is None and cfg.optimizer.beta1 == pytest.approx(
        1 - 4 * 0.1
    )
    built = build(cfg.replace(warmup=0))  # the groups' lr at step 0 is then the peak
    got = {r["tensor"]: r for r in layer_rows(built.parametrization, built.optimizer)}
    for row in p.layers:
        for k in ("lr", "beta1", "beta2", "eps", "decay_per_step"):
            assert got[row["tensor"]][k] == pytest.approx(row[k], rel=1e-9), (row["tensor"], k)
    assert cfg.lr_schedule() == p.lr_schedule()


# --- schedule-free AdamW: evaluated at its averaged weights x, trained at y
def _averaged(model, optimizer):
    """x from the schedule-free state by hand: y = (1 - beta1) z + beta1 x."""
    out = {}
    for g in optimizer.param_groups:
        beta1 = g["betas"][0]
        for p in g["params"]:
            z = optimizer.state[p]["z"]
            out[p] = (p.detach().double() - (1 - beta1) * z.double()) / beta1
    return out


def test_schedule_free_evaluates_the_averaged_weights():
    pytest.importorskip("schedulefree", reason="needs the schedulefree extra")
    from sizeup.train.step import evaluate

    cfg = RunConfig(**TINY, steps=5, optimizer="adamw_schedulefree", lr=0.01, warmup=2)
    built = {}
    res = run(cfg, on_built=lambda b: built.setdefault("b", b))
    b = built["b"]
    assert all(g["train_mode"] for g in b.optimizer.param_groups)  # back in train mode
    x = _averaged(b.model, b.optimizer)
    twin = build(cfg).model
    with torch.no_grad():
        for (_, p), (_, q) in zip(b.model.named_parameters(), twin.named_parameters()):
            q.copy_(x[p].float())
    assert res.final_val_loss == pytest.approx(evaluate(twin, b.data.val_batches()), rel=1e-5)
    # ... and not at the training point y
    assert abs(res.final_val_loss - evaluate(b.model, b.data.val_batches())) > 1e-4


def test_schedule_free_evaluation_leaves_the_run_bit_for_bit():
    pytest.importorskip("schedulefree", reason="needs the schedulefree extra")
    cfg = RunConfig(**TINY, steps=6, optimizer="adamw_schedulefree", lr=0.01, weight_decay=0.1)
    built = build(cfg)
    t = Trainer.from_built(cfg, built)
    t.advance(3)
    before = [p.detach().clone() for p in t.model.parameters()]
    t.evaluate()
    assert all(torch.equal(a, p) for a, p in zip(before, t.model.parameters()))
    assert all(g["train_mode"] for g in t.optimizer.param_groups)
    often, never = run(cfg.replace(eval_every=1)), run(cfg)
    assert often.train_loss == never.train_loss and often.final_val_loss == never.final_val_loss
    assert len(often.val_loss) == 6 and len(never.val_loss) == 1


# --- sizeup train --set schedule=... and bad values named
def _train(tmp_path, *sets):
    cmd = [sys.executable, "-m", "sizeup", "train", "--width", "32", "--quiet"]
    cmd += ["--set", "depth=1", "--set", "head_dim=16", "--set", "seq_len=8", "--steps", "6"]
    cmd += ["--batch-size", "8", "--set", "eval_batches=1", "--out", str(tmp_path)]
    for s in sets:
        cmd += ["--set", s]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env)


def test_cli_trains_multistep_and_a_ramped_power_schedule(tmp_path):
    ok = _train(tmp_path / "m", "schedule=multistep", "milestones=0.5:0.3")
    assert ok.returncode == 0, ok.stderr
    got = json.loads((tmp_path / "m" / "result.json").read_text())
    assert got["config"]["milestones"] == [[0.5, 0.3]] and got["tokens"] == 6 * 64
    ok = _train(
        tmp_path / "p", "schedule=power", "power_a=0.08", "power_b=-0.5", f"batch_ramp={RAMP}"
    )
    assert ok.returncode == 0, ok.stderr
    got = json.loads((tmp_path / "p" / "result.json").read_text())
    assert got["tokens"] == 224 and got["config"]["batch_ramp"] == [[0, 2], [32, 4], [96, 8]]
    assert math.isfinite(got["final_val_loss"])


@pytest.mark.parametrize(
    "sets,named",
    [
        (("schedule=power",), "power_a=None"),
        (("schedule=power", "power_a=0.1"), "power_b=None"),
        (("schedule=power", "power_a=0.1", "power_b=0.5"), "power_b=0.5"),
        (("schedule=power", "power_a=-1", "power_b=-0.5"), "power_a=-1"),
        (("schedule=multistep", "milestones=0.9:0.1,0.8:0.3"), "milestones="),
        (("milestones=0.8",), "milestones='0.8'"),
        (("batch_ramp=0:4,32:2",), "batch_ramp=.*last batch is batch_size=8"),
        (("batch_ramp=8:4,32:8",), "batch_ramp='8:4,32:8'"),
        (("batch_ramp=0:4.5,32:8",), "batch_ramp="),
        (("schedule=stepwise",), "schedule='stepwise'"),
        (("optimizer=adamw_sf",), "optimizer='adamw_sf'"),
    ],
)
def test_bad_schedule_and_ramp_values_are_named(tmp_path, sets, named):
    import re

    bad = _train(tmp_path, *sets)
    assert bad.returncode == 2 and re.search(named, bad.stderr), bad.stderr
    assert "Traceback" not in bad.stderr


@pytest.mark.parametrize(
    "field,value",
    [
        ("batch_ramp", [[0, 4], [32, 4.5]]),
        ("batch_ramp", [[0, 4], [0, 8]]),
        ("batch_ramp", "0:4;32:8"),
        ("batch_ramp", [[0, 0], [32, 8]]),
        ("batch_ramp", "0:4,nan:8"),
        ("milestones", [[0.8, 1.5]]),
        ("milestones", "a:b"),
        ("power_a", "nan"),
        ("power_b", True),
    ],
)
def test_bad_values_are_config_errors(field, value):
    with pytest.raises(ConfigError, match=field):
        RunConfig(**TINY, **{field: value})


def test_new_fields_keep_trial_ids():
    base = RunConfig(**TINY)
    assert base.trial_id() == RunConfig.from_dict(json.loads(json.dumps(base.to_dict()))).trial_id()
    ramped = base.replace(batch_ramp=RAMP)
    back = RunConfig.from_dict(json.loads(json.dumps(ramped.to_dict())))
    assert back == ramped and back.trial_id() == ramped.trial_id() != base.trial_id()
