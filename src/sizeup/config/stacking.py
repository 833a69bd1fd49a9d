"""Which trials may train together as one stack (sizeup.train.stacked), without torch: the
executor groups a study's trials by ``stack_key`` before anything is built.

Members of one stack share the model's shape and everything a step does with it; they differ
only in MEMBER_FIELDS, what each member's own build reads for its init, data order, param
groups (lr, weight decay, betas, eps, momentum per tensor) and lr schedule, and a GPT's
z-loss coefficient.
"""

from __future__ import annotations

import json

from sizeup.config.run_config import RunConfig

# The fields in which the members of one stack may differ (flat names, sizeup.config).
MEMBER_FIELDS = (
    "seed",
    "lr",
    "muon_lr",
    "weight_decay",
    "beta1",
    "beta2",
    "eps",
    "momentum",
    "grad_clip",
    "base_batch_size",
    "base_tokens",
    "data_exponent",
    "schedule",
    "warmup",
    "decay_frac",
    "cooldown",
    "milestones",
    "power_a",
    "power_b",
    "diverge_factor",
    "z_loss",  # the GPT's loss takes each member's (sizeup.models.gpt.lm_loss)
)
# Settings a stack does not take (yet): each must keep its default. The monitors watch one
# model; FSDP, compile and gradient accumulation change the step itself.
UNSTACKED_SETTINGS = (
    "fsdp",
    "compile",
    "micro_batch_size",
    "spectral_every",
    "noise_every",
    "attn_logits_every",
    "output_logits_every",
)


def stack_key(cfg: RunConfig) -> str:
    """What the members of one stack share: the config without MEMBER_FIELDS (JSON text)."""
    shared = {k: v for k, v in cfg.to_dict().items() if k not in MEMBER_FIELDS}
    return json.dumps(shared, sort_keys=True, default=str)
