"""Figures for the fits: the law with its data, extrapolation and confidence band; isoFLOP
profiles with their minima; hyperparameter-law lines. Each ``plot_*`` writes one PNG; the
Chinchilla ones are drawn by a ``*_figure`` function that returns the matplotlib figure.

Every line drawn is in a legend; points a fit dropped (``--drop-highest``) are drawn hollow
and grey, labelled "dropped"; log axes are labelled 1e18-style (``sizeup.figures``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sizeup.figures import pyplot, readable_ticks

if TYPE_CHECKING:  # pragma: no cover
    from sizeup.laws.chinchilla import AllocationFit, Approach3Fit
    from sizeup.laws.critical_batch import CriticalBatchLaw
    from sizeup.laws.downstream import SigmoidLaw
    from sizeup.laws.hp import HPLawFit
    from sizeup.laws.mixing import MixingFit
    from sizeup.laws.validate import Holdout

# Points a fit left out: (N, L, C) of each, drawn hollow and grey.
Dropped = tuple[np.ndarray, np.ndarray, np.ndarray]
_COMPUTE = "compute C = 6ND (FLOPs)"
_EXTRAPOLATED = "largest budget fitted (extrapolated beyond)"


def _log_norm(values: np.ndarray) -> Any:
    from matplotlib.colors import LogNorm

    v = np.asarray(values, dtype=float)
    return LogNorm(vmin=float(v.min()), vmax=float(max(v.max(), v.min() * 1.0001)))


def _dropped(ax: Any, x: np.ndarray, y: np.ndarray) -> None:
    """Points the fit left out: hollow grey circles labelled 'dropped'."""
    if np.size(x):
        ax.scatter(
            x,
            y,
            s=28,
            facecolors="none",
            edgecolors="0.45",
            linewidths=1.0,
            zorder=4,
            label=f"dropped ({np.size(x)}, not fitted)",
        )


def plot_approach3(
    fit: Approach3Fit,
    N: np.ndarray,
    D: np.ndarray,
    L: np.ndarray,
    path: str | Path,
    extrapolate: float = 100.0,
    holdout: Holdout | None = None,
) -> Path:
    """Write ``approach3_figure`` to ``path``."""
    return _save(approach3_figure(fit, N, D, L, extrapolate, holdout), path)


def approach3_figure(
    fit: Approach3Fit,
    N: np.ndarray,
    D: np.ndarray,
    L: np.ndarray,
    extrapolate: float = 100.0,
    holdout: Holdout | None = None,
) -> Any:
    """Loss vs compute with the compute-optimal frontier extrapolated `extrapolate`x beyond the
    data, and N_opt(C); dark bands are the law's bootstrap interval, light ones the prediction
    interval of a run's loss (law + noise); held-out points (if any) are red crosses.

    ``N, D, L``: every point given to the fit; the rows it dropped (``fit.dropped``) are drawn
    hollow and grey."""
    plt = pyplot()
    N, D, L = (np.asarray(a, dtype=float) for a in (N, D, L))
    drop = np.zeros(N.size, dtype=bool)
    drop[list(fit.dropped)] = True
    C = 6.0 * N * D
    grid = np.geomspace(C[~drop].min(), C[~drop].max() * extrapolate, 80)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11.5, 4.4), layout="constrained")
    sc = ax1.scatter(
        C[~drop], L[~drop], c=N[~drop], norm=_log_norm(N), s=12, cmap="viridis", label="runs"
    )
    fig.colorbar(sc, ax=ax1, label="parameters N (colour of a run)")
    _dropped(ax1, C[drop], L[drop])
    n_opt, d_opt = fit.law.optimal(grid)
    ax1.plot(grid, fit.law.loss(n_opt, d_opt), "k-", label="law's loss at compute-optimal N, D")
    ax2.plot(grid, n_opt, "k-", label=f"N_opt ∝ C^{fit.law.a:.3f}")
    if fit.samples is not None:
        _bands(ax1, ax2, fit, grid)
    if holdout is not None:
        _mark_held_out(ax1, holdout)
    for ax in (ax1, ax2):
        ax.axvline(C[~drop].max(), color="grey", ls=":", lw=1, label=_EXTRAPOLATED)
        ax.set_xscale("log")
        ax.set_xlabel(_COMPUTE)
        ax.legend(fontsize=8)
    ax1.set_yscale("log")
    ax1.set_ylabel("loss")
    ax2.set_yscale("log")
    ax2.set_ylabel("N_opt (parameters)")
    law = fit.law
    fig.suptitle(f"L = {law.E:.3f} + {law.A:.4g}/N^{law.alpha:.3f} + {law.B:.4g}/D^{law.beta:.3f}")
    readable_ticks(fig)
    return fig


def _bands(ax1: Any, ax2: Any, fit: Approach3Fit, grid: np.ndarray) -> None:
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
        lw=0,
        label=f"{fit.level:.0%} bootstrap band",
    )


def _mark_held_out(ax: Any, ho: Holdout) -> None:
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
    plt = pyplot()
    rows = np.asarray(ho.rows)
    fit_rows = np.setdiff1d(np.arange(N.size), rows)
    C = 6.0 * N * D
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax1.scatter(C[fit_rows], L[fit_rows], s=10, color="grey", label="other runs")
    _interval_bars(ax1, ho.C_points, ho, f"refit prediction, {ho.level:.0%} interval")
    ax1.scatter(ho.C_points, ho.observed, marker="x", color="red", s=40, zorder=5, label="held out")
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel(_COMPUTE)
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
    ax2.axhline(0, color="grey", lw=1, label="observed = predicted")
    ax2.set_xticks(x, [lab.replace(", ", "\n") for lab in ho.labels], fontsize=7)
    ax2.set_ylabel("observed / predicted - 1")
    ax2.legend(fontsize=8)
    fig.suptitle(f"held out: largest budget C = {ho.budget:.3g}, refit on {ho.n_fit} points")
    return _save(fig, path)


def _interval_bars(ax: Any, x: np.ndarray, ho: Holdout, label: str) -> None:
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


def plot_isoflops(
    fit: AllocationFit,
    path: str | Path,
    holdout: Holdout | None = None,
    dropped: Dropped | None = None,
) -> Path:
    """Write ``isoflops_figure`` to ``path``."""
    return _save(isoflops_figure(fit, holdout, dropped), path)


def isoflops_figure(
    fit: AllocationFit, holdout: Holdout | None = None, dropped: Dropped | None = None
) -> Any:
    """Approach 2. Left: each isoFLOP profile in its budget's colour (the colour bar gives C),
    its runs, the curve fitted through them (parabola or Akima interpolant, as the fit used)
    and its minimum; points left out (``dropped``: N, L, C) hollow and grey. Right: the
    minima against C with the N_opt and D_opt power laws."""
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11.5, 4.4), layout="constrained")
    cmap = plt.get_cmap("plasma")
    norm = _log_norm([c["C"] for c in fit.curves])
    for c in fit.curves:
        col = cmap(norm(c["C"]) * 0.9)
        n, lo = np.asarray(c["N"]), np.asarray(c["loss"])
        ax1.scatter(n, lo, color=col, s=12, zorder=3)
        xx, yy = _profile_curve(c, fit.method)
        ax1.plot(xx, yy, color=col, lw=1.2)
        ax1.plot([c["N_opt"]], [c["loss_opt"]], marker="*", color=col, ms=11, mec="k", zorder=4)
    for b in fit.skipped:  # budgets without a bracketed minimum: shown, not fitted
        ax1.scatter(b["N"], b["loss"], marker="x", color="0.55", s=18, lw=1, zorder=2)
    if dropped is not None:
        _dropped(ax1, dropped[0], dropped[1])
    fig.colorbar(
        plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax1, label="compute budget C (FLOPs)"
    )
    _profile_legend(ax1, fit.method, bool(fit.skipped))
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel("parameters N")
    ax1.set_ylabel("loss")
    title = f"{len(fit.curves)} isoFLOP profiles and their minima"
    if fit.skipped:
        title += f" ({len(fit.skipped)} budget{'s' * (len(fit.skipped) > 1)} without one: x)"
    ax1.set_title(title, fontsize=10)
    _law_panel(ax2, fit, holdout)
    readable_ticks(fig)
    return fig


def _profile_curve(c: dict[str, Any], method: str) -> tuple[np.ndarray, np.ndarray]:
    """The curve the fit put through one budget's points, over the span it was fitted on: the
    parabola in log N (of L, or of log L), or the Akima interpolant of log L."""
    n = np.asarray(c["N"], dtype=float)
    lo, hi = c.get("fit_span") or (n.min(), n.max())
    xx = np.linspace(np.log(lo), np.log(hi), 100)
    if c["parabola"] is not None:
        yy = np.polyval(c["parabola"], xx)
    else:
        from scipy.interpolate import Akima1DInterpolator

        yy = Akima1DInterpolator(np.log(n), np.log(np.asarray(c["loss"], dtype=float)))(xx)
    return np.exp(xx), (np.exp(yy) if c["log_loss"] else yy)


def _profile_legend(ax: Any, method: str, skipped: bool) -> None:
    """What the left panel's marks are (their colours are the budget's)."""
    from matplotlib.lines import Line2D

    curve = "Akima interpolant" if method == "akima" else "parabola in log N"
    items = [
        (Line2D([], [], ls="", marker="o", ms=4, color="0.4"), "runs at one budget"),
        (Line2D([], [], color="0.4", lw=1.2), f"fit per budget: {curve}"),
        (Line2D([], [], ls="", marker="*", ms=10, color="0.6", mec="k"), "minimum: N_opt"),
    ]
    if skipped:
        mark = Line2D([], [], ls="", marker="x", ms=5, color="0.55")
        items.append((mark, "runs of a budget left out: no bracketed minimum"))
    handles, labels = ax.get_legend_handles_labels()  # the dropped points, if any
    ax.legend([h for h, _ in items] + handles, [t for _, t in items] + labels, fontsize=8)


def plot_envelope(
    fit: AllocationFit,
    N: np.ndarray,
    L: np.ndarray,
    C: np.ndarray,
    path: str | Path,
    holdout: Holdout | None = None,
    dropped: Dropped | None = None,
) -> Path:
    """Write ``envelope_figure`` to ``path``."""
    return _save(envelope_figure(fit, N, L, C, holdout, dropped), path)


def envelope_figure(
    fit: AllocationFit,
    N: np.ndarray,
    L: np.ndarray,
    C: np.ndarray,
    holdout: Holdout | None = None,
    dropped: Dropped | None = None,
) -> Any:
    """Approach 1: all runs (coloured by N), the lower envelope of loss vs FLOPs that was
    fitted, points left out hollow and grey; then N_opt(C)."""
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11.5, 4.4), layout="constrained")
    sc = ax1.scatter(C, L, c=N, norm=_log_norm(N), s=8, cmap="viridis", alpha=0.7, label="runs")
    fig.colorbar(sc, ax=ax1, label="parameters N (colour of a run)")
    ax1.plot(fit.C, fit.L, "r.-", label="lower envelope (the points fitted)")
    if dropped is not None:
        _dropped(ax1, dropped[2], dropped[1])
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel(_COMPUTE)
    ax1.set_ylabel("loss")
    ax1.legend(fontsize=8)
    _law_panel(ax2, fit, holdout)
    readable_ticks(fig)
    return fig


def _law_panel(ax: Any, fit: AllocationFit, holdout: Holdout | None = None) -> None:
    grid = np.geomspace(fit.C.min(), fit.C.max() * 100, 50)
    ax.plot(fit.C, fit.N, "o", label="N_opt per budget")
    ax.plot(grid, fit.n_opt(grid), "k-", label=f"N_opt = {fit.n_opt.coef:.3g} C^{fit.a:.3f}")
    ax.plot(fit.C, fit.D, "s", label="D_opt per budget")
    ax.plot(grid, fit.d_opt(grid), "k--", label=f"D_opt = {fit.d_opt.coef:.3g} C^{fit.b:.3f}")
    ax.axvline(fit.C.max(), color="grey", ls=":", lw=1, label=_EXTRAPOLATED)
    if holdout is not None:
        x = holdout.C_points
        _interval_bars(ax, x, holdout, f"refit N_opt, {holdout.level:.0%} interval")
        ax.scatter(x, holdout.observed, marker="x", color="red", s=40, zorder=5, label="held out")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(_COMPUTE)
    ax.set_ylabel("N_opt (parameters), D_opt (tokens)")
    ax.set_title("compute-optimal allocation", fontsize=10)
    ax.legend(fontsize=8)


def plot_hp(fit: HPLawFit, path: str | Path) -> Path:
    """Near-optimal band points and the fitted eta_opt(C), B_opt(C) lines."""
    plt = pyplot()
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
    plt = pyplot()
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
    plt = pyplot()
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
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    pred = fit.predicted()
    for i, name in enumerate(fit.law.targets):
        ax1.scatter(pred[:, i], fit.losses[:, i], s=14, label=name)
    lo, hi = min(pred.min(), fit.losses.min()), max(pred.max(), fit.losses.max())
    ax1.plot([lo, hi], [lo, hi], "k-", lw=1, label="measured = law")
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


def _save(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` as a PNG (log ticks made readable, the layout tightened unless the figure
    lays itself out) and close it."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    readable_ticks(fig)
    fig.savefig(p, dpi=110)
    pyplot().close(fig)
    return p
