"""sizeup's parametrization and plan inside torchtitan (PyTorch's own large-scale trainer), through
torchtitan's extension points of the pinned version (0.3.0; the extra ``sizeup[torchtitan]``).

torchtitan 0.3.0 describes a job as one Python config tree (``Trainer.Config``), returned by a
function its ``ConfigManager`` loads with ``--module M --config F`` (no TOML any more). Three
pieces of it are sizeup's:

* ``SizeupConverter`` is a model converter (``torchtitan.protocols.model.ModelConfigConverter``,
  the hook its float8 and LoRA converters use): a job names it in the model's ``converters``
  (``model_spec(shape, converters=[SizeupConverter.Config(...)])``, or torchtitan's own
  ``model_registry(flavor, converters=[...])``). It gives every attention module an explicit
  head_dim (so its logit scale is a float field sizeup sets) and swaps the model class for a
  subclass whose ``init_states`` (the trainer's init, after FSDP2 has sharded the model) ends with
  ``sizeup.parametrize`` against the base the converter's ParamSpec names: roles inferred from
  the shapes (tok_embeddings input, layers.*.attention.qkv_linear.wqkv / wo and
  feed_forward.w1/w2/w3 hidden, lm_head readout, norms vectors), the init rescaled from
  torchtitan's own (each module's ``param_init`` std, declared to sizeup as ``sizeup_hints``),
  forward multipliers and the attention scale (``attn_scale``: "1/d" is muP's).
* ``SizeupOptimizers`` is the optimizer container (a subclass of torchtitan's
  ``OptimizersContainer``, in the job's ``optimizer`` field): any optimizer of sizeup's registry,
  by name, built by ``Parametrization.optimizer`` (``sizeup.optim.build_optimizer``) so each
  param group carries the rules table's lr / weight-decay / eps multipliers; torchtitan's lr
  scheduler then scales every group by the same factor, so the ratios hold at every step.
* ``job_config(run)`` turns a sizeup RunConfig (a plan's run.json) into the whole
  ``Trainer.Config``: the planned shape as the model, steps, batch with gradient accumulation,
  warmup and decay, peak lr, the converter with its base. ``job_module(run)`` is the Python source
  `sizeup plan --emit torchtitan` writes: a module whose ``sizeup_plan()`` returns it, for
  ``python -m torchtitan.train --module <file stem> --config sizeup_plan``.

The model is torchtitan's Llama 3 (``Llama3Model``), built from a ``LlamaShape`` with the same
helpers and the same inits as torchtitan's own flavours (``torchtitan.models.llama3``; its
``_build_llama3_layers`` is private in 0.3.0, hence the exact pin). Pipeline parallelism is not
supported (each stage would be parametrized as a whole model).
"""

from __future__ import annotations

import functools
import pprint
from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch
from torch import nn

from sizeup.config import OptimSpec, ParamSpec, RunConfig
from sizeup.errors import ConfigError
from sizeup.parametrization import ModelHints, get_parametrization, parametrize
from sizeup.parametrization.attention import restore_scales
from sizeup.parametrization.hooks import ATTR, remove_hooks
from sizeup.registry import get_optimizer
from sizeup.wrapping import canonical_name

try:
    from torchtitan.components.loss import ChunkedLossWrapper, CrossEntropyLoss
    from torchtitan.components.optimizer import LRSchedulersContainer, OptimizersContainer
    from torchtitan.config import TrainingConfig
    from torchtitan.models.common import ComplexRoPE, Embedding, Linear, RMSNorm
    from torchtitan.models.common.attention import (
        FusedQKVLinear,
        GQAttention,
        ScaledDotProductAttention,
        VarlenAttention,
    )
    from torchtitan.models.common.param_init import skip_param_init
    from torchtitan.models.llama3 import (
        _EMBEDDING_INIT,
        _NORM_INIT,
        _build_llama3_layers,
        _output_linear_init,
        parallelize_llama,
    )
    from torchtitan.models.llama3.model import Llama3Model
    from torchtitan.models.llama3.state_dict_adapter import Llama3StateDictAdapter
    from torchtitan.protocols.model import ModelConfigConverter
    from torchtitan.protocols.model_spec import ModelSpec
    from torchtitan.protocols.module import Module
    from torchtitan.trainer import Trainer
except ImportError as err:  # the optional extra
    raise ConfigError(
        "torchtitan",
        str(err),
        "importable: pip install 'sizeup[torchtitan]' (torchtitan 0.3.0 and triton, which "
        "torchtitan imports even on a CPU-only machine)",
    ) from None

ATTN_BACKENDS = ("flex", "flex_flash", "varlen", "sdpa")
# sizeup's cooldown -> torchtitan's decay_type (LRSchedulersContainer: linear, 1 - sqrt(p), cosine)
_DECAY_TYPES = {"linear": "linear", "1-sqrt": "sqrt"}


# --- the model ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class LlamaShape:
    """The shape of a torchtitan Llama 3 model (what a flavour fixes). ``attn_backend``: "flex"
    (torchtitan's default), "flex_flash", "varlen", or "sdpa": causal scaled-dot-product
    attention without document masks, which runs on a CPU without compiling (tests)."""

    dim: int
    n_layers: int
    n_heads: int
    hidden_dim: int
    vocab_size: int
    n_kv_heads: int | None = None
    tie_embeddings: bool = False
    max_seq_len: int = 131072
    rope_theta: float = 500000.0
    fuse_qkv: bool = True
    attn_backend: str = "flex"

    def __post_init__(self) -> None:
        if self.dim % self.n_heads:
            raise ConfigError("dim", self.dim, f"a multiple of n_heads={self.n_heads}")
        if self.n_kv_heads is not None and self.n_heads % self.n_kv_heads:
            raise ConfigError("n_kv_heads", self.n_kv_heads, f"a divisor of n_heads={self.n_heads}")
        if self.attn_backend not in ATTN_BACKENDS:
            raise ConfigError(
                "attn_backend", self.attn_backend, "one of " + ", ".join(ATTN_BACKENDS)
            )

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads


def llama_config(shape: LlamaShape) -> Llama3Model.Config:
    """torchtitan's Llama3Model.Config at ``shape``, built as its own flavours are (the same
    init per tensor: embeddings N(0, 1), q/k/v and w1 trunc-normal 0.02, wo/w2/w3 0.02 scaled by
    depth, lm_head dim^-1/2; RMSNorm weights 1)."""
    backend = "flex" if shape.attn_backend == "sdpa" else shape.attn_backend
    layers = _build_llama3_layers(
        n_layers=shape.n_layers,
        dim=shape.dim,
        n_heads=shape.n_heads,
        n_kv_heads=shape.n_kv_heads,
        hidden_dim=shape.hidden_dim,
        rope=ComplexRoPE.Config(
            dim=shape.head_dim,
            max_seq_len=shape.max_seq_len,
            theta=shape.rope_theta,
            scaling="llama",
        ),
        fuse_qkv=shape.fuse_qkv,
        attn_backend=backend,
    )
    if shape.attn_backend == "sdpa":
        for layer in layers:
            layer.attention.inner_attention = ScaledDotProductAttention.Config()
    embed_init = {"weight": skip_param_init} if shape.tie_embeddings else _EMBEDDING_INIT
    return Llama3Model.Config(
        dim=shape.dim,
        vocab_size=shape.vocab_size,
        enable_weight_tying=shape.tie_embeddings,
        tok_embeddings=Embedding.Config(
            num_embeddings=shape.vocab_size, embedding_dim=shape.dim, param_init=embed_init
        ),
        norm=RMSNorm.Config(normalized_shape=shape.dim, param_init=_NORM_INIT),
        lm_head=Linear.Config(
            in_features=shape.dim,
            out_features=shape.vocab_size,
            param_init=_output_linear_init(shape.dim),
        ),
        layers=layers,
    )


def shape_of(config: Llama3Model.Config) -> LlamaShape:
    """The LlamaShape of a Llama3Model.Config (one of torchtitan's flavours, or llama_config's)."""
    if not isinstance(config, Llama3Model.Config):
        raise ConfigError(
            "model", type(config).__name__, "a torchtitan Llama3Model.Config (llama3's flavours)"
        )
    attn = config.layers[0].attention
    inner = attn.inner_attention
    backend = (
        "sdpa"
        if isinstance(inner, ScaledDotProductAttention.Config)
        else "varlen"
        if isinstance(inner, VarlenAttention.Config)
        else "flex"
    )
    return LlamaShape(
        dim=config.dim,
        n_layers=len(config.layers),
        n_heads=attn.n_heads,
        hidden_dim=config.layers[0].feed_forward.w1.out_features,
        vocab_size=config.vocab_size,
        n_kv_heads=attn.n_kv_heads,
        tie_embeddings=config.enable_weight_tying,
        max_seq_len=attn.rope.max_seq_len,
        rope_theta=attn.rope.theta,
        fuse_qkv=isinstance(attn.qkv_linear, FusedQKVLinear.Config),
        attn_backend=backend,
    )


def base_shape(shape: LlamaShape, spec: ParamSpec) -> LlamaShape:
    """The base of ``shape`` under a ParamSpec: width ``base_width``, head size ``base_head_dim``
    (None: the model's, so the head count follows width), the key/value groups and the MLP at the
    model's ratios, ``base_depth`` blocks (None: the model's)."""
    head_dim = spec.base_head_dim or shape.head_dim
    if spec.base_width % head_dim:
        raise ConfigError("base_width", spec.base_width, f"a multiple of the head size {head_dim}")
    heads = spec.base_width // head_dim
    kv = None
    if shape.n_kv_heads is not None:
        kv = max(1, heads * shape.n_kv_heads // shape.n_heads)
    return replace(
        shape,
        dim=spec.base_width,
        n_heads=heads,
        n_kv_heads=kv,
        hidden_dim=max(1, round(shape.hidden_dim * spec.base_width / shape.dim)),
        n_layers=spec.base_depth or shape.n_layers,
    )


def titan_hints(config: Llama3Model.Config) -> dict[str, Any]:
    """sizeup_hints of a torchtitan decoder (sizeup.models.hf's keys): its blocks, residual
    branch outputs, queries, readout and final norm, and ``init_std``, each Linear's and
    Embedding's std as its ``param_init`` declares it ("fan_in" where that is in_features^-1/2,
    as lm_head's is, so the base's is its own fan-in's)."""
    stds: dict[str, Any] = {}
    for fqn, cfg, _, _ in config.traverse(Module.Config, recurse=True):
        std = _declared_std((cfg.param_init or {}).get("weight"))
        if std is None or not fqn:
            continue
        fan_in = getattr(cfg, "in_features", None)
        value = "fan_in" if fan_in and abs(std * fan_in**0.5 - 1) < 1e-12 else float(std)
        # QKVLinear (fuse_qkv=False) builds both wk and wv from its one config field wkv
        names = [fqn[:-1], fqn[:-2] + "v"] if fqn.endswith(".wkv") else [fqn]
        stds.update(dict.fromkeys(names, value))
    return {
        "block": ["layers.*"],
        "residual_out": ["layers.*.attention.wo", "layers.*.feed_forward.w2"],
        "query": ["layers.*.attention.qkv_linear.wq"],
        "router": [],
        "readout": ["lm_head"],
        "final_norm": "norm",
        "roles": {},
        "init_std": stds,
    }


def _declared_std(init: Any, depth: int = 2) -> float | None:
    """The std an init function draws with: a ``partial(..., std=s)`` (torchtitan's inits), or
    one a wrapper closes over (its fused q/k/v init draws q, k and v with the wrapped one)."""
    if isinstance(init, functools.partial):
        return init.keywords.get("std")
    for cell in getattr(init, "__closure__", None) or () if depth else ():
        std = _declared_std(cell.cell_contents, depth - 1)
        if std is not None:
            return std
    return None


def model_spec(
    shape: LlamaShape, converters: list[Any] | None = None, flavor: str = "sizeup"
) -> ModelSpec:
    """torchtitan's ModelSpec for a Llama 3 of ``shape`` (what its ``model_registry`` returns
    for a named flavour, without pipelining), with ``converters`` applied in order."""
    config: Any = llama_config(shape)
    for c in converters or ():
        config = c.build().convert(config)
    return ModelSpec(
        name="llama3",
        flavor=flavor,
        model=config,
        parallelize_fn=parallelize_llama,
        # None: torchtitan refuses pipeline parallelism by name (each stage would be
        # parametrized as a whole model)
        pipelining_fn=None,
        post_optimizer_build_fn=None,
        state_dict_adapter=Llama3StateDictAdapter,
    )


# --- the converter -----------------------------------------------------------------------------
class SizeupConverter(ModelConfigConverter):
    """Parametrize a torchtitan Llama model with sizeup (module doc). ``parametrization``: the
    ParamSpec's fields (run.json's "parametrization" section: rule, base_width, base_head_dim,
    base_depth, sigma, ...); ``attn_scale``: "1/d" (muP, Tensor Programs V sec. 4) or
    "1/sqrt(d)", anchored at the base's head size (sizeup.parametrization.attention), None keeps
    torchtitan's 1/sqrt(d)."""

    @dataclass(kw_only=True, slots=True)
    class Config(ModelConfigConverter.Config):
        parametrization: dict = field(default_factory=dict)
        attn_scale: str | None = None

        def __post_init__(self) -> None:
            ParamSpec.from_dict(self.parametrization)  # a ConfigError names a bad field
            ModelHints(attn_scale=self.attn_scale)

    def __init__(self, config: Config, **kwargs: Any):
        self.config = config

    def convert(self, model_config: Any) -> Any:
        shape = shape_of(model_config)  # a ConfigError unless a Llama 3 config
        _check_supported(shape, ParamSpec.from_dict(self.config.parametrization))
        for _, attn, _, _ in model_config.traverse(GQAttention.Config, recurse=True):
            if attn.head_dim is None:  # the same scale, now a float field (GQAttention.scaling)
                attn.head_dim = model_config.dim // attn.n_heads
        owner = type(model_config)._owner
        cls = _sizeup_model(getattr(owner, "sizeup_base", owner))
        values = {f.name: getattr(model_config, f.name) for f in fields(model_config) if f.init}
        values.pop("sizeup", None)
        return cls.Config(**values, sizeup=self.config)


def _check_supported(shape: LlamaShape, spec: ParamSpec) -> None:
    """ConfigError for what the converter cannot do (yet) on a torchtitan Llama."""
    if shape.tie_embeddings:
        # The shared tensor is sizeup's input (an Embedding, fan_in = vocabulary) but torchtitan
        # initialises it as the readout, std dim^-1/2: no declared init describes both widths.
        raise ConfigError(
            "enable_weight_tying", True, "False (untied flavours: debugmodel, 8B, 70B, 405B)"
        )
    if spec.zero_query and shape.fuse_qkv:
        raise ConfigError(
            "zero_query",
            True,
            "False with the fused wqkv (its query rows interleave with k and v per group); "
            "build the shape with fuse_qkv=False",
        )


@functools.cache
def _sizeup_model(model_cls: type) -> type:
    """A subclass of a torchtitan decoder whose init ends with sizeup's parametrize."""

    class SizeupModel(model_cls):  # type: ignore[valid-type, misc]
        @dataclass(kw_only=True, slots=True)
        class Config(model_cls.Config):  # type: ignore[name-defined, misc]
            sizeup: SizeupConverter.Config = field(default_factory=SizeupConverter.Config)

        @property
        def sizeup_hints(self) -> dict[str, Any]:
            return titan_hints(self.config)

        def init_states(self, *, buffer_device: Any = None) -> None:
            _forget(self)
            super().init_states(buffer_device=buffer_device)
            apply(self, self.config.sizeup)

    SizeupModel.sizeup_base = model_cls
    SizeupModel.__name__ = SizeupModel.__qualname__ = f"Sizeup{model_cls.__name__}"
    return SizeupModel


def _forget(model: nn.Module) -> None:
    """Undo an earlier parametrize before the model is initialised again: its attention scales,
    forward multipliers and records (the fresh init is torchtitan's again)."""
    par = get_parametrization(model)
    if par is None:
        return
    restore_scales(model, par.attention)
    for mod in model.modules():
        remove_hooks(mod)
    delattr(model, ATTR)


def apply(model: nn.Module, sizeup: SizeupConverter.Config) -> Any:
    """sizeup.parametrize on an initialised torchtitan Llama (possibly sharded by FSDP2) against
    its base (``base_shape``) and a delta at twice the base width (which tells which dimensions
    are width even when the model is the base), both on the meta device: only their shapes are
    read; sigma comes from the declared inits (``titan_hints``). Returns the Parametrization."""
    spec = ParamSpec.from_dict(sizeup.parametrization)
    shape = shape_of(model.config)
    base, delta = (
        _meta_model(base_shape(shape, spec.replace(base_width=w)))
        for w in (spec.base_width, 2 * spec.base_width)
    )
    return parametrize(
        model, base, spec, delta=delta, hints=ModelHints(attn_scale=sizeup.attn_scale)
    )


def _meta_model(shape: LlamaShape) -> nn.Module:
    """A Llama of ``shape`` on the meta device, converted (its attention scales are floats)."""
    config = SizeupConverter.Config().build().convert(llama_config(shape))
    with torch.device("meta"):
        return config.build()


# --- the optimizer -----------------------------------------------------------------------------
class SizeupOptimizers(OptimizersContainer):
    """torchtitan's optimizer container over sizeup's optimizer: ``optimizer`` holds the
    OptimSpec's fields (run.json's "optimizer" section: name from sizeup's registry, lr = the
    base model's eta, weight_decay, betas, eps, ...), built for each model part by its
    Parametrization (the SizeupConverter's), so every group carries its multipliers."""

    @dataclass(kw_only=True, slots=True)
    class Config(OptimizersContainer.Config):
        optimizer: dict = field(default_factory=dict)

        def __post_init__(self) -> None:
            spec = OptimSpec.from_dict(self.optimizer)  # a ConfigError names a bad field
            if get_optimizer(spec.name).switches_modes:
                raise ConfigError(
                    "optimizer.name",
                    spec.name,
                    "an optimizer that trains and evaluates at the same point: torchtitan's "
                    "trainer never calls its train() / eval() (schedule-free)",
                )

    def __init__(self, config: Config, *, model_parts: list[nn.Module]) -> None:
        spec = OptimSpec.from_dict(config.optimizer)
        foreach = True if config.implementation == "foreach" else None  # BuildContext's
        self.optimizers, self.model_parts = [], model_parts
        params: list[nn.Parameter] = []
        for part in model_parts:
            par = get_parametrization(part)
            if par is None:
                raise ConfigError(
                    "optimizer",
                    "SizeupOptimizers",
                    "a model whose converters include SizeupConverter (it parametrizes the "
                    "model at init; this one was not)",
                )
            opt = par.optimizer(spec, model=part, foreach=foreach)
            _name_groups(opt, part)
            self.optimizers.append(opt)
            params += [p for g in opt.param_groups for p in g["params"]]
        self._validate_params(params)
        self._post_init(params)


def _name_groups(opt: Any, part: nn.Module) -> None:
    """Give each param group its ``param_names`` (canonical FQNs), which torchtitan's
    checkpointing reads for FQN-keyed optimizer state."""
    names = {id(p): canonical_name(n) for n, p in part.named_parameters()}
    for group in opt.param_groups:
        group.setdefault("param_names", [names[id(p)] for p in group["params"]])


# --- the job -----------------------------------------------------------------------------------
def _shape(run: RunConfig, attn_backend: str) -> LlamaShape:
    """The run's model as torchtitan's Llama 3 (ConfigError for what it cannot express)."""
    m = run.model
    for name, value, default in (
        ("n_experts", m.n_experts, 0),
        ("qk_norm", m.qk_norm, False),
        ("z_loss", m.z_loss, 0.0),
    ):
        if value != default:
            raise ConfigError(f"model.{name}", value, f"{default!r} for a torchtitan Llama 3 job")
    return LlamaShape(
        dim=m.width,
        n_layers=m.depth,
        n_heads=m.heads,
        hidden_dim=m.ffn_hidden,
        vocab_size=m.vocab_size,
        n_kv_heads=m.n_kv_head,
        tie_embeddings=m.tie_embeddings,
        max_seq_len=m.seq_len,
        attn_backend=attn_backend,
    )


def _schedule(run: RunConfig) -> LRSchedulersContainer.Config:
    """The run's schedule as torchtitan's warmup-stable-decay lambda (ConfigError otherwise)."""
    s = run.schedule
    if s.name == "constant":
        return LRSchedulersContainer.Config(warmup_steps=s.warmup, decay_ratio=0.0)
    if s.name == "cosine":
        return LRSchedulersContainer.Config(warmup_steps=s.warmup, decay_type="cosine")
    if s.name == "wsd" and s.cooldown in _DECAY_TYPES:
        return LRSchedulersContainer.Config(
            warmup_steps=s.warmup, decay_ratio=s.decay_frac, decay_type=_DECAY_TYPES[s.cooldown]
        )
    raise ConfigError(
        "schedule",
        f"{s.name} ({s.cooldown})",
        "constant, cosine, or wsd with a linear or 1-sqrt cooldown (torchtitan's schedules)",
    )


def job_config(
    run: RunConfig | dict[str, Any],
    attn_backend: str = "flex",
    local_batch_size: int | None = None,
    data_parallel: int = 1,
) -> Trainer.Config:
    """torchtitan's whole job config (Trainer.Config) for a sizeup run (a plan's run.json):
    torchtitan's Llama 3 at the planned shape with SizeupConverter (the run's ParamSpec: the
    base; attn_scale) as its converter, SizeupOptimizers at the planned peak lr, the schedule,
    steps, the global batch in sequences with ``local_batch_size`` per rank and micro-step
    (default: the run's micro batch, else the batch over the ``data_parallel`` ranks), so
    torchtitan accumulates gradients over global / (local x data-parallel ranks) micro-batches,
    the sequence length, float32 master weights, gradient clipping at grad_clip (0: off). Data
    and tokenizer stay torchtitan's defaults: set ``dataloader`` and ``hf_assets_path`` (a
    tokenizer whose vocabulary is the plan's) on the returned config or its command line."""
    run = run if isinstance(run, RunConfig) else RunConfig.from_dict(run)
    if run.data.batch_ramp is not None:
        raise ConfigError(
            "data.batch_ramp", run.data.batch_ramp, "None (torchtitan's batch is fixed)"
        )
    shape = _shape(run, attn_backend)
    converter = SizeupConverter.Config(
        parametrization=run.parametrization.to_dict(), attn_scale=run.model.attn_scale
    )
    spec = model_spec(shape, [converter])
    batch = run.data.batch_size
    local = local_batch_size or run.data.micro_batch_size or batch // max(data_parallel, 1)
    if not local or batch % (local * data_parallel):
        raise ConfigError(
            "local_batch_size",
            local,
            f"a divisor of the batch ({batch} sequences) over {data_parallel} data-parallel ranks",
        )
    return Trainer.Config(
        model_spec=spec,
        loss=ChunkedLossWrapper.Config(
            loss_fn=CrossEntropyLoss.Config(global_vocab_size=shape.vocab_size)
        ),
        optimizer=SizeupOptimizers.Config(optimizer=run.optimizer.to_dict()),
        lr_scheduler=_schedule(run),
        training=TrainingConfig(
            local_batch_size=local,
            global_batch_size=batch,
            seq_len=run.model.seq_len,
            steps=run.schedule.steps,
            max_norm=run.optimizer.grad_clip or float("inf"),
        ),
    )


def job_module(run: RunConfig) -> str:
    """The Python source of a torchtitan config module for ``run`` (what `sizeup plan --emit
    torchtitan` writes): ``sizeup_plan()`` returns ``job_config`` of the run's sections, so the
    file holds the plan's numbers once and sizeup builds the job from them."""
    sections = pprint.pformat(run.sections(), sort_dicts=False)
    return (
        '"""torchtitan job written by `sizeup plan --emit torchtitan` (sizeup.integrations.'
        "torchtitan).\n\nRun it with its directory on PYTHONPATH:\n"
        "    python -m torchtitan.train --module torchtitan_job --config sizeup_plan \\\n"
        "        --hf_assets_path <tokenizer dir> --dataloader.dataset <dataset>\n"
        '(torchrun --nproc_per_node N -m torchtitan.train ... for N GPUs)."""\n\n'
        "import os\n\n"
        "from sizeup.integrations.torchtitan import job_config\n\n"
        f"RUN = {sections}\n\n\n"
        "def sizeup_plan():\n"
        '    """The planned run as torchtitan\'s Trainer.Config: every rank torchrun starts is a\n'
        "    data-parallel rank (FSDP); with tensor or pipeline parallelism give\n"
        '    --training.local_batch_size yourself."""\n'
        '    return job_config(RUN, data_parallel=int(os.environ.get("WORLD_SIZE", "1")))\n'
    )


__all__ = [
    "LlamaShape",
    "SizeupConverter",
    "SizeupOptimizers",
    "apply",
    "base_shape",
    "job_config",
    "job_module",
    "llama_config",
    "model_spec",
    "shape_of",
    "titan_hints",
]
