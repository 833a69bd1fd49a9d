"""Published laws: Chinchilla closed form, DeepSeek LLM hyperparameters, PowerLaw, load_fit."""

import json

import numpy as np
import pytest

from sizeup.errors import SizeupError
from sizeup.laws import ChinchillaLaw, PowerLaw, flops_per_token, get_preset, load_fit


def test_chinchilla_closed_form_by_hand():
    # Hoffmann et al. 2022 eq. (4): N_opt = G (C/6)^(beta/(alpha+beta)), G = (alpha A/(beta B))^(1/(alpha+beta))
    # alpha A = 0.34*406.4 = 138.176; beta B = 0.28*410.7 = 114.996; ratio 1.201572; ln = 0.183629;
    # /0.62 -> 0.296176; G = e^0.296176 = 1.344711.
    law = get_preset("chinchilla").loss_law
    assert law.G == pytest.approx(1.344711, rel=1e-6)
    # C = 5.76e23 (Gopher budget): ln(9.6e22) = 52.918635; *0.451613 = 23.898738; e^ = 2.39381e10
    n, d = law.optimal(5.76e23)
    assert n == pytest.approx(1.344711 * 2.39381e10, rel=1e-4)
    assert 6 * n * d == pytest.approx(5.76e23, rel=1e-12)
    assert law.a == pytest.approx(0.28 / 0.62)


def test_chinchilla_loss_by_hand():
    law = ChinchillaLaw(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
    # 70B on 1.4T tokens: 406.4/70e9^0.34 = 0.08325..., 410.7/1.4e12^0.28 = 0.16327...
    want = 1.69 + 406.4 / 70e9**0.34 + 410.7 / 1.4e12**0.28
    assert law.loss(70e9, 1.4e12) == pytest.approx(want)
    assert law.loss(70e9, 1.4e12) == pytest.approx(1.9367, abs=1e-3)


@pytest.mark.parametrize(
    "layers,d,lr,batch", [(30, 4096, 4.2e-4, 9.4e6), (95, 8192, 3.2e-4, 18.9e6)]
)
def test_deepseek_hyperparameters_reproduce_7b_and_67b(layers, d, lr, batch):
    # DeepSeek LLM Table 2: 7B used lr 4.2e-4 and 9.4M-token batches; 67B 3.2e-4 and 18.9M, on 2T tokens
    p = get_preset("deepseek-v1")
    C = flops_per_token("deepseek", layers, d, 4096) * 2e12
    assert p.lr(C) == pytest.approx(lr, rel=0.10)
    assert p.batch_tokens(C) == pytest.approx(batch, rel=0.10)
    m, tokens = p.optimal(C)
    assert m * tokens == pytest.approx(C, rel=1e-3)  # 0.1715 * 5.8316 = 1.0001


def test_epoch_preset_constants():
    law = get_preset("epoch").loss_law
    assert (law.E, law.A, law.B, law.alpha, law.beta) == (1.82, 482.01, 2085.43, 0.3478, 0.3658)


def test_powerlaw_eval_fit_and_inverse():
    law = PowerLaw(2.0, -0.5)
    assert law(4.0) == pytest.approx(1.0)
    x = np.array([1.0, 10.0, 100.0])
    fit = PowerLaw.fit(x, 3.0 * x**0.25)
    assert fit.coef == pytest.approx(3.0) and fit.exponent == pytest.approx(0.25)
    assert fit.inverse(fit(7.0)) == pytest.approx(7.0)


def test_load_fit_roundtrip(tmp_path):
    (tmp_path / "fit.json").write_text(
        json.dumps(
            {
                "kind": "chinchilla",
                "approach": 3,
                "E": 1.8,
                "A": 400,
                "B": 2000,
                "alpha": 0.34,
                "beta": 0.36,
                "objective": 0.01,
                "samples": [[1.8, 400, 2000, 0.34, 0.36], [1.7, 420, 1900, 0.33, 0.35]],
            }
        )
    )
    p = load_fit(tmp_path)
    assert p.loss_law.E == 1.8 and p.samples.shape == (2, 5)
    point, lo, hi = p.loss_interval(1e9, 2e10)
    assert lo <= point + 0.1 and hi >= lo


@pytest.mark.parametrize(
    "bad",
    [
        lambda: get_preset("kaplan-2030"),
        lambda: ChinchillaLaw(1.0, -1, 1, 0.3, 0.3),
        lambda: ChinchillaLaw(1.0, 1, 1, 0.3, 0.3).optimal(-5),
        lambda: PowerLaw.fit(np.array([1.0, 1.0]), np.array([2.0, 3.0])),
        lambda: PowerLaw(1.0, 0.5)(-1.0),
        lambda: get_preset("chinchilla").lr(1e20),
    ],
)
def test_bad_input(bad, tmp_path):
    with pytest.raises(SizeupError):
        bad()


def test_load_fit_missing_file(tmp_path):
    with pytest.raises(SizeupError, match="fit"):
        load_fit(tmp_path / "nope.json")
