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
from sizeup.wrapping import canonical_name

# Columns of the joined table that come from the optimizer's param groups.
GROUP_COLUMNS = ("update", "lr", "weight_decay", "decay_per_step", "beta1", "beta2", "eps")
_INDEX = re.compile(r"(^|\.)\d+(?=\.|$)")


def _update_kind(group: Mapping[str, Any]) -> str:
    """Which update a group gets: "muon" (orthogonalised), "sgd", or "adamw"."""
    if group.get("use_muon"):
        return "muon"
    return "sgd" if "betas" not in group else "adamw"


def group_values(optimizer: Any) -> dict[str, dict[str, Any]]:
    """Canonical parameter name -> what its param group says: update kind, lr, weight_decay,
    decay per step at peak (lr x weight_decay), Adam betas and eps (None where the update
    has none: Muon's orthogonalised matrices, SGD)."""
    out: dict[str, dict[str, Any]] = {}
    for g in optimizer.param_groups:
        kind = _update_kind(g)
        adam = kind == "adamw"
        betas = g.get("betas") if adam else None
        vals = {
            "update": kind,
            "lr": float(g["lr"]),
            "weight_decay": float(g["weight_decay"]),
            "decay_per_step": decay_per_step(float(g["lr"]), float(g["weight_decay"])),
            "beta1": float(betas[0]) if betas is not None else None,
            "beta2": float(betas[1]) if betas is not None else None,
            "eps": float(g["eps"]) if adam and g.get("eps") is not None else None,
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
