"""Data-constrained scaling law (Muennighoff et al. 2023)."""

import numpy as np
import pytest

from sizeup.errors import SizeupError
from sizeup.laws.data_constrained import DataConstrainedLaw, fit_data_constrained


def test_published_example_value():
    # Muennighoff et al. 2023 (datablations README): L(N=6.34e9, D=242e9, U=25e9) = 2.2256
    assert DataConstrainedLaw().loss(6.34e9, 242e9, 25e9) == pytest.approx(2.2256, abs=5e-5)


def test_hand_calculation_of_effective_tokens():
    law = DataConstrainedLaw()
    # U_D = 25e9, R_D = 242/25 - 1 = 8.68; D' = 25e9 (1 + 15.387756 (1 - e^(-8.68/15.387756)))
    want = 25e9 * (1 + 15.387756 * (1 - np.exp(-8.68 / 15.387756)))
    _, d_eff = law.effective(6.34e9, 242e9, 25e9)
    assert d_eff == pytest.approx(want, rel=1e-12)
    # alpha = beta gives U_N = G^2 U_D with G^2 = (A/B)^(1/alpha)
    assert law.unique_params(25e9) == pytest.approx(
        (law.A / law.B) ** (1 / law.alpha) * 25e9, rel=1e-12
    )


def test_no_repetition_reduces_to_chinchilla():
    law = DataConstrainedLaw()
    n, d = law.base.optimal(1e21)
    assert law.loss(n, d, 10 * d) == pytest.approx(law.base.loss(n, d), rel=1e-12)


def test_allocation_with_scarce_data_uses_fewer_tokens_per_param_than_it_would_need():
    law = DataConstrainedLaw()
    C = 1e22
    n0, d0 = law.base.optimal(C)
    n, d, loss = law.optimal(C, U=d0 / 10)  # only a tenth of the unique data
    assert loss > law.base.loss(n0, d0)  # repetition costs loss
    assert loss <= law.loss(n0, d0, d0 / 10) + 1e-12  # and the optimum beats the naive allocation
    assert n * d * 6 == pytest.approx(C)


def test_fit_recovers_decay_constants():
    rng = np.random.default_rng(0)
    true = DataConstrainedLaw(rd_star=10.0, rn_star=4.0)
    N = np.repeat(np.geomspace(1e8, 3e9, 6), 8)
    U = np.full(N.size, 2e9)
    D = np.tile(np.geomspace(1e9, 8e10, 8), 6)
    L = true.loss(N, D, U) * np.exp(rng.normal(0, 5e-4, N.size))
    fit = fit_data_constrained(N, D, U, L, base=true.base)
    assert fit.rd_star == pytest.approx(10.0, rel=0.1)
    assert fit.rn_star == pytest.approx(4.0, rel=0.15)


def test_bad_input():
    with pytest.raises(SizeupError):
        DataConstrainedLaw(rd_star=0)
    with pytest.raises(SizeupError):
        fit_data_constrained(
            [1e8] * 4, [1e9] * 4, [1e10] * 4, [3.0] * 4, base=DataConstrainedLaw().base
        )
