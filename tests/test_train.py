"""Trainer: reproducible, records divergence cleanly, rejects bad config by field, DDP == one
process, and the default GPT really learns the built-in corpus."""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import subprocess
import sys

import pytest
import torch
from small_configs import SMALL_GPT

from sizeup.config import RunConfig, RunResult
from sizeup.errors import ConfigError, ShapeError, SizeupError
from sizeup.train import build, run

SMALL = dict(SMALL_GPT)


def test_same_seed_same_result_bit_for_bit():
    a = run(RunConfig(**SMALL, seed=3))
    b = run(RunConfig(**SMALL, seed=3))
    c = run(RunConfig(**SMALL, seed=4))
    assert a.train_loss == b.train_loss and a.final_val_loss == b.final_val_loss
    assert a.train_loss != c.train_loss


def test_result_fields():
    r = run(RunConfig(**SMALL, eval_every=4))
    assert r.tokens == 12 * 8 * 32
    assert r.flops == pytest.approx(6 * r.params * r.tokens)
    assert r.val_steps == [4, 8, 12] and len(r.val_loss) == 3
    assert r.final_val_loss < r.initial_val_loss
    assert r.tokens_per_s > 0 and r.wall_time > 0 and not r.diverged


def test_nan_lr_run_is_recorded_as_diverged(tmp_path):
    r = run(RunConfig(**SMALL, rule="sp", lr=1e30))  # Adam: NaN after one step
    assert r.diverged and r.diverged_step is not None and r.diverged_step < 12
    assert math.isnan(r.final_val_loss)
    path = tmp_path / "result.json"
    r.save(path)
    data = json.loads(path.read_text())  # strict JSON: no NaN tokens
    assert data["diverged"] is True and data["final_val_loss"] is None
    assert RunResult.from_dict(data).diverged
    blown = run(RunConfig(**SMALL, rule="sp", optimizer="sgd", lr=1e4))  # finite but blown up
    assert blown.diverged and blown.train_loss[-1] > 100


# issue 23, item 12: a run that collapses to the uniform predictor (ln 256 on the byte corpus)
# is diverged, not done; a run that merely learns slowly is not.
COLLAPSE = dict(SMALL, width=32, base_width=32, depth=1, steps=10)


@pytest.mark.parametrize("fields", [{}, dict(rule="sp", sigma="fan_in")])
def test_a_run_collapsed_to_the_uniform_loss_is_diverged(fields):
    # lr 1e6: up to ln 256 from the init's 5.537, or down to it from an SP fan_in init's 6.01
    r = run(RunConfig(**COLLAPSE, **fields, lr=1e6))
    assert r.train_loss[-1] == pytest.approx(math.log(256), abs=1e-5)  # the uniform loss
    assert r.diverged and r.diverged_step == 1  # from the first update on
    assert math.isnan(r.final_val_loss) and math.isnan(r.loss)
    assert r.val_loss[-1] == pytest.approx(math.log(256), abs=1e-5)  # the curve keeps it
    assert "collapsed to the uniform predictor's loss ln 256" in r.error


@pytest.mark.parametrize(
    "fields",
    [
        dict(lr=1e-6, steps=5),  # learns nothing measurable: ends near its start, not uniform
        dict(lr=1e-6, steps=5, zero_readout=True),  # starts at exactly ln 256, moves 5e-5 down
        dict(lr=2**-13, steps=5),  # the low edge of a tiny study's grid
        dict(lr=1e-6, steps=5, rule="sp", sigma="fan_in"),  # starts above ln 256 (6.01)
        dict(lr=2**-9, steps=30),
    ],
)
def test_slow_or_tiny_runs_are_not_collapsed(fields):
    r = run(RunConfig(**{**COLLAPSE, **fields}))
    assert not r.diverged and r.error is None and math.isfinite(r.final_val_loss)


def test_collapse_criterion_on_recorded_curves():
    from sizeup.train.loop import COLLAPSE_TOL, collapsed

    u = math.log(256)
    flat = RunResult(config={}, steps=list(range(6)), train_loss=[5.53] + [u] * 5)
    flat.initial_val_loss, flat.final_val_loss = 5.5366, u
    assert collapsed(flat, u) == 1
    # the same curve but the last batch scores differently: the output depends on the input
    moved = RunResult(**{**flat.__dict__, "train_loss": [5.53] + [u] * 4 + [u - 10 * COLLAPSE_TOL]})
    assert collapsed(moved, u) is None
    # came down to it from above (an SP fan_in init starts at 6.01): collapsed all the same
    assert collapsed(RunResult(**{**flat.__dict__, "initial_val_loss": 6.01}), u) == 1
    near = RunResult(**{**flat.__dict__, "final_val_loss": u - 2 * COLLAPSE_TOL})
    assert collapsed(near, u) is None
    assert collapsed(RunResult(config={}), u) is None  # nothing measured


def test_mlp_teacher_run():
    r = run(
        RunConfig(
            model="mlp",
            data="teacher",
            width=64,
            base_width=16,
            depth=3,
            steps=30,
            batch_size=32,
            lr=1e-2,
        )
    )
    assert r.final_val_loss < r.initial_val_loss


@pytest.mark.parametrize("opt", ["sgd", "muon"])
def test_other_optimizers_train(opt):
    lr = 0.3 if opt == "sgd" else 0.02
    r = run(RunConfig(**{**SMALL, "steps": 20}, optimizer=opt, lr=lr))
    assert not r.diverged and r.final_val_loss < r.initial_val_loss


@pytest.mark.parametrize(
    "field,value",
    [
        ("width", -8),
        ("rule", "mupp"),
        ("optimizer", "adamm"),
        ("lr", 0.0),
        ("base_width", 128),
        ("schedule", "step"),
        ("batch_size", 2.5),
        ("init_std", "xavier"),
        ("init_std", -0.02),
        ("init_std", "0"),
    ],
)
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ConfigError) as e:
        RunConfig(**{**SMALL, field: value})
    assert field in str(e.value)


def test_init_std_field():
    """init_std: "model" (default), "fan_in" or a positive number; a numeric string (YAML, a
    sweep axis, --set) is the number; an older stored config's init_mode reads as what it meant."""
    from sizeup.cli.options import config_from_cli
    from sizeup.train import build

    def sigma(cfg: RunConfig) -> object:
        return cfg.parametrization.sigma

    assert sigma(RunConfig()) == "model"
    assert sigma(RunConfig(init_std="0.05")) == 0.05  # the old name of sigma
    assert sigma(RunConfig(sigma="0.05")) == 0.05
    assert sigma(config_from_cli(None, {}, ["init_std=0.01"])) == 0.01
    assert sigma(config_from_cli(None, {}, ["sigma=fan_in"])) == "fan_in"
    legacy = {"init_std": 0.02, "init_mode": "auto"}
    assert sigma(RunConfig.from_dict(legacy)) == "model"
    assert sigma(RunConfig.from_dict({**legacy, "init_mode": "fan_in"})) == "fan_in"
    assert sigma(RunConfig.from_dict({"init_std": 0.05, "init_mode": "fixed"})) == 0.05
    p = build(RunConfig(**{**SMALL, "init_std": 0.05})).parametrization
    assert p["wte.weight"].sigma_base == 0.05 and p["wte.weight"].sigma_source == "given"


def test_build_keeps_the_model_own_random_stream():
    """The base is built for real (to be measurable) inside fork_rng: the model gets the draws
    it would get alone, and parametrize rescales them (hidden by 1/sqrt(m) at m = 2)."""
    from sizeup.models import build_model
    from sizeup.train import build

    cfg = RunConfig(**SMALL)
    torch.manual_seed(cfg.run.seed)
    alone = build_model(cfg.model)
    built = build(cfg)
    assert not any(q.is_meta for q in built.model.parameters())
    assert torch.equal(built.model.wte.weight, alone.wte.weight)  # input: factor 1, untouched
    q, q0 = built.model.blocks[0].attn.q.weight, alone.blocks[0].attn.q.weight
    torch.testing.assert_close(q, q0 * 2**-0.5, rtol=1e-6, atol=0)


def test_mismatched_architecture_is_a_shape_error():
    from sizeup.models import MLP
    from sizeup.parametrization import parametrize

    model = build(RunConfig(**SMALL)).model
    with pytest.raises(ShapeError, match="architecture"):
        parametrize(model, MLP(8, 16, 2, 4))


def test_unknown_field_from_dict():
    with pytest.raises(SizeupError, match="widht"):
        RunConfig.from_dict({"widht": 64})


def _ddp_worker(rank: int, world: int, store: str, cfg: dict, q) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", rank=rank, world_size=world, init_method=f"file://{store}")
    try:
        r = run(RunConfig(**cfg), rank=rank, world_size=world)
        q.put((rank, r.train_loss, r.final_val_loss))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_processes_match_one(tmp_path):
    cfg = {**SMALL, "steps": 8}
    single = run(RunConfig(**cfg))
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [
        ctx.Process(target=_ddp_worker, args=(r, 2, str(tmp_path / "store"), cfg, q))
        for r in range(2)
    ]
    for p in procs:
        p.start()
    out = dict((rank, (tl, vl)) for rank, tl, vl in (q.get(timeout=300) for _ in procs))
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    for rank in (0, 1):
        tl, vl = out[rank]
        assert max(abs(a - b) for a, b in zip(tl, single.train_loss)) <= 1e-5
        assert abs(vl - single.final_val_loss) <= 1e-5


def test_cli_train_writes_result_and_rejects_bad_flag(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "sizeup",
            "train",
            "--width",
            "64",
            "--steps",
            "5",
            "--set",
            "seq_len=32",
            "--set",
            "batch_size=4",
            "--quiet",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert ok.returncode == 0, ok.stderr
    data = json.loads((tmp_path / "result.json").read_text())
    assert data["config"]["width"] == 64 and data["tokens"] == 5 * 4 * 32
    bad = subprocess.run(
        [sys.executable, "-m", "sizeup", "train", "--rule", "mupp"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert bad.returncode == 2 and "rule='mupp'" in bad.stderr and "Traceback" not in bad.stderr


def test_cli_train_from_yaml(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("width: 64\nsteps: 3\nseq_len: 32\nbatch_size: 4\nrule: sp\n")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "sizeup",
            "train",
            "-c",
            str(cfg),
            "--quiet",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "result.json").read_text())["config"]["rule"] == "sp"


@pytest.mark.slow
def test_default_gpt_learns_the_builtin_corpus(tmp_path):
    """`sizeup train` with the default small GPT: val loss after 300 steps >= 25% below initial."""
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "sizeup",
            "train",
            "--steps",
            "300",
            "--quiet",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    data = json.loads((tmp_path / "result.json").read_text())
    assert data["steps"][-1] == 299
    assert data["final_val_loss"] <= 0.75 * data["initial_val_loss"], data["final_val_loss"]


def test_threads_set_to_one():
    build(RunConfig(**SMALL))
    assert torch.get_num_threads() == 1


def test_cli_usage_error_is_clean():
    r = subprocess.run(
        [sys.executable, "-m", "sizeup", "train", "--nonsense"], capture_output=True, text=True
    )
    assert r.returncode == 2 and "No such option" in r.stderr and "Traceback" not in r.stderr


def test_monitors_log_without_changing_the_run(tmp_path):
    plain = run(RunConfig(**SMALL))
    watched = run(RunConfig(**SMALL, spectral_every=5, noise_every=5))
    assert watched.train_loss == plain.train_loss  # measuring does not perturb training
    spec = watched.diagnostics["spectral"]
    assert [d["step"] for d in spec] == [0, 5, 10]
    assert spec[-1]["blocks.0.attn.q/w"] > 0 and spec[-1]["blocks.0.attn.q/dw"] > 0
    assert [d["step"] for d in watched.diagnostics["noise_scale"]] == [0, 5, 10]
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "sizeup",
            "train",
            "--width",
            "64",
            "--steps",
            "6",
            "--set",
            "seq_len=32",
            "--set",
            "spectral_every=3",
            "--quiet",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "spectral.png").stat().st_size > 1000


def test_trial_id_is_stable_and_content_based():
    a, b = RunConfig(**SMALL), RunConfig(**SMALL)
    assert a.trial_id() == b.trial_id() and len(a.trial_id()) == 12
    assert a.trial_id() != a.replace(lr=1e-3).trial_id()
    assert RunConfig().trial_id() == RunConfig(lr=RunConfig().optimizer.lr).trial_id()


def test_trainer_fork_resumes_the_run_independently():
    """The one step, forked: a copy at step 4 advanced to 8 is the 8-step run, bit for bit, and
    training it leaves the original untouched (which then reaches the same point)."""
    from sizeup.train import Trainer

    cfg = RunConfig(**{**SMALL, "steps": 8}, grad_clip=0.1, warmup=2, schedule="cosine")
    full = run(cfg)
    trunk = Trainer.from_built(cfg, build(cfg))
    trunk.start()
    trunk.advance(4)
    fork = trunk.fork()
    losses = []
    fork.advance(8, on_step=lambda step, loss: losses.append(loss))
    assert losses == full.train_loss[4:] and fork.finish() == full.final_val_loss
    assert trunk.step == 4
    trunk.advance(8)
    assert trunk.finish() == full.final_val_loss
