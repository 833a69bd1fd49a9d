"""Parameter and module names under wrappers (DDP ``module.``, torch.compile ``_orig_mod.``,
FSDP, activation checkpointing): every stage keys per-tensor records by the canonical name, so a
parametrization read from a wrapped model is the unwrapped one's. FSDP2 (``fully_shard``) keeps
the names and the module but turns parameters into DTensors; ``full_tensor`` reads their values.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from sizeup.errors import ConfigError

WRAPPER_PREFIXES = ("module.", "_orig_mod.", "_fsdp_wrapped_module.", "_checkpoint_wrapped_module.")


def canonical_name(name: str) -> str:
    """Strip wrapper prefixes (DDP ``module.``, torch.compile ``_orig_mod.``, FSDP) anywhere in a name."""
    parts = [p for p in name.split(".") if p + "." not in WRAPPER_PREFIXES]
    return ".".join(parts)


def select_names(names: Sequence[str], patterns: Iterable[str], field: str, what: str) -> list[str]:
    """The ``names`` (module names, in their order of first match) that the fnmatch
    ``patterns`` pick; a pattern that picks none is a ConfigError naming ``field`` and listing
    the ``what`` there are."""
    chosen: list[str] = []
    for pat in patterns:
        hits = [n for n in names if fnmatch.fnmatchcase(n, pat)]
        if not hits:
            raise ConfigError(
                field, pat, f"names (or fnmatch patterns) of {what}: " + ", ".join(names)
            )
        chosen += [h for h in hits if h not in chosen]
    return chosen


def unwrap(model: nn.Module) -> nn.Module:
    """The innermost model under DDP / torch.compile / FSDP wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(getattr(model, "module", None), nn.Module):
            model = model.module
        else:
            return model


def is_dtensor(t: object) -> bool:
    """True for a torch DTensor (a parameter or gradient sharded by FSDP2 or tensor parallel)."""
    import torch.distributed as dist

    if not dist.is_available():
        return False
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor: a DTensor all-gathered (a collective: every rank must call it), any
    other tensor as it is. A DTensor reduction's ``.item()`` is the local shard's value, so
    anything that reads values (norms, RMS, spectra) goes through here."""
    return t.full_tensor() if is_dtensor(t) else t


def is_fully_sharded(model: nn.Module) -> bool:
    """True when ``fully_shard`` (FSDP2) wrapped the model: it is then called as it is, no DDP."""
    import torch.distributed as dist

    if not dist.is_available():
        return False
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)
