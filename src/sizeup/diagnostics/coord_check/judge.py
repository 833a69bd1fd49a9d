"""The judge: slopes of log(size) against log(width) per module and step, their seed noise, and
the verdict (module doc of sizeup.diagnostics.coord_check)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sizeup.config.check import CheckSpec
from sizeup.diagnostics.coord_check.constants import CROSSTALK_SLOPE, STATS, VANISH_SLOPE
from sizeup.diagnostics.coord_check.result import CoordCheckResult, ModuleCurve


@dataclass(frozen=True)
class Sweep:
    """What a check ran: its CheckSpec, the axis and the sizes along it."""

    check: CheckSpec
    axis: str
    sizes: list[int]


def log_slope(sizes: Sequence[float], values: Sequence[float]) -> float:
    """Least-squares slope of log(value) against log(size); inf when a value is not positive
    or not finite (an exploded or collapsed module), 0 when all values are exactly 0."""
    v = np.asarray(values, dtype=float)
    if np.all(v == 0.0):
        return 0.0  # e.g. zero-initialised readout at t=0: flat (and judged nowhere anyway)
    if not np.all(np.isfinite(v)) or np.any(v <= 0):
        return math.inf
    return float(np.polyfit(np.log(np.asarray(sizes, dtype=float)), np.log(v), 1)[0])


def slope_stderr(sizes: list[int], per_seed: np.ndarray) -> float:
    """Standard error of the slope from per-seed sizes (S, seeds): std of the per-seed slopes
    / sqrt(seeds); nan with one seed or a non-finite per-seed slope."""
    k = per_seed.shape[-1]
    if k < 2:
        return math.nan
    slopes = [log_slope(sizes, per_seed[:, j]) for j in range(k)]
    if not all(math.isfinite(x) for x in slopes):
        return math.nan
    return float(np.std(slopes, ddof=1) / math.sqrt(k))


def _seed_mean(arr: np.ndarray) -> np.ndarray:
    """Mean over seeds (the last axis), ignoring NaNs where some seed has a finite value."""
    if not np.isfinite(arr).any():
        return arr.mean(axis=-1)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN cells stay NaN
        return np.nanmean(arr, axis=-1)


def _shrinks_at_init(slope: float, stderr: float, check: CheckSpec) -> bool:
    """The size at init shrinks with width like an output that vanishes: its slope is closer to
    -VANISH_SLOPE than to 0 (the two rates theory allows at init), beyond the seed noise.

    This picks which band a module is judged against, not a verdict, so it keeps the normal
    allowance noise_z x stderr rather than the verdict's t allowance: init slopes are precise
    (standard errors of ~0.01), and t's 14 standard errors with 2 seeds would judge muP's
    random readout (init slope -1/2) on its total, a false failure rather than a cautious one."""
    se = stderr if math.isfinite(stderr) else 0.0
    return math.isfinite(slope) and slope + check.noise_z * se < -VANISH_SLOPE / 2


def judge(name: str, kind: str, arr: np.ndarray, sweep: Sweep) -> ModuleCurve:
    """One module's curve and verdict from its recorded stats (4, T+1, S, seeds)."""
    c, sizes, seeds = sweep.check, sweep.sizes, arr.shape[-1]
    si = STATS.index(c.stat)
    ts = range(c.steps + 1)
    total, delta = _seed_mean(arr[:2]), _seed_mean(arr[2:])
    slopes = [log_slope(sizes, total[si, t]) for t in ts]
    stderr = [slope_stderr(sizes, arr[si, t]) for t in ts]
    # Exactly zero at init (every size and seed), or shrinking with width at init: the module
    # holds (mostly) what updates put there, and muP keeps that update Theta(1); its crosstalk
    # part fades like width^-1/2 (module doc), so it may shrink that fast at small widths.
    zero_init = bool(np.all(arr[:2, 0] == 0.0))
    vanishes = sweep.axis == "width" and (zero_init or _shrinks_at_init(slopes[0], stderr[0], c))
    lower = -(CROSSTALK_SLOPE + c.tolerance) if vanishes else -c.tolerance
    m = ModuleCurve(
        name=name,
        kind=kind,
        l1=total[0].tolist(),
        rms=total[1].tolist(),
        slopes=slopes,
        zero_init=zero_init,
        band=(lower, c.tolerance),
        stderr=stderr,
        noise_z=c.noise_z,
        seeds=seeds,
        vanishes=vanishes,
        delta_l1=delta[0].tolist(),
        delta_rms=delta[1].tolist(),
        delta_slopes=[log_slope(sizes, delta[si, t]) for t in ts],
        delta_stderr=[slope_stderr(sizes, arr[2 + si, t]) for t in ts],
    )
    m.verdict = m.decide(c.judge_from)
    return m


def verdict(
    sweep: Sweep,
    kinds: dict[str, str],
    stats: dict[str, np.ndarray],
    loss: np.ndarray,
    settings: dict[str, Any],
) -> CoordCheckResult:
    """Every recorded module judged, with the mean training loss per step and size."""
    c = sweep.check
    return CoordCheckResult(
        axis=sweep.axis,
        sizes=sweep.sizes,
        steps=c.steps,
        stat=c.stat,
        tolerance=c.tolerance,
        judge_from=c.judge_from,
        modules=[judge(n, kinds[n], arr, sweep) for n, arr in stats.items()],
        loss=loss.mean(axis=-1).tolist(),
        settings=settings,
    )
