"""Spectral monitors: power iteration against exact SVD, and the callback's numbers by hand."""

from __future__ import annotations

import math

import pytest
import torch

from sizeup.errors import ConfigError
from sizeup.train.monitors import SpectralMonitor, spectral_norm


def test_power_iteration_known_spectrum():
    # W = U diag(5, 3, 1, ...) V^T has ||W||_2 = 5 exactly.
    torch.manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(64, 32))
    v, _ = torch.linalg.qr(torch.randn(32, 32))
    s = torch.cat([torch.tensor([5.0, 3.0]), torch.ones(30)])
    w = u @ torch.diag(s) @ v.T
    sigma, _ = spectral_norm(w, iters=30)
    assert sigma == pytest.approx(5.0, rel=1e-4)


def test_power_iteration_warm_start_random_matrix():
    # A Gaussian matrix has a small spectral gap: warm starting over calls converges to the
    # exact (SVD) value, and the estimate never exceeds it.
    torch.manual_seed(0)
    w = torch.randn(256, 128)
    exact = torch.linalg.matrix_norm(w, ord=2).item()
    sigma, v = spectral_norm(w, iters=10)
    assert sigma <= exact * (1 + 1e-5)
    for _ in range(10):
        sigma, v = spectral_norm(w, iters=10, v=v)
    assert sigma == pytest.approx(exact, rel=0.01)


def test_monitor_hand_values():
    # One Linear 8 -> 2 with W = diag-like rows: ||W||_2 = 3, fan_out/fan_in = 2/8 -> /0.5 = 6.
    lin = torch.nn.Linear(8, 2, bias=False)
    model = torch.nn.Sequential(lin)
    with torch.no_grad():
        lin.weight.zero_()
        lin.weight[0, 0] = 3.0
        lin.weight[1, 1] = 1.0
    probe = torch.zeros(4, 8)
    probe[:, 0] = 1.0  # every probe input along W's top right-singular vector: alignment 1
    mon = SpectralMonitor(model, every=2, probe=probe)
    with torch.no_grad():
        lin.weight[0, 0] = 4.0  # "step 0": dW = 1 at (0, 0) -> ||dW||_2 = 1
    out = mon.on_step(0, model, 0.0)
    assert out["0/w"] == pytest.approx(4.0 / math.sqrt(2 / 8))
    assert out["0/dw"] == pytest.approx(1.0 / math.sqrt(2 / 8))
    assert out["0/align"] == pytest.approx(1.0)
    assert out["0/dalign"] == pytest.approx(1.0)
    assert mon.on_step(1, model, 0.0) is None  # snapshot only
    with torch.no_grad():
        lin.weight[1, 1] = 3.0  # step 2's update: dW = 2 at (1, 1)
    out = mon.on_step(2, model, 0.0)
    assert out["0/dw"] == pytest.approx(2.0 / math.sqrt(2 / 8))
    assert out["0/dalign"] == pytest.approx(0.0, abs=1e-6)  # dW is orthogonal to the probe
    assert [h["step"] for h in mon.summary()["spectral"]] == [0, 2]


def test_monitor_on_trained_gpt(tmp_path):
    from sizeup import parametrize
    from sizeup.diagnostics.plots import plot_spectral
    from sizeup.models import GPT, GPTConfig

    torch.manual_seed(0)
    cfg = dict(n_layer=1, n_head=2, vocab_size=256, seq_len=16)
    model = GPT(GPTConfig(d_model=64, **cfg))
    p = parametrize(model, base=GPT(GPTConfig(d_model=32, **cfg)), rule="mup")
    opt = p.optimizer("adamw", 1e-2)
    x = torch.randint(0, 256, (4, 16))
    mon = SpectralMonitor(model, every=1, probe=x, names=["blocks.*.attn.*"], parametrization=p)
    assert mon.names == ["blocks.0.attn.q", "blocks.0.attn.k", "blocks.0.attn.v", "blocks.0.attn.o"]
    for step in range(3):
        _, loss = model(x, targets=x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        out = mon.on_step(step, model, loss.item())
    w = model.blocks[0].attn.q.weight.detach()
    exact = torch.linalg.matrix_norm(w, ord=2).item() / math.sqrt(w.shape[0] / w.shape[1])
    assert out["blocks.0.attn.q/w"] == pytest.approx(exact, rel=0.02)
    assert 0 < out["blocks.0.attn.q/align"] <= 1 + 1e-5
    assert out["blocks.0.attn.q/dw"] > 0
    assert plot_spectral(mon.history, tmp_path / "s.png").stat().st_size > 1000


def test_monitor_unknown_name():
    with pytest.raises(ConfigError, match="nope"):
        SpectralMonitor(torch.nn.Sequential(torch.nn.Linear(2, 2)), names=["nope"])
    with pytest.raises(ConfigError, match="every"):
        SpectralMonitor(torch.nn.Sequential(torch.nn.Linear(2, 2)), every=0)
