"""A checkpoint whose checksum matches but whose contents are wrong (issue 23, item 8): a missing
section, a tensor of the wrong shape or dtype, a bad generator state, a negative step, a value of
the wrong type anywhere. `sizeup train --resume` and `sizeup export --checkpoint` refuse each in
one line naming the file and the problem and saying what to do (the earlier checkpoints there),
exit code 2, nothing changed; a file torch cannot read says so without torch's advice to load it
with ``weights_only=False``."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import pytest
import torch
from small_configs import SMALL_GPT
from test_inputs import assert_named, cli

from sizeup.config import RunConfig
from sizeup.errors import CheckpointError
from sizeup.train import Checkpointing, run
from sizeup.train import checkpoint as ckpt

TINY = RunConfig(
    **{**SMALL_GPT, "width": 32, "steps": 2, "batch_size": 4, "eval_every": 0, "eval_batches": 1}
)


def write_as(state: object, directory: Path, step: int) -> Path:
    """Write ``state`` as the checkpoint at ``step`` with a sidecar whose size and SHA-256 match
    (as sizeup.train.checkpoint.write does), whatever the state holds. Returns the .pt file."""
    directory.mkdir(parents=True, exist_ok=True)
    name = ckpt.stem(step)
    pt = directory / f"{name}.pt"
    torch.save(state, pt)
    data = pt.read_bytes()
    config = state.get("config") if isinstance(state, dict) else None
    side = {
        "format": ckpt.FORMAT,
        "version": ckpt.VERSION,
        "step": step,
        "file": pt.name,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "config": config if isinstance(config, dict) else TINY.to_dict(),
        "time": time.time(),
    }
    (directory / f"{name}.json").write_text(json.dumps(side, default=str))
    return pt


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A 2-step run with checkpoints at steps 1 and 2 (OUT/checkpoints) and its config (cfg.json)."""
    d = tmp_path_factory.mktemp("trained")
    run(TINY, checkpoint=Checkpointing(d / "out" / "checkpoints", every=1, keep=None))
    (d / "cfg.json").write_text(json.dumps(TINY.to_dict()))
    return d


def _copy(trained: Path, tmp_path: Path) -> Path:
    """A copy of the trained run's checkpoint folder; returns it."""
    shutil.copytree(trained / "out", tmp_path / "out")
    return tmp_path / "out" / "checkpoints"


def _newest(trained: Path) -> dict:
    return torch.load(trained / "out" / "checkpoints" / "step_00000002.pt", weights_only=True)


def _set(state: dict, path: tuple, value: object) -> None:
    """state[path[0]][path[1]]... = value (value ``DROP``: delete the key)."""
    for k in path[:-1]:
        state = state[k]
    if value is DROP:
        del state[path[-1]]
    else:
        state[path[-1]] = value


DROP = object()
PYTHON_RNG = (3, (1, 2, 3), None)
# (what is altered, its new value, words the refusal must hold)
CASES = {
    "no model": (("model",), DROP, "model"),
    "no optimizer": (("optimizer",), DROP, "optimizer"),
    "no rng": (("rng",), DROP, "rng"),
    "step -5": (("step",), -5, "step"),
    "step string": (("step",), "2", "step"),
    "step other than the sidecar's": (("step",), 1, "step"),
    "config a list": (("config",), [1, 2], "config"),
    "model a list": (("model",), [1], "model"),
    "model tensor shape": (("model", "blocks.0.attn.q.weight"), torch.zeros(32, 16), "shape"),
    "model tensor dtype": (
        ("model", "blocks.0.attn.q.weight"),
        torch.zeros(32, 32, dtype=torch.int64),
        "dtype",
    ),
    "model tensor a string": (("model", "ln_f.weight"), "abc", "ln_f.weight"),
    "model key missing": (("model", "ln_f.weight"), DROP, "ln_f.weight"),
    "optimizer state shape": (
        ("optimizer", "state", "wte.weight", "exp_avg"),
        torch.zeros(3),
        "exp_avg",
    ),
    "optimizer state key missing": (
        ("optimizer", "state", "wte.weight", "exp_avg_sq"),
        DROP,
        "exp_avg_sq",
    ),
    "optimizer param missing": (("optimizer", "state", "ln_f.weight"), DROP, "ln_f.weight"),
    "optimizer step nan": (
        ("optimizer", "state", "wte.weight", "step"),
        torch.tensor(float("nan")),
        "step",
    ),
    "param groups none": (("optimizer", "param_groups"), None, "param_groups"),
    "param group lr string": (("optimizer", "param_groups", 0, "lr"), "abc", "lr"),
    "param group betas short": (("optimizer", "param_groups", 0, "betas"), (0.9,), "betas"),
    "param group params": (("optimizer", "param_groups", 0, "params"), ["nope"], "params"),
    "scheduler epoch string": (("scheduler", "last_epoch"), "x", "last_epoch"),
    "scheduler missing": (("scheduler",), None, "scheduler"),
    "trainer none": (("trainer",), None, "trainer"),
    "diverged step negative": (("trainer", "diverged_step"), -1, "diverged_step"),
    "diagnostics a list": (("trainer", "diagnostics"), [1], "diagnostics"),
    "torch rng short": (("rng", "torch"), torch.zeros(7, dtype=torch.uint8), "rng"),
    "torch rng floats": (("rng", "torch"), torch.zeros(5056), "rng"),
    "python rng junk": (("rng", "python"), PYTHON_RNG, "rng"),
    "python rng string": (("rng", "python"), "abc", "rng"),
    "cuda rng junk": (("rng", "cuda"), "abc", "rng"),
    "result a string": (("result",), "abc", "result"),
    "train loss string": (("result", "train_loss"), ["abc", 1.0], "train_loss"),
    "steps and losses differ": (("result", "steps"), [0], "steps"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_resume_refuses_wrong_contents_by_name(trained, tmp_path, case):
    path, value, word = CASES[case]
    d = _copy(trained, tmp_path)
    state = _newest(trained)
    _set(state, path, value)
    write_as(state, d, 2)
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    with pytest.raises(CheckpointError) as e:
        run(TINY, checkpoint=Checkpointing(d, every=1, resume=True))
    msg = str(e.value)
    assert "step_00000002.pt" in msg and word in msg, msg
    assert "step_00000001" in msg, msg  # the earlier checkpoint a resume can use
    assert "\n" not in msg and "weights_only" not in msg, msg
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before


def test_the_cli_resume_refuses_wrong_contents_in_one_line(trained, tmp_path):
    d = _copy(trained, tmp_path)
    state = _newest(trained)
    state["model"]["wte.weight"] = torch.zeros(3, 3)
    write_as(state, d, 2)
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    r = cli("train", "-c", trained / "cfg.json", "--out", d.parent, "--resume", "-q")
    assert_named(r, "step_00000002.pt", "wte.weight", "shape", "step_00000001")
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before
    # with the bad checkpoint moved aside, the resume takes the earlier one and finishes
    for suffix in (".pt", ".json"):
        (d / f"step_00000002{suffix}").unlink()
    ok = cli("train", "-c", trained / "cfg.json", "--out", d.parent, "--resume", "-q")
    assert ok.returncode == 0, ok.stderr
    assert json.loads((d.parent / "result.json").read_text())["resumed_from"] == 1


@pytest.mark.parametrize(
    "data",
    [b"\x80\x02garbage" * 50, b"PK\x03\x04" + bytes(200), b"not a pickle"],
    ids=["pickle-junk", "zip-junk", "text"],
)
def test_an_unreadable_checkpoint_is_one_line_without_torchs_unsafe_hint(trained, tmp_path, data):
    d = _copy(trained, tmp_path)
    pt = d / "step_00000002.pt"
    pt.write_bytes(data)
    side = json.loads((d / "step_00000002.json").read_text())
    side.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    (d / "step_00000002.json").write_text(json.dumps(side))
    r = cli("train", "-c", trained / "cfg.json", "--out", d.parent, "--resume", "-q")
    assert_named(r, "step_00000002.pt", "cannot be read", "step_00000001")
    assert "weights_only=False" not in r.stderr and "arbitrary code" not in r.stderr


def test_a_pickled_object_is_refused_without_running_it(trained, tmp_path):
    """A file holding a pickled class (torch.load with weights_only=False would import it)."""
    d = _copy(trained, tmp_path)
    state = _newest(trained)
    state["trainer"]["reference"] = RunConfig()  # a class weights_only refuses to build
    write_as(state, d, 2)
    r = cli("train", "-c", trained / "cfg.json", "--out", d.parent, "--resume", "-q")
    assert_named(r, "step_00000002.pt", "cannot be read", "RunConfig")
    assert "weights_only=False" not in r.stderr and "safe_globals" not in r.stderr


def test_only_checkpoint_says_start_fresh(trained, tmp_path):
    d = _copy(trained, tmp_path)
    state = _newest(trained)
    state["step"] = -5
    for p in d.iterdir():
        p.unlink()
    write_as(state, d, 2)
    with pytest.raises(CheckpointError, match="no earlier checkpoint.*start fresh"):
        run(TINY, checkpoint=Checkpointing(d, every=1, resume=True))


def test_export_refuses_wrong_contents_by_the_same_check(trained, tmp_path):
    d = _copy(trained, tmp_path)
    state = _newest(trained)
    state["model"]["blocks.0.attn.q.weight"] = torch.zeros(32, 16)
    write_as(state, d, 2)
    r = cli("export", "-c", trained / "cfg.json", "--checkpoint", d, "--out", tmp_path / "plain")
    assert_named(r, "checkpoint=", "blocks.0.attn.q.weight", "shape", "step_00000001")
    assert not (tmp_path / "plain").exists()
    # export reads only the weights, yet a checkpoint damaged elsewhere is refused whole
    state = _newest(trained)
    state["rng"] = None
    write_as(state, d, 2)
    r = cli("export", "-c", trained / "cfg.json", "--checkpoint", d, "--out", tmp_path / "plain")
    assert_named(r, "checkpoint=", "rng")
    # the earlier, intact checkpoint exports
    ok = cli(
        "export",
        "-c",
        trained / "cfg.json",
        "--checkpoint",
        d / "step_00000001.json",
        "--out",
        tmp_path / "plain",
    )
    assert ok.returncode == 0, ok.stderr


def test_an_intact_checkpoint_still_resumes(trained, tmp_path):
    d = _copy(trained, tmp_path)
    for suffix in (".pt", ".json"):
        (d / f"step_00000002{suffix}").unlink()
    res = run(TINY, checkpoint=Checkpointing(d, every=1, resume=True))
    assert res.resumed_from == 1 and res.train_loss == run(TINY).train_loss


def _resume_from_step_1(d: Path, state: dict) -> object:
    """Write ``state`` as the only checkpoint (step 1) in ``d`` and resume TINY from it."""
    for suffix in (".pt", ".json"):
        (d / f"step_00000002{suffix}").unlink(missing_ok=True)  # a resumed run's last
    write_as(state, d, 1)
    return run(TINY, checkpoint=Checkpointing(d, every=0, resume=True))


def _step_1(trained: Path, tmp_path: Path) -> tuple[Path, dict]:
    """A copy of the trained run's folder and its step-1 state."""
    d = _copy(trained, tmp_path)
    return d, torch.load(d / "step_00000001.pt", weights_only=True)


def test_a_param_group_key_an_older_torch_did_not_write_takes_this_runs(trained, tmp_path):
    """A newer torch adds keys to its optimizers' param groups (2.x added Adam's
    `decoupled_weight_decay`); a checkpoint from before lacks them and still resumes, bit for bit,
    taking this run's value. A running value (the lr) missing is refused."""
    d, state = _step_1(trained, tmp_path)
    for g in state["optimizer"]["param_groups"]:
        del g["amsgrad"]
    res = _resume_from_step_1(d, state)
    assert res.resumed_from == 1 and res.train_loss == run(TINY).train_loss
    del state["optimizer"]["param_groups"][0]["lr"]
    with pytest.raises(CheckpointError, match="lr"):
        _resume_from_step_1(d, state)


@pytest.mark.parametrize("lr", [6.465364586132048e37, 1e-30, 0.0])
def test_a_groups_lr_is_the_schedules_at_the_saved_step(trained, tmp_path, lr):
    """Found by the fuzz: a param group's lr of 6.5e37 (a running value, so only its kind was
    checked) overflowed the next Adam step's float32 update. The lr a restore gives each group
    is the schedule's at the saved step (from the config's base lrs, which must be this run's),
    so the resumed run equals the uninterrupted one whatever lr the file held."""
    d, state = _step_1(trained, tmp_path)
    for g in state["optimizer"]["param_groups"]:
        g["lr"] = lr
    res = _resume_from_step_1(d, state)
    assert res.resumed_from == 1 and res.train_loss == run(TINY).train_loss
    state["scheduler"]["base_lrs"] = [1e37] * len(state["scheduler"]["base_lrs"])
    with pytest.raises(CheckpointError, match="base_lrs"):
        _resume_from_step_1(d, state)
