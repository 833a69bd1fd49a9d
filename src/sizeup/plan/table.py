"""The per-layer table stage: what sizeup itself would do to the planned model.

The target model is built on the meta device (no memory, no init) from the plan's shape by a
model factory (the built-in GPT by default, from ``Shape.gpt_config()``), its base at the
proxy's width and depth (or the target's own width without a transfer), and a second base at
twice that width that tells which dimensions are width (as ``sizeup.train.build`` does). Then
``sizeup.parametrize`` applies the recipe and ``Parametrization.optimizer`` builds the optimizer
(batch transfer included); the table is read back from both by ``sizeup.optim.tensor_table``:
per tensor the init std and forward multiplier, and the lr, betas, eps and weight decay per step
at peak (group lr x group weight_decay) that the optimizer holds. Rows are then folded into
tensor classes (``blocks.*.attn.q``) for display.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sizeup.optim import BatchTransferWarning, collapse, decay_warning, tensor_table
from sizeup.plan.records import Proxy, Recipe, Shape
from sizeup.plan.stages import Batch, LearningRate, Stage, batch_transfer, note

ModelFactory = Callable[[Shape], Any]  # (shape) -> torch.nn.Module

# What a layer row shows (besides "tensor" and "count"); "update" is shown as "optimizer".
COLUMNS = (
    "role",
    "m_in",
    "m_out",
    "init_std",
    "multiplier",
    "lr_mult",
    "lr",
    "weight_decay",
    "decay_per_step",
    "beta1",
    "beta2",
    "eps",
    "update",
)


def gpt(shape: Shape) -> Any:
    """The built-in GPT at ``shape`` (sizeup.models.GPT)."""
    from sizeup.models.gpt import GPT

    return GPT(shape.gpt_config())


@dataclass
class Models:
    """The target and the two bases parametrize reads (see the module docstring)."""

    target: Any
    base: Any
    delta: Any


def base_shape(shape: Shape, proxy: Proxy | None) -> Shape:
    """The parametrization's base model: the proxy's width and head_dim (without a proxy, the
    target's own width). One block: parametrize reads every block's base shape from block 0,
    and depth scaling takes the proxy's depth as a number (base_depth), so a deeper base would
    only cost memory when it is built for real. An MoE's base reaches its first MoE block."""
    blocks = shape.first_dense + 1 if shape.n_experts else 1  # an MoE block too
    if proxy is None:
        return shape.with_width(shape.d_model, blocks)
    # The base as `sizeup train -c plan/run.json` builds it (Plan.run_config): the target's own
    # d_ff / d_model ratio, rounded to the nearest integer at the proxy's width (RunConfig's
    # GPT), so the plan's table is what that run does.
    return dataclasses.replace(
        shape.with_width(proxy.width, blocks, proxy.head_dim),
        mlp_ratio=shape.d_ff / shape.d_model,
        ffn_multiple=1,
    )


def build_models(shape: Shape, base: Shape, factory: ModelFactory, base_on_meta: bool) -> Models:
    """Target and delta on the meta device; the base too unless parametrize must read its own
    init (a recipe without sigma), in which case it is built for real (it is small)."""
    import torch

    delta_shape = base.with_width(2 * base.d_model, base.n_layer, base.head_dim)
    with torch.device("meta"):
        target, delta = factory(shape), factory(delta_shape)
        base_model = factory(base) if base_on_meta else None
    if base_model is None:
        base_model = factory(base)
    return Models(target, base_model, delta)


def parametrize_target(models: Models, shape: Shape, recipe: Recipe, base_depth: int | None) -> Any:
    """sizeup.parametrize on the target with the recipe (sigma only when the recipe fixes it,
    else parametrize's own default; depth scaling from ``base_depth`` when given)."""
    from sizeup.parametrization import parametrize

    kw: dict[str, Any] = dict(
        rule=recipe.rule,
        optimizer=recipe.optimizer,
        readout_form=recipe.readout_form,
        scale_eps=recipe.scale_eps,
    )
    if recipe.sigma is not None:
        kw["sigma"] = recipe.sigma
    if base_depth is not None:
        kw.update(
            base_depth=base_depth,
            depth=shape.n_layer,
            depth_exponent=recipe.depth_exponent,
        )
    return parametrize(models.target, models.base, delta=models.delta, **kw)


def _clipped(recipe: Recipe, kappa: float) -> list[str]:
    """Which of the optimizer's betas / momentum the square-root rule pushes below 0."""
    names = {
        "adamw": ("beta1", "beta2"),
        "sgd": ("momentum",),
        "muon": ("beta1", "beta2", "momentum"),
        "adamw_schedulefree": ("beta1", "beta2"),
    }
    return [n for n in names[recipe.optimizer] if 1 - kappa * (1 - getattr(recipe, n)) < 0]


def target_optimizer(
    p: Any, recipe: Recipe, lr: LearningRate, batch: int, base_batch: int | None
) -> tuple[Any, list[str]]:
    """Parametrization.optimizer with the recipe's settings and, with a base batch, the batch
    transfer (sizes in tokens: the rule reads their ratio). Where the rule would push a beta or
    momentum below 0, the transfer is made here with those clipped at 0, and said."""
    kw = dict(
        weight_decay=recipe.weight_decay,
        betas=recipe.betas,
        eps=recipe.eps,
        momentum=recipe.momentum,
        muon_lr=lr.muon_lr,
    )
    if base_batch is None or base_batch == batch:
        return p.optimizer(recipe.optimizer, lr.eta, **kw), []
    kappa = batch / base_batch
    if all(1 - kappa * (1 - v) >= 0 for v in (*recipe.betas, recipe.momentum)):
        kw.update(batch_size=batch, base_batch_size=base_batch)
        with warnings.catch_warnings():
            # the plan shows what the transfer moved in its own summary (LearningRate.moved)
            warnings.simplefilter("ignore", BatchTransferWarning)
            return p.optimizer(recipe.optimizer, lr.eta, **kw), []
    t_lr, betas, eps, mom = batch_transfer(recipe, lr.eta, batch, base_batch)
    muon = lr.muon_lr * t_lr / lr.eta if lr.muon_lr is not None else None
    kw.update(betas=betas, eps=eps, momentum=mom, muon_lr=muon)
    warns = []
    if shown := _clipped(recipe, kappa):
        warns.append(
            f"the batch ratio b={kappa:.3g} pushes 1 - b(1 - beta) below 0 for "
            f"{', '.join(f'{n}={getattr(recipe, n)}' for n in shown)}; those are clipped to 0 "
            "(the square-root rule only holds for moderate batch ratios; tune at a closer "
            "proxy batch)."
        )
    return p.optimizer(recipe.optimizer, t_lr, **kw), warns


def layer_rows(p: Any, optimizer: Any) -> list[dict[str, Any]]:
    """The per-tensor table folded into tensor classes, one row per class."""
    rows = collapse(tensor_table(p.rows(), optimizer), COLUMNS)
    return [
        {**{k: v for k, v in r.items() if k != "update"}, "optimizer": r["update"]} for r in rows
    ]


def table_stage(
    shape: Shape,
    recipe: Recipe,
    proxy: Proxy | None,
    lr: LearningRate,
    batch: Batch,
    factory: ModelFactory | None = None,
) -> Stage[list[dict[str, Any]]]:
    """The per-layer table of the target as sizeup would parametrize and optimize it: relative
    to the proxy when its lr transfers, else relative to the target itself (a law's lr is the
    target's own)."""
    src = proxy if lr.transferred else None
    base = base_shape(shape, src)
    models = build_models(shape, base, factory or gpt, recipe.sigma is not None or src is None)
    depth_scaled = bool(src and src.depth and recipe.depth_exponent is not None)
    base_depth = src.depth if src is not None and depth_scaled else None
    p = parametrize_target(models, shape, recipe, base_depth)
    base_batch = src.batch_tokens if src is not None else None
    opt, warns = target_optimizer(p, recipe, lr, batch.tokens, base_batch)
    layers = layer_rows(p, opt)
    if (w := decay_warning(lr.peak, recipe.weight_decay)) is not None:
        warns.append(w)
    ex = note(
        "layers",
        f"{len(layers)} tensor classes",
        "sizeup.parametrize(target on the meta device, base at width base_width; depth "
        "scaling from base_depth) + Parametrization.optimizer(lr=eta, batch transfer B_base -> B): init std "
        "and multiplier from the parametrization; lr, betas, eps and decay per step = group "
        "lr x group weight_decay from the optimizer's param groups",
        rule=recipe.rule,
        optimizer=recipe.optimizer,
        readout_form=recipe.readout_form,
        sigma=recipe.sigma if recipe.sigma is not None else "model",
        base_width=base.d_model,
        base_depth=base_depth or "-",
        depth_exponent=recipe.depth_exponent if depth_scaled else "-",
        eta=lr.eta,
        B=batch.tokens,
        B_base=base_batch or batch.tokens,
        weight_decay=recipe.weight_decay,
    )
    return Stage(layers, [ex], warns)


def layer_table(
    shape: Shape,
    lr: float,
    *,
    recipe: Recipe | None = None,
    proxy: Proxy | None = None,
    batch_tokens: int | None = None,
    model: ModelFactory | None = None,
) -> list[dict[str, Any]]:
    """The per-layer table alone: ``shape`` trained with ``recipe`` at global lr ``lr``, relative
    to ``proxy`` (lr is then the proxy's tuned eta, moved to ``batch_tokens`` from the proxy's
    batch) or, without a proxy, relative to itself (lr is the target's own)."""
    recipe = recipe or Recipe()
    B = int(batch_tokens or (proxy.batch_tokens if proxy else None) or shape.seq_len)
    rate = LearningRate(lr, "given", proxy is not None, lr, recipe.muon_lr)
    return table_stage(shape, recipe, proxy, rate, Batch(B, B // shape.seq_len, "given", 1)).value
