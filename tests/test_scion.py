"""Scion (Pethick et al. 2025, "Training Deep Learning Models with Norm-Constrained LMOs",
arXiv:2502.07529): each LMO is the argmin of <G, X> over its norm ball (checked against float64
SVD and by hand), one step of each form is the paper's Algorithm 1 / 2 by hand, the groups
follow the rules (eta for every tensor), `sizeup train` trains with it, a resume is
bit-identical, and FSDP2 on 2 gloo processes follows one process."""

from __future__ import annotations

import json
import math
import multiprocessing as mp

import pytest
import torch
from resume_harness import straight_and_resumed
from small_configs import SMALL_GPT
from torch import nn

from sizeup.config import RunConfig
from sizeup.errors import ConfigError
from sizeup.optim.scion import LMO_EPS, Scion, direction, lmo_kind
from sizeup.registry import get_optimizer

F64 = torch.float64
# The cubic Newton-Schulz X <- 1.5 X - 0.5 X X^T X (Higham 2008, "Functions of Matrices", eq.
# 8.20, Newton-Schulz for the polar factor) converges to U V^T for singular values in (0, sqrt 3),
# quadratically once near 1: with enough steps in float64 it gives the exact polar factor, so
# the optimizer's spectral LMO can be compared with an SVD to float64 precision.
EXACT_NS = dict(ns_steps=80, ns_coefficients=(1.5, -0.5, 0.0), ns_dtype=None)


def _polar(g: torch.Tensor) -> torch.Tensor:
    u, _, vh = torch.linalg.svd(g, full_matrices=False)
    return u @ vh


# --- (a) the hidden LMO is spectral-norm steepest descent ------------------------------------
def test_hidden_lmo_is_the_spectral_norm_argmin():
    torch.manual_seed(0)
    g = torch.randn(8, 5, dtype=F64)
    uv = _polar(g)
    # argmin_{||X||_2 <= 1} <G, X> = -U V^T, with value -||G||_* (the nuclear norm): the dual
    # norm of the spectral norm (Pethick et al. 2025, Table 1, Muon row)
    nuclear = torch.linalg.svdvals(g).sum()
    assert torch.allclose((g * -uv).sum(), -nuclear, rtol=1e-13, atol=0)
    for _ in range(200):  # no point of the ball does better
        x = torch.randn(8, 5, dtype=F64)
        x /= torch.linalg.matrix_norm(x, ord=2)
        assert (g * x).sum() >= -nuclear - 1e-12
    # the optimizer's direction: -lmo / rho = sqrt(fan_out / fan_in) U V^T (paper's Table 2)
    exact = direction(g, "spectral", **EXACT_NS)
    torch.testing.assert_close(exact, math.sqrt(8 / 5) * uv, rtol=0, atol=1e-12)
    # Muon's quintic (5 steps, Jordan et al. 2024) gives U S' V^T with S' in [0.5, 1.5] rather
    # than U V^T (the coefficients trade convergence to 1 for speed): its singular vectors are
    # exactly G's (to float64 rounding) and its singular values lie in that band.
    quintic = direction(g, "spectral", ns_dtype=None) / math.sqrt(8 / 5)
    u, _, vh = torch.linalg.svd(g, full_matrices=False)
    core = u.T @ quintic @ vh.T
    off = core - torch.diag(torch.diagonal(core))
    assert off.abs().max() < 1e-12
    assert ((torch.diagonal(core) > 0.5) & (torch.diagonal(core) < 1.5)).all()


def test_a_stack_of_experts_is_each_its_own_spectral_lmo():
    torch.manual_seed(1)
    g = torch.randn(3, 6, 4, dtype=F64)
    got = direction(g, "spectral", **EXACT_NS)
    for e in range(3):
        torch.testing.assert_close(got[e], math.sqrt(6 / 4) * _polar(g[e]), rtol=0, atol=1e-12)


# --- (b) ColNorm, Sign and RMS by hand on small matrices --------------------------------------
def test_colnorm_sign_and_rms_lmos_by_hand():
    # An embedding table (vocab 3, width 4): input index j's weights are row j here (column j
    # of the (width x vocab) operator). ColNorm ball: max_j ||col_j||_RMS <= 1 (the paper's
    # 1 -> RMS norm); its LMO puts each column at -sqrt(fan_out) g_j / ||g_j||_2.
    g = torch.tensor([[3.0, 4.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0], [1.0, 1.0, 1.0, 1.0]], dtype=F64)
    by_hand = torch.tensor(
        [[1.2, 1.6, 0.0, 0.0], [0.0, 0.0, -2.0, 0.0], [1.0, 1.0, 1.0, 1.0]], dtype=F64
    )  # 2 * (3, 4) / 5; 2 * (-1) / 1; 2 * (1, 1, 1, 1) / 2
    got = direction(g, "colnorm", one_hot=True)
    # the reference code adds 1e-8 to each column's RMS: (5/2, 1/2, 1) here
    rms = torch.tensor([[2.5], [0.5], [1.0]], dtype=F64)
    torch.testing.assert_close(got, by_hand * rms / (rms + LMO_EPS), rtol=0, atol=1e-15)
    assert abs((got - by_hand).abs().max()) < 1e-7
    # it is the argmin over the ball: <G, -D> = -sqrt(4) sum_j ||g_j||_2 = -2 (5 + 1 + 2)
    assert abs((g * -by_hand).sum() - (-16.0)) < 1e-12
    torch.manual_seed(2)
    for _ in range(200):
        x = torch.randn(3, 4, dtype=F64)
        x = x / (x.norm(dim=1, keepdim=True) / 2)  # every column at RMS 1: the ball's boundary
        assert (g * x).sum() >= -16.0 - 1e-12

    # The readout (fan_out 3, fan_in 4): Sign, the max-norm ball of radius 1/fan_in; its LMO
    # is -(1/fan_in) sign(G) and its value -(1/4) sum |G_ij|.
    r = torch.tensor(
        [[1.0, -2.0, 0.0, 3.0], [-0.5, 0.5, 2.0, -1.0], [4.0, 0.0, -3.0, 1.0]], dtype=F64
    )
    sign = torch.tensor([[1, -1, 0, 1], [-1, 1, 1, -1], [1, 0, -1, 1]], dtype=F64) / 4
    assert torch.equal(direction(r, "sign"), sign)
    assert (r * -sign).sum() == -r.abs().sum() / 4 == -4.5
    for _ in range(200):
        x = (torch.rand(3, 4, dtype=F64) * 2 - 1) / 4
        assert (r * x).sum() >= -4.5

    # A gain vector: the RMS ball's LMO -d / RMS(d); (3, 4) has RMS sqrt(12.5)
    v = torch.tensor([3.0, 4.0], dtype=F64)
    torch.testing.assert_close(
        direction(v, "rms"), v / (math.sqrt(12.5) + LMO_EPS), rtol=0, atol=1e-15
    )


def test_each_role_takes_the_papers_lmo():
    assert lmo_kind("hidden", 2) == lmo_kind("hidden", 3) == "spectral"
    assert lmo_kind("input", 2, one_hot=True) == "colnorm"
    assert lmo_kind("input", 2) == "spectral_max"  # a dense first layer (paper's MLP, images)
    assert lmo_kind("readout", 2) == "sign"
    assert lmo_kind("vector", 1) == lmo_kind("hidden", 1) == "rms"
    with pytest.raises(ConfigError, match="lmo"):
        direction(torch.ones(2, 2), "nuclear")


# --- (c) one step of each form, by hand from the paper's algorithms ---------------------------
class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.wte = nn.Embedding(5, 4)
        self.hidden = nn.Linear(4, 6, bias=False)
        self.gain = nn.Parameter(torch.linspace(0.5, 1.5, 6))
        self.head = nn.Linear(6, 5, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.hidden(self.wte(idx))) * self.gain
        return self.head(h)


def _tiny_groups(model: _Tiny, lr: float, wd: float) -> list[dict]:
    return [
        dict(params=[model.wte.weight], role="input", one_hot=True, lr=lr, weight_decay=wd),
        dict(params=[model.hidden.weight], role="hidden", lr=lr, weight_decay=wd),
        dict(params=[model.gain], role="vector", lr=lr, weight_decay=0.0),
        dict(params=[model.head.weight], role="readout", lr=lr, weight_decay=wd),
    ]


def _grads(model: _Tiny, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, 5, (7,), generator=g)
    tgt = torch.randint(0, 5, (7,), generator=g)
    model.zero_grad()
    nn.functional.cross_entropy(model(idx), tgt).backward()
    return [
        p.grad.clone()
        for p in (model.wte.weight, model.hidden.weight, model.gain, model.head.weight)
    ]


def _by_hand_direction(i: int, d: torch.Tensor) -> torch.Tensor:
    """The four LMOs of the paper's Table 2 written out (not the module's functions)."""
    if i == 0:  # ColNorm, embedding rows: sqrt(width) d_j / (||d_j|| + eps sqrt(width))
        rms = d.norm(dim=1, keepdim=True) / 2.0
        return d / (rms + LMO_EPS)
    if i == 1:  # spectral: sqrt(6 / 4) U V^T
        return math.sqrt(6 / 4) * _polar(d)
    if i == 2:  # RMS ball
        return d / (d.pow(2).mean().sqrt() + LMO_EPS)
    return torch.sign(d) / 6  # Sign, 1 / fan_in


@pytest.mark.parametrize("constrained", [False, True])
def test_two_steps_equal_the_papers_algorithm_by_hand(constrained):
    torch.manual_seed(0)
    model = _Tiny().to(F64)
    lr, wd, mu, rho, rho_out = 0.01, (0.0 if constrained else 0.3), 0.9, 2.0, 7.0
    opt = Scion(
        _tiny_groups(model, lr, wd),
        lr=lr,
        momentum=mu,
        constrained=constrained,
        radius=rho,
        readout_radius=rho_out,
        **EXACT_NS,
    )
    ws = [
        p.detach().clone()
        for p in (model.wte.weight, model.hidden.weight, model.gain, model.head.weight)
    ]
    ds = [torch.zeros_like(w) for w in ws]
    radii = (rho, rho, rho, rho_out)
    decay = (wd, wd, 0.0, wd)
    for step in range(2):
        grads = _grads(model, seed=step)
        for i, g in enumerate(grads):
            # Algorithm 1 / 2: d <- (1 - alpha) d + alpha g with alpha = 1 - momentum
            ds[i] = (1 - (1 - mu)) * ds[i] + (1 - mu) * g
            lmo = -radii[i] * _by_hand_direction(i, ds[i])
            if constrained:  # SCG: x <- (1 - gamma) x + gamma lmo(d)
                ws[i] = (1 - lr) * ws[i] + lr * lmo
            else:  # uSCG with decoupled decay: x <- x (1 - gamma wd) + gamma lmo(d)
                ws[i] = ws[i] * (1 - lr * decay[i]) + lr * lmo
        opt.step()
        got = (model.wte.weight, model.hidden.weight, model.gain, model.head.weight)
        for w, p in zip(ws, got):
            torch.testing.assert_close(p.detach(), w, rtol=0, atol=1e-13)


# --- (d) groups from the rules ----------------------------------------------------------------
def test_groups_take_eta_decay_and_radii_from_the_rules():
    from sizeup.train import build

    assert get_optimizer("scion").family == "lmo" and get_optimizer("scion").batch_moves is None
    for rule in ("mup", "sp"):
        cfg = RunConfig(**SMALL_GPT, optimizer="scion", rule=rule, lr=1e-3, weight_decay=0.1)
        opt = build(cfg).optimizer
        assert isinstance(opt, Scion)
        groups = {n: g for g in opt.param_groups for n in g["names"]}
        for name, g in groups.items():
            assert g["lr"] == 1e-3, name  # eta for every tensor: the LMO carries the width
            vector = g["role"] == "vector"
            assert g["weight_decay"] == (0.0 if vector else pytest.approx(0.1)), name
            assert g["radius"] == (3000.0 if g["role"] == "readout" else 50.0), name
            assert g["momentum"] == 0.9 and g["constrained"] is False
        assert groups["wte.weight"]["role"] == "input" and groups["wte.weight"]["one_hot"]
        assert groups["lm_head.weight"]["role"] == "readout"
        assert groups["blocks.0.attn.q.weight"]["role"] == "hidden"
    cfg = RunConfig(**SMALL_GPT, optimizer="scion", scion_constrained=True, scion_radius=3.0)
    opt = build(cfg).optimizer
    assert all(g["constrained"] for g in opt.param_groups)
    assert {g["radius"] for g in opt.param_groups} == {3.0, 3000.0}
    with pytest.raises(ConfigError, match="weight_decay.*scion_constrained"):
        build(cfg.replace(weight_decay=0.1))
    with pytest.raises(ConfigError, match="scion_radius"):
        RunConfig(**SMALL_GPT, optimizer="scion", scion_radius=0.0)


# --- (e) the command line ---------------------------------------------------------------------
def test_sizeup_train_with_scion(tmp_path, capsys):
    from sizeup.cli import main

    main(
        ["train", "--set", "optimizer=scion", "--width", "32", "--depth", "1", "--head-dim"]
        + ["16", "--seq-len", "16", "--batch-size", "4", "--steps", "10", "--lr", "0.001"]
        + ["-q", "--out", str(tmp_path)]
    )
    assert "scion" in capsys.readouterr().out
    r = json.loads((tmp_path / "result.json").read_text())
    assert r["final_val_loss"] < r["initial_val_loss"] and not r["diverged"]


# --- (f) resume ------------------------------------------------------------------------------
@pytest.mark.parametrize("constrained", [False, True])
def test_save_load_resumes_bit_identically(tmp_path, constrained):

    cfg = RunConfig(
        **{**SMALL_GPT, "steps": 6, "eval_every": 0},
        optimizer="scion",
        lr=1e-3,
        scion_constrained=constrained,
    )
    straight, ref, b, got = straight_and_resumed(cfg, tmp_path, 3)
    assert got == ref
    for p, q in zip(straight.model.parameters(), b.model.parameters()):
        assert torch.equal(p, q)


# --- FSDP2 -----------------------------------------------------------------------------------
# Newton-Schulz in float32 (as tests/test_fsdp.py for Muon): bf16 rounds sums taken in another
# order differently. Weight decay on, so every LMO and the decay run sharded.
FSDP_RUN = dict(SMALL_GPT, steps=6, rule="mup", optimizer="scion", lr=1e-3, ns_dtype="float32")
FSDP_FORMS = {"unconstrained": dict(weight_decay=0.1), "constrained": dict(scion_constrained=True)}


def _fsdp_worker(rank: int, world: int, store: str, out: str) -> None:
    import torch.distributed as dist

    from sizeup.train import run

    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world, init_method=f"file://{store}")
    try:
        res = {}
        for name, kw in FSDP_FORMS.items():
            r = run(RunConfig(**FSDP_RUN, **kw, fsdp=True), rank=rank, world_size=world)
            res[name] = {"train": r.train_loss, "val": r.final_val_loss}
        with open(f"{out}.{rank}.json", "w") as f:
            json.dump(res, f)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_fsdp_two_processes_match_one(tmp_path):
    from sizeup.train import run

    ctx = mp.get_context("spawn")
    out = str(tmp_path / "rank")
    procs = [
        ctx.Process(target=_fsdp_worker, args=(r, 2, str(tmp_path / "store"), out))
        for r in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    got = [json.loads((tmp_path / f"rank.{r}.json").read_text()) for r in range(2)]
    for name, kw in FSDP_FORMS.items():
        single = run(RunConfig(**FSDP_RUN, **kw))
        for g in got:
            tl = g[name]["train"]
            assert len(tl) == len(single.train_loss) == 6
            assert max(abs(a - b) for a, b in zip(tl, single.train_loss)) <= 1e-5, name
            assert abs(g[name]["val"] - single.final_val_loss) <= 1e-5, name


def test_the_coordinate_check_passes_with_scion():
    """The LMO's per-role scale keeps every layer's update width-independent at one eta: the
    coordinate check (MLP on the teacher task, three widths) passes with lr x 1 everywhere."""
    from sizeup.diagnostics import coord_check

    cfg = RunConfig(model="mlp", optimizer="scion", lr=2.0**-12, batch_size=64, base_width=64)
    r = coord_check(cfg, widths=(64, 128, 256), steps=2, seeds=3)  # MIN_SEEDS: a verdict
    assert r.settings["config"]["optimizer"] == "scion" and r.passed, r.worst
