"""How a tensor's dimensions map onto (fan_out, fan_in): the one place that knows weight layouts.

    nn.Linear, nn.ConvNd     (out, in, *kernel)      fan_in = in x kernel
    nn.Embedding             (vocab, width)          fan_in = vocab (one-hot), fan_out = width
    transformers' Conv1D     (in, out)               GPT-2 stores x @ W + b
    expert tensors           (experts, out, in)      any 3-D parameter outside a conv: each
                                                     expert is its own (out, in) matrix

An MoE stores its experts either as one 3-D tensor (transformers >= 5: gate_up_proj (E, 2I, H),
down_proj (E, H, I); sizeup's GPT likewise) or as a list of Linear modules (each then is a matrix
already). Either way each expert gets the fan-in and fan-out of the dense matrix it is, so it
scales as that matrix does: the leading dimension counts experts, which width does not change
(DeepSeek-MoE, Dai et al. 2024, and Moonlight, Liu et al. 2025, keep the expert count and grow
each expert's size with the model).
"""

from __future__ import annotations

import math

from torch import nn

__all__ = ["fans", "is_conv1d", "is_expert_tensor", "linear_in_input"]


def is_conv1d(module: nn.Module) -> bool:
    """transformers' Conv1D (GPT-2): a Linear whose weight is stored (in, out). Recognised by
    name and its ``nf`` field, so transformers need not be imported."""
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf")


def is_expert_tensor(shape: tuple[int, ...], module: nn.Module) -> bool:
    """A 3-D parameter outside a convolution: a stack of expert matrices (experts, out, in)."""
    return len(shape) == 3 and not isinstance(module, nn.modules.conv._ConvNd)


def fans(shape: tuple[int, ...], module: nn.Module) -> tuple[int, int, int, int]:
    """(fan_out, fan_in, dim index of fan_out, dim index of fan_in); -1 when not a dim. For an
    expert tensor these are one expert's fans."""
    if len(shape) == 1:
        return shape[0], 1, 0, -1
    if isinstance(module, nn.Embedding):  # weight is (num_embeddings, embedding_dim)
        return shape[1], shape[0], 1, 0
    if is_conv1d(module) and len(shape) == 2:  # weight is (in, out)
        return shape[1], shape[0], 1, 0
    if is_expert_tensor(shape, module):
        return shape[1], shape[2], 1, 2
    return shape[0], math.prod(shape[1:]), 0, 1


def linear_in_input(module: nn.Module) -> bool:
    """Whether the module's output is its weight applied to its input plus a bias (Linear,
    convolutions, Conv1D): a weight multiplier is then a multiplier on the input, and a branch
    multiplier one on the weight and bias."""
    return isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)) or is_conv1d(module)
