"""Gradient noise scale: the two-batch estimator against hand numbers and against a linear
regression whose gradient covariance is known in closed form."""

from __future__ import annotations

import math

import pytest
import torch

from sizeup.errors import ConfigError
from sizeup.train.monitors import (
    NoiseScale,
    NoiseScaleMonitor,
    gradient_sq_norms,
    noise_scale_terms,
)


def test_terms_hand_calculation():
    # E|G_B|^2 = |G|^2 + tr(S)/B (McCandlish et al. 2018, eq. A.1). With |G|^2 = 2, tr(S) = 40:
    # B=4 -> 12, B=16 -> 4.5. The estimator must return (2, 40) exactly.
    g2, tr = noise_scale_terms(12.0, 4.5, 4, 16)
    assert g2 == pytest.approx(2.0)
    assert tr == pytest.approx(40.0)


def test_terms_reject_bad_batch_sizes():
    with pytest.raises(ConfigError, match="b_big"):
        noise_scale_terms(1.0, 1.0, 8, 8)
    with pytest.raises(ConfigError, match="b_small"):
        noise_scale_terms(1.0, 1.0, 0, 8)


def test_ema_is_ratio_of_averages():
    ns = NoiseScale(ema=0.5)
    ns.update(12.0, 4.5, 4, 16)  # |G|^2 = 2, tr = 40
    ns.update(11.0, 3.5, 4, 16)  # |G|^2 = 1, tr = 40
    # EMAs: g2 = 0.5*2 + 0.5*1 = 1.5, trace = 40 -> B_simple = 40/1.5 (not the mean of 20 and 40)
    assert ns.b_simple == pytest.approx(40 / 1.5)
    with pytest.raises(ConfigError, match="ema"):
        NoiseScale(ema=1.0)


class _Linear(torch.nn.Module):
    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = torch.nn.Parameter(w.clone())

    def forward(self, x, targets=None):
        pred = x @ self.w
        return pred, 0.5 * ((pred - targets) ** 2).mean()


def test_linear_regression_matches_analytic_b_simple():
    # y = x.w* + eps, x ~ N(0, I_d), eps ~ N(0, s^2), loss 0.5 (x.w - y)^2, r = w - w*.
    # Per-example gradient g = x (x.r - eps): G = r and, by Isserlis' theorem,
    # E[g g^T] = |r|^2 I + 2 r r^T + s^2 I, so Sigma = (|r|^2 + s^2) I + r r^T and
    # B_simple = tr(Sigma)/|G|^2 = (d (|r|^2 + s^2) + |r|^2) / |r|^2.
    torch.manual_seed(0)
    d, s = 10, 1.0
    w_star = torch.randn(d)
    r = torch.randn(d)
    r = r / r.norm()  # |r| = 1 -> B_simple = (10 * 2 + 1) / 1 = 21
    analytic = (d * (1 + s**2) + 1) / 1
    model = _Linear(w_star + r)
    gen = torch.Generator().manual_seed(1)

    def batch():
        x = torch.randn(64, d, generator=gen)
        return x, x @ w_star + s * torch.randn(64, generator=gen)

    mon = NoiseScaleMonitor(batch, microbatches=8, every=1, ema=0.99)
    for step in range(400):
        out = mon.on_step(step, model, None)
    assert out["noise/b_simple"] == pytest.approx(analytic, rel=0.10)
    assert mon.summary()["b_simple"] == out["noise/b_simple"]
    assert model.w.grad is None  # the trainer's .grad is never touched


def test_gradient_sq_norms_exact_two_examples():
    # Two examples, one per micro-batch, of loss 0.5 (w - y)^2 with w = 0: grads -y_i.
    model = _Linear(torch.zeros(1))
    x = torch.ones(2, 1)
    y = torch.tensor([1.0, 3.0])
    g2s, g2b, bs, bb = gradient_sq_norms(model, lambda m, b: m(b[0], targets=b[1])[1], (x, y), 2)
    assert (bs, bb) == (1, 2)
    assert g2s == pytest.approx((1 + 9) / 2)  # mean of per-micro-batch |g|^2
    assert g2b == pytest.approx(4.0)  # |mean gradient|^2 = 2^2
    with pytest.raises(ConfigError, match="microbatches"):
        gradient_sq_norms(model, lambda m, b: m(b[0], targets=b[1])[1], (x, y), 3)
    assert math.isnan(NoiseScale().b_simple)
