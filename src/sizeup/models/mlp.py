"""A plain ReLU MLP for the synthetic teacher classification task (sizeup.data, data="teacher").

Module names are a contract: `input` (in_dim -> width), `hidden.{i}` (width -> width, depth-1 of
them), `readout` (width -> out_dim). Plain init (normal std 0.02, zero bias): the
parametrization re-initialises every tensor.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from sizeup.errors import check_positive

INIT_STD = 0.02


class MLP(nn.Module):
    """input -> ReLU -> (hidden -> ReLU) x (depth-1) -> readout; forward(x, targets) -> (logits, loss)."""

    sizeup_hints = {"residual_out": [], "query": [], "block": ["hidden.*"], "roles": {}}

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
        """Plain init: normal(0, 0.02) weights, zero biases."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=INIT_STD)
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
