"""Dion (Ahn et al. 2025, arXiv 2504.05295, Algorithm 1): at full rank and started at B's right
singular vectors one step is Muon's U V^T exactly; its power iteration converges to U V^T; at
rank r the update has rank r and the error feedback keeps the rest (a 4 x 3 hand check); a step
on a small model is Algorithm 1 by hand; the groups are Muon's (rules table, muon_lr, scale);
`sizeup train` trains with it; a resumed run is bit-identical and the checkpoint check knows Q's
shape; FSDP2 on 2 gloo processes equals one process, and resumes bit-identically."""

from __future__ import annotations

import json
import math
import multiprocessing as mp

import pytest
import torch
from resume_harness import straight_and_resumed
from small_configs import SMALL_GPT
from test_checkpoint_contents import write_as
from test_muon import _model, _scalings
from torch import nn

from sizeup.config import RunConfig
from sizeup.errors import CheckpointError, ConfigError
from sizeup.optim import build_optimizer
from sizeup.optim.dion import (
    Dion,
    column_normalise,
    dion_rank,
    initial_q,
    orthonormal_columns,
    power_iteration,
)
from sizeup.registry import get_optimizer
from sizeup.train import Checkpointing, run

F64 = dict(dtype=torch.float64)


def _random(m: int, n: int, seed: int) -> torch.Tensor:
    return torch.randn(m, n, generator=torch.Generator().manual_seed(seed), **F64)


def _with_singular_values(m: int, n: int, s: list[float], seed: int = 0) -> torch.Tensor:
    """U diag(s) V^T with random orthonormal U (m x k), V (n x k), k = len(s), float64."""
    u, _ = torch.linalg.qr(_random(m, len(s), seed))
    v, _ = torch.linalg.qr(_random(n, len(s), seed + 1))
    return u @ torch.diag(torch.tensor(s, **F64)) @ v.T


def _preset(opt: Dion, w: nn.Parameter, q: torch.Tensor) -> None:
    """Start w's Dion state at M = 0 and the given Q (instead of the seeded random Q)."""
    opt.state[w]["momentum_buffer"] = torch.zeros_like(w)
    opt.state[w]["Q"] = q.clone()


@pytest.mark.parametrize("shape", [(12, 8), (8, 12), (10, 10)])
def test_full_rank_from_v_is_muons_update_exactly(shape):
    # Module doc: B V = U S, so P = U, R = V S, Q = V and P Q^T = U V^T (float64 SVD), which is
    # the polar factor Muon's Newton-Schulz approximates; the step is lr x scale x U V^T.
    m, n = shape
    b = _random(m, n, 1)
    u, _, vh = torch.linalg.svd(b, full_matrices=False)
    w = nn.Parameter(torch.zeros(m, n, **F64))
    lr, mu = 0.01, 0.95
    opt = Dion([w], lr=lr, momentum=mu, dion_rank=1.0, dion_eps=0.0)
    _preset(opt, w, vh.T)
    w.grad = b.clone()
    opt.step()
    scale = math.sqrt(m / n)  # the paper's sqrt(m/n), Muon's "spectral" mode
    torch.testing.assert_close(w.detach(), -lr * scale * (u @ vh), rtol=0, atol=1e-13)
    torch.testing.assert_close(opt.state[w]["Q"], vh.T, rtol=0, atol=1e-12)
    # P R^T = B at full rank: the error feedback keeps mu B
    torch.testing.assert_close(opt.state[w]["momentum_buffer"], mu * b, rtol=0, atol=1e-13)


def test_power_iteration_converges_to_the_polar_factor():
    # Subspace iteration with a warm start (the paper's amortised power iteration, section 2):
    # on a fixed B with singular values 8, 4, 2, 1 the error shrinks like 1/2 per step.
    b = _with_singular_values(9, 6, [8.0, 4.0, 2.0, 1.0, 0.5, 0.25])
    u, _, vh = torch.linalg.svd(b, full_matrices=False)
    q = initial_q(6, 6, seed=3)
    for _ in range(80):
        p, r = power_iteration(b, q, rows=9)
        q = column_normalise(r, q, 0.0)
    torch.testing.assert_close(p @ q.T, u @ vh, rtol=0, atol=1e-12)


def test_orthonormal_columns_and_a_rank_deficient_block():
    x = _random(20, 5, 4)
    p = orthonormal_columns(x, rows=20)
    # to the shift's bias, (rows + r) x float64 eps x r (module doc): ~3e-14
    torch.testing.assert_close(p.T @ p, torch.eye(5, **F64), rtol=0, atol=1e-13)
    # the same span: P = X T for an upper triangular T (Cholesky QR is QR: X = P R)
    t = torch.linalg.lstsq(x, p).solution
    torch.testing.assert_close(t, t.triu(), rtol=0, atol=1e-12)
    # a zero block factors (shifted Cholesky) to zero columns, not noise
    z = orthonormal_columns(torch.zeros(6, 3, **F64), rows=6)
    assert torch.equal(z, torch.zeros_like(z))


def test_a_non_finite_gradient_gives_a_non_finite_step_not_an_error():
    # a diverging run: the trainer's divergence test judges it, as with Muon
    w = nn.Parameter(torch.zeros(6, 4))
    opt = Dion([w], lr=0.01)
    w.grad = torch.full((6, 4), float("nan"))
    opt.step()
    assert not torch.isfinite(w).any()


def test_rank_r_update_and_error_feedback_by_hand():
    # B = diag(3, 2, 1) over a 4 x 3 matrix, r = 1, Q0 = e1 (hand computation of Algorithm 1):
    # P = B e1 / |B e1| = e1, R = B^T e1 = (3, 0, 0), Q = e1, P Q^T = E11, and with mu = 0.5
    # M = B - (1 - mu) P R^T = diag(3 - 1.5, 2, 1): the rank-1 step takes half of sigma_1's
    # direction and leaves sigma_2 and sigma_3 in M for the next steps.
    assert dion_rank(1 / 3, 4, 3) == 1 and dion_rank(0.5, 4, 3) == 2 and dion_rank(1.0, 4, 3) == 3
    b = torch.zeros(4, 3, **F64)
    b[0, 0], b[1, 1], b[2, 2] = 3.0, 2.0, 1.0
    w = nn.Parameter(torch.zeros(4, 3, **F64))
    lr, mu = 0.1, 0.5
    opt = Dion([w], lr=lr, momentum=mu, dion_rank=1 / 3)
    _preset(opt, w, torch.tensor([[1.0], [0.0], [0.0]], **F64))
    w.grad = b.clone()
    opt.step()
    e11 = torch.zeros(4, 3, **F64)
    e11[0, 0] = 1.0
    want_m = b.clone()
    want_m[0, 0] = 1.5
    torch.testing.assert_close(opt.state[w]["momentum_buffer"], want_m, rtol=0, atol=1e-14)
    torch.testing.assert_close(w.detach(), -lr * math.sqrt(4 / 3) * e11, rtol=0, atol=1e-14)
    # the next step, G = 0: B = M, Q = e1 still, P = e1: R = (1.5, 0, 0), again rank 1
    w.grad = torch.zeros_like(b)
    opt.step()
    assert torch.linalg.matrix_rank(w.detach()).item() == 1
    # at rank 2 from a random Q the update has rank 2 exactly
    w2 = nn.Parameter(torch.zeros(4, 3, **F64))
    opt2 = Dion([w2], lr=lr, momentum=mu, dion_rank=0.5)
    w2.grad = _random(4, 3, 5)
    opt2.step()
    assert opt2.state[w2]["Q"].shape == (3, 2)
    assert torch.linalg.matrix_rank(w2.detach()).item() == 2


def test_a_stack_of_expert_matrices_is_each_its_own_matrix():
    # a 3-D (experts, out, in) parameter: each expert steps as the 2-D matrix it is
    grads = _random(18, 4, 6).reshape(3, 6, 4)
    qs = initial_q(4, 2, seed=7, experts=3)
    stack = nn.Parameter(torch.zeros(3, 6, 4, **F64))
    opt = Dion([stack], lr=0.1, momentum=0.8, dion_rank=0.5)
    _preset(opt, stack, qs)
    stack.grad = grads.clone()
    opt.step()
    for e in range(3):
        w = nn.Parameter(torch.zeros(6, 4, **F64))
        one = Dion([w], lr=0.1, momentum=0.8, dion_rank=0.5)
        _preset(one, w, qs[e])
        w.grad = grads[e].clone()
        one.step()
        torch.testing.assert_close(stack.detach()[e], w.detach(), rtol=0, atol=1e-15)
        torch.testing.assert_close(opt.state[stack]["Q"][e], one.state[w]["Q"], rtol=0, atol=1e-15)


def test_a_step_on_a_small_model_is_algorithm_1_by_hand():
    # Three steps of build_optimizer's Dion on the small MLP in float64 against Algorithm 1
    # written out with Householder QR (torch.linalg.qr) and Q0 from the documented seed: the
    # parameter's position among the optimizer's parameters.
    model = _model().double()
    lr, wd, mu, frac = 0.02, 0.1, 0.9, 0.25
    opt = build_optimizer(
        model, _scalings(model), "dion", lr=lr, weight_decay=wd, momentum=mu, dion_rank=frac
    )
    (hidden,) = [g for g in opt.param_groups if g["use_muon"]]
    w = model[2].weight
    assert hidden["names"] == ["2.weight"] and hidden["update_scale"] == 1.0  # 32 x 32
    position = next(
        i for i, p in enumerate(p for g in opt.param_groups for p in g["params"]) if p is w
    )
    q = torch.randn(32, 8, generator=torch.Generator().manual_seed(position), **F64)
    m = torch.zeros(32, 32, **F64)
    mine = w.detach().clone()
    gen = torch.Generator().manual_seed(5)
    x, y = torch.randn(64, 8, generator=gen, **F64), torch.randint(0, 4, (64,), generator=gen)
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        torch.testing.assert_close(w.detach(), mine, rtol=0, atol=1e-12)
        b = m + w.grad
        p, _ = torch.linalg.qr(b @ q)
        r = b.T @ p
        m = b - (1 - mu) * p @ r.T
        q = r / r.norm(dim=0, keepdim=True)
        # the test's scalings give 2.weight lr_mult 0.5, wd_mult 1: group lr = eta x 0.5, decay
        # eta x lambda per step (torch's AdamW meaning at the base width), scale sqrt(32/32)
        mine = mine * (1 - lr * wd) - lr * 0.5 * 1.0 * p @ q.T
        opt.step()
    torch.testing.assert_close(w.detach(), mine, rtol=0, atol=1e-12)
    torch.testing.assert_close(opt.state[w]["momentum_buffer"], m, rtol=0, atol=1e-12)


def test_groups_are_muons_from_the_rules():
    # Dion reads the rules table's Muon column and Muon's scale: every tensor's lr, decay and
    # update scale are Muon's (one source of truth), e.g. a hidden matrix at muon_lr x 1 with
    # scale sqrt(fan_out / fan_in) and muon_lr x lambda removed per step.
    from sizeup.train import build

    entry = get_optimizer("dion")
    assert entry.family == "muon" and entry.orthogonal and "dion_rank" in entry.reads
    kw = dict(SMALL_GPT, rule="mup", lr=3e-3, muon_lr=0.02, weight_decay=0.1)
    mine = build(RunConfig(**kw, optimizer="dion", dion_rank=0.5)).optimizer
    ref = build(RunConfig(**kw, optimizer="muon")).optimizer
    assert isinstance(mine, Dion)
    keys = ("names", "role", "lr", "weight_decay", "use_muon", "update_scale", "lr_mult")
    assert [{k: g[k] for k in keys} for g in mine.param_groups] == [
        {k: g[k] for k in keys} for g in ref.param_groups
    ]
    groups = {n: g for g in mine.param_groups for n in g["names"]}
    up = next(g for n, g in groups.items() if n.endswith("mlp.up.weight"))
    assert up["use_muon"] and up["lr"] == pytest.approx(0.02)
    assert up["lr"] * up["weight_decay"] == pytest.approx(0.02 * 0.1)
    fan_out, fan_in = up["params"][0].shape
    assert up["update_scale"] == pytest.approx(math.sqrt(fan_out / fan_in))
    assert up["dion_rank"] == 0.5 and up["momentum"] == 0.9


def test_bad_settings_are_refused_by_name():
    with pytest.raises(ConfigError, match="dion_rank"):
        RunConfig(optimizer="dion", dion_rank=0.0)
    with pytest.raises(ConfigError, match="dion_rank"):
        RunConfig(optimizer="dion", dion_rank=1.5)
    with pytest.raises(ConfigError, match="dion_rank"):
        Dion([nn.Parameter(torch.zeros(3, 3))], dion_rank=2.0)
    with pytest.raises(ConfigError, match="use_muon"):
        Dion([nn.Parameter(torch.zeros(3))])


def test_sizeup_train_with_dion(tmp_path, capsys):
    from sizeup.cli import main

    main(
        ["train", "--set", "optimizer=dion", "--set", "dion_rank=0.5", "--width", "64"]
        + ["--depth", "2", "--head-dim", "16", "--seq-len", "32", "--batch-size", "8"]
        + ["--steps", "10", "--lr", "0.01", "--out", str(tmp_path)]
    )
    res = json.loads((tmp_path / "result.json").read_text())
    assert res["config"]["optimizer"] == "dion"
    assert "rank 0.5 of min(fan_out, fan_in)" in capsys.readouterr().out
    assert res["final_val_loss"] < res["initial_val_loss"] - 0.5 and not res["diverged"]


def test_resume_is_bit_identical(tmp_path):
    # 6 steps straight equal 3 steps, save, load into a fresh trainer, 3 more (M and Q restored).
    from sizeup.train import Trainer, build

    cfg = RunConfig(**{**SMALL_GPT, "eval_every": 0, "steps": 6}, optimizer="dion", lr=0.01)
    cfg = cfg.replace(dion_rank=0.5, weight_decay=0.1)
    a, la, c, lb = straight_and_resumed(cfg, tmp_path, 3)
    assert la == lb
    for p, q in zip(a.model.parameters(), c.model.parameters()):
        assert torch.equal(p, q)
    # the checkpoint check knows Q's shape (fan_in x r: OptimizerEntry.state_shapes) and
    # refuses another by name
    pt = next(tmp_path.glob("*.pt"))
    state = torch.load(pt, weights_only=False)
    q = state["optimizer"]["state"]["blocks.0.attn.q.weight"]
    assert q["Q"].shape == (64, 32)  # rank 1/2 of 64 x 64
    q["Q"] = torch.zeros(64, 64)
    bad = write_as(state, tmp_path / "bad", 3)
    d = Trainer.from_built(cfg, build(cfg))
    with pytest.raises(CheckpointError, match=r"\['Q'\].*shape \(64, 32\)"):
        d.load(bad.with_suffix(".json"), cfg)


FSDP = dict(SMALL_GPT, steps=6, rule="mup", weight_decay=0.1, grad_clip=1.0)
FSDP_RUN = dict(optimizer="dion", lr=0.01, dion_rank=0.5)


def _worker(rank: int, world: int, store: str, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world, init_method=f"file://{store}")
    try:
        cfg = RunConfig(**FSDP, **FSDP_RUN, fsdp=True)
        r = run(cfg, rank=rank, world_size=world)
        # interrupted after the checkpoint at step 3, then resumed from it (M and Q sharded and
        # gathered by torch's full state dict)
        ck = f"{out}.checkpoints"
        try:
            run(
                cfg,
                rank=rank,
                world_size=world,
                callbacks=[_Stop()],
                checkpoint=Checkpointing(ck, 3),
            )
        except _Stopped:
            pass
        dist.barrier()
        again = Checkpointing(ck, 3, resume=True)
        resumed = run(cfg, rank=rank, world_size=world, checkpoint=again)
        with open(f"{out}.{rank}.json", "w") as f:
            json.dump(
                {
                    "train": r.train_loss,
                    "val": r.final_val_loss,
                    "resumed": resumed.train_loss,
                    "resumed_val": resumed.final_val_loss,
                    "resumed_from": resumed.resumed_from,
                },
                f,
            )
    finally:
        dist.destroy_process_group()


class _Stopped(Exception):
    pass


class _Stop:
    """Interrupts a run at step 4 (after its checkpoint at step 3)."""

    name = "stop"

    def on_step(self, step, model, loss):
        if step == 4:
            raise _Stopped


@pytest.mark.slow
def test_fsdp_two_processes_match_one(tmp_path):
    # The sharded algorithm (module doc of sizeup.optim.dion): row shards, r x r and n x r
    # all-reduces; equal to one process up to float32 sums in another order; and a sharded run
    # resumed from its checkpoint is bit-identical.
    ctx = mp.get_context("spawn")
    out = str(tmp_path / "rank")
    procs = [
        ctx.Process(target=_worker, args=(r, 2, str(tmp_path / "store"), out)) for r in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    got = [json.loads((tmp_path / f"rank.{r}.json").read_text()) for r in range(2)]
    single = run(RunConfig(**FSDP, **FSDP_RUN))
    for g in got:
        assert len(g["train"]) == len(single.train_loss) == 6
        assert max(abs(a - b) for a, b in zip(g["train"], single.train_loss)) <= 1e-5
        assert abs(g["val"] - single.final_val_loss) <= 1e-5
        # resumed under FSDP: bit for bit the uninterrupted sharded run
        assert g["resumed_from"] == 3
        assert g["resumed"] == g["train"] and g["resumed_val"] == g["val"]
