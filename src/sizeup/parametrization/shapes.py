"""The base (and delta) a parametrization compares against: each tensor's shape and, for the base,
the std its own initialisation gave it.

A base is a smaller instance of the model (an ``nn.Module``), a base-shapes JSON file, or a dict.
``save_base_shapes`` writes ``{name: {"shape": [...], "init_std": rms}}`` so a file carries the
base's init as well as its shapes; the older ``{name: [shape]}`` format still reads (it has no
stds, so sigma must then come from the model's hint or be given).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sizeup.config import read_document
from sizeup.errors import ConfigError
from sizeup.wrapping import canonical_name, full_tensor


@dataclass(frozen=True)
class BaseRef:
    """Shapes (and measured init stds, None where unknown) of a base or delta, by canonical name.
    ``what`` describes it for error messages."""

    shapes: dict[str, list[int]]
    stds: dict[str, float | None]
    what: str


def tensor_rms(p: torch.Tensor) -> float | None:
    """Root mean square of a tensor's entries (its std about 0), in float64; None on the meta
    device, where there are no values."""
    if p.is_meta:
        return None
    if p.numel() == 0:
        return 0.0
    # full_tensor: a sharded (FSDP2) parameter's norm is otherwise its local shard's.
    norm = full_tensor(torch.linalg.vector_norm(p.detach(), dtype=torch.float64)).item()
    return norm / math.sqrt(p.numel())


def base_shapes(model: nn.Module) -> dict[str, list[int]]:
    """Canonical parameter name -> shape, for saving a base model without keeping it around."""
    return {canonical_name(n): list(p.shape) for n, p in model.named_parameters()}


def base_record(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Canonical parameter name -> {"shape", "init_std"}: the shapes and the RMS of each tensor
    as the model holds it now (call it on a freshly initialised base)."""
    return {
        canonical_name(n): {"shape": list(p.shape), "init_std": tensor_rms(p)}
        for n, p in model.named_parameters()
    }


def save_base_shapes(model: nn.Module, path: str | Path) -> None:
    """Write a base model's parameter shapes and init stds to a JSON base-shapes file."""
    Path(path).write_text(json.dumps(base_record(model), indent=1))


def load_base(obj: Any, field: str) -> BaseRef | None:
    """A BaseRef from a model, a base-shapes file or a dict (None stays None)."""
    if obj is None:
        return None
    if isinstance(obj, nn.Module):
        rec = base_record(obj)
        meta = any(p.is_meta for p in obj.parameters())
        return _from_record(rec, field, "a model on the meta device" if meta else "a model")
    if isinstance(obj, (str, Path)):
        return _from_record(_read_json(Path(obj), field), field, f"the file {obj}")
    if isinstance(obj, Mapping):
        return _from_record(obj, field, "a dict")
    raise ConfigError(field, type(obj).__name__, "an nn.Module, a base-shapes file path or a dict")


def _read_json(path: Path, field: str) -> Mapping:
    if not path.exists():
        raise ConfigError(field, str(path), "a model or an existing base-shapes JSON file")
    data = read_document(path, field, (".json",))
    if not isinstance(data, Mapping):
        raise ConfigError(field, str(path), "a JSON object of name -> shape")
    return data


def _from_record(data: Mapping, field: str, what: str) -> BaseRef:
    """Read {name: shape} (the older format) or {name: {"shape", "init_std"}}."""
    shapes, stds = {}, {}
    for name, entry in data.items():
        if isinstance(entry, Mapping):
            if "shape" not in entry:
                raise ConfigError(f"{field}[{name!r}]", entry, "a shape, or {'shape', 'init_std'}")
            shapes[name], stds[name] = list(entry["shape"]), entry.get("init_std")
        else:
            shapes[name], stds[name] = list(entry), None
    return BaseRef(shapes, stds, what)
