"""`sizeup export -c run.yaml` from a checkpoint `sizeup train --checkpoint-every` wrote: the .pt
file, its sidecar or the folder (the newest) as --weights or --checkpoint gives a plain model with
the trained model's logits; a plain state_dict still works; a file that is neither, a checkpoint
of another config, or a damaged one is one line naming the field, exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from sizeup.config import RunConfig
from sizeup.models import GPT
from sizeup.train.build import build
from sizeup.train.step import evaluate

# A run whose export moves weights: a tied readout (1/2 into the final norm), a depth
# multiplier (2/1)^-1/2 on each residual branch and the 1/d attention scale.
FIELDS = dict(model="gpt", width=64, depth=2, head_dim=16, base_width=32, base_depth=1)
FIELDS.update(seq_len=16, tie_embeddings=True, batch_size=4, eval_batches=1, steps=10)
CKPT = ["--checkpoint-every", "5", "--keep-checkpoints", "0"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 10-step run trained through the CLI with checkpoints at steps 5 and 10."""
    from sizeup.cli import main

    d = tmp_path_factory.mktemp("run")
    (d / "run.yaml").write_text("\n".join(f"{k}: {v}" for k, v in FIELDS.items()))
    main(["train", "-c", str(d / "run.yaml"), "--out", str(d / "out"), "-q"] + CKPT)
    return d


def _export(d, *args: str) -> GPT:
    """`sizeup export -c run.yaml ARGS --out plain`, and the plain model it wrote."""
    from sizeup.cli import main

    main(["export", "-c", str(d / "run.yaml"), *args, "--out", str(d / "plain")])
    plain = GPT(build(RunConfig(**FIELDS)).model.config)
    plain.load_state_dict(torch.load(d / "plain" / "model.pt", weights_only=True))
    return plain.eval()


def _trained_model(d, step: int) -> torch.nn.Module:
    """The parametrized run's model (multipliers as hooks) with the checkpoint's weights."""
    state = torch.load(d / "out" / "checkpoints" / f"step_{step:08d}.pt", weights_only=True)
    model = build(RunConfig(**FIELDS)).model
    model.load_state_dict(state["model"])
    return model.eval()


def _same_logits(plain: torch.nn.Module, model: torch.nn.Module) -> None:
    x = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(plain(x)[0], model(x)[0], rtol=1e-5, atol=1e-5)


def test_export_from_a_checkpoint_gives_the_trained_logits(trained):
    d, ck = trained, trained / "out" / "checkpoints"
    final = _trained_model(d, 10)
    for args in (
        ["--weights", str(ck / "step_00000010.pt")],  # the .pt file train wrote
        ["--weights", str(ck / "step_00000010.json")],  # its sidecar
        ["--weights", str(ck)],  # the folder: the newest
        ["--checkpoint", str(ck)],
        ["--checkpoint", str(ck / "step_00000010.pt")],
    ):
        _same_logits(_export(d, *args), final)
    # an older checkpoint is that step's model, not the newest
    _same_logits(_export(d, "--checkpoint", str(ck / "step_00000005.json")), _trained_model(d, 5))
    # the plain model's validation loss is the run's final one (result.json)
    result = json.loads((d / "out" / "result.json").read_text())
    plain = _export(d, "--checkpoint", str(ck))
    val = build(RunConfig(**FIELDS)).data.val_batches()
    assert evaluate(plain, val) == pytest.approx(result["final_val_loss"], rel=1e-5)
    # a plain state_dict keeps working
    torch.save(final.state_dict(), d / "model.pt")
    _same_logits(_export(d, "--weights", str(d / "model.pt")), final)


def _refused(capsys, d, *args: str) -> str:
    """Export with ARGS: exit code 2 and the one line it printed."""
    from sizeup.cli import main

    with pytest.raises(SystemExit) as e:
        main(["export", "-c", str(d / "run.yaml"), *args, "--out", str(d / "refused")])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1, err
    assert not (d / "refused").exists()
    return err


def test_export_refuses_what_is_not_exportable_by_name(trained, capsys):
    d, ck = trained, trained / "out" / "checkpoints"
    where = "--checkpoint-every N` writes DIR/checkpoints/step_*.pt"
    # neither a checkpoint nor a state_dict: a text file, a dict of numbers
    (d / "notes.txt").write_text("not weights")
    err = _refused(capsys, d, "--weights", str(d / "notes.txt"))
    assert "weights=" in err and where in err and "torch.save(model.state_dict())" in err
    torch.save({"lr": 0.1}, d / "dict.pt")
    assert where in _refused(capsys, d, "--weights", str(d / "dict.pt"))
    # a state_dict of another model
    torch.save({"w": torch.zeros(2)}, d / "other.pt")
    err = _refused(capsys, d, "--weights", str(d / "other.pt"))
    assert "weights=" in err and "unexpected: w" in err and "missing: wte.weight" in err
    # --checkpoint wants a checkpoint: a state_dict file has no sidecar; a folder holds none
    err = _refused(capsys, d, "--checkpoint", str(d / "other.pt"))
    assert "checkpoint=" in err and "no sidecar" in err and where in err
    assert "holds no checkpoint" in _refused(capsys, d, "--checkpoint", str(d))
    # the .pt file without its sidecar (copied alone)
    (d / "alone.pt").write_bytes((ck / "step_00000005.pt").read_bytes())
    assert "step_00000005.json" in _refused(capsys, d, "--weights", str(d / "alone.pt"))
    err = _refused(capsys, d, "--weights", str(ck), "--checkpoint", str(ck))
    assert "not both" in err
    # a checkpoint of another config: the fields that differ, by name
    err = _refused(capsys, d, "--checkpoint", str(ck), "--set", "base_width=16")
    assert "base_width=32 in the checkpoint, 16 here" in err and "step_00000010.pt" in err


def test_export_refuses_a_damaged_checkpoint_in_one_line(trained, tmp_path):
    """Through `python -m sizeup` as a user types it: a checkpoint whose bytes changed."""
    ck = trained / "out" / "checkpoints"
    bad = tmp_path / "checkpoints"
    bad.mkdir()
    for name in ("step_00000010.pt", "step_00000010.json"):
        (bad / name).write_bytes((ck / name).read_bytes())
    data = bytearray((bad / "step_00000010.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bad / "step_00000010.pt").write_bytes(bytes(data))
    r = subprocess.run(
        [sys.executable, "-m", "sizeup", "export", "-c", str(trained / "run.yaml")]
        + ["--weights", str(bad / "step_00000010.pt"), "--out", str(tmp_path / "plain")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "weights=" in r.stderr and "is corrupt" in r.stderr
    assert not (tmp_path / "plain").exists()
