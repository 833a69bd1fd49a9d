"""FLOPs per token for the usual counting conventions, an exact count for the built-in GPT (dense or
mixture-of-experts, with grouped-query or multi-head latent attention), and model FLOPs
utilisation (MFU).

Every function returns *training* FLOPs per token (forward + backward = 3 x forward), the
quantity that multiplies tokens to give a run's compute C. The counts take a ModelSpec (the one
shape record: a run's, a plan's, `sizeup flops`'s) or GPTConfig-like keywords (for shapes the
built-in GPT cannot build, such as MLA). Below the trainer and the laws (docs/architecture.md,
"Layering"): MFU, the planner and the laws all count here.
"""

from __future__ import annotations

from typing import Any

from sizeup.config.model import ModelSpec
from sizeup.errors import ConfigError, check_choice, check_positive

FORMULAS = ("kaplan", "chinchilla", "deepseek", "megatron", "gpt")

# Dense (no sparsity) peak tensor throughput per device in FLOP/s, from vendor datasheets.
# bf16/fp16 unless the key says otherwise; pass a number to `mfu` for anything else.
GPU_PEAK_FLOPS: dict[str, float] = {
    "V100": 125e12,  # fp16 tensor cores
    "T4": 65e12,
    "A10": 125e12,
    "A10G": 70e12,
    "A100": 312e12,
    "A100-tf32": 156e12,
    "L4": 121e12,
    "L40S": 362e12,
    "RTX4090": 165e12,  # fp16 with fp32 accumulate
    "H100-PCIe": 756e12,
    "H100": 989e12,  # SXM
    "H100-SXM": 989e12,
    "H200": 989e12,
    "B200": 2250e12,
    "MI250X": 383e12,
    "MI300X": 1307e12,
    "TPUv4": 275e12,
    "TPUv5e": 197e12,
    "TPUv5p": 459e12,
}


# Memory per device in GiB (datasheets; the larger variant where there are two), for the
# planner's micro-batch.
GPU_MEMORY_GIB: dict[str, float] = {
    "V100": 32,
    "T4": 16,
    "A10": 24,
    "A10G": 24,
    "A100": 80,
    "A100-tf32": 80,
    "L4": 24,
    "L40S": 48,
    "RTX4090": 24,
    "H100-PCIe": 80,
    "H100": 80,
    "H100-SXM": 80,
    "H200": 141,
    "B200": 192,
    "MI250X": 128,
    "MI300X": 192,
    "TPUv4": 32,
    "TPUv5e": 16,
    "TPUv5p": 95,
}


def gpu_memory_gib(device: str | float) -> float | None:
    """A GPU's memory in GiB from GPU_MEMORY_GIB by its table name; None for a number (a peak
    FLOP/s says nothing of memory) or an unknown name."""
    if not isinstance(device, str):
        return None
    key = device.replace(" ", "").replace("_", "-").lower()
    return next((v for k, v in GPU_MEMORY_GIB.items() if k.lower() == key), None)


# Device names (as torch.cuda.get_device_name reports them) -> GPU_PEAK_FLOPS keys, checked in
# this order so that "A100" is not read as "A10" nor "L40S" as "L4".
_DEVICE_NAMES = (
    ("H200", "H200"),
    ("H100 PCIE", "H100-PCIe"),
    ("H100", "H100"),
    ("B200", "B200"),
    ("A100", "A100"),
    ("A10G", "A10G"),
    ("A10", "A10"),
    ("L40S", "L40S"),
    ("L4", "L4"),
    ("V100", "V100"),
    ("T4", "T4"),
    ("4090", "RTX4090"),
    ("MI300X", "MI300X"),
    ("MI250X", "MI250X"),
)


def device_peak_flops(device_name: str) -> float | None:
    """bf16 dense peak FLOP/s of a device from its name (torch.cuda.get_device_name), or None
    for a device the table does not know (a CPU, say): MFU is then unknown, not guessed."""
    name = device_name.upper().replace("-", " ")
    for part, key in _DEVICE_NAMES:
        if part in name:
            return GPU_PEAK_FLOPS[key]
    return None


def kaplan_params(n_layer: int, d_model: int) -> float:
    """Kaplan et al. 2020 non-embedding parameters N = 12 n_layer d^2 (d_attn = d, d_ff = 4d)."""
    return 12.0 * n_layer * d_model**2


def flops_per_token(
    formula: str,
    n_layer: int,
    d_model: int,
    seq_len: int,
    vocab: int = 0,
    *,
    n_params: float | None = None,
    d_ff: int | None = None,
    attn_dim: int | None = None,
    n_head: int | None = None,
    include_attention: bool = False,
) -> float:
    """Training FLOPs per token under a named convention: kaplan, chinchilla, deepseek, megatron.

    kaplan     6N, N non-embedding (default 12 n_layer d^2, or `n_params`); with
               include_attention adds Kaplan's 6 n_layer n_ctx d context term.
    chinchilla Hoffmann et al. 2022 Appendix F: embeddings, QKV, logits, softmax, reductions,
               output projection, dense block and final logits, x3 for backward.
    deepseek   DeepSeek LLM (Bi et al. 2024) M = 72 n_layer d^2 + 12 n_layer d l_seq.
    megatron   Narayanan et al. 2021 without recomputation: 72 L d^2 + 12 L d s + 6 V d.
    """
    check_choice("formula", formula, FORMULAS[:-1])
    check_positive("n_layer", n_layer, integer=True)
    check_positive("d_model", d_model, integer=True)
    check_positive("seq_len", seq_len, integer=True)
    if vocab < 0:
        raise ConfigError("vocab", vocab, "a vocabulary size >= 0")
    L, d, s, V = float(n_layer), float(d_model), float(seq_len), float(vocab)
    if formula == "kaplan":
        n = kaplan_params(n_layer, d_model) if n_params is None else float(n_params)
        check_positive("n_params", n)
        return 6.0 * n + (6.0 * L * s * d if include_attention else 0.0)
    if formula == "deepseek":
        return 72.0 * L * d**2 + 12.0 * L * d * s
    if formula == "megatron":
        return 72.0 * L * d**2 + 12.0 * L * d * s + 6.0 * V * d
    # chinchilla, Appendix F, per sequence of length s, then divided by s
    ff = 4.0 * d if d_ff is None else float(d_ff)
    kh = d if attn_dim is None else float(attn_dim)  # key_size * num_heads
    h = float(n_head) if n_head is not None else max(1.0, d / 64.0)
    embed = 2 * s * V * d
    attn = 2 * 3 * s * d * kh + 2 * s * s * kh + 3 * h * s * s + 2 * s * s * kh + 2 * s * kh * d
    dense = 2 * s * (d * ff + d * ff)
    logits = 2 * s * d * V
    forward = embed + L * (attn + dense) + logits
    return 3.0 * forward / s


def _gpt_shape(kw: dict[str, Any]) -> dict[str, Any]:
    """Resolve GPTConfig-like kwargs (or RunConfig names width/depth) to a full shape."""
    d = kw.get("d_model", kw.get("width"))
    L = kw.get("n_layer", kw.get("depth"))
    if d is None or L is None:
        raise ConfigError("d_model/n_layer", (d, L), "both given (or width/depth of a RunConfig)")
    check_positive("d_model", d, integer=True)
    check_positive("n_layer", L, integer=True)
    n_head, head_dim = kw.get("n_head"), kw.get("head_dim")
    if n_head is None and head_dim is None:
        head_dim = min(64, d)
    if n_head is None:
        check_positive("head_dim", head_dim, integer=True)
        if d % head_dim:
            raise ConfigError("head_dim", head_dim, f"a divisor of d_model={d}")
        n_head = d // head_dim
    if head_dim is None:
        check_positive("n_head", n_head, integer=True)
        head_dim = d // n_head
    n_kv = kw.get("n_kv_head") or n_head
    if n_head % n_kv:
        raise ConfigError("n_kv_head", n_kv, f"a divisor of n_head={n_head}")
    hidden = kw.get("mlp_hidden") or int(round(kw.get("mlp_ratio", 8 / 3) * d))
    return dict(
        d=d,
        L=L,
        n_head=n_head,
        head_dim=head_dim,
        n_kv=n_kv,
        hidden=hidden,
        V=kw.get("vocab_size", 256),
        s=kw.get("seq_len", 128),
        tied=bool(kw.get("tie_embeddings", False)),
        **_moe_shape(kw, hidden),
        **_mla_shape(kw, head_dim),
    )


def _moe_shape(kw: dict[str, Any], hidden: int) -> dict[str, Any]:
    """MoE fields (sizeup.models.GPTConfig names): experts, top-k, shared experts, each expert's
    hidden size (default the dense one), leading dense blocks, a per-expert router bias
    (DeepSeek-V3's e_score_correction_bias)."""
    E = int(kw.get("n_experts") or 0)
    out = dict(
        E=E,
        k=int(kw.get("top_k") or 0) if E else 0,
        shared=int(kw.get("n_shared_experts") or 0) if E else 0,
        moe_hidden=int(kw.get("expert_hidden") or hidden),
        first_dense=int(kw.get("first_dense") or 0) if E else 0,
        router_bias=bool(kw.get("router_bias", False)) and E > 0,
    )
    if E < 0:
        raise ConfigError("n_experts", E, "an integer >= 0")
    if E and not 1 <= out["k"] <= E:
        raise ConfigError("top_k", out["k"], f"between 1 and n_experts={E}")
    return out


def _mla_shape(kw: dict[str, Any], head_dim: int) -> dict[str, Any]:
    """Multi-head latent attention (DeepSeek-V2/V3, Moonlight) when kv_lora_rank is given: head_dim
    is the no-RoPE part of a query/key head, qk_rope_head_dim its RoPE part, v_head_dim a value
    head (default head_dim), q_lora_rank the query's low-rank size (None: a full q projection)."""
    kv_lora = kw.get("kv_lora_rank")
    if kv_lora is None:
        return dict(mla=False)
    check_positive("kv_lora_rank", kv_lora, integer=True)
    return dict(
        mla=True,
        kv_lora=int(kv_lora),
        q_lora=kw.get("q_lora_rank"),
        rope=int(kw.get("qk_rope_head_dim") or 0),
        v_dim=int(kw.get("v_head_dim") or head_dim),
    )


def _layer_kinds(g: dict[str, Any]) -> list[tuple[int, int]]:
    """(a block's index, how many blocks are like it): the leading dense blocks and the MoE
    blocks after them. Every block of a kind has the same count, so a count is a product,
    not a loop over the depth (the planner's shape search counts thousands of shapes)."""
    L = g["L"]
    dense = min(g["first_dense"], L) if g["E"] else L
    return [(i, n) for i, n in ((0, dense), (dense, L - dense)) if n > 0]


def _attn_matmul_params(g: dict[str, Any]) -> int:
    """Weights of one attention block's projections (GQA, or MLA)."""
    d, nh, hd = g["d"], g["n_head"], g["head_dim"]
    if not g["mla"]:
        return d * nh * hd * 2 + d * g["n_kv"] * hd * 2  # q, o and k, v
    qk = hd + g["rope"]
    q = d * g["q_lora"] + g["q_lora"] * nh * qk if g["q_lora"] else d * nh * qk
    kv = d * (g["kv_lora"] + g["rope"]) + g["kv_lora"] * nh * (hd + g["v_dim"])
    return q + kv + nh * g["v_dim"] * d


def _attn_vectors(g: dict[str, Any]) -> int:
    """Norm gains inside attention: MLA's norms of its latent (and of the query's)."""
    return (g["kv_lora"] + (g["q_lora"] or 0)) if g["mla"] else 0


def _attn_context_flops(g: dict[str, Any], ctx: float) -> float:
    """Forward FLOPs per token of the scores q.k and the weighted sum of values."""
    nh = g["n_head"]
    qk = g["head_dim"] + (g["rope"] if g["mla"] else 0)
    v = g["v_dim"] if g["mla"] else g["head_dim"]
    return 2.0 * nh * (qk + v) * ctx


def _mlp_matmul_params(g: dict[str, Any], layer: int, active: bool) -> int:
    """Weights of block ``layer``'s MLP: dense SwiGLU, or router + routed experts (all of them,
    or the top_k a token uses when ``active``) + shared experts."""
    d = g["d"]
    if not g["E"] or layer < g["first_dense"]:
        return 3 * d * g["hidden"]
    routed = (g["k"] if active else g["E"]) * 3 * d * g["moe_hidden"]
    return d * g["E"] + routed + 3 * d * g["shared"] * g["moe_hidden"]


def spec_shape(spec: ModelSpec) -> dict[str, Any]:
    """The count's keywords for a ModelSpec at its width: heads, GQA and hidden sizes resolved
    by the spec itself (so a count and the model built from the spec cannot disagree)."""
    return dict(
        d_model=spec.width,
        n_layer=spec.depth,
        n_head=spec.heads,
        head_dim=spec.head_size,
        n_kv_head=spec.kv_heads,
        mlp_hidden=spec.ffn_hidden,
        vocab_size=spec.vocab_size,
        seq_len=spec.seq_len,
        tie_embeddings=spec.tie_embeddings,
        n_experts=spec.n_experts,
        top_k=spec.top_k,
        n_shared_experts=spec.n_shared_experts,
        expert_hidden=spec.moe_hidden,
        first_dense=spec.first_dense,
    )


def _as_kwargs(cfg: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    if cfg is None:
        return dict(kwargs)
    if isinstance(cfg, ModelSpec):
        return {**spec_shape(cfg), **kwargs}
    src = cfg if isinstance(cfg, dict) else vars(cfg)
    return {**src, **kwargs}


def gpt_params(
    cfg: Any = None, *, embeddings: bool = True, active: bool = False, **kwargs: Any
) -> int:
    """Parameter count of the built-in GPT (SwiGLU, GQA, RMSNorm gains, optional tied
    embeddings; MoE blocks: router, experts, shared experts; MLA attention when kv_lora_rank
    is given). ``active``: the parameters one token uses (top_k of the routed experts, every
    other tensor), as MoE papers count "activated" parameters."""
    g = _gpt_shape(_as_kwargs(cfg, kwargs))
    d = g["d"]
    body = d  # final norm
    for layer, n in _layer_kinds(g):
        moe = g["E"] and layer >= g["first_dense"]
        block = _attn_matmul_params(g) + _attn_vectors(g) + 2 * d  # + two RMSNorm gains
        block += _mlp_matmul_params(g, layer, active) + (g["E"] if moe and g["router_bias"] else 0)
        body += n * block
    if not embeddings:
        return body
    return body + g["V"] * d * (1 if g["tied"] else 2)


def gpt_exact_flops_per_token(cfg: Any = None, *, causal: bool = True, **kwargs: Any) -> float:
    """Exact matmul training FLOPs per token of the built-in GPT (fwd + bwd = 3 x forward).

    Counts every matmul (2 FLOPs per multiply-add): q/k/v/o (GQA-sized k, v; or MLA's
    projections), attention scores and the weighted sum over the context, SwiGLU gate/up/down
    (an MoE block: the router, the top_k routed experts a token goes to and the shared ones)
    and the LM head. The embedding lookup is a gather (0 FLOPs) whether or not it is tied to
    the head. With causal=True each query attends on average to (s + 1)/2 keys, as a causal
    kernel skips the masked half. Norms, RoPE, softmax and the gates' weighting are O(d) per
    token and left out, as in Megatron. Accepts GPTConfig-like kwargs, a GPTConfig/RunConfig
    object, or a dict.
    """
    g = _gpt_shape(_as_kwargs(cfg, kwargs))
    s = g["s"]
    ctx = (s + 1) / 2.0 if causal else float(s)
    forward = 2.0 * g["d"] * g["V"]  # the head
    for layer, n in _layer_kinds(g):
        weights = _attn_matmul_params(g) + _mlp_matmul_params(g, layer, active=True)
        forward += n * (2.0 * weights + _attn_context_flops(g, ctx))
    return 3.0 * forward


def spec_flops_per_token(spec: ModelSpec) -> float:
    """Training FLOPs per token of the built-in GPT a ModelSpec describes (the exact count,
    causal attention): what MFU and the planner's exact compute use."""
    return gpt_exact_flops_per_token(spec, causal=True)


def md_flops_per_token(spec: ModelSpec) -> float:
    """DeepSeek LLM's non-embedding FLOPs per token M (Bi et al. 2024, eq. 2: M = 72 n_layer
    d^2 + 12 n_layer d l_seq, its d_ff = 8/3 d GPT). An MoE has no such closed form: its M is
    counted the same way, exactly, from what a token uses: 6 x (attention weights + router +
    top_k routed and the shared experts' weights) per layer, plus the same 12 n_layer d l_seq
    attention term (DeepSeek-MoE's convention; the dense formula undercounts its experts)."""
    if not spec.n_experts:
        return flops_per_token("deepseek", spec.depth, spec.width, spec.seq_len)
    g = _gpt_shape(spec_shape(spec))
    weights = sum(
        n * (_attn_matmul_params(g) + _mlp_matmul_params(g, layer, active=True))
        for layer, n in _layer_kinds(g)
    )
    return 6.0 * weights + 12.0 * g["L"] * g["d"] * g["s"]


def available_memory() -> float | None:
    """Bytes of memory this machine can still give a process (Linux's MemAvailable), None
    where it does not say: what a run's or a bootstrap's memory check compares against."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak_flops(device: str | float) -> float:
    """Peak FLOP/s of a device name from GPU_PEAK_FLOPS, or a user-given positive number."""
    if isinstance(device, (int, float)) and not isinstance(device, bool):
        check_positive("peak", device)
        return float(device)
    key = str(device).replace(" ", "").replace("_", "-")
    for name, value in GPU_PEAK_FLOPS.items():
        if name.lower() == key.lower():
            return value
    raise ConfigError("peak", device, "a number of FLOP/s or one of " + ", ".join(GPU_PEAK_FLOPS))


def mfu(
    tokens_per_s: float, flops_per_token: float, peak: str | float, n_devices: int = 1
) -> float:
    """Model FLOPs utilisation: achieved training FLOP/s over the devices' combined peak."""
    check_positive("tokens_per_s", tokens_per_s)
    check_positive("flops_per_token", flops_per_token)
    check_positive("n_devices", n_devices, integer=True)
    return tokens_per_s * flops_per_token / (peak_flops(peak) * n_devices)


def tokens_per_s_at_mfu(
    flops_per_token: float, peak: str | float, mfu: float = 0.4, n_devices: int = 1
) -> float:
    """Throughput a run reaches at a given MFU (for planning wall time)."""
    check_positive("flops_per_token", flops_per_token)
    return _check_mfu(mfu) * peak_flops(peak) * n_devices / flops_per_token


def training_time_s(
    total_flops: float, peak: str | float, mfu: float = 0.4, n_devices: int = 1
) -> float:
    """Wall time in seconds to spend `total_flops` at the given MFU."""
    check_positive("total_flops", total_flops)
    return total_flops / (_check_mfu(mfu) * peak_flops(peak) * n_devices)


def _check_mfu(mfu: float) -> float:
    if not 0 < mfu <= 1:
        raise ConfigError("mfu", mfu, "a fraction in (0, 1]")
    return mfu


__all__ = [
    "FORMULAS",
    "available_memory",
    "GPU_PEAK_FLOPS",
    "GPU_MEMORY_GIB",
    "device_peak_flops",
    "gpu_memory_gib",
    "flops_per_token",
    "gpt_exact_flops_per_token",
    "gpt_params",
    "kaplan_params",
    "md_flops_per_token",
    "mfu",
    "peak_flops",
    "spec_flops_per_token",
    "spec_shape",
    "tokens_per_s_at_mfu",
    "training_time_s",
]
