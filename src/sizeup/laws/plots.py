"""Figures for the fits: the law with its data, extrapolation and confidence band; isoFLOP
profiles with their minima; hyperparameter-law lines. Each function writes one PNG."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from sizeup.laws.chinchilla import AllocationFit, Approach3Fit
    from sizeup.laws.critical_batch import CriticalBatchLaw
    from sizeup.laws.downstream import SigmoidLaw
    from sizeup.laws.hp import HPLawFit
    from sizeup.laws.mixing import MixingFit
    from sizeup.laws.validate import Holdout


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def plot_approach3(
    fit: Approach3Fit,
    N: np.ndarray,
    D: np.ndarray,
    L: np.ndarray,
    path: str | Path,
    extrapolate: float = 100.0,
    holdout: Holdout | None = None,
) -> Path:
    """Loss vs compute with the compute-optimal frontier extrapolated `extrapolate`x beyond the
    data, and N_opt(C); dark bands are the law's bootstrap interval, light ones the prediction
    interval of a run's loss (law + noise); held-out points (if any) are red crosses."""
    plt = _plt()
    C = 6.0 * N * D
    grid = np.geomspace(C.min(), C.max() * extrapolate, 80)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    sc = ax1.scatter(C, L, c=np.log10(N), s=10, cmap="viridis")
    fig.colorbar(sc, ax=ax1, label="log10 N")
    n_opt, d_opt = fit.law.optimal(grid)
    ax1.plot(grid, fit.law.loss(n_opt, d_opt), "k-", label="L at compute-optimal N, D")
    ax2.plot(grid, n_opt, "k-", label=f"N_opt ∝ C^{fit.law.a:.3f}")
    if fit.samples is not None:
        _bands(ax1, ax2, fit, grid)
    if holdout is not None:
        _mark_held_out(ax1, holdout)
    for ax in (ax1, ax2):
        ax.axvline(C.max(), color="grey", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_xlabel("compute C = 6ND (FLOPs)")
        ax.legend(fontsize=8)
    ax1.set_yscale("log")
    ax1.set_ylabel("loss")
    ax2.set_yscale("log")
    ax2.set_ylabel("N_opt (parameters)")
    law = fit.law
    fig.suptitle(f"L = {law.E:.3f} + {law.A:.4g}/N^{law.alpha:.3f} + {law.B:.4g}/D^{law.beta:.3f}")
    return _save(fig, path)


def _bands(ax1, ax2, fit: Approach3Fit, grid: np.ndarray) -> None:
    rows = fit.derived(grid)
    for key, alpha, what in (
        ("loss_prediction_interval", 0.08, "prediction interval (a run)"),
        ("loss_interval", 0.2, "bootstrap band (the law)"),
    ):
        ax1.fill_between(
            grid,
            [r[key][0] for r in rows],
            [r[key][1] for r in rows],
            color="k",
            alpha=alpha,
            lw=0,
            label=f"{fit.level:.0%} {what}",
        )
    ax2.fill_between(
        grid,
        [r["N_opt_interval"][0] for r in rows],
        [r["N_opt_interval"][1] for r in rows],
        color="k",
        alpha=0.15,
    )


def _mark_held_out(ax, ho: Holdout) -> None:
    ax.scatter(
        ho.C_points,
        ho.observed,
        marker="x",
        color="red",
        s=40,
        zorder=5,
        label=f"held out ({int(ho.inside.sum())}/{len(ho.rows)} inside their interval)",
    )


def plot_holdout(
    ho: Holdout, N: np.ndarray, D: np.ndarray, L: np.ndarray, path: str | Path
) -> Path:
    """The refit without the largest budget: its points, and each held-out run's observed loss
    against the refit's prediction and `level` prediction interval."""
    plt = _plt()
    rows = np.asarray(ho.rows)
    fit_rows = np.setdiff1d(np.arange(N.size), rows)
    C = 6.0 * N * D
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax1.scatter(C[fit_rows], L[fit_rows], s=10, color="grey", label="other runs")
    _interval_bars(ax1, ho.C_points, ho, f"refit prediction, {ho.level:.0%} interval")
    ax1.scatter(ho.C_points, ho.observed, marker="x", color="red", s=40, zorder=5, label="held out")
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel("compute C = 6ND (FLOPs)")
    ax1.set_ylabel("loss")
    ax1.legend(fontsize=8)
    x = np.arange(rows.size)
    ax2.errorbar(
        x,
        np.zeros(rows.size),
        yerr=[1 - ho.low / ho.predicted, ho.high / ho.predicted - 1],
        fmt="o",
        color="k",
        capsize=4,
        label=f"{ho.level:.0%} prediction interval",
    )
    ax2.scatter(x, ho.observed / ho.predicted - 1, marker="x", color="red", s=40, label="observed")
    ax2.axhline(0, color="grey", lw=1)
    ax2.set_xticks(x, [lab.replace(", ", "\n") for lab in ho.labels], fontsize=7)
    ax2.set_ylabel("observed / predicted - 1")
    ax2.legend(fontsize=8)
    fig.suptitle(f"held out: largest budget C = {ho.budget:.3g}, refit on {ho.n_fit} points")
    return _save(fig, path)


def _interval_bars(ax, x: np.ndarray, ho: Holdout, label: str) -> None:
    ax.errorbar(
        x,
        ho.predicted,
        yerr=[ho.predicted - ho.low, ho.high - ho.predicted],
        fmt="o",
        color="k",
        ms=4,
        capsize=4,
        label=label,
    )


def plot_isoflops(fit: AllocationFit, path: str | Path, holdout: Holdout | None = None) -> Path:
    """Approach 2: each isoFLOP profile, its fitted curve and minimum; then N_opt(C)."""
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    cmap = plt.get_cmap("plasma")
    for i, c in enumerate(fit.curves):
        col = cmap(i / max(1, len(fit.curves) - 1))
        n, lo = np.asarray(c["N"]), np.asarray(c["loss"])
        ax1.scatter(n, lo, color=col, s=10)
        if c["parabola"] is not None:
            xx = np.linspace(*np.log(c.get("fit_span", (n.min(), n.max()))), 100)
            yy = np.polyval(c["parabola"], xx)
            ax1.plot(np.exp(xx), np.exp(yy) if c["log_loss"] else yy, color=col, lw=1)
        ax1.plot([c["N_opt"]], [c["loss_opt"]], marker="*", color=col, ms=10, mec="k")
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel("parameters N")
    ax1.set_ylabel("loss")
    ax1.set_title("isoFLOP profiles and minima")
    _law_panel(ax2, fit, holdout)
    return _save(fig, path)


def plot_envelope(
    fit: AllocationFit,
    N: np.ndarray,
    L: np.ndarray,
    C: np.ndarray,
    path: str | Path,
    holdout: Holdout | None = None,
) -> Path:
    """Approach 1: all runs, the lower envelope of loss vs FLOPs; then N_opt(C)."""
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax1.scatter(C, L, c=np.log10(N), s=6, cmap="viridis", alpha=0.6)
    ax1.plot(fit.C, fit.L, "r.-", label="envelope")
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel("compute C (FLOPs)")
    ax1.set_ylabel("loss")
    ax1.legend(fontsize=8)
    _law_panel(ax2, fit, holdout)
    return _save(fig, path)


def _law_panel(ax, fit: AllocationFit, holdout: Holdout | None = None) -> None:
    grid = np.geomspace(fit.C.min(), fit.C.max() * 100, 50)
    ax.plot(fit.C, fit.N, "o", label="N_opt per budget")
    ax.plot(grid, fit.n_opt(grid), "k-", label=f"N_opt = {fit.n_opt.coef:.3g} C^{fit.a:.3f}")
    ax.plot(fit.C, fit.D, "s", label="D_opt per budget")
    ax.plot(grid, fit.d_opt(grid), "k--", label=f"D_opt = {fit.d_opt.coef:.3g} C^{fit.b:.3f}")
    if holdout is not None:
        x = holdout.C_points
        _interval_bars(ax, x, holdout, f"refit N_opt, {holdout.level:.0%} interval")
        ax.scatter(x, holdout.observed, marker="x", color="red", s=40, zorder=5, label="held out")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("compute C (FLOPs)")
    ax.legend(fontsize=8)


def plot_hp(fit: HPLawFit, path: str | Path) -> Path:
    """Near-optimal band points and the fitted eta_opt(C), B_opt(C) lines."""
    plt = _plt()
    laws = [
        (n, lw, getattr(fit, n))
        for n, lw in (("lr", fit.lr_law), ("batch", fit.batch_law))
        if lw is not None
    ]
    fig, axes = plt.subplots(1, len(laws), figsize=(5.5 * len(laws), 4.2), squeeze=False)
    grid = np.geomspace(fit.C.min(), fit.C.max() * 100, 50)
    for ax, (name, law, y) in zip(axes[0], laws):
        ax.scatter(
            fit.C, y, c=fit.loss, s=14, cmap="viridis", label=f"within {fit.band:.2%} of best"
        )
        ax.plot(grid, law(grid), "k-", label=f"{law.coef:.4g} C^{law.exponent:.4f}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("compute C (FLOPs)")
        ax.set_ylabel(name)
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_critical_batch(
    law: CriticalBatchLaw, loss: np.ndarray, b: np.ndarray, path: str | Path
) -> Path:
    """Measured critical (or noise-scale) batch sizes vs loss with the fitted law."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    grid = np.geomspace(loss.min() * 0.8, loss.max(), 50)
    ax.plot(loss, b, "o", label="measured")
    ax.plot(grid, law(grid), "k-", label=f"B* = {law.B_star:.3g}, alpha_B = {law.alpha_B:.3f}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("loss")
    ax.set_ylabel("critical batch")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_downstream(law: SigmoidLaw, loss: np.ndarray, acc: np.ndarray, path: str | Path) -> Path:
    """Accuracy vs loss with the fitted sigmoid."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    grid = np.linspace(loss.min() - 0.2 * np.ptp(loss), loss.max() + 0.2 * np.ptp(loss), 100)
    ax.plot(loss, acc, "o", label="runs")
    ax.plot(grid, law(grid), "k-", label="sigmoid fit")
    ax.set_xlabel("loss")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_mixing(fit: MixingFit, path: str | Path) -> Path:
    """Data mixing law: each run's measured loss against the law's, per target; then the best
    mixture (with its bootstrap interval) beside the mixture of the best run."""
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    pred = fit.predicted()
    for i, name in enumerate(fit.law.targets):
        ax1.scatter(pred[:, i], fit.losses[:, i], s=14, label=name)
    lo, hi = min(pred.min(), fit.losses.min()), max(pred.max(), fit.losses.max())
    ax1.plot([lo, hi], [lo, hi], "k-", lw=1)
    ax1.set_xlabel("law's loss")
    ax1.set_ylabel("measured loss")
    ax1.set_title(f"{fit.P.shape[0]} runs")
    ax1.legend(fontsize=8)
    x = np.arange(len(fit.law.domains))
    yerr = None
    if fit.samples is not None:
        q = np.quantile(fit.samples, [(1 - fit.level) / 2, (1 + fit.level) / 2], axis=0)
        yerr = [fit.optimum - q[0], q[1] - fit.optimum]
    ax2.bar(x - 0.2, fit.optimum, 0.4, yerr=yerr, capsize=4, label="law's best mixture")
    ax2.bar(x + 0.2, fit.P[fit.best_run()], 0.4, label="best run's mixture", alpha=0.6)
    ax2.set_xticks(x, list(fit.law.domains))
    ax2.set_ylabel("share of training data")
    ax2.legend(fontsize=8)
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(p, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return p
