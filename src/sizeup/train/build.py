"""Everything a run is made of, built from its RunConfig: the model and its base, the
parametrization, the optimizer, the schedule and the data. The trainer, the WSD branches, the
coordinate check, `sizeup parametrize`, `sizeup export` and the planner's per-layer table all
build through here, so they see the same model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from sizeup.config import RunConfig
from sizeup.data import make_data
from sizeup.errors import ConfigError
from sizeup.flops import available_memory
from sizeup.models import build_model, num_params
from sizeup.optim import BuildContext, transfer_horizon
from sizeup.parametrization import Parametrization, parametrize
from sizeup.train.fsdp import shard

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


# Bytes per parameter while training: the weight, its gradient and two Adam moments.
_STATES_PER_PARAM = 4
_BYTES = {"float32": 4, "float64": 8, "bfloat16": 2}


def memory_estimate(cfg: RunConfig, world_size: int = 1) -> tuple[int, float]:
    """(parameters, bytes per rank) a run of ``cfg`` needs at least: weights, gradients and
    Adam state (sharded over the ranks with FSDP), plus the activations of one forward pass
    (about 16 values per token, width and block, and the logits) of the largest pass it makes:
    a micro-batch, else its rank's share of the largest batch (a ramp's stages included).
    Counted on the meta device, so nothing is allocated; the planner sizes its micro-batch
    with it."""
    with torch.device("meta"):
        n = num_params(build_model(cfg.model))
    b = _BYTES[cfg.run.dtype]
    m = cfg.model
    per_pass = cfg.data.micro_batch_size or max(cfg.data.batches()) // world_size
    tokens = max(1, per_pass) * cfg.tokens_per_sequence
    acts = tokens * (16 * m.width * m.depth + 2 * m.vocab_size) * b
    shards = world_size if cfg.run.fsdp else 1
    return n, float(n * _STATES_PER_PARAM * b / shards + acts)


def check_memory(cfg: RunConfig) -> None:
    """Refuse, with the estimate, a run that cannot fit in the memory this machine has free
    (a width of 10^7 would otherwise try to allocate tens of GB and die)."""
    n, need = memory_estimate(cfg)
    have = _available_bytes(cfg.run.device)
    if have is not None and need > have:
        states = n * _STATES_PER_PARAM * _BYTES[cfg.run.dtype]
        hint = "; a smaller micro_batch_size (gradient accumulation) needs fewer activations"
        raise ConfigError(
            "width",
            cfg.model.width,
            f"a model that fits in memory: {n:,} parameters need about {need / 2**30:.1f} GiB "
            f"(weights, gradients, Adam state, activations) and {have / 2**30:.1f} GiB is free"
            + (hint if states < have else ""),
        )


def _available_bytes(device: str) -> float | None:
    if device.startswith("cuda"):
        return float(torch.cuda.mem_get_info(torch.device(device))[0])
    return available_memory()


def base_blocks(cfg: RunConfig) -> int:
    """The depth of the base model sizeup builds: base_depth with depth scaling, else the
    model's own depth (parametrize reads every block's base from its first block, so a deeper
    base only costs memory; the planner builds just the blocks that differ)."""
    p = cfg.parametrization
    return p.base_depth if p.base_depth is not None else cfg.model.depth


def build_models(cfg: RunConfig, meta: bool = False) -> tuple[nn.Module, nn.Module, nn.Module]:
    """The model (on the run's device, in its dtype), its base at base_width (real tensors on
    the CPU, so its init std can be measured where the model does not declare it) and a delta
    at twice the base width (shapes only, on meta): ModelSpec.at gives both shapes.

    ``meta``: the model too on the meta device (the planner's table of a 67B target), and the
    base only as deep as needed (its first MoE block), on meta as well when it is the target's
    own width with a declared sigma, where nothing needs measuring."""
    spec, p = cfg.model, cfg.parametrization
    depth = base_blocks(cfg)
    if meta:
        depth = min(depth, spec.first_dense + 1 if spec.n_experts else 1)
    base_spec = spec.at(p.base_width, depth, p.base_head_dim)
    base_on_meta = meta and (p.sigma != "model" or p.base_width == spec.width)
    # The base is small; building it draws random numbers, which fork_rng gives back, so the
    # model's own init (and so every seeded run) does not depend on whether a base was built.
    with torch.random.fork_rng(devices=[]):
        if base_on_meta:
            with torch.device("meta"):
                base = build_model(base_spec)
        else:
            base = build_model(base_spec)
    with torch.device("meta"):
        # A second width tells which dimensions are width even when the model is at the base
        # width (where nothing differs from the base), so roles - and so Muon - are the same
        # at every width.
        delta = build_model(spec.at(2 * p.base_width, depth, p.base_head_dim))
        if meta:
            return build_model(spec), base, delta
    model = build_model(spec).to(device=cfg.run.device, dtype=DTYPES[cfg.run.dtype])
    return model, base, delta


def parametrize_run(
    cfg: RunConfig, model: nn.Module, base: nn.Module, delta: nn.Module, init: bool = True
) -> Parametrization:
    """``parametrize`` with the run's ParamSpec (the model may already be sharded by FSDP2);
    ``init=False`` leaves trained weights as they are (export)."""
    scaled = cfg.parametrization.base_depth is not None
    return parametrize(
        model,
        base,
        cfg.parametrization,
        delta=delta,
        optimizer=cfg.optimizer.name,
        depth=cfg.model.depth if scaled else None,
        init=init,
    )


def horizon_lrs(cfg: RunConfig) -> tuple[float, float | None]:
    """(lr, muon_lr) the optimizer gets: cfg's, moved to the run's horizon when base_tokens is
    set (sizeup.optim.transfer_horizon; the batch transfer is the optimizer's own)."""
    o = cfg.optimizer
    if o.base_tokens is None:
        return o.lr, o.muon_lr

    def move(lr: float) -> float:
        return transfer_horizon(
            lr, cfg.tokens_for(cfg.schedule.steps), o.base_tokens, o.data_exponent
        )

    return move(o.lr), (move(o.muon_lr) if o.muon_lr is not None else None)


def fused_adamw(cfg: RunConfig) -> bool | None:
    """torch's fused AdamW kernel on CUDA (one launch for all tensors of a group, the fastest
    AdamW torch has); elsewhere torch's default (foreach), which keeps CPU runs bit for bit
    what they were."""
    return True if cfg.run.device.startswith("cuda") else None


def optimizer_for(
    cfg: RunConfig, p: Parametrization, model: nn.Module | None = None
) -> torch.optim.Optimizer:
    """The run's optimizer over ``p``'s param groups: its OptimSpec at the run's horizon (lr
    moved by base_tokens), moved to the run's batch by the optimizer itself (base_batch_size),
    with ``fused_adamw``'s kernel choice."""
    lr, muon_lr = horizon_lrs(cfg)
    spec = cfg.optimizer.replace(lr=lr, muon_lr=muon_lr, base_tokens=None)
    context = BuildContext(
        batch_size=cfg.data.batch_size,
        fused=fused_adamw(cfg),
    )
    return p.optimizer(spec, model=model, **vars(context))


def parametrized(cfg: RunConfig, meta: bool = False) -> tuple[Parametrization, Any]:
    """(Parametrization, optimizer) of ``cfg`` without data or seeding: the per-tensor table
    as the run will hold it (the planner builds its target this way, on meta)."""
    model, base, delta = build_models(cfg, meta=meta)
    p = parametrize_run(cfg, model, base, delta)
    return p, optimizer_for(cfg, p)


def build(cfg: RunConfig, rank: int = 0, world_size: int = 1) -> Built:
    """Seed, build model + base, parametrize (then shard with FSDP2 when run.fsdp), optimizer,
    schedule (``cfg.lr_schedule()``) and data (following the batch ramp) for ``cfg``."""
    if cfg.run.device == "cpu":
        torch.set_num_threads(cfg.run.threads)
    elif cfg.run.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device", cfg.run.device, "'cpu' (no CUDA device is available here)")
    check_memory(cfg)
    torch.manual_seed(cfg.run.seed)
    model, base, delta = build_models(cfg)
    p = parametrize_run(cfg, model, base, delta)
    if cfg.run.fsdp:  # parametrize first (on whole tensors), then shard, then the optimizer
        shard(model)
    opt = optimizer_for(cfg, p)
    # The one lr schedule of the run (warmup included, also for schedule-free AdamW, whose own
    # warmup (k+1)/warmup_steps is the same formula and is left at 0).
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cfg.lr_schedule())
    data = make_data(cfg, rank=rank, world_size=world_size)
    return Built(model, p, opt, sched, data)
