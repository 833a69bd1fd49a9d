"""`sizeup demo --axis plan`: close the loop. Plan a bigger run from small ones, train it as
planned, and score the plan (issue 22).

Every stage is one sizeup already has, run in order on the built-in corpus:

1. **proxy**: an lr x seeds study at the base size under muP (sizeup.sweep), whose transfer
   analysis gives the tuned lr (sizeup.plan.study.read_study reads it as the plan's proxy);
2. **steps**: a short lr x steps x seeds study at the base size, whose optima measure the
   horizon exponent alpha_data (sizeup.sweep.exponents, stored with the study) instead of
   assuming one;
3. **ladder**: WSD cooldown branches (sizeup.train.wsd: one stable trunk per width, a branch
   per budget, each branch bit for bit the WSD run of its length) over a few widths, at the
   proxy's lr (muP moves it across width), and an approach-3 fit of L(N, D) with its bootstrap
   and measured noise (sizeup.laws.chinchilla), written as fit.json;
4. **plan**: `plan --from-study proxy.db --horizon-study steps.db --preset fit.json` for a
   target at >= 10x the ladder's largest compute, with its loss's prediction interval, written
   as run.json; the same plan with the fixed horizon exponent -1/2 for comparison;
5. **target**: run.json trained exactly as planned (only the threads and the evaluation's batch
   count, which change no training step, set as the ladder's), at lr x 2^k for k in
   ``multipliers`` and at the fixed-exponent plan's lr, on every target seed (a sweep store);
6. **score**: the measured loss at the planned lr against the predicted one and its interval;
   the planned lr's regret against the best measured lr (interval over seeds); the measured
   optimum's offset from the planned lr in octaves (the transfer analysis' optimum and its
   interval); the same for the fixed -1/2 exponent.

summary.json holds every number; report.html opens with the verdict in one sentence.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sizeup import __version__
from sizeup.config import ModelSpec, RunConfig, json_safe
from sizeup.errors import ConfigError, check_choice
from sizeup.laws.chinchilla import fit_approach3
from sizeup.plan import plan, read_study
from sizeup.plan.records import params
from sizeup.report.loop import loop_page
from sizeup.sweep import Store, run_sweep
from sizeup.sweep.estimate import Estimate, t_interval
from sizeup.sweep.executors import Runner
from sizeup.sweep.exponents import save_exponent
from sizeup.sweep.store import FINISHED
from sizeup.sweep.transfer import LEVEL, analyze_transfer
from sizeup.train.wsd import wsd_study

AXIS = "plan"  # `sizeup demo --axis plan`
MODES = ("ci", "quick", "full")
# The horizon exponent the plan is compared with: lr x (D / D0)^-1/2 (the demo's steps study's
# fixed rule, sizeup.demo.DATA_EXPONENT; Bjorck et al. 2024 report -0.3 to -0.5).
FIXED_EXPONENT = -0.5
# How many times the ladder's largest compute the target must be (issue 22).
MIN_COMPUTE_RATIO = 10.0
N_BOOT = 1000  # seed resamples of the regret's interval


@dataclass
class LoopSettings:
    """The loop's sizes: the base model, each study's grid and seeds, the ladder and the target."""

    base: dict[str, Any]  # flat RunConfig fields of the proxy (model, data, schedule, recipe)
    proxy_lr_exps: list[float]  # log2 lrs of the proxy study
    seeds: list[int]  # the proxy and steps studies' seeds
    steps_values: list[int]  # the steps study's lengths (at the base size)
    steps_lr_exps: list[float]
    ladder_widths: list[int]
    ladder_steps: list[int]  # the WSD branches' lengths
    target_width: int
    target_depth: int
    target_steps: int
    target_seeds: list[int] = field(default_factory=lambda: [0, 1])
    multipliers: list[float] = field(default_factory=lambda: [-1.0, -0.5, 0.0, 0.5, 1.0])
    bootstrap: int = 200  # the law fit's resamples

    def __post_init__(self) -> None:
        if len(self.ladder_widths) * len(self.ladder_steps) < 6:
            raise ConfigError(
                "ladder",
                (self.ladder_widths, self.ladder_steps),
                "at least 6 (width, budget) points: approach 3 fits 5 parameters and the "
                "prediction interval needs a residual degree of freedom",
            )
        if len(self.target_seeds) < 2:
            raise ConfigError("target_seeds", self.target_seeds, "2 seeds or more")
        if 0.0 not in self.multipliers:
            raise ConfigError("multipliers", self.multipliers, "octaves that include 0 (the plan)")

    def base_config(self) -> RunConfig:
        """The proxy's RunConfig (its lr a placeholder)."""
        return RunConfig(**{**self.base, "lr": 2.0 ** self.proxy_lr_exps[0]})


def _base(width: int, depth: int, head_dim: int, seq_len: int, batch: int) -> dict[str, Any]:
    """The loop's base: a small GPT on the built-in corpus under muP with AdamW and a WSD
    schedule (the plan's own schedule, so the proxy, the ladder and the target share it)."""
    return dict(
        model="gpt",
        width=width,
        depth=depth,
        head_dim=head_dim,
        base_width=width,
        seq_len=seq_len,
        batch_size=batch,
        rule="mup",
        optimizer="adamw",
        weight_decay=0.1,
        schedule="wsd",
        decay_frac=0.2,
        warmup=5,
        steps=100,
        attn_scale="1/sqrt(d)",
        qk_norm=True,
        eval_batches=4,
        threads=1,
    )


SETTINGS: dict[str, LoopSettings] = {
    # CI: seconds per stage, the whole loop end to end (tests/test_loop.py)
    "ci": LoopSettings(
        base={**_base(16, 1, 8, 32, 4), "steps": 20, "warmup": 2, "eval_batches": 2},
        proxy_lr_exps=[-8, -7, -6, -5, -4],
        seeds=[0, 1],
        steps_values=[10, 40],
        steps_lr_exps=[-8, -7, -6, -5, -4],
        ladder_widths=[16, 24, 32],
        ladder_steps=[10, 20, 30],
        target_width=64,
        target_depth=1,
        target_steps=120,
        multipliers=[-1.0, 0.0, 1.0],
        bootstrap=50,
    ),
    # quick: sized for <= 15 minutes on 2 CPU cores (not yet timed: docs/plan.md)
    "quick": LoopSettings(
        base=_base(32, 2, 16, 64, 8),
        proxy_lr_exps=[-11, -10, -9, -8, -7, -6],
        seeds=[0, 1, 2],
        steps_values=[50, 100, 200],
        steps_lr_exps=[-11, -10, -9, -8, -7, -6],
        ladder_widths=[32, 48, 64],
        ladder_steps=[50, 100, 200],
        target_width=128,
        target_depth=2,
        target_steps=600,
    ),
    # full: sized for a GPU
    "full": LoopSettings(
        base={**_base(64, 4, 32, 128, 16), "device": "cuda", "eval_batches": 16},
        proxy_lr_exps=[-12, -11, -10, -9, -8, -7, -6],
        seeds=[0, 1, 2],
        steps_values=[250, 500, 1000, 2000],
        steps_lr_exps=[-12, -11, -10, -9, -8, -7, -6],
        ladder_widths=[64, 96, 128, 192],
        ladder_steps=[250, 500, 1000, 2000],
        target_width=512,
        target_depth=4,
        target_steps=6000,
        target_seeds=[0, 1, 2],
    ),
}


def settings_for(mode: str) -> LoopSettings:
    """The loop `sizeup demo --axis plan` runs: "quick" with --quick, else "full"; "ci": tests."""
    check_choice("mode", mode, MODES)
    return SETTINGS[mode]


# ----------------------------------------------------------------------------- the stages


def proxy_study(s: LoopSettings, db: Path, **run: Any) -> Path:
    """Stage 1: lr x seeds at the base size (muP)."""
    spec = {
        "name": "loop-proxy",
        "base": s.base,
        "axes": {"lr": [2.0**e for e in s.proxy_lr_exps]},
        "seeds": list(s.seeds),
    }
    run_sweep(spec, db, **run)
    return db


def steps_study(s: LoopSettings, db: Path, **run: Any) -> Any:
    """Stage 2: lr x steps x seeds at the base size, and the horizon exponent it measures
    (stored with the study)."""
    spec = {
        "name": "loop-steps",
        "base": s.base,
        "axes": {"steps": list(s.steps_values), "lr": [2.0**e for e in s.steps_lr_exps]},
        "seeds": list(s.seeds),
    }
    run_sweep(spec, db, **run)
    return save_exponent(db, "steps")


def ladder(s: LoopSettings, lr: float, out: Path, progress: bool) -> tuple[list[dict], Any]:
    """Stage 3: WSD branches over the widths at the proxy's lr (muP carries it across width),
    and the approach-3 fit of their (N, D, loss), N the total parameters as the planner counts
    them (sizeup.plan.records.params); fit.json in ``out``."""
    cfg = s.base_config().replace(lr=lr, steps=max(s.ladder_steps))
    pts = wsd_study(cfg, s.ladder_widths, s.ladder_steps, progress=progress)
    rows = []
    for p in pts:
        N = params(cfg.replace(width=p.width).model)
        rows.append({"width": p.width, "N": N, "D": p.tokens, "steps": p.steps, "loss": p.loss})
    ok = [r for r in rows if math.isfinite(r["loss"])]
    if len(ok) < 6:
        raise ConfigError("ladder", len(ok), "at least 6 finished ladder points (some diverged)")
    N, D, L = (np.array([r[k] for r in ok], dtype=float) for k in ("N", "D", "loss"))
    fit = fit_approach3(N, D, L, bootstrap=s.bootstrap, seed=0)
    out.mkdir(parents=True, exist_ok=True)
    d = {**fit.to_dict(), "name": "loop-ladder", "vocab_size": cfg.model.vocab_size}
    (out / "fit.json").write_text(json.dumps(json_safe(d), indent=2))
    return rows, fit


def target_model(s: LoopSettings) -> ModelSpec:
    """The target's shape: the base model at the target's width and depth."""
    return s.base_config().model.replace(width=s.target_width, depth=s.target_depth)


def plans(s: LoopSettings, proxy_db: Path, steps_db: Path, fit_path: Path) -> tuple[Any, Any]:
    """Stage 4: the plan (the measured horizon exponent, the ladder's laws) and the same plan
    with the fixed -1/2 exponent."""
    base = s.base_config()
    tokens = s.target_steps * base.data.batch_size * base.model.seq_len
    common = dict(
        model=target_model(s),
        preset=str(fit_path),
        tokens=tokens,
        batch_tokens=base.data.batch_size * base.model.seq_len,
        batch_multiple=1,
        warmup=base.schedule.warmup,
        decay_frac=base.schedule.decay_frac,
        # models this small train on fewer tokens than they have parameters (so do the ladder's
        # runs the law was fitted on)
        min_tokens_per_param=0.0,
    )
    planned = plan(study=read_study(proxy_db, horizon_study=steps_db), **common)
    fixed = plan(study=read_study(proxy_db), data_exponent=FIXED_EXPONENT, **common)
    return planned, fixed


def target_configs(s: LoopSettings, run_json: Path, fixed_lr: float) -> list[RunConfig]:
    """Stage 5: run.json as planned at lr x 2^k and at the fixed-exponent lr, every seed; only
    the threads and the evaluation's batches (no training step reads them) are the ladder's."""
    planned = RunConfig.from_file(run_json)
    base = s.base_config()
    keep = dict(threads=base.run.threads, eval_batches=base.data.eval_batches)
    lrs = [planned.optimizer.lr * 2.0**k for k in s.multipliers] + [fixed_lr]
    return [planned.replace(lr=lr, seed=seed, **keep) for lr in lrs for seed in s.target_seeds]


# ----------------------------------------------------------------------------- the score


def _losses(db: Path) -> tuple[np.ndarray, list[int], np.ndarray]:
    """(lrs, seeds, losses (lrs, seeds)): the target study's final losses (NaN: unfinished,
    +inf: diverged)."""
    with Store(db, readonly=True) as st:
        trials = [t for t in st.trials() if t.status in FINISHED]
    lrs = np.array(sorted({t.config.optimizer.lr for t in trials}))
    seeds = sorted({t.config.run.seed for t in trials})
    y = np.full((len(lrs), len(seeds)), np.nan)
    for t in trials:
        i = int(np.flatnonzero(lrs == t.config.optimizer.lr)[0])
        y[i, seeds.index(t.config.run.seed)] = t.loss if t.status == "done" else math.inf
    return lrs, seeds, y


def regret(y: np.ndarray, i: int, level: float = LEVEL) -> Estimate:
    """Loss at lr i minus the best lr's, seed means, with an interval from a bootstrap over
    seeds (sizeup.sweep.estimate.t_interval, as the transfer analysis' regret)."""
    n = y.shape[1]
    rng = np.random.default_rng(0)
    w = np.vstack([np.ones(n), rng.multinomial(n, np.full(n, 1 / n), size=N_BOOT)])
    with np.errstate(invalid="ignore"):
        m = (w[:, None, :] * y[None]).sum(axis=2) / w.sum(axis=1)[:, None]  # (R, lrs)
    reps = m[:, i] - np.nanmin(np.where(np.isfinite(m), m, np.nan), axis=1)
    lo, hi, _, _ = t_interval(float(reps[0]), reps[1:], n, level, floor=0.0)
    return Estimate(float(reps[0]), "=", lo, hi)


def score(db: Path, planned: Any, fixed: Any) -> dict[str, Any]:
    """Stage 6: the plan against the target study (module doc)."""
    lrs, seeds, y = _losses(db)
    optimum = analyze_transfer(db, axis="width", group_by=[]).groups[0].points[0].optimum
    out: dict[str, Any] = {"lrs": lrs.tolist(), "seeds": seeds, "losses": y.tolist()}
    out["measured_optimum_log2_lr"] = optimum.to_dict()
    for key, p in (("plan", planned), ("fixed_exponent", fixed)):
        i = int(np.argmin(np.abs(np.log2(lrs) - math.log2(p.peak_lr))))
        measured = float(np.mean(y[i]))
        offset = Estimate(
            optimum.value - math.log2(p.peak_lr),
            optimum.bound,
            optimum.lo - math.log2(p.peak_lr),
            optimum.hi - math.log2(p.peak_lr),
            optimum.lo_open,
            optimum.hi_open,
        )
        row: dict[str, Any] = {
            "lr": p.peak_lr,
            "data_exponent": p.recipe["optimizer"].get("data_exponent"),
            "regret": regret(y, i).to_dict(),
            "optimum_offset_octaves": offset.to_dict(),
            "measured_loss": measured,
        }
        if key == "plan":
            row.update(_loss_score(p, measured))
        out[key] = row
    return out


def _loss_score(p: Any, measured: float) -> dict[str, Any]:
    """The predicted loss against the measured one: the error in % and whether the measured
    loss lies inside the plan's 90% prediction interval."""
    pi = p.loss_prediction_interval
    return {
        "predicted_loss": p.loss,
        "prediction_interval": list(pi) if pi is not None else None,
        "loss_error_pct": 100.0 * (measured - p.loss) / p.loss,
        "inside_interval": bool(pi is not None and pi[0] <= measured <= pi[1]),
    }


def verdict(summary: dict[str, Any]) -> str:
    """'The plan's lr was within X octaves of the best and cost Y nats; the loss was predicted
    within Z% (inside its 90% prediction interval).'"""
    sc = summary["score"]["plan"]
    off = Estimate.from_dict(sc["optimum_offset_octaves"])
    reg = Estimate.from_dict(sc["regret"])
    inside = "inside" if sc["inside_interval"] else "outside"
    fixed = Estimate.from_dict(summary["score"]["fixed_exponent"]["optimum_offset_octaves"])
    where = (
        f"was within {abs(off.value):.2f} octaves of the best measured (offset {off.text()})"
        if off.bound == "="
        else f"was at least {abs(off.value):.2f} octaves from the best measured, which lies "
        f"beyond the lrs trained (offset {off.text()})"
    )
    return (
        f"The plan's lr {where} and cost {reg.text('{:.4f}')} nats; the loss was predicted "
        f"within {abs(sc['loss_error_pct']):.1f}% ({inside} its 90% prediction interval); "
        f"with the fixed -1/2 horizon exponent the lr was {abs(fixed.value):.2f} octaves off."
    )


# ----------------------------------------------------------------------------- the loop


def run_loop(
    out: str | Path,
    mode: str = "quick",
    *,
    settings: LoopSettings | None = None,
    workers: int = 2,
    runner: Runner | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run (or resume: the studies are stores in ``out``) the loop; write summary.json,
    report.html, fit/fit.json, plan/ (plan.json, plan.md, run.json) and plan-fixed/."""
    s = settings or settings_for(mode)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    run = dict(workers=workers, runner=runner, progress=progress)
    t0 = time.perf_counter()
    proxy_db = proxy_study(s, out / "proxy.db", **run)
    horizon = steps_study(s, out / "steps.db", **run)
    proxy_lr = read_study(proxy_db).optimizer["lr"]
    rows, fit = ladder(s, proxy_lr, out / "fit", progress)
    planned, fixed = plans(s, proxy_db, out / "steps.db", out / "fit" / "fit.json")
    ladder_c = max(6.0 * r["N"] * r["D"] for r in rows)
    if planned.flops < MIN_COMPUTE_RATIO * ladder_c:
        raise ConfigError(
            "target_steps",
            s.target_steps,
            f"a target of at least {MIN_COMPUTE_RATIO:g}x the ladder's largest compute "
            f"{ladder_c:.3g} FLOPs (this one: {planned.flops:.3g})",
        )
    planned.save(out / "plan")
    fixed.save(out / "plan-fixed")
    configs = target_configs(s, out / "plan" / "run.json", fixed.peak_lr)
    run_sweep(configs, out / "target.db", **run)
    summary = json_safe(
        {
            "axis": AXIS,
            "mode": mode if settings is None else "custom",
            "sizeup_version": __version__,
            "settings": asdict(s),
            "proxy_lr": proxy_lr,
            "horizon_exponent": horizon.to_dict(),
            "ladder": rows,
            "ladder_max_compute": ladder_c,
            "fit": {k: v for k, v in fit.to_dict().items() if k != "samples"},
            "target": {
                "compute": planned.flops,
                "compute_over_ladder": planned.flops / ladder_c,
                "params": planned.params,
                "tokens": planned.tokens,
                "extrapolation": planned.extrapolation,
                "measured_rules": planned.measured_rules,
            },
            "score": score(out / "target.db", planned, fixed),
            "wall_time_this_call_s": time.perf_counter() - t0,
        }
    )
    summary["verdict"] = verdict(summary)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    loop_page(summary).write(out / "report.html")
    return summary
