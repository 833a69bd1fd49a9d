"""Everything a run is made of, built from its RunConfig: the model and its base, the
parametrization, the optimizer, the schedule and the data. The trainer, the WSD branches, the
coordinate check and `sizeup parametrize` all build through here, so they see the same model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from sizeup.choices import InitStd
from sizeup.config import RunConfig
from sizeup.errors import ConfigError
from sizeup.parametrization import Parametrization, parametrize

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}


class Callback(Protocol):
    """Called after every optimizer step; a returned dict is logged under diagnostics[name]."""

    name: str

    def on_step(self, step: int, model: nn.Module, loss: float) -> dict | None: ...


@dataclass
class Built:
    """The pieces of a run, for tools (coord checks, monitors) that drive training themselves."""

    model: nn.Module
    parametrization: Parametrization
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    data: Any


def sigma_for(cfg: RunConfig) -> InitStd:
    """The base init std the parametrization uses: "model" (the model's own init), "fan_in" or
    a number (cfg.init_std)."""
    return cfg.init_std


# Bytes per parameter while training: the weight, its gradient and two Adam moments.
_STATES_PER_PARAM = 4
_BYTES = {"float32": 4, "float64": 8, "bfloat16": 2}


def memory_estimate(cfg: RunConfig) -> tuple[int, float]:
    """(parameters, bytes) a run of ``cfg`` needs at least: weights, gradients and Adam state,
    plus the activations of one step (about 16 values per token, width and block, and the
    logits); counted on the meta device, so nothing is allocated."""
    from sizeup.models import build_model, num_params

    with torch.device("meta"):
        n = num_params(build_model(cfg))
    b = _BYTES[cfg.dtype]
    per = cfg.tokens_per_sequence  # the largest batch the run takes (a ramp's stages included)
    tokens = max([cfg.batch_size] + [batch for _, batch in cfg.batch_ramp or ()]) * per
    acts = tokens * (16 * cfg.width * cfg.depth + 2 * cfg.vocab_size) * b
    return n, float(n * _STATES_PER_PARAM * b + acts)


def check_memory(cfg: RunConfig) -> None:
    """Refuse, with the estimate, a run that cannot fit in the memory this machine has free
    (a width of 10^7 would otherwise try to allocate tens of GB and die)."""
    n, need = memory_estimate(cfg)
    have = _available_bytes(cfg.device)
    if have is not None and need > have:
        raise ConfigError(
            "width",
            cfg.width,
            f"a model that fits in memory: {n:,} parameters need about {need / 2**30:.1f} GiB "
            f"(weights, gradients, Adam state, activations) and {have / 2**30:.1f} GiB is free",
        )


def _available_bytes(device: str) -> float | None:
    if device.startswith("cuda"):
        return float(torch.cuda.mem_get_info(torch.device(device))[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def build_models(cfg: RunConfig) -> tuple[nn.Module, nn.Module, nn.Module]:
    """The model (on cfg.device, in cfg.dtype), its base (real tensors on the CPU, so its init
    std can be measured where the model does not declare it) and a delta (shapes only, on
    meta)."""
    from sizeup.models import build_model

    base_depth = cfg.base_depth if cfg.base_depth is not None else cfg.depth
    # The base is small; building it draws random numbers, which fork_rng gives back, so the
    # model's own init (and so every seeded run) does not depend on whether a base was built.
    with torch.random.fork_rng(devices=[]):
        base = build_model(cfg, width=cfg.base_width, depth=base_depth)
    with torch.device("meta"):
        # A second width tells which dimensions are width even when the model is at the base
        # width (where nothing differs from the base), so roles - and so Muon - are the same
        # at every width.
        delta = build_model(cfg, width=2 * cfg.base_width, depth=base_depth)
    model = build_model(cfg).to(device=cfg.device, dtype=DTYPES[cfg.dtype])
    return model, base, delta


def parametrize_run(
    cfg: RunConfig, model: nn.Module, base: nn.Module, delta: nn.Module
) -> Parametrization:
    """``parametrize`` with the run's options (the model may already be sharded by FSDP2)."""
    return parametrize(
        model,
        base,
        delta=delta,
        rule=cfg.rule,
        sigma=sigma_for(cfg),
        zero_readout=cfg.zero_readout,
        zero_query=cfg.zero_query,
        base_depth=cfg.base_depth,
        depth=cfg.depth if cfg.base_depth else None,
        depth_exponent=cfg.depth_exponent,
        optimizer=cfg.optimizer,
        scale_eps=cfg.scale_eps,
    )


def fused_adamw(cfg: RunConfig) -> bool | None:
    """torch's fused AdamW kernel on CUDA (one launch for all tensors of a group, the fastest
    AdamW torch has); elsewhere torch's default (foreach), which keeps CPU runs bit for bit
    what they were."""
    return True if cfg.device.startswith("cuda") else None


def horizon_lrs(cfg: RunConfig) -> tuple[float, float | None]:
    """(lr, muon_lr) the optimizer gets: cfg's, moved to the run's horizon when base_tokens is
    set (sizeup.optim.transfer_horizon; the batch transfer is the optimizer's own)."""
    if cfg.base_tokens is None:
        return cfg.lr, cfg.muon_lr
    from sizeup.optim import transfer_horizon

    def move(lr: float) -> float:
        return transfer_horizon(lr, cfg.tokens_for(cfg.steps), cfg.base_tokens, cfg.data_exponent)

    return move(cfg.lr), (move(cfg.muon_lr) if cfg.muon_lr is not None else None)


def build(cfg: RunConfig, rank: int = 0, world_size: int = 1) -> Built:
    """Seed, build model + base, parametrize (then shard with FSDP2 when cfg.fsdp), optimizer,
    schedule (``cfg.lr_schedule()``) and data (following cfg.batch_ramp) for ``cfg``."""
    from sizeup.data import make_data

    if cfg.device == "cpu":
        torch.set_num_threads(cfg.threads)
    elif cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device", cfg.device, "'cpu' (no CUDA device is available here)")
    check_memory(cfg)
    torch.manual_seed(cfg.seed)
    model, base, delta = build_models(cfg)
    p = parametrize_run(cfg, model, base, delta)
    if cfg.fsdp:  # parametrize first (on whole tensors), then shard, then the optimizer
        from sizeup.train.fsdp import shard

        shard(model)
    lr, muon_lr = horizon_lrs(cfg)
    opt = p.optimizer(
        cfg.optimizer,
        lr=lr,
        weight_decay=cfg.weight_decay,
        betas=(cfg.beta1, cfg.beta2),
        eps=cfg.eps,
        momentum=cfg.momentum,
        muon_scale=cfg.muon_scale,
        batch_size=cfg.batch_size,
        base_batch_size=cfg.base_batch_size,
        muon_lr=muon_lr,
        fused=fused_adamw(cfg),
        ns_dtype=DTYPES[cfg.ns_dtype],
    )
    # The one lr schedule of the run (warmup included, also for schedule-free AdamW, whose own
    # warmup (k+1)/warmup_steps is the same formula and is left at 0).
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cfg.lr_schedule())
    data = make_data(cfg, rank=rank, world_size=world_size)
    return Built(model, p, opt, sched, data)
