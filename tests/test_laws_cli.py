"""`sizeup fit` and `sizeup flops` end to end, and loading CSV / Parquet / JSON / study files."""

import json

import numpy as np
import pandas as pd
import pytest

from sizeup.cli import main
from sizeup.errors import SizeupError
from sizeup.laws import ChinchillaLaw, load_fit
from sizeup.laws.io import load_table, points

TRUE = ChinchillaLaw(E=1.8, A=400.0, B=2000.0, alpha=0.34, beta=0.36)


def _grid_points():
    """isoFLOP-style grid: 5 budgets x 7 sizes from TRUE, no noise."""
    rows = []
    for C in np.geomspace(1e18, 1e21, 5):
        n_opt, _ = TRUE.optimal(C)
        for f in np.geomspace(1 / 8, 8, 7):
            n = n_opt * f
            rows.append({"n": n, "c": C, "l": TRUE.loss(n, C / (6 * n))})
    return pd.DataFrame(rows)


def test_fit_chinchilla_approach3_from_csv_with_custom_columns(tmp_path):
    csv = tmp_path / "runs.csv"
    _grid_points().to_csv(csv, index=False)
    main(
        [
            "fit",
            "chinchilla",
            str(csv),
            "--approach",
            "3",
            "--params-col",
            "n",
            "--flops-col",
            "c",
            "--loss-col",
            "l",
            "--bootstrap",
            "20",
            "--out",
            str(tmp_path / "fit"),
        ]
    )
    d = json.loads((tmp_path / "fit" / "fit.json").read_text())
    assert {"E", "A", "B", "alpha", "beta", "objective", "intervals"} <= d.keys()
    assert d["alpha"] == pytest.approx(0.34, rel=0.02) and d["beta"] == pytest.approx(
        0.36, rel=0.02
    )
    assert set(d["intervals"]) >= {"E", "A", "B", "alpha", "beta"}
    assert (tmp_path / "fit" / "approach3.png").stat().st_size > 1000
    preset = load_fit(tmp_path / "fit")  # the planner reads it back
    assert preset.loss_law.alpha == pytest.approx(d["alpha"]) and preset.samples.shape == (20, 5)


@pytest.mark.parametrize("approach,plot", [(1, "envelope.png"), (2, "isoflops.png")])
def test_fit_chinchilla_approaches_1_and_2_from_parquet(tmp_path, approach, plot):
    pq = tmp_path / "runs.parquet"
    _grid_points().rename(columns={"n": "params", "c": "flops", "l": "loss"}).to_parquet(pq)
    main(
        [
            "fit",
            "chinchilla",
            str(pq),
            "--approach",
            str(approach),
            "--bootstrap",
            "50",
            "--out",
            str(tmp_path),
        ]
    )
    d = json.loads((tmp_path / "fit.json").read_text())
    assert d["approach"] == approach and (tmp_path / plot).exists()
    if (
        approach == 2
    ):  # noise-free parabola-ish profiles: the exponent is close to beta/(alpha+beta)
        assert d["a"] == pytest.approx(TRUE.a, abs=0.03)


def _study(path, rows):
    """A real study file (sizeup.sweep.Store): one recorded trial per (config, result)."""
    from sizeup.config import RunConfig, RunResult
    from sizeup.sweep import Store

    with Store(path) as st:
        for cfg, res in rows:
            c = RunConfig(**cfg)
            st.add([c])
            st.record(c.trial_id(), RunResult(config=c.to_dict(), **res))


def test_study_loading_skips_diverged_and_says_so(tmp_path):
    db = tmp_path / "study.db"
    rows = []
    for i, (n, d) in enumerate([(1e6, 2e7), (2e6, 4e7), (4e6, 8e7)]):
        res = {
            "params": n,
            "tokens": d,
            "final_val_loss": float(TRUE.loss(n, d)),
            "flops": 6 * n * d,
            "diverged": False,
        }
        rows.append(({"lr": 1e-3 * (i + 1), "batch_size": 8, "seq_len": 64, "model": "gpt"}, res))
    rows.append(
        (
            {"lr": 1.0, "batch_size": 8, "seq_len": 64},
            {"params": 1e6, "tokens": 1e7, "diverged": True},
        )
    )
    _study(db, rows)
    df = load_table(db)
    assert len(df) == 3 and df.attrs["skipped"] == 1
    assert df.batch_tokens.tolist() == [512] * 3 and df["config.lr"].tolist() == [1e-3, 2e-3, 3e-3]
    N, D, L, C = points(df)
    assert np.allclose(C, 6 * N * D) and np.allclose(L, TRUE.loss(N, D))


def test_json_and_flops_only_tokens(tmp_path):
    p = tmp_path / "runs.json"
    p.write_text(
        json.dumps([{"N": 1e6, "C": 6e15, "loss": 3.0}, {"N": 2e6, "C": 6e15, "loss": 2.9}])
    )
    N, D, L, C = points(load_table(p), flops_col="C")
    assert D.tolist() == [1e9, 5e8]  # tokens = FLOPs / (6N)


def test_fit_hp_from_csv(tmp_path):
    rows = []
    for C in np.geomspace(1e17, 1e19, 4):
        best = 0.3 * C**-0.125
        for f in (0.25, 0.5, 1.0, 2.0, 4.0):
            rows.append(
                {"flops": C, "lr": best * f, "batch": 1e5, "loss": 3.0 + 0.01 * np.log(f) ** 2}
            )
    csv = tmp_path / "hp.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    main(["fit", "hp", str(csv), "--band", "0.001", "--out", str(tmp_path / "o")])
    d = json.loads((tmp_path / "o" / "fit.json").read_text())
    assert d["lr_law"]["exponent"] == pytest.approx(-0.125, abs=1e-6)
    assert (tmp_path / "o" / "hp_laws.png").exists()
    assert load_fit(tmp_path / "o").lr(1e18) == pytest.approx(0.3 * 1e18**-0.125, rel=1e-6)


def test_fit_downstream_and_critical_batch(tmp_path):
    L = np.linspace(2, 3.5, 12)
    acc = 0.25 + 0.6 / (1 + np.exp(5 * (L - 2.7)))
    pd.DataFrame({"loss": L, "accuracy": acc}).to_csv(tmp_path / "acc.csv", index=False)
    main(["fit", "downstream", str(tmp_path / "acc.csv"), "--out", str(tmp_path / "ds")])
    assert json.loads((tmp_path / "ds" / "fit.json").read_text())["L0"] == pytest.approx(
        2.7, abs=1e-3
    )
    pd.DataFrame({"loss": L, "batch": 2e8 / L ** (1 / 0.21)}).to_csv(
        tmp_path / "cb.csv", index=False
    )
    main(["fit", "critical-batch", str(tmp_path / "cb.csv"), "--out", str(tmp_path / "cb")])
    assert json.loads((tmp_path / "cb" / "fit.json").read_text())["alpha_B"] == pytest.approx(0.21)


def test_flops_command_runs(capsys):
    main(["flops", "deepseek", "--n-layer", "30", "--d-model", "4096", "--seq-len", "4096"])
    assert "4.228e+10" in capsys.readouterr().out


def test_bad_inputs_exit_with_a_message(tmp_path, capsys):
    csv = tmp_path / "runs.csv"
    _grid_points().to_csv(csv, index=False)
    with pytest.raises(SystemExit) as e:
        main(["fit", "chinchilla", str(csv), "--params-col", "nope", "--out", str(tmp_path)])
    assert e.value.code == 2 and "nope" in capsys.readouterr().err
    one = pd.DataFrame(
        {"params": [1e7] * 5, "tokens": np.geomspace(1e9, 1e10, 5), "loss": np.linspace(3, 2, 5)}
    )
    one.to_csv(csv, index=False)
    with pytest.raises(SystemExit):
        main(["fit", "chinchilla", str(csv), "--approach", "2", "--out", str(tmp_path)])
    assert "model sizes" in capsys.readouterr().err
    with pytest.raises(SizeupError):
        load_table(tmp_path / "missing.csv")


def test_fit_approach2_says_which_budget_it_skipped(tmp_path, capsys):
    """The largest budget keeps only its 3 smallest models (lowest loss at the edge): the
    table and fit.json say it was skipped and why, instead of silently fitting 4 budgets."""
    df = _grid_points()
    top = df[df.c == df.c.max()].nsmallest(3, "n")
    df = pd.concat([df[df.c < df.c.max()], top])
    csv = tmp_path / "runs.csv"
    df.rename(columns={"n": "params", "c": "flops", "l": "loss"}).to_csv(csv, index=False)
    main(["fit", "chinchilla", str(csv), "--approach", "2", "--out", str(tmp_path)])
    d = json.loads((tmp_path / "fit.json").read_text())
    (b,) = d["skipped_budgets"]
    assert b["C"] == pytest.approx(1e21) and "not bracketed" in b["reason"]
    out = capsys.readouterr().out
    assert "budget 1e+21 skipped" in out and "lowest loss at the largest model" in out
