"""FSDP2: a run's model sharded with ``torch.distributed.fsdp.fully_shard`` under torchrun.

``fully_shard`` keeps the module and its parameter names and turns each parameter into a DTensor
whose rows are split over the ranks; gradients are reduce-scattered (averaged) onto the same
shards and the optimizer steps on the shards. So everything sizeup keys by name works as it is:
the parametrization table (``get_parametrization`` on the sharded model is the unwrapped one's),
the param groups with their per-tensor lr, eps and weight-decay multipliers, and the weight-decay
convention (elementwise on the shards). Muon's Newton-Schulz needs whole matrices and gathers
each one (``sizeup.optim.muon.orthogonalise``). ``parametrize`` may run before or after
sharding: it reads shapes (a DTensor's are the global ones) and norms through ``full_tensor``.

Each repeated block (every element of a top-level ``nn.ModuleList``: the GPT's ``blocks``, the
MLP's ``hidden``) is its own FSDP unit, so only one block's full parameters exist at a time; the
root unit holds the rest (embeddings, readout, final norm). References: the FSDP2 docs
(pytorch.org/docs/stable/distributed.fsdp.fully_shard.html) and torchtitan's FSDP2 recipe.
"""

from __future__ import annotations

from collections.abc import Iterator

from torch import nn

from sizeup.errors import ConfigError

LAUNCH = "torchrun --nproc_per_node N -m sizeup train --fsdp ..."


def require_process_group() -> None:
    """FSDP shards over the ranks of a process group: refuse, saying how to launch, without one."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise ConfigError(
            "fsdp",
            True,
            f"only with a torch.distributed process group: launch with `{LAUNCH}` (or call "
            "torch.distributed.init_process_group before sizeup.train.run)",
        )


def repeated_blocks(model: nn.Module) -> Iterator[nn.Module]:
    """The model's repeated blocks: the elements of each top-level nn.ModuleList."""
    for child in model.children():
        if isinstance(child, nn.ModuleList):
            yield from child


def shard(model: nn.Module) -> nn.Module:
    """``fully_shard`` every repeated block, then the root (in place; returns the model)."""
    from torch.distributed.fsdp import fully_shard

    require_process_group()
    for block in repeated_blocks(model):
        fully_shard(block)
    fully_shard(model)
    return model
