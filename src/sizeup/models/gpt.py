"""A small, modern GPT: RMSNorm, RoPE, SwiGLU, optional QK-norm, z-loss, GQA, tied or untied
embeddings, an optional mixture of experts, and F.scaled_dot_product_attention on the hot path.

The model initialises itself plainly (normal std ``GPTConfig.init_std`` = 0.02 for every matrix
and embedding, norm gains 1) and declares that std to sizeup (``sizeup_hints["init_std"]``), so
sizeup.parametrize takes it as the base model's sigma and only rescales what width changes.
Nothing here is muP-specific except the attention scale option ("1/d" is what muP wants,
"1/sqrt(d)" is standard practice).

Module names are a contract: parametrization roles, coordinate checks and FLOP counts find
tensors by them (wte, blocks.{i}.attn.q/k/v/o, blocks.{i}.attn.logits, blocks.{i}.mlp.gate/up/down,
ln_f, lm_head; in an MoE block blocks.{i}.mlp.router, blocks.{i}.mlp.experts.gate/up/down as 3-D
tensors (experts, out, in), blocks.{i}.mlp.shared.gate/up/down).

The MoE (``n_experts > 0``) is DeepSeek-MoE's (Dai et al. 2024, arXiv:2401.06066): token-choice
top-k over fine-grained experts of hidden size ``expert_hidden`` with softmax gates (not
renormalised over the top k), ``n_shared_experts`` always-active experts (one SwiGLU of
n_shared x expert_hidden), and the first ``first_dense`` blocks dense (first_k_dense_replace). A
reference for sizeup's MoE rules (each expert scales as its dense matrix, the router as a readout
over a fixed number of experts), not a fast kernel: experts run one after another.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from sizeup.choices import ATTN_SCALES
from sizeup.config.model import ModelSpec
from sizeup.errors import ConfigError, check_choice, check_positive

INIT_STD = 0.02  # the default GPTConfig.init_std (GPT-2's)
ROPE_BASE = 10000.0


@dataclass
class GPTConfig:
    """Shape and options of a GPT. Give n_head or head_dim (n_head = d_model // head_dim)."""

    d_model: int
    n_layer: int
    n_head: int | None = None
    head_dim: int | None = None
    n_kv_head: int | None = None  # None: n_head (plain multi-head attention); fewer: GQA
    vocab_size: int = 256
    seq_len: int = 128
    mlp_ratio: float = 8 / 3  # SwiGLU hidden = round(mlp_ratio * d_model)
    attn_scale: str = "1/d"
    qk_norm: bool = False
    tie_embeddings: bool = False
    z_loss: float = 0.0
    init_std: float = INIT_STD  # std of every matrix and embedding at init (declared to sizeup)
    n_experts: int = 0  # 0: dense SwiGLU blocks; > 0: routed experts per MoE block
    top_k: int = 2  # experts per token
    n_shared_experts: int = 0  # always-active experts (DeepSeek-MoE)
    expert_hidden: int | None = None  # each expert's SwiGLU hidden size (default mlp_hidden)
    first_dense: int = 0  # leading blocks that stay dense (DeepSeek's first_k_dense_replace)

    def __post_init__(self) -> None:
        for name in ("d_model", "n_layer", "vocab_size", "seq_len"):
            check_positive(name, getattr(self, name), integer=True)
        self._check_moe()
        check_choice("attn_scale", self.attn_scale, ATTN_SCALES)
        check_positive("mlp_ratio", self.mlp_ratio)
        check_positive("init_std", self.init_std)
        if self.z_loss < 0:
            raise ConfigError("z_loss", self.z_loss, "a number >= 0")
        self._resolve_heads()

    def _resolve_heads(self) -> None:
        """n_head, head_dim and n_kv_head from whichever were given; head_dim wins when both
        are given and agree; default head_dim 64 (or d_model)."""
        if self.n_head is None and self.head_dim is None:
            self.head_dim = min(64, self.d_model)
        if self.head_dim is not None:
            check_positive("head_dim", self.head_dim, integer=True)
            if self.d_model % self.head_dim:
                raise ConfigError(
                    "d_model", self.d_model, f"a multiple of head_dim={self.head_dim}"
                )
            n_head = self.d_model // self.head_dim
            if self.n_head is not None and self.n_head != n_head:
                raise ConfigError(
                    "n_head", self.n_head, f"d_model // head_dim = {n_head} (or leave n_head unset)"
                )
            self.n_head = n_head
        else:
            check_positive("n_head", self.n_head, integer=True)
            if self.d_model % self.n_head:
                raise ConfigError("d_model", self.d_model, f"a multiple of n_head={self.n_head}")
            self.head_dim = self.d_model // self.n_head
        if self.head_dim % 2:
            raise ConfigError("head_dim", self.head_dim, "an even number (RoPE rotates pairs)")
        if self.n_kv_head is None:
            self.n_kv_head = self.n_head
        check_positive("n_kv_head", self.n_kv_head, integer=True)
        if self.n_head % self.n_kv_head:
            raise ConfigError("n_kv_head", self.n_kv_head, f"a divisor of n_head={self.n_head}")

    def _check_moe(self) -> None:
        """The MoE fields, each with a ConfigError naming it."""
        for name in ("n_experts", "n_shared_experts", "first_dense"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(name, v, "an integer >= 0")
        if not self.n_experts:
            return
        check_positive("top_k", self.top_k, integer=True)
        if self.top_k > self.n_experts:
            raise ConfigError("top_k", self.top_k, f"at most n_experts={self.n_experts}")
        if self.expert_hidden is not None:
            check_positive("expert_hidden", self.expert_hidden, integer=True)

    @property
    def mlp_hidden(self) -> int:
        """Width of the SwiGLU hidden layer."""
        return round(self.mlp_ratio * self.d_model)

    @property
    def moe_hidden(self) -> int:
        """Hidden size of one expert (expert_hidden, default mlp_hidden)."""
        return self.expert_hidden or self.mlp_hidden

    def is_moe(self, layer: int) -> bool:
        """Whether block ``layer`` is an MoE block."""
        return self.n_experts > 0 and layer >= self.first_dense

    def to_dict(self) -> dict:
        """Plain dict of every field (JSON-safe)."""
        return asdict(self)


class RMSNorm(nn.Module):
    """Root-mean-square norm with a learnable gain (no bias, no mean subtraction)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the gain in the input's dtype: under bf16 autocast x arrives in bf16 and a float32
        # gain keeps torch off its fused kernel (it warns "Mismatch dtype"); in float32 a no-op
        return F.rms_norm(x, (x.shape[-1],), self.weight.to(x.dtype), self.eps)


def rope_tables(
    seq_len: int, head_dim: int, base: float = ROPE_BASE
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables, shape (seq_len, head_dim/2), for rotary position embeddings (Su et al. 2021)."""
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float64), inv_freq)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each pair (x[2i], x[2i+1]) of x (..., T, D) by the angles whose cos/sin are (T, D/2)."""
    if torch.compiler.is_compiling():
        # Inductor generates no code for complex ops; the real form fuses into one kernel there.
        return rope_real(x, cos, sin)
    # Eager: one complex multiply is ~4x faster on CPU than the real form (split, 4 mul, stack).
    xf = x if x.dtype in (torch.float32, torch.float64) else x.float()
    if cos.dtype != xf.dtype:
        cos, sin = cos.to(xf.dtype), sin.to(xf.dtype)
    xc = torch.view_as_complex(xf.unflatten(-1, (-1, 2)))
    return torch.view_as_real(xc * torch.complex(cos, sin)).flatten(-2).to(x.dtype)


def rope_real(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """The same rotation as apply_rope in real arithmetic (used under torch.compile)."""
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


class Attention(nn.Module):
    """Causal self-attention with RoPE, optional QK-norm and grouped key/value heads."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim = cfg.n_head, cfg.n_kv_head, cfg.head_dim
        d, hd = cfg.d_model, cfg.head_dim
        self.q = nn.Linear(d, self.n_head * hd, bias=False)
        self.k = nn.Linear(d, self.n_kv_head * hd, bias=False)
        self.v = nn.Linear(d, self.n_kv_head * hd, bias=False)
        self.o = nn.Linear(self.n_head * hd, d, bias=False)
        # QK-norm: RMSNorm over each head's vector, one gain shared by all heads.
        self.q_norm = RMSNorm(hd) if cfg.qk_norm else None
        self.k_norm = RMSNorm(hd) if cfg.qk_norm else None
        # muP (Tensor Programs V, sec. 4) scales logits by 1/d_head; SP uses 1/sqrt(d_head).
        self.scale = 1.0 / hd if cfg.attn_scale == "1/d" else 1.0 / math.sqrt(hd)
        # Hook point for the attention scores; only used on the explicit path.
        self.logits = nn.Identity()
        self.record_logits = False

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.q(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        k = self.k(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
        v = self.v(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        gqa = self.n_kv_head != self.n_head
        if self.record_logits:
            y = self._explicit(q, k, v)
        else:
            y = F.scaled_dot_product_attention(
                q, k, v, is_causal=True, scale=self.scale, enable_gqa=gqa
            )
        return self.o(y.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim))

    def _explicit(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        # Same maths as the fused kernel, written out so forward hooks on `logits` see the
        # scores (before the causal mask, so they hold no -inf).
        if self.n_kv_head != self.n_head:
            rep = self.n_head // self.n_kv_head
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        T = q.shape[-2]
        scores = self.logits((q @ k.transpose(-2, -1)) * self.scale)
        future = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)
        att = scores.masked_fill(future, float("-inf")).softmax(dim=-1)
        return att @ v


class SwiGLU(nn.Module):
    """Gated MLP: down(silu(gate(x)) * up(x)) (Shazeer 2020)."""

    def __init__(self, d_model: int, hidden: int):
        super().__init__()
        self.gate = nn.Linear(d_model, hidden, bias=False)
        self.up = nn.Linear(d_model, hidden, bias=False)
        self.down = nn.Linear(hidden, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Experts(nn.Module):
    """``n`` SwiGLU experts stored as 3-D tensors (experts, out, in), as transformers >= 5 stores
    them: sizeup scales each expert as the dense (out, in) matrix it is, and Muon orthogonalises
    each on its own."""

    def __init__(self, n: int, d_model: int, hidden: int):
        super().__init__()
        self.gate = nn.Parameter(torch.empty(n, hidden, d_model))
        self.up = nn.Parameter(torch.empty(n, hidden, d_model))
        self.down = nn.Parameter(torch.empty(n, d_model, hidden))

    def forward(self, x: torch.Tensor, idx: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """x (N, d); idx, weight (N, k): each token's experts and gates. Sum of gated outputs."""
        out = torch.zeros_like(x)
        for e in range(self.gate.shape[0]):
            tok, slot = (idx == e).nonzero(as_tuple=True)
            if tok.numel() == 0:
                continue
            h = x[tok]
            y = F.linear(F.silu(F.linear(h, self.gate[e])) * F.linear(h, self.up[e]), self.down[e])
            out.index_add_(0, tok, y * weight[tok, slot, None].to(y.dtype))
        return out


class MoE(nn.Module):
    """DeepSeek-MoE block: softmax router over n_experts, top-k gates (not renormalised), plus
    the shared experts every token uses."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.top_k = cfg.top_k
        self.router = nn.Linear(cfg.d_model, cfg.n_experts, bias=False)
        self.experts = Experts(cfg.n_experts, cfg.d_model, cfg.moe_hidden)
        shared = cfg.n_shared_experts * cfg.moe_hidden
        self.shared = SwiGLU(cfg.d_model, shared) if shared else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        probs = self.router(flat).float().softmax(dim=-1)
        weight, idx = probs.topk(self.top_k, dim=-1)
        y = self.experts(flat, idx, weight)
        if self.shared is not None:
            y = y + self.shared(flat)
        return y.view_as(x)


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln1(x)), then x + mlp(ln2(x)) (an MoE block's mlp
    is a MoE)."""

    def __init__(self, cfg: GPTConfig, layer: int = 0):
        super().__init__()
        self.ln1 = RMSNorm(cfg.d_model)
        self.attn = Attention(cfg)
        self.ln2 = RMSNorm(cfg.d_model)
        self.mlp = MoE(cfg) if cfg.is_moe(layer) else SwiGLU(cfg.d_model, cfg.mlp_hidden)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), cos, sin)
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """Decoder-only byte-level language model; forward(idx, targets) -> (logits, loss)."""

    # What sizeup.parametrize reads: fnmatch patterns over module names (residual branches for
    # depth scaling, queries for zero init, blocks for depth counting) and the std every matrix
    # gets from reset_parameters (the base sigma; gains keep their 1). An instance's copy carries
    # its own config.init_std.
    sizeup_hints = {
        "residual_out": [
            "blocks.*.attn.o",
            "blocks.*.mlp.down",
            "blocks.*.mlp.experts",
            "blocks.*.mlp.shared.down",
        ],
        "query": ["blocks.*.attn.q"],
        "router": ["blocks.*.mlp.router"],
        "block": ["blocks.*"],
        "roles": {},
        "init_std": INIT_STD,
        "final_norm": "ln_f",  # export folds a tied readout's multiplier into its gain
    }

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.sizeup_hints = {**GPT.sizeup_hints, "init_std": config.init_std}
        self.wte = nn.Embedding(config.vocab_size, config.d_model)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.ln_f = RMSNorm(config.d_model)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_embeddings:
            # One tensor, seen by both modules; parametrize detects the tie and gives the
            # readout its own forward multiplier.
            self.lm_head.weight = self.wte.weight
        cos, sin = rope_tables(config.seq_len, config.head_dim)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Plain init: normal(0, config.init_std) for every matrix, expert and embedding, ones
        for norm gains."""
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=self.config.init_std)
            elif isinstance(m, Experts):
                for p in m.parameters():
                    nn.init.normal_(p, std=self.config.init_std)
            elif isinstance(m, RMSNorm):
                nn.init.ones_(m.weight)

    @property
    def record_attn_logits(self) -> bool:
        """When True, attention is computed explicitly and scores pass through blocks.*.attn.logits."""
        return bool(self.blocks) and self.blocks[0].attn.record_logits

    @record_attn_logits.setter
    def record_attn_logits(self, on: bool) -> None:
        for b in self.blocks:
            b.attn.record_logits = bool(on)

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (B, T, vocab) and, with targets, mean cross-entropy (+ z_loss * mean lse^2)."""
        T = idx.shape[1]
        if T > self.config.seq_len:
            raise ConfigError("sequence length", T, f"at most seq_len={self.config.seq_len}")
        cos, sin = self.rope_cos[:T], self.rope_sin[:T]
        x = self.wte(idx)
        for block in self.blocks:
            x = block(x, cos, sin)
        logits = self.lm_head(self.ln_f(x))
        if targets is None:
            return logits, None
        return logits, lm_loss(logits, targets, self.config.z_loss)

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Sample max_new_tokens after the prompt idx (B, T); temperature 0 means greedy."""
        for _ in range(max_new_tokens):
            # No KV cache: recompute over the last seq_len tokens (fine for small models).
            logits = self(idx[:, -self.config.seq_len :])[0][:, -1, :]
            if temperature == 0:
                nxt = logits.argmax(dim=-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k is not None:
                    kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                nxt = torch.multinomial(logits.softmax(dim=-1), 1, generator=generator)
            idx = torch.cat((idx, nxt), dim=1)
        return idx


def lm_loss(
    logits: torch.Tensor, targets: torch.Tensor, z_loss: float | torch.Tensor
) -> torch.Tensor:
    """Mean cross-entropy of ``logits`` (..., vocab) against ``targets``, plus z-loss x mean
    lse^2 when z_loss is not 0 (a tensor, as a stack of trials gives each member's, is always
    added: 0 x lse^2 adds exactly nothing)."""
    flat = logits.view(-1, logits.shape[-1])
    loss = F.cross_entropy(flat, targets.reshape(-1))
    if isinstance(z_loss, torch.Tensor) or z_loss:
        # z-loss (PaLM, Chowdhery et al. 2022, sec. 5): keeps log Z near 0 for stability.
        loss = loss + z_loss * flat.logsumexp(dim=-1).square().mean()
    return loss


def gpt_config(spec: ModelSpec) -> GPTConfig:
    """The GPTConfig a ModelSpec describes, at its width: heads, GQA and hidden sizes resolved
    by the spec (ModelSpec.at says how they change with width)."""
    return GPTConfig(
        d_model=spec.width,
        n_layer=spec.depth,
        n_head=spec.heads,
        n_kv_head=spec.kv_heads,
        vocab_size=spec.vocab_size,
        seq_len=spec.seq_len,
        mlp_ratio=spec.ffn_hidden / spec.width,
        attn_scale=spec.attn_scale,
        qk_norm=spec.qk_norm,
        tie_embeddings=spec.tie_embeddings,
        z_loss=spec.z_loss,
        n_experts=spec.n_experts,
        top_k=spec.top_k,
        n_shared_experts=spec.n_shared_experts,
        expert_hidden=spec.expert_hidden if spec.n_experts else None,
        first_dense=spec.first_dense,
    )


def from_spec(spec: ModelSpec) -> GPT:
    """The GPT a ModelSpec describes (its registry builder, sizeup.registry)."""
    return GPT(gpt_config(spec))
