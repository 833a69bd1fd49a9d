"""The per-layer table stage: what sizeup itself does to the planned model.

The table is read off the plan's own run (``Plan.run``, the RunConfig that run.json holds), built
exactly as `sizeup train` builds it (``sizeup.train.build.parametrized``): the target on the meta
device (no memory, no init), its base at the parametrization's base width (the proxy's, or the
target's own without a transfer) and a delta at twice that width; ``sizeup.parametrize`` with
the run's ParamSpec, and the run's optimizer over its groups. ``sizeup.optim.tensor_table`` reads
back, per tensor, the init std and forward multiplier, and the lr, betas, eps and weight decay
per step at peak (group lr x group weight_decay) that the optimizer holds. So the plan's table
and the trained run cannot disagree. Rows are then folded into tensor classes
(``blocks.*.attn.q``) for display.
"""

from __future__ import annotations

import warnings
from typing import Any

from sizeup.config import RunConfig
from sizeup.optim import DecayWarning, collapse, tensor_table
from sizeup.plan.stages import Stage, note
from sizeup.train.build import parametrized

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


def layer_rows(p: Any, optimizer: Any) -> list[dict[str, Any]]:
    """The per-tensor table folded into tensor classes, one row per class."""
    rows = collapse(tensor_table(p.rows(), optimizer), COLUMNS)
    return [
        {**{k: v for k, v in r.items() if k != "update"}, "optimizer": r["update"]} for r in rows
    ]


def layer_table(run: RunConfig) -> tuple[list[dict[str, Any]], list[str]]:
    """(rows, warnings) of the per-layer table of ``run`` as `sizeup train` builds it, on the
    meta device; a weight decay above 1% per step at peak is a warning here."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DecayWarning)
        p, opt = parametrized(run, meta=True)
    warns = [str(w.message) for w in caught if issubclass(w.category, DecayWarning)]
    return layer_rows(p, opt), list(dict.fromkeys(warns))


def table_stage(run: RunConfig) -> Stage[list[dict[str, Any]]]:
    """The per-layer table of the planned run: relative to the proxy when its lr transferred,
    else relative to the target itself (a law's lr is the target's own)."""
    layers, warns = layer_table(run)
    p, o = run.parametrization, run.optimizer
    ex = note(
        "layers",
        f"{len(layers)} tensor classes",
        "sizeup.train.build.parametrized(the plan's run, on the meta device): init std and "
        "multiplier from sizeup.parametrize (base at base_width; depth scaling from "
        "base_depth), lr, betas, eps and decay per step = group lr x group weight_decay from "
        "the run's optimizer",
        rule=p.rule,
        optimizer=o.name,
        readout_form=p.readout_form,
        sigma=p.sigma,
        base_width=p.base_width,
        base_depth=p.base_depth or "-",
        depth_exponent=p.depth_exponent if p.base_depth else "-",
        eta=o.lr,
        weight_decay=o.weight_decay,
    )
    return Stage(layers, [ex], warns)
