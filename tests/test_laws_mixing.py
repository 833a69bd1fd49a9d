"""Data mixing laws (Ye et al. 2024): recovery of a known law, its best mixture from noisy
runs, bounds, refusals, and `sizeup fit mixing` end to end."""

import json

import numpy as np
import pandas as pd
import pytest

from sizeup.cli import main
from sizeup.errors import ConfigError, DataError
from sizeup.laws.mixing import MixingLaw, fit_mixing, optimal_mixture

_T = np.array([[-1.5, 0.3, -0.5], [0.2, -3.0, 0.4], [-0.4, 0.5, -2.0]])
TRUE = MixingLaw(
    domains=("web", "code", "books"),
    targets=("web", "code", "books"),
    c=np.array([2.0, 0.8, 1.8]),
    k=np.array([1.0, 1.2, 0.9]),
    t=_T - _T.mean(axis=1, keepdims=True),  # the reported gauge: sum_j t_ij = 0
)
EQUAL = np.full(3, 1 / 3)


def _simplex_grid(step: float = 0.002) -> np.ndarray:
    a = np.arange(0, 1 + 1e-9, step)
    return np.array([(x, y, 1 - x - y) for x in a for y in a if x + y <= 1 + 1e-9])


def _grid_optimum(upper: np.ndarray | None = None) -> np.ndarray:
    """The true law's best mixture by brute force on a 0.002 grid (independent of SLSQP)."""
    g = _simplex_grid()
    if upper is not None:
        g = g[np.all(g <= upper + 1e-9, axis=1)]
    return g[np.argmin(TRUE.total(g, EQUAL))]


def _runs(seed: int, n: int = 20, noise: float = 0.005) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.ones(3), size=n)
    return P, TRUE.loss(P) * np.exp(rng.normal(0, noise, (n, 3)))


def test_noise_free_runs_give_back_the_law_and_its_optimum():
    P, _ = _runs(0)
    fit = fit_mixing(P, TRUE.loss(P), domains=list(TRUE.domains), targets=list(TRUE.targets))
    assert np.allclose(fit.law.c, TRUE.c, rtol=1e-5)
    assert np.allclose(fit.law.k, TRUE.k, rtol=1e-5)
    assert np.allclose(fit.law.t, TRUE.t, atol=1e-5)
    assert np.abs(fit.optimum - _grid_optimum()).max() < 0.003  # the grid's resolution
    assert fit.optimum.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(10))
def test_best_mixture_from_noisy_runs_is_within_005_of_the_true_one(seed):
    # 20 runs with Dirichlet(1, 1, 1) mixtures, 0.5% log-normal noise on every loss;
    # measured over 20 seeds: at most 0.027 from the true optimum (0.196, 0.414, 0.390)
    P, Y = _runs(seed)
    fit = fit_mixing(P, Y)
    assert np.abs(fit.optimum - _grid_optimum()).max() < 0.05, fit.optimum
    assert fit.dof == 20 - 4 and np.all(fit.sigma < 0.01)


def test_bootstrap_interval_and_bounds():
    P, Y = _runs(3)
    fit = fit_mixing(P, Y, bootstrap=60, seed=1)
    lo, hi = np.quantile(fit.samples, [0.05, 0.95], axis=0)
    assert np.all((lo <= fit.optimum + 1e-9) & (fit.optimum - 1e-9 <= hi))
    upper = np.array([1.0, 0.3, 1.0])  # say only enough code for a 30% share
    capped = fit_mixing(P, Y, upper=upper, domains=list(TRUE.domains))
    assert capped.optimum[1] == pytest.approx(0.3, abs=1e-6)
    assert np.abs(capped.optimum - _grid_optimum(upper)).max() < 0.05
    assert capped.to_dict()["bounds"]["code"] == (0.0, 0.3)


def test_optimum_outside_the_runs_is_flagged():
    rng = np.random.default_rng(4)
    P = rng.dirichlet(np.ones(3), size=20) * np.array([1.0, 0.25, 1.0])
    P[:, 0] += 1 - P.sum(axis=1)  # every run has less code than the best mixture's 0.41
    fit = fit_mixing(P, TRUE.loss(P))
    assert any("outside the mixtures of the runs" in w for w in fit.warnings)


@pytest.mark.parametrize(
    "P,Y,err,match",
    [
        (np.full((8, 3), 0.4), np.ones((8, 3)), DataError, "sum to 1"),
        (np.eye(3)[[0, 1, 2, 0]], np.ones((4, 3)), DataError, "runs=4"),
        (np.tile([[0.5, 0.5, 0.0], [0.2, 0.8, 0.0]], (4, 1)), np.ones((8, 1)), DataError, "span"),
        (np.eye(3)[[0, 1, 2, 0, 1]], -np.ones((5, 1)), DataError, "losses"),
    ],
)
def test_bad_mixing_data_is_refused(P, Y, err, match):
    with pytest.raises(err, match=match):
        fit_mixing(P, Y)


def test_impossible_bounds_are_refused():
    with pytest.raises(ConfigError, match="max-share"):
        optimal_mixture(TRUE, EQUAL, upper=np.array([0.2, 0.2, 0.2]))


def test_cli_fit_mixing(tmp_path, capsys):
    P, Y = _runs(5)
    df = pd.DataFrame(P, columns=["web", "code", "books"])
    for i, name in enumerate(["val_web", "val_code", "val_books"]):
        df[name] = Y[:, i]
    df.to_csv(tmp_path / "mix.csv", index=False)
    main(
        [
            "fit",
            "mixing",
            str(tmp_path / "mix.csv"),
            "--proportions",
            "web,code,books",
            "--losses",
            "val_web,val_code,val_books",
            "--target-weights",
            "val_code=2",
            "--max-share",
            "books=0.5",
            "--bootstrap",
            "20",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    d = json.loads((tmp_path / "o" / "fit.json").read_text())
    assert d["kind"] == "mixing" and d["target_weights"]["val_code"] == 2.0
    assert sum(d["optimum"]["mixture"].values()) == pytest.approx(1.0)
    assert d["optimum"]["mixture"]["books"] <= 0.5 + 1e-9 and "intervals" in d["optimum"]
    assert set(d["params"]["val_web"]["t"]) == {"web", "code", "books"}
    assert (tmp_path / "o" / "mixing.png").exists()
    assert "best share: code" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(
            ["fit", "mixing", str(tmp_path / "mix.csv"), "--proportions", "web,nope"]
            + ["--losses", "val_web", "--out", str(tmp_path / "o")]
        )
    assert "nope" in capsys.readouterr().err
