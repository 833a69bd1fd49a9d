"""Coordinate checks that give a verdict.

Train the same architecture at several widths (or depths) for a few steps, record the typical
size of every module's output, and fit the least-squares slope of log(size) against log(width).
Under a correct parametrization every activation stays Theta(1) as width grows, so the slope is
~0; under a broken one some output grows (slope ~0.5 or ~1 after one Adam step). Instead of asking
people to squint at a plot, we judge each module: |slope| <= tolerance (0.1) from step 1 on, and
name the worst offender.

**What is checked** is one record: a RunConfig (`sizeup coord-check -c run.yaml`), built at each
width (or depth: ``CheckSpec(depths=...)``) exactly as `sizeup train` builds it
(sizeup.train.build, against the config's own base) and trained by the same step
(sizeup.train.step) at the config's peak lr, constant over the check's few steps; or, for a
model sizeup cannot build, a ``ModelFactory`` (``width -> nn.Module`` and its data). The check's
own settings (sizes, steps, seeds, the judge's band) are a CheckSpec (sizeup.config.check).
The package is split by concern: ``record`` (hooks and the training loop), ``judge`` (slopes
and the verdict), ``result`` (the result records, table and JSON), ``constants``.

The slope is fitted to the seed-averaged sizes; its standard error comes from the spread of the
per-seed slopes (each seed is a full replicate of the width sweep), so with k seeds it has
k - 1 degrees of freedom. A module fails only when its slope lies outside the band by more than
the seed noise allows: Student's t_{k-1} quantile at the normal's coverage of ``noise_z`` (2)
standard errors (result.noise_multiplier: 14.0 with 2 seeds, 4.5 with 3, 3.3 with 4). One that
is outside, but within that noise, passes and is shown as "noisy" when at least MIN_SEEDS (3)
seeds measured the noise; with fewer it is INCONCLUSIVE ("run more seeds"), since one or two
seeds cannot tell a slope outside the band from noise (constants.MIN_SEEDS), while a slope
outside even the t allowance, or an infinite one, still fails. A few seeds of a GPT at widths
128..1024 give standard errors of 0.01-0.08, so real failures (SP: +0.5 to +2.8) stand far
outside. ``noise_z`` 0 is the strict band: it alone decides, whatever the seeds.

Step t = 0 is the forward pass at initialisation; step t >= 1 is the forward pass after t updates.
Step 0 is recorded but not judged.

Outputs that vanish at init are judged on their update. Besides each output out_t the check
records its update delta_t = out_t - out_0 on the same inputs. Under muP some outputs shrink
with width at init on purpose: the logits with a random readout (sigma/m: a sum of n terms of
size 1/n, so n^-1/2), 1/d attention scores over a growing head, and zero-initialised ones are
exactly 0. What muP keeps Theta(1) there is the update; the total only approaches it as the init
part fades, so at small widths its slope is pulled toward -1/2. A module vanishes at init when
it is exactly 0 there (every size and seed), or when its slope at t = 0 is nearer -1/2 than 0
beyond the seed noise (slope_0 + noise_z * stderr < -1/4); such a module is judged on its
update instead of its total.

Updates are judged one-sided. Each update mixes the inputs of the batch through their overlaps
x_i . x_j: Theta(n) for the same token, but O(sqrt(n)) for different ones rather than 0. Where
a module also has a Theta(1) init, that crosstalk is a small correction; where the update is
what is judged, it is a relative O(sqrt(tokens/n)) part that fades like width^-1/2, so the
update approaches its flat limit from above, with a slope between -1/2 and 0 at small widths
(measured on the GPT with SGD up to width 4096: the local slope of the zero-initialised queries
between successive widths from 64 goes -0.58, -0.35, -0.26, +0.11, -0.08, -0.06;
docs/diagnostics.md). They pass when the slope lies in [-(1/2 + tolerance), tolerance]: growth
still fails, and so does vanishing faster than crosstalk can explain (an update scaled 1/width
too small gives slope -1).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from sizeup.config import CheckSpec, OptimSpec, ParamSpec, RunConfig
from sizeup.diagnostics.coord_check.judge import Sweep, log_slope, verdict
from sizeup.diagnostics.coord_check.record import CoordRecorder, Subject, coord_modules, run
from sizeup.diagnostics.coord_check.result import CoordCheckResult, ModuleCurve
from sizeup.errors import ConfigError
from sizeup.models import build_model
from sizeup.parametrization import ModelHints, parametrize
from sizeup.registry import get_model
from sizeup.train.build import build
from sizeup.train.step import Trainer

Batch = tuple[torch.Tensor, torch.Tensor]
FACTORY_WIDTHS = (64, 128, 256, 512)


@dataclass
class ModelFactory:
    """A model family sizeup cannot build from a RunConfig (your own, a transformers one): the
    check's widths come from ``build(width)``, its base from ``build(base_width)`` (default: the
    smallest width) and a delta at twice that, parametrized with ``parametrization`` (None: the
    models are parametrized already, and ``optimizer`` must then be a callable ``model ->
    torch optimizer``) and trained with ``optimizer`` (an OptimSpec, sizeup.registry) on
    ``data(seed)``: a list of (x, y) batches, one per step (cycled; one batch repeats).
    ``hints``: what parametrize should assume about the models' structure (ModelHints).
    ``causal``: the attention scores are causal (only their lower triangle is recorded)."""

    build: Callable[[int], nn.Module]
    data: Callable[[int], list[Batch]]
    parametrization: ParamSpec | None = field(default_factory=ParamSpec)
    optimizer: OptimSpec | Callable[[nn.Module], Any] = field(default_factory=OptimSpec)
    hints: ModelHints | None = None
    base_width: int | None = None
    causal: bool = False
    device: str = "cpu"
    threads: int | None = 1
    name: str = "factory"


def coord_check(
    subject: RunConfig | ModelFactory,
    check: CheckSpec | None = None,
    *,
    progress: bool = False,
    **settings: Any,
) -> CoordCheckResult:
    """Train ``subject`` at each size of ``check`` for its steps over its seeds and judge whether
    every recorded module's size is flat (|slope| <= tolerance from step ``judge_from``).

    ``subject``: a RunConfig (what `sizeup train` trains: built at each width, or each depth
    with ``depths``, seeds cfg.run.seed onwards) or a ModelFactory (widths only, seeds from 0).
    ``settings``: CheckSpec fields as keywords (``widths=(64, 128)``, ``steps=4``), over
    ``check``. A module whose output shrinks with width at init is judged on its update
    out_t - out_0 (module doc).
    """
    check = (check or CheckSpec()).replace(**settings) if settings else check or CheckSpec()
    if isinstance(subject, RunConfig):
        return _config_check(subject, check, progress)
    if isinstance(subject, ModelFactory):
        return _factory_check(subject, check, progress)
    raise ConfigError(
        "subject", type(subject).__name__, "a RunConfig or a ModelFactory (width -> model)"
    )


# --- a RunConfig -----------------------------------------------------------------------------
def subject_config(cfg: RunConfig, axis: str, size: int, seed: int) -> RunConfig:
    """The RunConfig the coordinate check trains at one size and seed: ``cfg`` at that width
    (or depth), its own base, at the peak lr (constant schedule, no warmup) over the check's
    few steps, each step one forward pass over the batch: gradient accumulation gives the same
    step (to float rounding), and the check records the activations of one pass per step."""
    changes = dict(seed=seed, schedule="constant", warmup=0, micro_batch_size=None)
    return cfg.replace(**{axis: size}, **changes)


def _config_check(cfg: RunConfig, check: CheckSpec, progress: bool) -> CoordCheckResult:
    """The check of exactly what `sizeup train` trains from ``cfg``, at each size."""
    sweep = Sweep(check, check.axis, check.sizes(get_model(cfg.model.name).check_widths))
    base, field_ = _base(cfg, sweep.axis)
    if base is not None and base > sweep.sizes[0]:
        raise ConfigError(
            f"{sweep.axis}s",
            sweep.sizes,
            f"{sweep.axis}s of at least {field_}={base} (the config's)",
        )
    if check.modules is not None:  # fail fast on an unknown module name, before any training
        first = subject_config(cfg, sweep.axis, sweep.sizes[0], cfg.run.seed)
        with torch.device("meta"):
            coord_modules(build_model(first.model), check.modules)
    causal = get_model(cfg.model.name).data == "tokens"

    def make(size: int, seed: int) -> Subject:
        c = subject_config(cfg, sweep.axis, size, seed)
        built = build(c)
        data = built.data
        batch = (lambda t: data.batch_at(0)) if check.same_batch else data.batch_at
        trainer = Trainer.from_built(c, built)
        return Subject(trainer, batch, vary=not check.same_batch, causal=causal)

    settings = {"config": cfg.to_dict(), **_common(check, cfg.run.seed), "lr": cfg.optimizer.lr}
    return verdict(sweep, *_recorded(make, sweep, cfg.run.seed, progress), settings)


def _base(cfg: RunConfig, axis: str) -> tuple[int | None, str]:
    """The config's base along the axis (base_width; base_depth, None without depth scaling)."""
    if axis == "width":
        return cfg.parametrization.base_width, "base_width"
    return cfg.parametrization.base_depth, "base_depth"


def _common(check: CheckSpec, seed: int) -> dict[str, Any]:
    return {"seeds": check.seeds, "first_seed": seed, "same_batch": check.same_batch}


def _recorded(make: Callable[[int, int], Subject], sweep: Sweep, seed: int, progress: bool):
    recs = run(make, sweep, seed, progress)
    return recs.kinds, recs.stats, recs.loss


# --- a model factory -------------------------------------------------------------------------
def _factory_check(f: ModelFactory, check: CheckSpec, progress: bool) -> CoordCheckResult:
    """The width check of a user's model family."""
    if check.axis != "width":
        raise ConfigError(
            "depths", check.depths, "a RunConfig subject (a factory builds widths only)"
        )
    sweep = Sweep(check, "width", check.sizes(FACTORY_WIDTHS))
    base = sweep.sizes[0] if f.base_width is None else f.base_width
    if base > sweep.sizes[0]:
        raise ConfigError("base_width", base, f"at most the smallest width {sweep.sizes[0]}")
    if f.parametrization is None and not callable(f.optimizer):
        raise ConfigError(
            "optimizer", f.optimizer, "a callable model -> optimizer when parametrization=None"
        )
    if f.threads:
        torch.set_num_threads(f.threads)
    if check.modules is not None:  # fail fast on an unknown module name, before any training
        coord_modules(f.build(sweep.sizes[0]), check.modules)
    data_for = functools.lru_cache(maxsize=1)(f.data)  # one seed's batches serve every width

    def make(width: int, seed: int) -> Subject:
        data = data_for(seed)
        torch.manual_seed(seed)
        model = f.build(width)
        opt = _factory_optimizer(f, model, base)
        model.to(f.device).train()
        batch = lambda t: data[t % len(data)]  # noqa: E731  (cycled: one batch repeats)
        trainer = Trainer(model, opt, device=f.device)
        return Subject(trainer, batch, vary=len(data) > 1, causal=f.causal)

    settings = {
        "model": f.name,
        "parametrization": None if f.parametrization is None else f.parametrization.to_dict(),
        "optimizer": f.optimizer.to_dict() if isinstance(f.optimizer, OptimSpec) else "custom",
        "base_width": base,
        "device": f.device,
        **_common(check, 0),
    }
    return verdict(sweep, *_recorded(make, sweep, 0, progress), settings)


def _factory_optimizer(f: ModelFactory, model: nn.Module, base: int) -> Any:
    """Parametrize ``model`` against the factory's base (and a delta at twice it, which tells
    which dimensions are width even at the base width), then its optimizer."""
    if f.parametrization is None:
        return f.optimizer(model)
    name = f.optimizer.name if isinstance(f.optimizer, OptimSpec) else "adamw"
    p = parametrize(
        model,
        f.build(base),
        f.parametrization,
        delta=f.build(2 * base),
        hints=f.hints,
        optimizer=name,
    )
    return p.optimizer(f.optimizer) if isinstance(f.optimizer, OptimSpec) else f.optimizer(model)


__all__ = [
    "CheckSpec",
    "CoordCheckResult",
    "CoordRecorder",
    "ModelFactory",
    "ModuleCurve",
    "coord_check",
    "coord_modules",
    "log_slope",
    "subject_config",
]
