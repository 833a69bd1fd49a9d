"""The per-tensor table as the optimizer will run it: a parametrization's rows joined with the
param groups that ``build_optimizer`` made from them.

One function reads both, so every table sizeup prints (``sizeup parametrize --out``, the
planner's per-layer table) shows what the optimizer holds, not a second derivation of it:
each tensor's init std and forward multiplier (from the parametrization), and its lr, Adam
betas and eps, and weight decay as a fraction removed per step at peak (group lr x group
weight_decay, the product torch's decoupled kernels apply; ``decay_per_step``).

``collapse`` then folds per-tensor rows into tensor classes for display: ``blocks.3.attn.q.weight``
becomes ``blocks.*.attn.q``, and rows of one class that agree in every value become one row.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sizeup.optim.groups import decay_per_step
from sizeup.registry import get_optimizer
from sizeup.wrapping import canonical_name

# Columns of the joined table that come from the optimizer's param groups.
GROUP_COLUMNS = ("update", "lr", "weight_decay", "decay_per_step", "beta1", "beta2", "eps")
_INDEX = re.compile(r"(^|\.)\d+(?=\.|$)")


def _reads(group: Mapping[str, Any]) -> tuple[str, ...]:
    """The settings a group's update reads (its optimizer's registry entry; an orthogonalised
    group reads no betas or eps)."""
    if group.get("use_muon"):
        return ()
    return get_optimizer(group.get("update", "adamw")).reads


def _number(v: Any) -> float | None:
    return None if v is None else float(v)


def group_values(optimizer: Any) -> dict[str, dict[str, Any]]:
    """Canonical parameter name -> what its param group says: update (the optimizer that moves
    it: its registry name, "muon" for an orthogonalised matrix), the peak lr (before a
    scheduler's warmup), weight_decay, decay per step at peak (lr x weight_decay), and the betas
    and eps where the update reads them (None elsewhere: Muon's orthogonalised matrices, SGD)."""
    out: dict[str, dict[str, Any]] = {}
    for g in optimizer.param_groups:
        reads = _reads(g)
        # torch keeps (beta1, beta2) as "betas"; an optimizer may keep them on their own
        betas = g.get("betas") or (g.get("beta1"), g.get("beta2"))
        # the peak lr: a scheduler keeps it as initial_lr while its warmup scales "lr"
        lr = float(g.get("initial_lr", g["lr"]))
        vals = {
            "update": g.get("update", "adamw"),
            "lr": lr,
            "weight_decay": float(g["weight_decay"]),
            "decay_per_step": decay_per_step(lr, float(g["weight_decay"])),
            "beta1": _number(betas[0]) if "beta1" in reads else None,
            "beta2": _number(betas[1]) if "beta2" in reads else None,
            "eps": float(g["eps"]) if "eps" in reads and g.get("eps") is not None else None,
        }
        for n in g.get("names", []):
            out[canonical_name(n)] = vals
    return out


def tensor_table(rows: Iterable[Mapping[str, Any]], optimizer: Any) -> list[dict[str, Any]]:
    """The parametrization's rows (``Parametrization.rows()``: name, role, init_std, effective
    multiplier, ...) with each tensor's optimizer values (GROUP_COLUMNS) joined in by name.
    A tensor no group holds (frozen) gets None in those columns."""
    by_name = group_values(optimizer)
    empty = dict.fromkeys(GROUP_COLUMNS)
    return [{**r, **by_name.get(canonical_name(r["name"]), empty)} for r in rows]


def tensor_class(name: str) -> str:
    """The class of a tensor for display: block indices become ``*`` and a trailing
    ``.weight`` goes (``blocks.3.attn.q.weight`` -> ``blocks.*.attn.q``)."""
    name = _INDEX.sub(lambda m: m.group(1) + "*", canonical_name(name))
    return name[: -len(".weight")] if name.endswith(".weight") else name


def collapse(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> list[dict[str, Any]]:
    """Rows folded into tensor classes, in first-seen order: a class whose tensors agree on
    every one of ``columns`` is one row named by the class; one whose tensors differ keeps a
    row per tensor (named by the tensor), so nothing is hidden."""
    classes: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        classes.setdefault(tensor_class(r["name"]), []).append(r)
    out: list[dict[str, Any]] = []
    for cls, members in classes.items():
        distinct = {tuple(_key(m.get(c)) for c in columns) for m in members}
        if len(distinct) == 1:
            out.append(
                {"tensor": cls, "count": len(members), **{c: members[0].get(c) for c in columns}}
            )
        else:
            out += [
                {"tensor": m["name"], "count": 1, **{c: m.get(c) for c in columns}} for m in members
            ]
    return out


def _key(v: Any) -> Any:
    """A hashable stand-in for a cell (lists such as shapes become tuples)."""
    return tuple(v) if isinstance(v, list) else v
