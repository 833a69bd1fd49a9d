"""Every registered optimizer works everywhere (issue 21, "Everything works with every
optimizer"): `sizeup train --set optimizer=X`, bit-identical resume, the coordinate check, a
sweep, the planner's per-tensor table, export, and FSDP2 (slow).

The cases are parametrized over ``sizeup.registry.optimizer_names()`` when this file is
collected, so an optimizer registered in sizeup joins every case with no edit here; the toy
Signum of tests/toy_optim.py, registered by a fixture as a user would register theirs, proves a
newcomer is picked up. An optimizer whose pip extra is not installed is skipped, naming the
extra. Each runs on the tiny GPT (width 64 over base 32, one block) or, where its registry entry
says it trains only other families (``OptimizerEntry.models``), on the first of those.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp

import pytest
import torch
from test_registry import SIGNUM

import sizeup.registry as registry
from sizeup.config import RunConfig
from sizeup.config.optimizer import OptimSpec
from sizeup.diagnostics.coord_check.result import FAIL, INCONCLUSIVE, PASS
from sizeup.errors import ConfigError
from sizeup.registry import get_model, get_optimizer, optimizer_names

# Collected now: every registered optimizer, then the toy a fixture registers.
NAMES = (*optimizer_names(), SIGNUM.name)

# The brief's tiny runs: a GPT 64 wide over a base of 32, one block of 4 heads of 16, 16-token
# sequences, 4 of them a step; the MLP on the teacher task for the optimizers that say so.
SHAPES = {
    "gpt": dict(model="gpt", width=64, base_width=32, depth=1, head_dim=16, seq_len=16),
    "mlp": dict(model="mlp", width=64, base_width=32, depth=2),
}
BATCH = {"gpt": 4, "mlp": 32}

# Coordinate check (MLP widths 64-256, 3 seeds, 2 steps, test_registry's settings): the
# optimizers seen to PASS. Measured with
#   coord_check(RunConfig(model="mlp", optimizer=X, lr=typical_lr or 1e-2, batch_size=64,
#               base_width=64), widths=(64, 128, 256), steps=2, seeds=3)
# adamw, sgd, muon, adamw_schedulefree, signum: PASS. Any other optimizer is only required to
# give a verdict (its verdict is printed: a FAIL is a finding, see docs/optim.md).
KNOWN_PASS = {"adamw", "sgd", "muon", "adamw_schedulefree", "signum"}

# FSDP2 against one process: float32 arithmetic summed in another order on two ranks; after a
# few steps the losses agree to ~1e-6 (test_fsdp.py's bound, 1e-5, is used).
FSDP_TOL = 1e-5
FSDP_STEPS = 4


@pytest.fixture(scope="module", autouse=True)
def _signum():
    """The toy optimizer registered for this module, the way any optimizer is registered."""
    with pytest.MonkeyPatch.context() as m:
        m.setitem(registry._OPTIMIZERS, SIGNUM.name, SIGNUM)
        yield


def family_of(name: str) -> str:
    """The model family the optimizer is tried on: the GPT, unless its entry names others."""
    models = get_optimizer(name).models
    return "gpt" if not models or "gpt" in models else models[0]


def lr_of(name: str) -> float:
    """Its registry entry's typical lr, else OptimSpec's default (AdamW's 3e-3)."""
    typical = get_optimizer(name).typical_lr
    return OptimSpec().lr if typical is None else typical


def config(name: str, **kw) -> RunConfig:
    """The tiny run of optimizer ``name`` (10 steps unless told)."""
    fam = family_of(name)
    fields = dict(SHAPES[fam], batch_size=BATCH[fam], eval_batches=1, steps=10)
    fields.update(optimizer=name, lr=lr_of(name), weight_decay=0.1, **kw)
    return RunConfig(**fields)


@pytest.fixture(scope="module", params=NAMES)
def name(request, _signum):
    """An optimizer's name; skipped, naming its extra, where its package is not installed."""
    from sizeup.train import build

    n = request.param
    assert n in optimizer_names()  # the toy too: registered, so picked up
    entry = get_optimizer(n)
    try:
        build(config(n, steps=1))
    except ConfigError as e:
        if entry.extra and "pip install" in str(e):
            pytest.skip(f"{n} needs the '{entry.extra}' extra: {e}")
        raise
    return n


def _flat(cfg: RunConfig) -> dict:
    """The run's fields a config file or --set gives (everything but the optimizer)."""
    d = {k: v for k, v in cfg.to_dict().items() if v is not None}
    d.pop("optimizer")
    return d


@pytest.fixture(scope="module")
def trained(name, tmp_path_factory):
    """`sizeup train -c run.json --set optimizer=NAME`: 10 steps, a checkpoint at the end."""
    from sizeup.cli import main

    d = tmp_path_factory.mktemp(f"run_{name}")
    cfg = config(name)
    (d / "run.json").write_text(json.dumps(_flat(cfg)))
    sets = ["--set", f"optimizer={name}"]
    args = ["--out", str(d / "out"), "--checkpoint-every", "10", "-q"]
    main(["train", "-c", str(d / "run.json"), *sets, *args])
    return d, cfg, sets


def test_train_on_the_command_line(trained, name):
    d, cfg, _ = trained
    got = json.loads((d / "out" / "result.json").read_text())
    assert got["config"]["optimizer"] == name
    assert RunConfig.from_dict(got["config"]) == cfg  # the run is the config it was given
    assert len(got["train_loss"]) == 10 and all(math.isfinite(v) for v in got["train_loss"])
    assert not got["diverged"]
    assert got["final_val_loss"] < got["initial_val_loss"], (name, got["val_loss"])


def _params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_resume_is_bit_identical(name, tmp_path):
    """6 steps straight vs 3 steps, a checkpoint, and 3 more resumed from it (a fresh trainer
    reading the file, as `sizeup train --resume` does): the same losses and weights, exactly."""
    from sizeup.train import Checkpointing, run

    cfg = config(name, steps=6, eval_every=2)
    models = []
    full = run(cfg, on_built=lambda b: models.append(b.model))
    ck = tmp_path / "ck"
    run(cfg, checkpoint=Checkpointing(ck, every=3, keep=None))
    for p in ck.glob("step_00000006.*"):  # keep the step-3 checkpoint only
        p.unlink()
    resumed = run(
        cfg, on_built=lambda b: models.append(b.model), checkpoint=Checkpointing(ck, resume=True)
    )
    assert resumed.resumed_from == 3
    assert resumed.train_loss == full.train_loss and resumed.val_loss == full.val_loss
    assert resumed.final_val_loss == full.final_val_loss
    a, b = _params(models[0]), _params(models[1])
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), (name, k)


def test_coordinate_check_gives_a_verdict(name):
    from sizeup.diagnostics import coord_check

    cfg = RunConfig(model="mlp", optimizer=name, lr=get_optimizer(name).typical_lr or 1e-2)
    cfg = cfg.replace(batch_size=64, base_width=64)
    r = coord_check(cfg, widths=(64, 128, 256), steps=2, seeds=3)  # MIN_SEEDS: a verdict
    assert r.settings["config"]["optimizer"] == name
    assert r.verdict in (PASS, FAIL, INCONCLUSIVE)
    print(f"coord-check {name}: {r.verdict} (worst {r.worst})")
    if name in KNOWN_PASS:
        assert r.passed, r.worst


def test_a_sweep_with_the_optimizer(name, tmp_path):
    from sizeup.sweep import Store, run_sweep

    base = {**config(name, steps=3).to_dict()}
    spec = {"base": base, "axes": {"seed": [0, 1]}}
    rep = run_sweep(spec, tmp_path / "s.db", progress=False)
    assert rep.counts["done"] == 2, rep.counts
    with Store(tmp_path / "s.db") as st:
        trials = st.trials()
        assert len(trials) == 2
        assert all(t.config.optimizer.name == name and t.status == "done" for t in trials)


def test_the_planners_table_is_the_built_runs(name):
    """plan(optimizer=X)'s per-tensor rows: one per tensor class of the model it plans, each
    with the lr (and decay per step) the run built from the plan's run.json gives it."""
    from sizeup.optim import collapse, tensor_table
    from sizeup.plan import plan
    from sizeup.plan.table import COLUMNS
    from sizeup.train import build

    if family_of(name) != "gpt":
        pytest.skip(f"the planner plans GPTs; {name} trains {get_optimizer(name).models}")
    p = plan(
        preset="chinchilla",
        tokens=5e7,
        batch_tokens=4096,
        seq_len=64,
        vocab_size=256,
        head_dim=32,
        width=128,
        depth=2,
        base_width=64,
        lr=lr_of(name),
        optimizer=name,
    )
    assert p.run.optimizer.name == name
    built = build(p.run)
    got = {
        r["tensor"]: r
        for r in collapse(tensor_table(built.parametrization.rows(), built.optimizer), COLUMNS)
    }
    assert {r["tensor"] for r in p.layers} == set(got)
    for row in p.layers:
        assert row["lr"] is not None and row["lr"] > 0, row
        for k in ("lr", "decay_per_step"):
            assert got[row["tensor"]][k] == pytest.approx(row[k], rel=1e-12), (row["tensor"], k)


def test_export_gives_the_trained_logits(trained, name):
    """`sizeup export -c run.json --checkpoint DIR`: a plain model (multipliers folded in) with
    the trained run's logits."""
    from sizeup.cli import main
    from sizeup.train import build
    from sizeup.train.checkpoint import latest
    from sizeup.train.step import output_logits

    d, cfg, sets = trained
    ck = d / "out" / "checkpoints"
    assert latest(ck) is not None
    main(
        ["export", "-c", str(d / "run.json"), *sets, "--checkpoint", str(ck)]
        + ["--out", str(d / "plain")]
    )
    built = build(cfg)
    state = torch.load(ck / "step_00000010.pt", weights_only=True)
    built.model.load_state_dict(state["model"])
    plain = get_model(cfg.model.name).builder()(cfg.model)
    plain.load_state_dict(torch.load(d / "plain" / "model.pt", weights_only=True))
    x = built.data.val_batches()[0][0]
    with torch.no_grad():
        want = output_logits(built.model.eval()(x))
        have = output_logits(plain.eval()(x))
    torch.testing.assert_close(have, want, rtol=1e-5, atol=1e-5)


def _fsdp_worker(entry, rank: int, world: int, store: str, out: str) -> None:
    import torch.distributed as dist

    from sizeup.train import run

    torch.set_num_threads(1)
    name = registry.register_optimizer(entry).name  # a spawned process: the toy is not there
    dist.init_process_group("gloo", rank=rank, world_size=world, init_method=f"file://{store}")
    try:
        r = run(fsdp_config(name).replace(fsdp=True), rank=rank, world_size=world)
        with open(f"{out}.{rank}.json", "w") as f:
            json.dump({"train": r.train_loss, "val": r.final_val_loss}, f)
    finally:
        dist.destroy_process_group()


def fsdp_config(name: str) -> RunConfig:
    """The FSDP run: muP, clipping, Newton-Schulz in float32 (in bf16 two ranks' summation
    order flips roundings; test_fsdp.py)."""
    return config(
        name,
        steps=FSDP_STEPS,
        eval_every=2,
        rule="mup",
        grad_clip=1.0,
        ns_dtype="float32",
        **CONDITIONED.get(name, {}),
    )


# Settings that keep an optimizer's own linear algebra well conditioned on this tiny model, so
# that two ranks' different summation orders stay at float32 rounding: at full rank Dion
# orthonormalises and column-normalises directions the 64-token gradient barely has (its rank
# is below the matrix's), which turns rounding into unit-norm updates (9.5e-3 apart after 4
# steps, measured); a quarter rank keeps to the gradient's strong directions (the paper also
# runs 1/4). Shampoo's inverse fourth roots at damping 1e-6 amplify rounding to 1.2e-5 (2.4e-7
# at 1e-2, measured on its own tests).
CONDITIONED: dict[str, dict] = {
    "dion": {"dion_rank": 0.25},
    "shampoo": {"shampoo_damping": 1e-2},
}
# Refused under FSDP2 with a ConfigError naming fsdp (tests/test_optim_library.py checks the
# message): pytorch-optimizer's Adafactor and SOAP read their parameters' full shapes.
FSDP_REFUSED = {"adafactor", "soap"}


@pytest.mark.slow
def test_fsdp_two_processes_match_one(name, tmp_path):
    """FSDP2 on 2 gloo processes follows the one-process run (same global batch): train and
    final validation losses within FSDP_TOL (float32)."""
    if name in FSDP_REFUSED:
        pytest.skip(f"{name} is refused under FSDP2 by name (FSDP_REFUSED)")
    from sizeup.train import run

    ctx = mp.get_context("spawn")
    out = str(tmp_path / "rank")
    procs = [
        ctx.Process(
            target=_fsdp_worker, args=(get_optimizer(name), r, 2, str(tmp_path / "store"), out)
        )
        for r in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    files = [tmp_path / f"rank.{r}.json" for r in range(2)]
    assert all(f.exists() for f in files), (
        f"a rank wrote no result (exit codes {[p.exitcode for p in procs]})"
    )
    single = run(fsdp_config(name))
    for f in files:
        g = json.loads(f.read_text())
        assert len(g["train"]) == len(single.train_loss) == FSDP_STEPS
        assert max(abs(a - b) for a, b in zip(g["train"], single.train_loss)) <= FSDP_TOL, name
        assert abs(g["val"] - single.final_val_loss) <= FSDP_TOL, name
