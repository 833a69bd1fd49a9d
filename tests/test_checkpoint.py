"""Checkpoints: a run killed with SIGKILL after a checkpoint resumes to the uninterrupted run's
loss bit for bit; a WSD branch from a saved stable-phase checkpoint is the in-memory branch;
a checkpoint from another config, a corrupt file, or a folder that already holds a run are
each a CheckpointError naming the problem, with nothing overwritten."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from small_configs import SMALL_GPT

from sizeup.config import RunConfig
from sizeup.errors import CheckpointError, SizeupError
from sizeup.train import Checkpointing, run

SMALL = dict(SMALL_GPT, eval_every=3, grad_clip=0.5, warmup=2, schedule="cosine")

# Trains cfg.yaml with checkpoints every 4 steps into OUT/checkpoints and kills itself with
# SIGKILL at step 6, between two checkpoints.
KILLED = textwrap.dedent(
    """
    import os, signal, sys
    from sizeup.config import RunConfig
    from sizeup.train import Checkpointing, run

    class Kill:
        name = "kill"
        def on_step(self, step, model, loss):
            if step == 6:
                os.kill(os.getpid(), signal.SIGKILL)

    cfg = RunConfig.from_file(sys.argv[1])
    run(cfg, callbacks=[Kill()], checkpoint=Checkpointing(sys.argv[2], every=4))
    """
)


def _files(d) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


# A ramped run: 2 sequences (64 tokens) a step until 256 tokens, 4 until 768, then the full 8
# (steps 0-3, 4-7, 8-11); its lr follows the Power scheduler on the tokens the ramp sees. The
# checkpoint at step 4 and the kill at step 6 fall in the middle stage; the resumed run goes on
# into the last.
RAMPED = dict(
    batch_ramp="0:2,256:4,768:8",
    schedule="power",
    power_a=0.2,
    power_b=-0.5,
    lr=0.01,
    weight_decay=0.1,
)


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra",
    [
        dict(optimizer="muon", lr=0.02, weight_decay=0.1),
        RAMPED,
        # Gradient accumulation in micro-batches of 2: 1, 2 and then 4 passes a step.
        dict(RAMPED, micro_batch_size=2),
    ],
    ids=["muon", "ramped", "accumulated"],
)
def test_sigkill_then_resume_equals_the_uninterrupted_run(tmp_path, extra):
    cfg = RunConfig(**{**SMALL, **extra})
    (tmp_path / "cfg.json").write_text(json.dumps(cfg.to_dict()))
    out = tmp_path / "out"
    killed = subprocess.run(
        [sys.executable, "-c", KILLED, str(tmp_path / "cfg.json"), str(out / "checkpoints")],
        capture_output=True,
        text=True,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "step_00000004.json",
        "step_00000004.pt",
    ]
    cli = [sys.executable, "-m", "sizeup", "train", "-c", str(tmp_path / "cfg.json")]
    resumed = subprocess.run(
        [*cli, "--out", str(out), "--checkpoint-every", "4", "--resume", "-q"],
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr
    got = json.loads((out / "result.json").read_text())
    full = run(cfg)
    assert got["resumed_from"] == 4
    assert got["train_loss"] == full.train_loss  # bit for bit, steps before and after the kill
    assert got["val_steps"] == full.val_steps and got["val_loss"] == full.val_loss
    assert got["final_val_loss"] == full.final_val_loss
    state = torch.load(out / "checkpoints" / "step_00000012.pt", weights_only=True)
    assert state["step"] == 12 and set(state) >= {"model", "optimizer", "scheduler", "rng"}


def test_bad_checkpoints_are_refused_by_name_and_nothing_is_overwritten(tmp_path):
    cfg = RunConfig(**{**SMALL, "steps": 4, "eval_every": 0})
    d = tmp_path / "ck"
    run(cfg, checkpoint=Checkpointing(d, every=2, keep=None))
    before = _files(d)
    assert list(before) == [
        "step_00000002.json",
        "step_00000002.pt",
        "step_00000004.json",
        "step_00000004.pt",
    ]
    # another config
    with pytest.raises(CheckpointError, match=r"another run config \(lr=0.003 in the checkpoint"):
        run(cfg.replace(lr=1e-3), checkpoint=Checkpointing(d, every=2, resume=True))
    # a fresh run into a folder that holds one
    with pytest.raises(CheckpointError, match="already holds.*--resume"):
        run(cfg, checkpoint=Checkpointing(d, every=2))
    assert _files(d) == before
    # a corrupt file: one byte changed
    pt = d / "step_00000004.pt"
    data = bytearray(pt.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pt.write_bytes(bytes(data))
    corrupt = _files(d)
    with pytest.raises(CheckpointError, match="step_00000004.pt is corrupt"):
        run(cfg, checkpoint=Checkpointing(d, every=2, resume=True))
    # truncated, and a sidecar without its file
    pt.write_bytes(bytes(data[:100]))
    with pytest.raises(SizeupError, match="corrupt"):
        run(cfg, checkpoint=Checkpointing(d, every=2, resume=True))
    pt.unlink()
    with pytest.raises(CheckpointError, match="step_00000004.pt is missing"):
        run(cfg, checkpoint=Checkpointing(d, every=2, resume=True))
    assert set(_files(d)) == set(corrupt) - {"step_00000004.pt"}
    assert _files(d)["step_00000002.pt"] == before["step_00000002.pt"]


def test_cli_refuses_a_resume_from_another_config(tmp_path):
    base = [sys.executable, "-m", "sizeup", "train", "--width", "64", "--steps", "3", "-q"]
    base += ["--set", "seq_len=32", "--set", "batch_size=4", "--out", str(tmp_path)]
    ok = subprocess.run([*base, "--checkpoint-every", "2"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    before = _files(tmp_path / "checkpoints")
    bad = subprocess.run([*base, "--lr", "0.01", "--resume"], capture_output=True, text=True)
    assert bad.returncode == 2 and "another run config" in bad.stderr and "lr=" in bad.stderr
    assert "Traceback" not in bad.stderr and _files(tmp_path / "checkpoints") == before
    again = subprocess.run([*base, "--checkpoint-every", "2"], capture_output=True, text=True)
    assert again.returncode == 2 and "--resume" in again.stderr
    no_out = subprocess.run([*base[:-2], "--checkpoint-every", "2"], capture_output=True, text=True)
    assert no_out.returncode == 2 and "--out" in no_out.stderr


def test_wsd_branch_from_a_saved_stable_phase_checkpoint(tmp_path):
    from sizeup.train.wsd import branch_from_checkpoint, wsd_branches

    cfg = RunConfig(**{**SMALL, "eval_every": 0, "schedule": "constant"})
    points = wsd_branches(cfg, [8, 12], decay_frac=0.5, save_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.glob("*.json")) == [
        "step_00000004.json",
        "step_00000006.json",
    ]
    for p, side in zip(points, ("step_00000004.json", "step_00000006.json")):
        b = branch_from_checkpoint(cfg, tmp_path / side, p.steps, decay_frac=0.5)
        assert b == p  # the branch wsd_branches took in memory, bit for bit
    # an earlier stable-phase checkpoint advances to the cooldown first
    assert (
        branch_from_checkpoint(cfg, tmp_path / "step_00000004.json", 12, decay_frac=0.5)
        == (points[1])
    )
    with pytest.raises(CheckpointError, match="past the stable phase"):
        branch_from_checkpoint(cfg, tmp_path / "step_00000006.json", 8, decay_frac=0.5)


@pytest.mark.parametrize("optimizer", ["adamw", "adamw_schedulefree"])
def test_trainer_save_load_round_trip(tmp_path, optimizer):
    """Trainer.save / Trainer.load: state restored into a fresh trainer continues identically
    (schedule-free AdamW too: saved in train mode, its weights y and state z; an evaluation
    before the save leaves y exactly as it was)."""
    from sizeup.train import Trainer, build

    if optimizer == "adamw_schedulefree":
        pytest.importorskip("schedulefree", reason="needs the schedulefree extra")
    cfg = RunConfig(**{**SMALL, "eval_every": 0, "optimizer": optimizer})
    a = Trainer.from_built(cfg, build(cfg))
    a.start()
    a.advance(5)
    a.evaluate()
    side = a.save(tmp_path, cfg)
    b = Trainer.from_built(cfg, build(cfg))
    b.load(side, cfg)
    assert b.step == 5 and b.reference == a.reference
    la, lb = [], []
    a.advance(9, on_step=lambda s, v: la.append(v))
    b.advance(9, on_step=lambda s, v: lb.append(v))
    assert la == lb and os.path.exists(side)
