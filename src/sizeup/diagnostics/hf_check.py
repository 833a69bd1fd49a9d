"""The coordinate check of a Hugging Face transformers architecture, by name and config overrides
(`sizeup coord-check --hf llama --set num_hidden_layers=2`).

Each width is a tiny model of the family from ``sizeup.models.hf.hf_model``: hidden size = width,
the MLP and expert sizes at the family's fixed ratio, a fixed number of heads (head_dim grows, as
in the built-in GPT's check: the only sweep where the attention scale shows). The models are the
factory of the ordinary check (``coord_check(factory, data=...)``), trained by the one training
step on next-byte batches of the built-in corpus (vocabulary 256); the transformers forward
returns a ModelOutput, which ``sizeup.train.step.forward_loss`` reads.

Defaults for the parametrization, as for the built-in families: base init 1/sqrt(fan_in), zero
readout, routers and queries (sizeup.diagnostics.coord_check._family_init), and - for every rule
but SP -
the muP attention scale 1/d (``attn_scale="1/d"``, anchored at the base width).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sizeup.diagnostics.coord_check import CoordCheckResult, coord_check, gpt_batches
from sizeup.errors import check_positive

HF_WIDTHS = (64, 128, 256)


def hf_parametrize_defaults(rule: str | None, given: dict[str, Any] | None) -> dict[str, Any]:
    """parametrize() keywords of an HF check: base init 1/sqrt(fan_in), zero readout and query,
    1/d attention for every rule but SP (the caller's win)."""
    pkw = dict(given or {})
    pkw.setdefault("sigma", "fan_in")
    pkw.setdefault("zero_readout", True)
    pkw.setdefault("zero_query", True)
    # Routers too: their sigma/m init makes the routing weights drift with width at small widths
    # (top-k of softer logits), which would blur the verdict on the experts.
    pkw.setdefault("zero_router", True)
    pkw.setdefault("attn_scale", None if rule in ("sp", None) else "1/d")
    return pkw


def hf_coord_check(
    arch: str,
    rule: str = "mup",
    *,
    overrides: dict[str, Any] | None = None,
    widths: Sequence[int] | None = None,
    seq_len: int = 32,
    batch_size: int = 8,
    steps: int = 4,
    same_batch: bool = True,
    parametrize_kwargs: dict[str, Any] | None = None,
    **kwargs: Any,
) -> CoordCheckResult:
    """Coordinate check of the transformers family ``arch`` (sizeup.choices.HF_ARCHS) with config
    ``overrides`` across ``widths`` (default 64, 128, 256). Other keywords go to
    ``coord_check`` (optimizer, lr, seeds, tolerance, noise_z, ...)."""
    from sizeup.models.hf import hf_factory

    check_positive("seq_len", seq_len, integer=True)
    check_positive("batch_size", batch_size, integer=True)
    check_positive("steps", steps, integer=True)
    factory = hf_factory(arch, **(overrides or {}))
    n_batches = 1 if same_batch else steps + 1

    def data(seed: int) -> list:
        return gpt_batches(n_batches, batch_size, seq_len, seed)

    result = coord_check(
        factory,
        rule,
        widths=list(widths or HF_WIDTHS),
        steps=steps,
        same_batch=same_batch,
        data=data,
        parametrize_kwargs=hf_parametrize_defaults(rule, parametrize_kwargs),
        **kwargs,
    )
    result.settings.update(
        model=f"hf:{arch}", overrides=dict(overrides or {}), seq_len=seq_len, batch_size=batch_size
    )
    return result
