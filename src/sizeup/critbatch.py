"""`sizeup demo --axis critical-batch`: how large a batch can each optimizer use?

For one small GPT and several optimizers, every batch size B (sequences per step) trains over a
small lr grid and seeds with a constant lr after a short warmup; each run records the steps S it
takes to first reach a target loss. Per optimizer and batch size the best lr is the one with the
fewest steps (mean of log S over seeds); McCandlish et al. 2018 ("An Empirical Model of
Large-Batch Training", eq. 2.11) then give

    S = S_min (1 + B_noise / B),   E = S B = E_min (1 + B / B_noise),

i.e. (S / S_min - 1)(E / E_min - 1) = 1, fitted per optimizer with a profile interval on B_noise
(sizeup.laws.critical_batch.fit_tradeoff). B_crit = B_noise = E_min / S_min is the batch at which
one pays twice the minimum steps and twice the minimum data: below it a larger batch buys
almost proportionally fewer steps, above it steps barely fall.

The loss: the training loss, a centred running mean over ``window`` sequences (a window of
window / B steps, so every batch size averages the same number of sequences: as noisy at B = 4
as at B = 64, and with no lag, since it is centred). It costs nothing (the loss is logged at
every step) where an eval every k steps would cost a forward pass over the eval set and give S
only to k steps. The target: the highest loss that every optimizer reaches at every batch size
with its best lr in every seed, raised by ``target_margin`` of the way back to the initial loss
(so even the slowest cell reaches it before its last step); it is printed with the results.

Each lr grid is centred on the optimizer's ``typical_lr`` (sizeup.demo.lr_shift) at the reference
batch and moved by the square-root rule, lr x (B / ref_batch)^(1/2) (Malladi et al. 2022), at
the other batch sizes, so the optimum stays inside the grid as it moves with B.
"""

from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from sizeup import __version__
from sizeup.config import json_safe
from sizeup.demo import lr_shift, study_base, study_wall_time
from sizeup.errors import ConfigError, DataError, check_choice
from sizeup.laws.critical_batch import TradeoffFit, fit_tradeoff
from sizeup.registry import get_optimizer, optimizer_names
from sizeup.report.critical_batch import critical_batch_page, sentence
from sizeup.sweep import Store, SweepSpec, run_sweep
from sizeup.sweep.estimate import Estimate
from sizeup.sweep.executors import Runner
from sizeup.train.loop import device_name

AXIS = "critical-batch"
# The optimizers the study compares by default, those of them that are registered (issue 21).
DEFAULT_OPTIMIZERS = ("adamw", "muon", "dion", "scion", "soap")


def default_optimizers() -> list[str]:
    """DEFAULT_OPTIMIZERS that are registered, in that order."""
    return [o for o in DEFAULT_OPTIMIZERS if o in optimizer_names()]


def _base() -> dict[str, Any]:
    """The fixed model: the demo's study GPT at its base width (32: one head of 32, 2 blocks),
    constant lr after a 5-step warmup, the loss logged at every step."""
    return {**study_base(), "width": 32, "rule": "mup", "warmup": 5, "eval_batches": 2}


@dataclass
class CritBatchSettings:
    """What the critical-batch study sweeps: optimizers x batch sizes x lrs x seeds.

    A run at batch B takes ``min_steps + sequences / B`` steps (rounded up): the McCandlish
    shape itself with a generous guess, so small batches get the data they need and large ones
    the steps. ``centre``: log2 of AdamW's lr at ``ref_batch`` (other optimizers: moved by
    ``lr_shift``); ``lr_offsets``: the grid around it in octaves. ``extend``: rounds in which
    a (optimizer, batch) whose best lr lies at the edge of the lrs it tried gets the next lr
    beyond it (one grid step), so that a best lr is an optimum, not a bound, where it can be."""

    optimizers: list[str] = field(default_factory=default_optimizers)
    batch_sizes: list[int] = field(default_factory=lambda: [4, 8, 16, 32, 64])
    lr_offsets: list[float] = field(default_factory=lambda: [-2.0, -1.0, 0.0, 1.0, 2.0])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    base: dict[str, Any] = field(default_factory=_base)
    sequences: int = 6400
    min_steps: int = 150
    ref_batch: int = 16
    centre: float = -8.0
    window: int = 128
    target: float | None = None
    target_margin: float = 0.05
    level: float = 0.9
    extend: int = 2

    def __post_init__(self) -> None:
        if not self.optimizers or len(set(self.optimizers)) != len(self.optimizers):
            raise ConfigError("optimizers", self.optimizers, "distinct registered optimizer names")
        for name in self.optimizers:
            get_optimizer(name)  # a ConfigError listing the registered ones
        if len(set(self.batch_sizes)) < 3 or min(self.batch_sizes) < 1:
            raise ConfigError(
                "batch_sizes", self.batch_sizes, "3 or more distinct positive batch sizes"
            )
        if not self.lr_offsets or not self.seeds:
            raise ConfigError("lr_offsets/seeds", (self.lr_offsets, self.seeds), "non-empty")
        if not 0 <= self.target_margin < 1:
            raise ConfigError("target_margin", self.target_margin, "a number in [0, 1)")

    def steps_for(self, batch: int) -> int:
        """Steps of a run at ``batch``: min_steps + ceil(sequences / batch)."""
        return self.min_steps + math.ceil(self.sequences / batch)

    def lr_exps(self, optimizer: str, batch: int) -> list[float]:
        """log2 of the lrs ``optimizer`` trains at ``batch`` with: the grid around its centre,
        moved by half an octave per doubling of the batch from ref_batch."""
        grid = [self.centre + o for o in self.lr_offsets]
        at = self.centre + lr_shift(optimizer, grid) + 0.5 * math.log2(batch / self.ref_batch)
        return [at + o for o in self.lr_offsets]

    @property
    def lr_step(self) -> float:
        """The grid's spacing in octaves (what an extension adds beyond an edge)."""
        o = sorted(set(self.lr_offsets))
        return min(b - a for a, b in zip(o, o[1:])) if len(o) > 1 else 1.0

    def spec(self, cells: list[tuple[str, int, float]] | None = None) -> dict[str, Any]:
        """The sweep spec: one zipped axis of every (optimizer, batch, steps, lr), x seeds;
        ``cells``: only these (optimizer, batch, log2 lr) (an extension of the grid)."""
        if cells is None:
            cells = [
                (opt, b, e)
                for opt in self.optimizers
                for b in self.batch_sizes
                for e in self.lr_exps(opt, b)
            ]
        rows = [(opt, b, self.steps_for(b), 2.0**e) for opt, b, e in cells]
        cols = ("optimizer", "batch_size", "steps", "lr")
        return {
            "name": "demo-critical-batch",
            "base": self.base,
            "axes": {},
            "zip": [{c: [r[i] for r in rows] for i, c in enumerate(cols)}],
            "seeds": list(self.seeds),
        }


# FULL: five batch sizes, five lrs an octave apart, three seeds, two rounds of extension (a GPU,
# or a long CPU night). QUICK: <= 10 min on 2 cores for five optimizers, sized from single runs
# (one thread, the other core busy): ~0.006 + 0.0015 B s a step for AdamW, Muon ~1.5-2x that.
# Measured once (loaded machine, ~3x slower than those runs): 2 optimizers (adamw, muon) at
# 60 + 1600 / B steps took 641 s; these 50 + 1200 / B steps are ~0.76x that, so five
# optimizers priced like Muon come to ~8 min at the single-run speed.
FULL = CritBatchSettings()
QUICK = CritBatchSettings(
    batch_sizes=[4, 8, 16, 32],
    lr_offsets=[-1.0, 0.0, 1.0],
    seeds=[0],
    sequences=1200,
    min_steps=50,
    window=64,
    extend=1,
)


def settings_for(quick: bool = False, optimizers: list[str] | None = None) -> CritBatchSettings:
    """The study `sizeup demo --axis critical-batch [--quick] [--optimizers a,b]` runs."""
    s = QUICK if quick else FULL
    if optimizers is None:
        return CritBatchSettings(**{**asdict(s), "optimizers": default_optimizers()})
    return CritBatchSettings(**{**asdict(s), "optimizers": list(optimizers)})


def parse_optimizers(text: str | None) -> list[str] | None:
    """'adamw,muon' -> ['adamw', 'muon'] (registered, distinct); None stays None."""
    if text is None:
        return None
    names = [x.strip() for x in text.split(",") if x.strip()]
    if not names or len(set(names)) != len(names):
        raise ConfigError("optimizers", text, "distinct comma-separated optimizer names")
    for n in names:
        check_choice("optimizers", n, optimizer_names())
    return names


# --------------------------------------------------------------------------- the analysis
def smooth(losses: list[float] | np.ndarray, window: int) -> np.ndarray:
    """Centred running mean over ``window`` points (fewer at the ends: the points there are);
    a non-finite loss (divergence) makes every later point +inf."""
    x = np.asarray(losses, dtype=float)
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        x = x.copy()
        x[bad[0] :] = np.inf
    w = max(1, int(window))
    lo = np.maximum(np.arange(x.size) - (w - 1) // 2, 0)
    hi = np.minimum(np.arange(x.size) + w // 2 + 1, x.size)
    finite = np.where(np.isfinite(x), x, 0.0)
    c = np.concatenate([[0.0], np.cumsum(finite)])
    out = (c[hi] - c[lo]) / (hi - lo)
    if bad.size:  # a window that touches the divergence is diverged
        out[hi > bad[0]] = np.inf
    return out


def steps_to_target(
    steps: list[int] | np.ndarray, losses: list[float] | np.ndarray, target: float, window: int
) -> float:
    """Optimizer steps taken when the smoothed loss first reaches ``target`` (a loss logged at
    0-based step s is the loss after s + 1 steps); NaN when it never does."""
    sm = smooth(losses, window)
    hit = np.flatnonzero(sm <= target)
    return float(np.asarray(steps)[hit[0]] + 1) if hit.size else math.nan


@dataclass
class Cell:
    """One (optimizer, batch size): the best lr and its steps to the target per seed."""

    optimizer: str
    batch_size: int
    lr: float = math.nan
    steps: list[float] = field(default_factory=list)
    at_grid_edge: bool = False
    reason: str = ""
    tried: list[float] = field(default_factory=list)  # log2 of every lr it trained with

    @property
    def ok(self) -> bool:
        return bool(self.steps)


@dataclass
class OptimizerFit:
    """One optimizer's McCandlish fit: B_crit (sequences) as an Estimate, the fit itself."""

    optimizer: str
    b_crit: Estimate
    fit: TradeoffFit | None
    reason: str = ""


@dataclass
class CritBatchAnalysis:
    target: float
    cells: list[Cell]
    fits: dict[str, OptimizerFit]


def _window_steps(s: CritBatchSettings, batch: int) -> int:
    return max(1, round(s.window / batch))


def _lr_key(lr: float) -> float:
    """An lr as a dictionary key: log2, rounded (a stored lr need not be bit-equal to 2**e)."""
    return round(math.log2(lr), 6)


def _runs(trials: list[Any]) -> dict[tuple[str, int, float], list[Any]]:
    """Finished trials grouped by (optimizer, batch, _lr_key(lr))."""
    out: dict[tuple[str, int, float], list[Any]] = {}
    for t in trials:
        if t.result is None:
            continue
        c = t.config
        key = (c.optimizer.name, c.data.batch_size, _lr_key(c.optimizer.lr))
        out.setdefault(key, []).append(t)
    return out


def choose_target(s: CritBatchSettings, trials: list[Any]) -> float:
    """The target loss: the highest loss that every (optimizer, batch) reaches with its best
    lr in every seed (smoothed), raised by target_margin of the way to the initial loss;
    ``s.target`` when set."""
    if s.target is not None:
        return float(s.target)
    runs = _runs(trials)
    reach: dict[tuple[str, int], float] = {}
    for (opt, b, _), ts in runs.items():
        worst = max(float(np.min(smooth(t.result.train_loss, _window_steps(s, b)))) for t in ts)
        reach[(opt, b)] = min(reach.get((opt, b), math.inf), worst)
    if not reach or not all(math.isfinite(v) for v in reach.values()):
        raise DataError("the study's runs: every (optimizer, batch) needs an lr that trains")
    floor = max(reach.values())
    start = float(np.median([t.result.initial_val_loss for ts in runs.values() for t in ts]))
    return floor + s.target_margin * max(start - floor, 0.0)


def analyse(s: CritBatchSettings, trials: list[Any]) -> CritBatchAnalysis:
    """Steps to the target per run, the best lr per (optimizer, batch), a fit per optimizer."""
    target = choose_target(s, trials)
    runs = _runs(trials)
    cells = []
    for opt in s.optimizers:
        for b in s.batch_sizes:
            cell = Cell(opt, b)
            # the lrs this cell tried: its grid and any extension beyond it
            lrs = sorted(k[2] for k in runs if k[:2] == (opt, b))
            cell.tried = lrs
            best = math.inf
            for i, lr in enumerate(lrs):
                ts = runs[(opt, b, lr)]
                S = [
                    steps_to_target(
                        t.result.steps, t.result.train_loss, target, _window_steps(s, b)
                    )
                    for t in ts
                ]
                if len(S) < len(s.seeds) or not all(math.isfinite(x) for x in S):
                    continue
                score = float(np.mean(np.log(S)))
                if score < best:
                    best = score
                    cell.lr, cell.steps = 2.0**lr, S
                    cell.at_grid_edge = i in (0, len(lrs) - 1)
            if not cell.ok:
                cell.reason = "no lr reached the target in every seed"
            cells.append(cell)
    fits = {opt: _fit(s, target, [c for c in cells if c.optimizer == opt]) for opt in s.optimizers}
    return CritBatchAnalysis(target, cells, fits)


def extensions(s: CritBatchSettings, a: CritBatchAnalysis) -> list[tuple[str, int, float]]:
    """(optimizer, batch, log2 lr) to try next: one grid step beyond each best lr that lies at
    the edge of the lrs its cell tried."""
    out = []
    for c in a.cells:
        if c.ok and c.at_grid_edge:
            e, lrs = math.log2(c.lr), sorted(c.tried)
            beyond = e + s.lr_step if e >= lrs[-1] else e - s.lr_step
            out.append((c.optimizer, c.batch_size, beyond))
    return out


def _fit(s: CritBatchSettings, target: float, cells: list[Cell]) -> OptimizerFit:
    opt = cells[0].optimizer
    B = [c.batch_size for c in cells for _ in c.steps]
    S = [x for c in cells for x in c.steps]
    try:
        f = fit_tradeoff(np.array(B), np.array(S), target, relative=True, level=s.level)
    except DataError as e:
        return OptimizerFit(opt, Estimate(math.nan), None, str(e))
    value = {">=": f.lo, "<=": f.hi}.get(f.bound, f.B_crit)
    # an interval that runs to the top of the profiled range: "at least lo", no upper end
    est = Estimate(value, f.bound, f.lo, f.hi, hi_open=math.isinf(f.hi))
    return OptimizerFit(opt, est, f)


# --------------------------------------------------------------------------- the study
def store_name(quick: bool) -> str:
    """The study file inside the demo folder (one file holds every optimizer's runs)."""
    return "demo-critical-batch-quick.db" if quick else "demo-critical-batch.db"


def reproduce_command(s: CritBatchSettings, quick: bool) -> str | None:
    """The command that runs ``s``, or None when ``s`` is not a shipped study."""
    if replace(settings_for(quick, s.optimizers), seeds=list(s.seeds)) != s:
        return None
    return (
        f"sizeup demo --axis {AXIS}{' --quick' if quick else ''} "
        f"--optimizers {','.join(s.optimizers)} --seeds {','.join(str(x) for x in s.seeds)}"
    )


def run_critical_batch(
    out: str | Path,
    quick: bool = False,
    workers: int = 2,
    settings: CritBatchSettings | None = None,
    runner: Runner | None = None,
    progress: bool = True,
    optimizers: list[str] | None = None,
    seeds: list[int] | None = None,
) -> dict[str, Any]:
    """Run (or resume) the study, fit B_crit per optimizer, write report.html and
    summary.json into ``out``. ``optimizers`` and ``seeds`` replace the shipped study's."""
    s = settings or settings_for(quick, optimizers)
    if seeds is not None:
        s = replace(s, seeds=list(seeds))
    if runner is None:  # an optimizer whose extra is missing: one ConfigError naming it, now
        for name in s.optimizers:
            get_optimizer(name).builder()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    db = out / store_name(quick and settings is None)
    configs = SweepSpec.from_dict(s.spec()).trials()
    ran = 0
    for round_ in range(s.extend + 1):
        rep = run_sweep(
            configs, db, workers=workers, runner=runner, progress=progress, order="largest_first"
        )
        ran += rep.ran
        ids = {c.trial_id() for c in configs}
        with Store(db, readonly=True) as st:
            trials = [t for t in st.trials() if t.id in ids]
        analysis = analyse(s, trials)
        more = extensions(s, analysis)
        if not more or round_ == s.extend:
            break
        configs = configs + SweepSpec.from_dict(s.spec(more)).trials()
    rep.ran = ran
    summary = _summary(analysis, s, rep, trials, time.perf_counter() - t0, quick)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    critical_batch_page(analysis, trials, summary, s).write(out / "report.html")
    return summary


def _summary(
    a: CritBatchAnalysis,
    s: CritBatchSettings,
    rep: Any,
    trials: list[Any],
    wall: float,
    quick: bool,
) -> dict[str, Any]:
    seq = int(s.base["seq_len"])
    fits = {}
    for opt, f in a.fits.items():
        fits[opt] = {
            "S_min": f.fit.S_min if f.fit else None,
            "E_min_sequences": f.fit.E_min if f.fit else None,
            "E_min_tokens": f.fit.E_min * seq if f.fit else None,
            "bound": f.fit.bound if f.fit else None,
            "reason": f.reason,
        }
    summary: dict[str, Any] = {
        "axis": AXIS,
        "optimizers": list(s.optimizers),
        "target_loss": a.target,
        "target_rule": (
            f"fixed at {s.target}"
            if s.target is not None
            else "the highest smoothed training loss every optimizer reaches at every batch "
            f"size with its best lr in every seed, plus {s.target_margin:g} of the way back to "
            "the initial loss"
        ),
        "loss": f"training loss, centred running mean over {s.window} sequences",
        "b_crit": {opt: f.b_crit.to_dict() for opt, f in a.fits.items()},
        "b_crit_tokens": {
            opt: replace(
                f.b_crit, value=f.b_crit.value * seq, lo=f.b_crit.lo * seq, hi=f.b_crit.hi * seq
            ).to_dict()
            for opt, f in a.fits.items()
        },
        "fits": fits,
        "cells": [
            {
                "optimizer": c.optimizer,
                "batch_size": c.batch_size,
                "best_lr": c.lr,
                "best_log2_lr": math.log2(c.lr) if c.ok else None,
                "lr_at_grid_edge": c.at_grid_edge,
                "steps_to_target": c.steps,
                "tokens_to_target": [x * c.batch_size * seq for x in c.steps],
                "reason": c.reason,
            }
            for c in a.cells
        ],
        "quick": quick,
        "command": reproduce_command(s, quick),
        "sizeup_version": __version__,
        "settings": asdict(s),
        "trials": rep.counts,
        "trials_run_now": rep.ran,
        "wall_time_s": study_wall_time(trials),
        "wall_time_this_call_s": wall,
        "interval": {
            "level": s.level,
            "method": "profile of the fit's residual sum of squares in log S (F-test)",
        },
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "device": device_name(str(s.base.get("device", "cpu"))),
    }
    summary = json_safe(summary)
    summary["sentence"] = sentence(summary)
    return summary
