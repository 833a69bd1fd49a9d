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


# --- the preset registry: every name in sizeup.choices, each saying what it gives and where
# it was fitted
def test_registry_is_the_choices_vocabulary():
    from sizeup.choices import PRESET_NAMES
    from sizeup.laws.presets import _PRESETS

    assert tuple(_PRESETS) == PRESET_NAMES
    provides = {n: get_preset(n).provides for n in PRESET_NAMES}
    assert provides == {
        "chinchilla": ("loss",),
        "epoch": ("loss",),
        "deepseek-v1": ("lr", "batch"),
        "steplaw": ("lr", "batch"),
        "kaplan": ("lr", "critical_batch"),
        "minicpm": ("lr", "batch"),
    }
    for n in PRESET_NAMES:
        d = get_preset(n).to_dict()
        assert d["setup"]["n_definition"] in ("total", "non-embedding", "flops-per-token")
        assert d["setup"]["batch_unit"] == "tokens" and d["setup"]["data"]
        json.dumps(d)  # JSON-safe, laws spelled out


def test_deepseek_setup_is_the_multistep_schedule():
    # DeepSeek LLM section 2.3: 2000 warmup steps; 31.6% of the max lr after 80% of the tokens,
    # 10% after 90%. M = non-embedding FLOPs per token is its N.
    st = get_preset("deepseek-v1").setup
    assert st.lr_schedule == {
        "kind": "multistep",
        "milestones": ((0.8, 0.316), (0.9, 0.1)),
        "warmup_steps": 2000,
    }
    assert st.n_definition == "flops-per-token"


POINT = dict(params=1.3e9, params_non_embedding=1e9, flops_per_token_md=5e9, tokens=1e11)


def test_steplaw_is_the_published_formula():
    # Li et al. 2025, the Step Law: eta(N, D) = 1.79 N^-0.713 D^0.307, B(D) = 0.58 D^0.571, N
    # the non-embedding parameters. By hand at N = 1e9 (non-embedding), D = 1e11:
    #   ln eta = ln 1.79 - 0.713 * 20.723266 + 0.307 * 25.328436 = 0.582216 - 14.775689 + 7.775830
    #          = -6.417643 -> eta = 1.6325e-3
    #   ln B = ln 0.58 + 0.571 * 25.328436 = -0.544727 + 14.462537 = 13.917810 -> B = 1.1077e6
    from sizeup.laws.presets import LawPoint

    p = get_preset("steplaw")
    pt = LawPoint(**POINT)
    assert p.variables(pt)["N"] == 1e9  # non-embedding, not the 1.3e9 total
    assert p.value("lr", pt) == pytest.approx(1.6325e-3, rel=1e-4)
    assert p.value("batch", pt) == pytest.approx(1.1077e6, rel=1e-4)
    assert p.formula("lr") == "1.79 N^-0.713 D^0.307"
    assert p.value("critical_batch", pt) is None


def test_kaplan_critical_batch_matches_figure_10_and_lr_eq_d1():
    # Kaplan et al. 2020: eq. (5.3) B_crit(L) = B* / L^(1/alpha_B) with B* = 2e8 tokens and
    # alpha_B = 0.21 (section 5.1); Figure 10 draws the same law as 2.1e8 tokens * L^-4.8.
    from sizeup.laws.presets import LawPoint

    p = get_preset("kaplan")
    for L in (2.5, 3.0, 4.0):
        b = p.value("critical_batch", LawPoint(**POINT, loss=L))
        assert b == pytest.approx(2.1e8 * L**-4.8, rel=0.02)
    # eq. (D.1): LR(N) = 0.003239 - 0.0001395 ln N; at N = 1e8: ln 1e8 = 18.420681,
    # 0.003239 - 0.0025697 = 6.6932e-4. It reaches 0 at N = exp(0.003239 / 0.0001395) = exp(23.218638)
    # = 1.2126e10.
    small = LawPoint(**{**POINT, "params_non_embedding": 1e8})
    assert p.value("lr", small) == pytest.approx(6.6932e-4, rel=1e-4)
    assert p.hp["lr"].zero() == pytest.approx(1.2126e10, rel=1e-4)
    with pytest.raises(SizeupError, match="N=.*below 1.21e\\+10"):
        p.value("lr", LawPoint(**{**POINT, "params_non_embedding": 2e10}))
    # the planner's critical batch (sizeup.plan.stages) reads the same law
    from sizeup.plan.stages import kaplan_critical_batch

    assert kaplan_critical_batch(3.0)[0] == p.value("critical_batch", LawPoint(**POINT, loss=3.0))


def test_minicpm_mup_constants_and_batch_from_loss():
    # MiniCPM's released configs (openbmb/MiniCPM-2B config.json): scale_emb 12, scale_depth 1.4,
    # dim_model_base 256, initializer_range 0.1; base lr 0.01 (Hu et al. 2024, section 3.3).
    from sizeup.laws.presets import LawPoint

    p = get_preset("minicpm")
    assert p.extra["mup"] == {
        "scale_emb": 12.0,
        "scale_depth": 1.4,
        "dim_model_base": 256,
        "init_std": 0.1,
        "base_lr": 0.01,
    }
    # Hidden-matrix lr under their muP at MiniCPM-2.4B's width 2304: 0.01 / (2304 / 256) = 1.1111e-3
    pt = LawPoint(**POINT, width=2304, loss=2.5)
    assert p.value("lr", pt) == pytest.approx(0.01 / 9, rel=1e-12)
    # section 3.2: bs = 1.21e9 / L^6.24 tokens; at L = 2.5: 2.5^6.24 = e^(6.24 * 0.916291) =
    # e^5.717654 = 304.17 -> 3.978e6 tokens
    assert p.value("batch", pt) == pytest.approx(3.978e6, rel=1e-3)
    assert p.value("batch", LawPoint(**POINT, width=2304)) is None  # no loss, no batch


def test_unknown_kind_is_refused():
    with pytest.raises(SizeupError, match="kind"):
        get_preset("steplaw").value("loss_curve", None)
