"""AGD, automatic gradient descent (Bernstein, Mingard, Huang, Azizan & Yue 2023, "Automatic
Gradient Descent: Deep Learning without Hyperparameters", arXiv:2304.05187, Algorithm 1).

For an L-layer network with weights W_l of shape d_l x d_{l-1} (fan_out x fan_in), each step

    G   = (1/L) sum_l ||grad W_l||_F sqrt(d_l / d_{l-1})          (gradient summary)
    eta = log((1 + sqrt(1 + 4 G)) / 2)                            (automatic step size)
    W_l <- W_l - (eta / L) sqrt(d_l / d_{l-1}) grad W_l / ||grad W_l||_F

No learning rate, no momentum, no schedule: eta minimises the paper's majorisation of the loss
for a deep fully-connected net (a functional expansion with its "deep relative trust" bound on
how the output moves when every layer moves). Every layer's update has spectral norm at most
(eta / L) sqrt(d_l / d_{l-1}), i.e. a relative change of at most eta / L against its init's
spectral norm. Its init is orthogonal x sqrt(d_l / d_{l-1}) (see below).

sizeup's use of it:

- **lr is a gain on the automatic step.** Each group's lr (base lr x the rules table's lr column,
  1 for every tensor in the "lmo" family, times the schedule) multiplies the step of its tensors:
  W <- W - lr x (eta / L) sqrt(d_l/d_{l-1}) g / ||g||_F. lr = 1 is the paper; a sweep over lr
  is a sweep of that gain (the authors' release, github.com/jxbz/agd, has the same ``gain``
  multiplying the update and not G). The gain does not enter G or eta.
- **weight_decay** has torch AdamW's meaning (sizeup.optim.groups): W <- W (1 - lr x wd) before
  the step; the paper has none (default 0).
- **Which tensors are layers.** Every matrix (2-D; a 3-D stack of expert matrices counts as one
  layer, its experts side by side, with one expert's fans and the stack's Frobenius norm; a
  convolution's fan_in is in x kernel, the authors' release's sqrt(d_out / (d_in k k))) is a
  layer: it enters G and L. d_l / d_{l-1} is fan_out / fan_in as sizeup's parametrization reads
  it (the groups carry each tensor's fans; without them a 2-D weight is read as Linear's
  (out, in)). A lookup table (nn.Embedding: an input-role matrix stored (fan_in, fan_out)) sees
  one-hot inputs of norm 1, not the paper's normalised inputs of norm sqrt(d_0): its d_{l-1} is
  1, as in the rules table's spectral init (rules.init_std, ``one_hot``).
- **Extension beyond the paper: L on a residual network.** The paper's L is the depth of a chain.
  sizeup takes L = the number of matrices in the model. Why: it is the authors' release's own
  count (it divides by its number of parameter tensors); it is conservative (L is at least the
  length of every path through the net, so along any path the product of (1 + eta/L) factors
  stays at most exp(eta), as in the paper's bound, and parallel branches such as q, k, v or
  gate, up, whose perturbations add, are each counted); and it needs only the groups, no graph
  of the model. The longest path (2 matrices per residual branch) would give larger steps; the
  gain sweep and the transfer study judge whether all-matrices is too cautious.
- **Extension: vectors** (biases, norm gains), which the paper does not have (its release refuses
  biases). A vector is a layer with fan_in 1 (a bias is a weight on a constant input 1, the
  spectral condition's view, Yang, Simon & Bernstein 2023): it takes the step
  (eta / L) sqrt(n) g / ||g||_2, a change of RMS eta / L per coordinate, with the eta the
  matrices set; it enters neither G nor L, so a model's eta is the paper's whatever vectors it
  has. sizeup's "mlp" family has biases; the paper's setting is ``MLP(..., bias=False)``.

Whether these extensions transfer on a GPT is what the transfer study judges (docs/optim.md,
docs/transfer.md).

**Init.** The paper's init is W_l = orthogonal x sqrt(d_l / d_{l-1}): every singular value is
sqrt(d_l/d_{l-1}) and the entries' RMS is sqrt(min(d_l, d_{l-1}) / (d_l d_{l-1})) x
sqrt(d_l/d_{l-1}) = (1/sqrt(fan_in)) min(1, sqrt(fan_out / fan_in)), which is exactly the rules
table's spectral std (rules.init_std). sizeup applies a rule by rescaling the model's own
tensor, so ``rule=spectral`` on a model whose own init is orthogonal (and that declares no
other std in ``sizeup_hints["init_std"]``, so sizeup measures it) is AGD's init exactly; on a
Gaussian init it is AGD's init in scale (entry RMS), with a Gaussian's spectral norm (about
(1 + sqrt(fan_in/fan_out)) times larger for fan_out >= fan_in). The optimizer never
re-initialises.

**Sharded tensors** (FSDP2 DTensors): ||g||_F is the global norm (a DTensor reduction
redistributed to every rank, ``wrapping.full_tensor``), so every rank takes the same eta and
the same per-layer factors; the update itself is elementwise on the shards.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

from sizeup.errors import ConfigError
from sizeup.wrapping import full_tensor, is_dtensor


def automatic_step(g_summary: float) -> float:
    """eta = log((1 + sqrt(1 + 4 G)) / 2), Algorithm 1's step size from the gradient summary G
    (Bernstein et al. 2023, arXiv:2304.05187). G = 1 gives log of the golden ratio, 0.4812."""
    if not g_summary >= 0:
        raise ConfigError("G", g_summary, "a number >= 0 (a sum of gradient norms)")
    return math.log((1.0 + math.sqrt(1.0 + 4.0 * g_summary)) / 2.0)


def layer_fans(p: Tensor, role: str | None = None, fans: Sequence[int] | None = None) -> tuple:
    """(d_l, d_{l-1}) of a tensor for AGD: its (fan_out, fan_in) from sizeup's parametrization
    when given, else from its shape (Linear's (out, in), a stack (experts, out, in), a
    convolution (out, in, *kernel), a vector (n,) as fan_in 1). An input-role matrix stored
    (fan_in, fan_out), a lookup table, has one-hot inputs: d_{l-1} = 1 (module doc)."""
    shape = tuple(p.shape)
    if fans is None:
        if len(shape) <= 1:
            return (shape[0] if shape else 1), 1
        if len(shape) == 3:
            return shape[1], shape[2]
        return shape[0], math.prod(shape[1:])
    fan_out, fan_in = int(fans[0]), int(fans[1])
    if role == "input" and shape == (fan_in, fan_out) and fan_in != fan_out:
        return fan_out, 1
    return fan_out, fan_in


def _norms(grads: list[Tensor]) -> list[float]:
    """||g||_F of each gradient as Python floats: a sharded (DTensor) gradient's global norm
    (its reduction gathered to every rank); plain tensors in one batched reduction."""
    if any(is_dtensor(g) for g in grads):
        return [float(full_tensor(torch.linalg.vector_norm(g))) for g in grads]
    return torch.stack(torch._foreach_norm(grads)).tolist()


class AGD(torch.optim.Optimizer):
    """Automatic gradient descent (module doc) over param groups that all share one G and L.

    Group keys: lr (the gain on the automatic step, 1 = the paper), weight_decay (decoupled,
    W <- W(1 - lr wd)), and optionally sizeup's role and fans (one (fan_out, fan_in) per param;
    sizeup.optim.build_optimizer puts them there). ``last_eta`` and ``last_summary`` hold the
    latest step's eta and G. AGD keeps no optimizer state: a checkpoint holds only the groups
    (sizeup.train.checkpoint restores a stateless optimizer's groups and weights)."""

    def __init__(self, params: Iterable[Any], lr: float = 1.0, weight_decay: float = 0.0):
        if not lr >= 0:
            raise ConfigError("lr", lr, "a number >= 0 (the gain on AGD's automatic step)")
        if not weight_decay >= 0:
            raise ConfigError("weight_decay", weight_decay, "a number >= 0")
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, role=None, fans=None))
        for group in self.param_groups:
            fans = group["fans"]
            if fans is not None and len(fans) != len(group["params"]):
                raise ConfigError(
                    "fans", len(fans), f"one (fan_out, fan_in) per param ({len(group['params'])})"
                )
        if self.depth == 0:
            raise ConfigError("params", "no matrix", "at least one matrix (AGD's layers)")
        self.last_eta: float | None = None
        self.last_summary: float | None = None

    def _layers(self) -> list[tuple[Tensor, dict[str, Any], tuple[int, int]]]:
        out = []
        for group in self.param_groups:
            fans = group["fans"] or [None] * len(group["params"])
            for p, f in zip(group["params"], fans):
                out.append((p, group, layer_fans(p, group["role"], f)))
        return out

    @property
    def depth(self) -> int:
        """L: the number of matrices (tensors of 2 or more dims) in all groups."""
        return sum(p.ndim >= 2 for g in self.param_groups for p in g["params"])

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One AGD step over every group (Algorithm 1 with sizeup's gain and decay)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        live = [(p, g, f) for p, g, f in self._layers() if p.grad is not None]
        if not live:
            return loss
        norms = _norms([p.grad for p, _, _ in live])
        depth = self.depth
        scales = [math.sqrt(f[0] / f[1]) for _, _, f in live]
        summary = sum(s * n for (p, _, _), s, n in zip(live, scales, norms) if p.ndim >= 2)
        summary /= depth
        eta = automatic_step(summary)
        self.last_eta, self.last_summary = eta, summary
        for (p, group, _), s, n in zip(live, scales, norms):
            lr, wd = group["lr"], group["weight_decay"]
            if wd != 0:
                p.mul_(1.0 - lr * wd)
            if n > 0:
                p.add_(p.grad, alpha=-lr * eta / depth * s / n)
        return loss


def build(groups: list[dict[str, Any]], spec: Any, context: Any) -> AGD:
    """The registry's build function: AGD over sizeup's param groups (each with its gain lr,
    decay, role and fans); AGD reads no other setting."""
    return AGD(groups, lr=spec.lr, weight_decay=0.0)
