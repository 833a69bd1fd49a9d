"""The registries: an optimizer and a model family are each one registry entry (plus the module
that implements them), and every stage takes them: train, the coordinate check, the planner's
table, `sizeup train` and the command line's help."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import toy_optim

import sizeup.registry as registry
from sizeup.config import RunConfig
from sizeup.registry import ModelEntry, OptimizerEntry, get_optimizer, optimizer_names

SIGNUM = OptimizerEntry(
    "signum",
    toy_optim.build,
    family="adam",
    reads=("beta1",),
    batch_moves=("lr",),
    summary="Signum (sign of the momentum), a test's toy",
)


@pytest.fixture
def signum(monkeypatch):
    """The toy optimizer registered for one test (sizeup.registry.register_optimizer)."""
    monkeypatch.setitem(registry._OPTIMIZERS, "signum", SIGNUM)
    return SIGNUM


SMALL = dict(width=64, base_width=32, depth=1, head_dim=16, seq_len=16, batch_size=4)


def test_a_registered_optimizer_trains(signum):
    from sizeup.train import build, run

    assert "signum" in optimizer_names()
    cfg = RunConfig(**SMALL, optimizer="signum", lr=3e-3, weight_decay=0.1, steps=8)
    built = build(cfg)
    assert isinstance(built.optimizer, toy_optim.Signum)
    # muP's Adam column (its family): hidden matrices eta / m_in, vectors eta; decay with torch
    # AdamW's meaning, lr x lambda per step, at every width
    groups = {n: g for g in built.optimizer.param_groups for n in g["names"]}
    q = groups["blocks.0.attn.q.weight"]
    assert q["lr"] == pytest.approx(3e-3 / 2)  # m_in = 64 / 32
    assert groups["ln_f.weight"]["lr"] == pytest.approx(3e-3)
    assert q["lr"] * q["weight_decay"] == pytest.approx(3e-4)
    r = run(cfg)
    assert r.final_val_loss < r.initial_val_loss and not r.diverged


def test_a_registered_optimizer_in_the_coordinate_check_and_the_plan(signum):
    from sizeup.diagnostics import coord_check
    from sizeup.plan import plan

    cfg = RunConfig(model="mlp", optimizer="signum", lr=1e-2, batch_size=64, base_width=64)
    r = coord_check(cfg, widths=(64, 128, 256), steps=2, seeds=3)  # MIN_SEEDS: a verdict
    assert r.settings["config"]["optimizer"] == "signum" and r.passed, r.worst
    p = plan(preset="chinchilla", params=1e8, optimizer="signum", base_width=128, lr=1e-3)
    q = next(row for row in p.layers if row["tensor"] == "blocks.*.attn.q")
    assert q["optimizer"] == "signum" and q["beta1"] == 0.9 and q["eps"] is None  # what it reads
    assert p.run.optimizer.name == "signum"


def test_a_registered_optimizer_on_the_command_line(signum, tmp_path, capsys):
    from sizeup.cli import main

    main(
        ["train", "--optimizer", "signum", "--width", "32", "--depth", "1", "--head-dim", "16"]
        + ["--seq-len", "16", "--batch-size", "2", "--steps", "3", "-q", "--out", str(tmp_path)]
    )
    assert "signum lr=0.003" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["train", "--optimizer", "adagrad", "--steps", "1", "-q"])
    assert e.value.code == 2
    assert "'signum'" in capsys.readouterr().err  # the error lists the registered ones


def test_an_optimizer_without_a_batch_rule_refuses_a_batch_transfer(monkeypatch):
    norule = OptimizerEntry("norule", toy_optim.build, family="adam", batch_moves=None)
    monkeypatch.setitem(registry._OPTIMIZERS, "norule", norule)
    with pytest.raises(Exception, match="base_batch_size.*no batch-transfer rule"):
        RunConfig(optimizer="norule", base_batch_size=8)


def test_a_registered_model_family(monkeypatch):
    """A model family is a build function and its FLOPs: here an MLP with no biases."""
    from sizeup.data import TEACHER_CLASSES, TEACHER_IN_DIM
    from sizeup.diagnostics import coord_check
    from sizeup.models import MLP
    from sizeup.train import run

    def build(spec):
        return MLP(TEACHER_IN_DIM, spec.width, spec.depth, TEACHER_CLASSES, bias=False)

    entry = ModelEntry(
        "mlp_nobias",
        build,
        lambda spec: 6.0 * spec.width * (TEACHER_IN_DIM + TEACHER_CLASSES),
        data="teacher",
        heads=False,
    )
    monkeypatch.setitem(registry._MODELS, "mlp_nobias", entry)
    cfg = RunConfig(model="mlp_nobias", width=64, depth=2, batch_size=32, steps=5)
    r = run(cfg)
    assert r.final_val_loss < r.initial_val_loss
    check = coord_check(cfg, widths=(64, 128), steps=1, seeds=1)
    assert {m.name for m in check.modules} >= {"input", "hidden.0", "readout"}


def test_the_optimizer_table_in_the_docs_is_the_registry():
    """docs/optim.md's "The optimizers" table says what each entry says (rules column, batch
    moves, typical lr, extra, summary), one row per registered optimizer, in registry order."""

    def lr(e):
        if e.typical_lr is None:
            return "AdamW's grid"
        x = math.log2(e.typical_lr)
        return f"2^{x:.0f}" if abs(x - round(x)) < 1e-9 else f"{e.typical_lr:g}"

    want = []
    for n in optimizer_names():
        e = get_optimizer(n)
        moves = ", ".join(e.batch_moves) if e.batch_moves else "none known (refused)"
        want.append(f"| `{n}` | {e.family} | {moves} | {lr(e)} | {e.extra or '-'} | {e.summary} |")
    doc = (Path(__file__).parents[1] / "docs" / "optim.md").read_text()
    section = doc.split("## The optimizers", 1)[1].split("\n## ", 1)[0]
    got = [line for line in section.splitlines() if line.startswith("| `")]
    assert got == want
