"""Muon: Newton-Schulz orthogonalisation, scale modes, and agreement with torch.optim.Muon/AdamW."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from sizeup.errors import ConfigError
from sizeup.optim import Muon, build_optimizer, muon_scale, newton_schulz
from sizeup.parametrization.rules import Scaling


def _conditioned(n: int, cond: float, seed: int = 0) -> torch.Tensor:
    """A full-rank n x n float64 matrix with singular values log-spaced in [1, cond]."""
    gen = torch.Generator().manual_seed(seed)
    q1, _ = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64, generator=gen))
    q2, _ = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64, generator=gen))
    return q1 @ torch.diag(torch.logspace(0, math.log10(cond), n, dtype=torch.float64)) @ q2.T


@pytest.mark.parametrize("shape", [(64, 256), (256, 64), (128, 512)])
@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
def test_newton_schulz_singular_values_in_band(shape, dtype):
    # Jordan et al. 2024: five quintic steps give U S' V^T with S'_ii roughly in [0.5, 1.5].
    g = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    o = newton_schulz(g, dtype=dtype)
    assert o.shape == g.shape and o.dtype == (dtype or torch.float64)
    s = torch.linalg.svdvals(o.double())
    assert s.min() >= 0.5 and s.max() <= 1.5
    # and it is the polar direction: <O, U V^T> / ||U V^T||_F^2 = mean(S') close to 1
    u, _, vh = torch.linalg.svd(g, full_matrices=False)
    assert (o.double() * (u @ vh)).sum() / min(shape) == pytest.approx(s.mean().item(), rel=2e-2)


def test_newton_schulz_square_well_conditioned_and_input_untouched():
    g = _conditioned(128, cond=100.0)
    before = g.clone()
    s = torch.linalg.svdvals(newton_schulz(g, dtype=None))
    assert s.min() >= 0.5 and s.max() <= 1.5
    assert torch.equal(g, before)
    with pytest.raises(ConfigError, match="grad"):
        newton_schulz(torch.randn(2, 3, 4, 5))  # 3-D: a stack of expert matrices


@pytest.mark.parametrize("fan_out,fan_in", [(64, 256), (256, 64), (128, 128)])
@pytest.mark.parametrize("mode", ["spectral", "original", "rms"])
def test_update_spectral_norm_follows_scale_mode(fan_out, fan_in, mode):
    # The three scale modes, by hand (module doc of sizeup.optim.muon).
    want = {
        "spectral": math.sqrt(fan_out / fan_in),
        "original": math.sqrt(max(1.0, fan_out / fan_in)),
        "rms": 0.2 * math.sqrt(max(fan_out, fan_in)),
    }[mode]
    assert muon_scale(mode, fan_out, fan_in) == pytest.approx(want)
    w = nn.Parameter(torch.zeros(fan_out, fan_in, dtype=torch.float64))
    g = torch.randn(
        fan_out, fan_in, dtype=torch.float64, generator=torch.Generator().manual_seed(2)
    )
    lr = 0.01
    opt = Muon([w], lr=lr, momentum=0.95, scale_mode=mode, ns_dtype=None)
    w.grad = g
    opt.step()
    # First step: the Nesterov look-ahead is a multiple of g, so dW = -lr * scale * NS(g) exactly.
    torch.testing.assert_close(
        w.detach(), -lr * want * newton_schulz(g, dtype=None), rtol=1e-12, atol=1e-15
    )
    sigma = torch.linalg.matrix_norm(w.detach(), ord=2).item() / (lr * want)
    assert 0.5 <= sigma <= 1.5


def test_spectral_mode_is_width_correct():
    # Spectral condition (Yang, Simon & Bernstein 2023): ||dW||_2 / sqrt(fan_out/fan_in) stays
    # constant as the matrix widens; the "rms" mode instead grows like sqrt(width).
    ratios = []
    for n in (64, 128, 512):
        w = nn.Parameter(torch.zeros(n, n // 2, dtype=torch.float64))
        w.grad = torch.randn(
            n, n // 2, dtype=torch.float64, generator=torch.Generator().manual_seed(n)
        )
        Muon([w], lr=1.0, scale_mode="spectral", ns_dtype=None).step()
        ratios.append(torch.linalg.matrix_norm(w.detach(), ord=2).item() / math.sqrt(2.0))
    assert max(ratios) / min(ratios) < 1.1


def _pair(shapes, dtype=torch.float32):
    gen = torch.Generator().manual_seed(3)
    a = [nn.Parameter(torch.randn(*s, dtype=dtype, generator=gen) * 0.02) for s in shapes]
    b = [nn.Parameter(p.detach().clone()) for p in a]
    return a, b


@pytest.mark.parametrize(
    "ours,theirs,shapes",
    [
        ("original", "original", [(96, 32), (32, 96), (64, 64)]),
        ("rms", "match_rms_adamw", [(96, 32), (32, 96), (64, 64)]),
        ("spectral", "original", [(96, 32), (64, 64)]),  # fan_out >= fan_in: the two agree
    ],
)
@pytest.mark.parametrize("nesterov", [True, False])
def test_matches_torch_muon(ours, theirs, shapes, nesterov):
    a, b = _pair(shapes)
    mine = Muon(a, lr=0.02, weight_decay=0.1, momentum=0.9, nesterov=nesterov, scale_mode=ours)
    ref = torch.optim.Muon(
        b, lr=0.02, weight_decay=0.1, momentum=0.9, nesterov=nesterov, adjust_lr_fn=theirs
    )
    gen = torch.Generator().manual_seed(4)
    for _ in range(4):
        for p, q in zip(a, b):
            p.grad = torch.randn(p.shape, generator=gen)
            q.grad = p.grad.clone()
        mine.step()
        ref.step()
    for p, q in zip(a, b):
        torch.testing.assert_close(p, q, rtol=0, atol=0)  # same ops in the same order: bit for bit


def test_spectral_differs_from_torch_where_fan_in_is_larger():
    # For fan_out < fan_in torch's "original" keeps scale 1; the spectral rule shrinks it.
    assert muon_scale("spectral", 32, 96) == pytest.approx(math.sqrt(1 / 3))
    assert muon_scale("original", 32, 96) == 1.0


def _model():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4)
    )


def _scalings(model):
    roles = {"0": "input", "2": "hidden", "4": "readout"}
    out = {}
    for n, p in model.named_parameters():
        role = "vector" if n.endswith("bias") else roles[n.split(".")[0]]
        out[n] = Scaling(
            n,
            role,
            tuple(p.shape),
            p.shape[-1],
            p.shape[0],
            1,
            1,
            None,
            1.0,
            0.5 if role in ("hidden", "readout") else 1.0,
            1.0,
            muon=role == "hidden",
        )
    return out


def _train(model, opt, steps, sched=None):
    gen = torch.Generator().manual_seed(5)
    x, y = torch.randn(64, 8, generator=gen), torch.randint(0, 4, (64,), generator=gen)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        losses.append(loss.item())
    return losses


def test_one_optimizer_muon_for_hidden_adamw_for_rest():
    m, ref = _model(), _model()
    opt = build_optimizer(
        m,
        _scalings(m),
        "muon",
        lr=0.01,
        weight_decay=0.1,
        betas=(0.9, 0.95),
        momentum=0.9,
        muon_lr=0.05,
    )
    muon_groups = [g for g in opt.param_groups if g["use_muon"]]
    assert [g["names"] for g in muon_groups] == [["2.weight"]]
    assert muon_groups[0]["lr"] == pytest.approx(0.05 * 0.5)
    assert muon_groups[0]["update_scale"] == 1.0
    # The AdamW side is torch's AdamW, bit for bit; the Muon side is torch's Muon.
    sc = _scalings(ref)
    adam_groups, muon_params = [], []
    for n, p in ref.named_parameters():
        if n == "2.weight":
            muon_params.append(p)
        else:
            lr = 0.01 * sc[n].lr_mult
            # torch's meaning with the base lr: lr x weight_decay = 0.01 x 0.1 per step
            wd = 0.1 * sc[n].wd_mult / sc[n].lr_mult
            adam_groups.append({"params": [p], "lr": lr, "weight_decay": wd})
    t_adam = torch.optim.AdamW(adam_groups, betas=(0.9, 0.95), eps=1e-8)
    # Muon's base lr is muon_lr: 0.025 x (0.1 / 0.5) = muon_lr x 0.1 per step.
    t_muon = torch.optim.Muon(muon_params, lr=0.025, weight_decay=0.1 / 0.5, momentum=0.9)

    class Both:
        def zero_grad(self):
            t_adam.zero_grad()
            t_muon.zero_grad()

        def step(self):
            t_adam.step()
            t_muon.step()

    _train(m, opt, 5)
    _train(ref, Both(), 5)
    for (n, p), q in zip(m.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=n)


def test_state_dict_round_trip_and_scheduler():
    from sizeup.schedules import make_schedule

    m = _model()
    opt = build_optimizer(m, _scalings(m), "muon", lr=0.01, weight_decay=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, make_schedule("cosine", 10, warmup=2))
    _train(m, opt, 3, sched)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01 * sched.lr_lambdas[0](3))
    m2 = copy.deepcopy(m)
    opt2 = build_optimizer(m2, _scalings(m2), "muon", lr=0.01, weight_decay=0.1)
    sched2 = torch.optim.lr_scheduler.LambdaLR(opt2, make_schedule("cosine", 10, warmup=2))
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))
    sched2.load_state_dict(sched.state_dict())
    assert any("momentum_buffer" in s for s in opt2.state.values())
    la = _train(m, opt, 4, sched)
    lb = _train(m2, opt2, 4, sched2)
    assert la == lb


def test_muon_learns():
    m = _model()
    opt = build_optimizer(m, _scalings(m), "muon", lr=0.01, muon_lr=0.05)
    losses = _train(m, opt, 40)
    assert losses[-1] < 0.7 * losses[0]


def test_muon_group_must_be_2d():
    with pytest.raises(ConfigError, match="use_muon"):
        Muon([nn.Parameter(torch.zeros(3))])
    with pytest.raises(ConfigError, match="scale_mode"):
        Muon([nn.Parameter(torch.zeros(3, 3))], scale_mode="frobenius")
    Muon([{"params": [nn.Parameter(torch.zeros(3))], "use_muon": False}])
