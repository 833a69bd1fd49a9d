"""The coordinate check of a Hugging Face transformers architecture, by name and config overrides
(`sizeup coord-check --hf llama --set num_hidden_layers=2`).

Each width is a tiny model of the family from ``sizeup.models.hf.hf_factory``: hidden size =
width, the MLP and expert sizes at the family's fixed ratio, a fixed number of heads (head_dim
grows: the only sweep where the attention scale shows). The models are a ModelFactory of the
ordinary check, trained by the one training step on next-byte batches of the built-in corpus
(sizeup.data, vocabulary 256); the transformers forward returns a ModelOutput, which
``sizeup.train.step.forward_loss`` reads.

Its parametrization defaults (``hf_parametrization``): base init 1/sqrt(fan_in), zero readout,
routers and queries, and - for every rule but SP - the muP attention scale 1/d, anchored at the
base width.
"""

from __future__ import annotations

from typing import Any

from sizeup.config import OptimSpec, ParamSpec, RunConfig
from sizeup.data import make_data
from sizeup.diagnostics.coord_check import CheckSpec, CoordCheckResult, ModelFactory, coord_check
from sizeup.models.hf import hf_factory
from sizeup.parametrization import ModelHints

HF_WIDTHS = (64, 128, 256)


def hf_parametrization(rule: str = "mup", **given: Any) -> tuple[ParamSpec, ModelHints]:
    """(ParamSpec, ModelHints) of an HF check: base init 1/sqrt(fan_in), zero readout, query and
    router (its sigma/m init makes the routing drift with width at small widths, which would
    blur the verdict on the experts), 1/d attention for every rule but SP; ``given`` ParamSpec
    fields win."""
    spec = ParamSpec(
        **{
            "rule": rule,
            "sigma": "fan_in",
            "zero_readout": True,
            "zero_query": True,
            "zero_router": True,
            **given,
        }
    )
    return spec, ModelHints(attn_scale=None if spec.rule == "sp" else "1/d")


def hf_batches(n: int, seq_len: int, batch_size: int, seed: int) -> list[Any]:
    """``n`` next-byte batches of the built-in corpus (sizeup.data's stream for ``seed``)."""
    data = make_data(RunConfig(seq_len=seq_len, batch_size=batch_size, seed=seed))
    return [data.batch_at(t) for t in range(n)]


def hf_coord_check(
    arch: str,
    rule: str = "mup",
    *,
    check: CheckSpec | None = None,
    parametrization: ParamSpec | None = None,
    optimizer: OptimSpec | None = None,
    overrides: dict[str, Any] | None = None,
    seq_len: int = 32,
    batch_size: int = 8,
    progress: bool = False,
    **check_fields: Any,
) -> CoordCheckResult:
    """Coordinate check of the transformers family ``arch`` (sizeup.choices.HF_ARCHS) with config
    ``overrides`` across the check's widths (default 64, 128, 256; CheckSpec fields as keywords
    too), parametrized by ``rule`` with the HF defaults (``hf_parametrization``; the fields of
    ``parametrization`` over them) and trained with ``optimizer`` on ``batch_size`` sequences of
    ``seq_len`` bytes."""
    check = (check or CheckSpec()).replace(**check_fields)
    if check.widths is None and check.depths is None:
        check = check.replace(widths=HF_WIDTHS)
    given = parametrization.to_dict() if parametrization is not None else {"rule": rule}
    spec, hints = hf_parametrization(**given)
    n = 1 if check.same_batch else check.steps + 1
    factory = ModelFactory(
        build=hf_factory(arch, **(overrides or {})),
        data=lambda seed: hf_batches(n, seq_len, batch_size, seed),
        parametrization=spec,
        optimizer=optimizer or OptimSpec(lr=1e-2),
        hints=hints,
        name=f"hf:{arch}",
    )
    result = coord_check(factory, check, progress=progress)
    result.settings.update(overrides=dict(overrides or {}), seq_len=seq_len, batch_size=batch_size)
    return result
