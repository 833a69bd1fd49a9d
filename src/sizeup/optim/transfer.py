"""Batch-size and horizon transfer of Adam hyperparameters.

When the batch grows by kappa = B / B0, the stochastic-differential-equation view of Adam
(Malladi, Lyu, Panigrahi & Arora 2022, "On the SDEs and Scaling Rules for Adaptive Gradient
Algorithms", the square-root scaling rule) keeps the training dynamics the same with

    lr   -> lr * kappa^(1/2)
    beta -> 1 - kappa * (1 - beta)      (the averaging horizon, in samples, stays fixed)
    eps  -> eps * kappa^(-1/2)

When training grows from D0 to D tokens, the optimal lr falls as a power of the horizon
(Bjorck et al. 2024, "Scaling optimal LR across token horizons", ICLR 2025: LR*(D) = B D^-beta),
so ``transfer_horizon`` moves an lr tuned on D0 tokens by (D / D0)^alpha_data, alpha_data =
-beta < 0 (the planner's ``data_exponent``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from sizeup.errors import ConfigError, check_positive

# The square-root rule's exponent: lr x (B / B0)^(1/2) (Malladi et al. 2022); a batch study may
# measure another (sizeup.sweep.exponents), which a plan then uses in its place.
SQRT_RULE = 0.5


def transfer_batch(
    lr: float,
    betas: Sequence[float],
    eps: float,
    batch_size: int,
    base_batch_size: int,
    *,
    clip: bool = False,
) -> tuple[float, tuple[float, ...], float]:
    """Move (lr, betas, eps) tuned at base_batch_size to batch_size (square-root rule).

    A beta that the rule pushes below 0 raises ConfigError, or is clipped to 0 when clip=True
    (the batch is then so large that no averaging over steps is left).
    """
    check_positive("batch_size", batch_size, integer=True)
    check_positive("base_batch_size", base_batch_size, integer=True)
    check_positive("lr", lr)
    check_positive("eps", eps)
    for i, b in enumerate(betas):
        if not 0.0 <= b < 1.0:
            raise ConfigError(f"betas[{i}]", b, "a number in [0, 1)")
    if batch_size == base_batch_size:
        # Exactly the inputs: a run at the base batch must reproduce the base run bit for bit.
        return float(lr), tuple(float(b) for b in betas), float(eps)
    kappa = batch_size / base_batch_size
    new_betas = []
    for i, b in enumerate(betas):
        nb = 1.0 - kappa * (1.0 - b)
        if nb < 0.0:
            if not clip:
                limit = base_batch_size / (1.0 - b)
                raise ConfigError(
                    "batch_size",
                    batch_size,
                    f"at most {limit:g} (= base_batch_size / (1 - beta{i + 1}) with "
                    f"base_batch_size={base_batch_size}, beta{i + 1}={b}); beyond it the "
                    f"transferred beta{i + 1} = 1 - (B/B0)(1 - beta) = {nb:.4g} leaves [0, 1). "
                    "Pass clip=True to clip it to 0",
                )
            nb = 0.0
        new_betas.append(nb)
    return lr * math.sqrt(kappa), tuple(new_betas), eps / math.sqrt(kappa)


def transfer_horizon(lr: float, tokens: float, base_tokens: float, exponent: float) -> float:
    """lr x (tokens / base_tokens)^exponent: an lr tuned on base_tokens moved to a run of
    tokens (exponent alpha_data < 0: longer runs get smaller lrs). The same lr, bit for bit, at
    the base horizon or with exponent 0."""
    check_positive("tokens", tokens)
    check_positive("base_tokens", base_tokens)
    if not math.isfinite(exponent):
        raise ConfigError("data_exponent", exponent, "a finite number (alpha_data, e.g. -0.3)")
    if tokens == base_tokens or exponent == 0:
        return float(lr)
    return lr * (tokens / base_tokens) ** exponent
