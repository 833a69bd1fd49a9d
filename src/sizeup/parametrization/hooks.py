"""The forward multipliers parametrize installs: a pre-hook that scales a module's input (a
weight multiplier) and a hook that scales its output (embeddings, residual branches). Only where
a multiplier differs from 1, so the Table 3 form adds nothing to the forward pass;
sizeup.parametrization.export folds them into the weights."""

from __future__ import annotations

import torch
from torch import nn

from sizeup.parametrization.layout import linear_in_input

ATTR = "_sizeup"  # where parametrize keeps the Parametrization on the model


class ScaleInput:
    """Forward pre-hook: multiply the first input (a weight multiplier for a bias-free Linear)."""

    def __init__(self, factor: float):
        self.factor = factor

    def __call__(self, module: nn.Module, args: tuple) -> tuple:
        return (args[0] * self.factor, *args[1:])


class ScaleOutput:
    """Forward hook: multiply the output (embeddings, residual branches)."""

    def __init__(self, factor: float):
        self.factor = factor

    def __call__(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        return output * self.factor


def remove_hooks(module: nn.Module) -> None:
    """Remove sizeup's multipliers from one module (other hooks stay)."""
    for hooks in (module._forward_pre_hooks, module._forward_hooks):
        for k in [k for k, h in hooks.items() if isinstance(h, (ScaleInput, ScaleOutput))]:
            del hooks[k]


def install(mod: nn.Module, w: float, b: float) -> None:
    """Install a weight multiplier ``w`` and a branch multiplier ``b`` on one module (nothing
    where they are 1)."""
    if isinstance(mod, nn.Embedding):
        if w * b != 1.0:
            mod.register_forward_hook(ScaleOutput(w * b))
    elif not linear_in_input(mod):
        # A router (weight x input, then softmax) takes its weight multiplier on the input; a
        # branch that is not one matrix (an MoE's experts) scales its output.
        if w != 1.0:
            mod.register_forward_pre_hook(ScaleInput(w))
        if b != 1.0:
            mod.register_forward_hook(ScaleOutput(b))
    elif getattr(mod, "bias", None) is None:
        if w * b != 1.0:
            mod.register_forward_pre_hook(ScaleInput(w * b))
    else:
        if w != 1.0:  # scaling the input scales the weight but not the bias
            mod.register_forward_pre_hook(ScaleInput(w))
        if b != 1.0:
            mod.register_forward_hook(ScaleOutput(b))
