"""Parameter and module names under wrappers (DDP ``module.``, torch.compile ``_orig_mod.``,
FSDP, activation checkpointing): every stage keys per-tensor records by the canonical name, so a
parametrization read from a wrapped model is the unwrapped one's."""

from __future__ import annotations

from torch import nn

WRAPPER_PREFIXES = ("module.", "_orig_mod.", "_fsdp_wrapped_module.", "_checkpoint_wrapped_module.")


def canonical_name(name: str) -> str:
    """Strip wrapper prefixes (DDP ``module.``, torch.compile ``_orig_mod.``, FSDP) anywhere in a name."""
    parts = [p for p in name.split(".") if p + "." not in WRAPPER_PREFIXES]
    return ".".join(parts)


def unwrap(model: nn.Module) -> nn.Module:
    """The innermost model under DDP / torch.compile / FSDP wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(getattr(model, "module", None), nn.Module):
            model = model.module
        else:
            return model
