"""A plain ReLU MLP for the synthetic teacher classification task (sizeup.data, data="teacher").

Module names are a contract: `input` (in_dim -> width), `hidden.{i}` (width -> width, depth-1 of
them), `readout` (width -> out_dim). Init: weights normal with variance 1/fan_in (LeCun; ReLU
activations stay O(1) at any width, which muP's hidden rule keeps), biases zero; the model
declares it to sizeup (``sizeup_hints["init_std"] = "fan_in"``), so sizeup.parametrize takes
1/sqrt(base fan_in) as the base sigma and rescales only the readout as width grows.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from sizeup.config.model import ModelSpec
from sizeup.data import TEACHER_CLASSES, TEACHER_IN_DIM
from sizeup.errors import check_positive


class MLP(nn.Module):
    """input -> ReLU -> (hidden -> ReLU) x (depth-1) -> readout; forward(x, targets) -> (logits, loss)."""

    sizeup_hints = {
        "residual_out": [],
        "query": [],
        "block": ["hidden.*"],
        "roles": {},
        "init_std": "fan_in",  # what reset_parameters gives every weight
    }

    def __init__(self, in_dim: int, width: int, depth: int, out_dim: int, bias: bool = True):
        super().__init__()
        for name, v in (
            ("in_dim", in_dim),
            ("width", width),
            ("depth", depth),
            ("out_dim", out_dim),
        ):
            check_positive(name, v, integer=True)
        self.in_dim, self.width, self.depth, self.out_dim = in_dim, width, depth, out_dim
        self.input = nn.Linear(in_dim, width, bias=bias)
        self.hidden = nn.ModuleList(nn.Linear(width, width, bias=bias) for _ in range(depth - 1))
        self.readout = nn.Linear(width, out_dim, bias=bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Weights normal(0, 1/fan_in) (std 1/sqrt(fan_in)), zero biases."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=1.0 / math.sqrt(m.in_features))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(
        self, x: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Class logits (B, out_dim) and, with integer targets, mean cross-entropy."""
        h = F.relu(self.input(x))
        for layer in self.hidden:
            h = F.relu(layer(h))
        logits = self.readout(h)
        loss = None if targets is None else F.cross_entropy(logits, targets)
        return logits, loss


def from_spec(spec: ModelSpec) -> MLP:
    """The MLP a ModelSpec describes, sized for the teacher task (its registry builder)."""
    return MLP(TEACHER_IN_DIM, spec.width, spec.depth, TEACHER_CLASSES)


def params(spec: ModelSpec) -> int:
    """The MLP's parameters (weights and biases): in x w + w, (depth - 1)(w^2 + w), w x out + out."""
    w = spec.width
    hidden = (spec.depth - 1) * (w * w + w)
    return TEACHER_IN_DIM * w + w + hidden + w * TEACHER_CLASSES + TEACHER_CLASSES


def flops_per_example(spec: ModelSpec) -> float:
    """Training FLOPs per example: 6 x parameters (2 per multiply-add, x3 for backward)."""
    return 6.0 * params(spec)
