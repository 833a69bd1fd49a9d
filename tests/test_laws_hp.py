"""HP laws (DeepSeek band, free-form), critical batch size and the downstream sigmoid."""

import numpy as np
import pytest

from sizeup.errors import SizeupError
from sizeup.laws.critical_batch import (
    CriticalBatchLaw,
    fit_critical_batch,
    fit_critical_batch_from_steps,
    fit_tradeoff,
)
from sizeup.laws.downstream import SigmoidLaw, fit_sigmoid
from sizeup.laws.forms import PowerLaw
from sizeup.laws.hp import fit_free_form, fit_hp_laws, near_optimal_band


def _bowl_grid(seed=0):
    """Loss over a (C, lr, batch) grid whose optimum follows DeepSeek LLM's published laws."""
    lr_law, b_law = PowerLaw(0.3118, -0.1250), PowerLaw(0.2920, 0.3271)
    rows = []
    rng = np.random.default_rng(seed)
    for C in np.geomspace(1e17, 3e20, 6):
        for lr_f in 2.0 ** np.arange(-2, 2.5, 0.5):
            for b_f in 2.0 ** np.arange(-2, 2.5, 0.5):
                # a quadratic bowl in log lr, log B around the law (tiny noise)
                loss = (
                    3.0
                    * (C / 1e17) ** -0.05
                    * (1 + 0.01 * np.log(lr_f) ** 2 + 0.004 * np.log(b_f) ** 2)
                )
                rows.append((C, lr_law(C) * lr_f, b_law(C) * b_f, loss * (1 + rng.normal(0, 1e-5))))
    return np.array(rows).T


def test_band_fit_recovers_deepseek_exponents():
    C, lr, batch, loss = _bowl_grid()
    fit = fit_hp_laws(C, lr, batch, loss, band=0.0025)
    assert fit.lr_law.exponent == pytest.approx(-0.1250, abs=0.01)
    assert fit.batch_law.exponent == pytest.approx(0.3271, abs=0.01)
    assert fit.lr_law(1e20) == pytest.approx(PowerLaw(0.3118, -0.125)(1e20), rel=0.05)
    assert set(fit.to_dict()) >= {"lr_law", "batch_law", "band_points"}


def test_near_optimal_band_by_hand():
    C = np.array([1.0, 1.0, 1.0, 2.0, 2.0])
    loss = np.array([2.0, 2.004, 2.01, 1.5, 1.503])
    # budget 1: best 2.0, band 0.25% -> up to 2.005; budget 2: best 1.5 -> up to 1.50375
    assert near_optimal_band(C, loss, 0.0025).tolist() == [True, True, False, True, True]


def test_free_form_law_recovers_exponents():
    rng = np.random.default_rng(0)
    N = np.exp(rng.uniform(np.log(1e7), np.log(1e9), 30))
    D = np.exp(rng.uniform(np.log(1e9), np.log(1e11), 30))
    fit = fit_free_form(0.5 * N**-0.3 * D**-0.05, N=N, D=D)
    assert fit.coef == pytest.approx(0.5) and fit.exponents == pytest.approx(
        {"N": -0.3, "D": -0.05}
    )
    assert fit(N=1e8, D=1e10) == pytest.approx(0.5 * 1e8**-0.3 * 1e10**-0.05)


def test_tradeoff_by_hand():
    # McCandlish et al. 2018: S = S_min (1 + B_crit / B); S_min = 1000, B_crit = 256 -> E_min = 256,000
    B = np.array([32.0, 64, 128, 256, 512, 1024])
    fit = fit_tradeoff(B, 1000 * (1 + 256 / B))
    assert (
        fit.S_min == pytest.approx(1000)
        and fit.E_min == pytest.approx(256_000)
        and fit.B_crit == pytest.approx(256)
    )
    # the trade-off identity (S/S_min - 1)(E/E_min - 1) = 1 holds at every batch
    S = 1000 * (1 + 256 / B)
    assert np.allclose((S / fit.S_min - 1) * (B * S / fit.E_min - 1), 1.0)


def test_critical_batch_law_kaplan_form():
    # Kaplan et al. 2020 eq. 5.2 form with B* = 2e8 tokens, alpha_B = 0.21
    true = CriticalBatchLaw(2e8, 0.21)
    L = np.linspace(2.5, 4.5, 6)
    assert true(3.0) == pytest.approx(2e8 / 3.0 ** (1 / 0.21))
    fit = fit_critical_batch(L, true(L))
    assert fit.B_star == pytest.approx(2e8, rel=1e-6) and fit.alpha_B == pytest.approx(
        0.21, rel=1e-6
    )
    # the same law from steps-to-target: each target's S(B) built from B_crit(target)
    targets, batches, steps = [], [], []
    for t in L:
        for b in (64.0, 256.0, 1024.0, 4096.0):
            bc = true(t) / 1e6  # keep numbers small: B in millions of tokens
            targets.append(t)
            batches.append(b / 1e3)
            steps.append(500 * (1 + bc / (b / 1e3)))
    law, fits = fit_critical_batch_from_steps(np.array(targets), np.array(batches), np.array(steps))
    assert law.alpha_B == pytest.approx(0.21, rel=1e-6)
    assert len(fits) == 6


def test_sigmoid_fit_recovers_parameters():
    true = SigmoidLaw(floor=0.25, ceiling=0.9, k=6.0, L0=2.6)
    L = np.linspace(1.8, 3.6, 25)
    acc = true(L) + np.random.default_rng(0).normal(0, 0.002, L.size)
    fit = fit_sigmoid(L, acc)
    assert fit.k == pytest.approx(6.0, rel=0.1) and fit.L0 == pytest.approx(2.6, abs=0.02)
    pinned = fit_sigmoid(L, acc, floor=0.25)
    assert pinned.floor == 0.25 and pinned.ceiling == pytest.approx(0.9, abs=0.02)


@pytest.mark.parametrize(
    "bad",
    [
        lambda: fit_hp_laws(
            np.array([1e18] * 4), np.ones(4), None, np.arange(1.0, 5)
        ),  # one budget
        lambda: fit_hp_laws(np.array([1e18, 1e19]), None, None, np.ones(2)),
        lambda: near_optimal_band(np.ones(2), np.ones(2), band=-0.1),
        lambda: fit_tradeoff(np.array([64.0, 64.0]), np.array([10.0, 12.0])),
        lambda: fit_tradeoff(
            np.array([64.0, 128.0, 256.0]), np.array([10.0, 20.0, 40.0])
        ),  # steps rise with B
        lambda: fit_critical_batch(
            np.array([2.0, 3.0]), np.array([1e6, 2e6])
        ),  # B_crit grows with loss
        lambda: fit_sigmoid(np.ones(3), np.ones(3)),
        lambda: fit_free_form(np.ones(3), N=np.ones(3), D=np.ones(3)),
    ],
)
def test_bad_input(bad):
    with pytest.raises(SizeupError):
        bad()
