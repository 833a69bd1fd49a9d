"""ModelSpec: the model's shape and architecture, one record for every stage that builds,
counts or plans a model (train, the coordinate check, `sizeup flops`, the planner).

The family (``name``) is a registry entry (sizeup.registry: how it is built, its data, its FLOPs);
the other fields are the transformer's (the GPT's; the MLP reads width and depth). ``at(width,
depth)`` is the one place that says how the architecture changes with width and depth: the base
and delta models of a run, the coordinate check's widths, the planner's family shapes and its
proxy all come from it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from sizeup.choices import AttnScale
from sizeup.config.fields import DEPTH, DIM, MAX_DIM, Record, non_negative, positive, spec
from sizeup.errors import ConfigError
from sizeup.registry import get_model, model_names


@dataclass(frozen=True)
class ModelSpec(Record):
    """What model a run trains (or a plan plans): its family, width, depth and architecture."""

    SECTION = "model"
    SHORTHAND = "name"

    name: str = spec(
        "gpt",
        "Model family (sizeup.registry): gpt (byte-level LM) or mlp (teacher classification).",
        flat="model",
        choices=model_names,
    )
    width: int = spec(128, "d_model (GPT) or hidden width (MLP).", aliases=("d_model",), bounds=DIM)
    depth: int = spec(
        2, "Transformer blocks, or hidden layers of the MLP.", aliases=("n_layer",), bounds=DEPTH
    )
    head_dim: int = spec(
        32, "Head size; width / head_dim heads at every width (unless n_head).", bounds=DIM
    )
    n_head: int | None = spec(
        None,
        "A fixed number of heads instead: head_dim = width / n_head grows with width "
        "(muP's infinite-width limit).",
        bounds=DIM,
    )
    n_kv_head: int | None = spec(
        None,
        "Key/value heads (GQA) at this width (None: one per head); other widths keep the ratio.",
        bounds=DIM,
    )
    seq_len: int = spec(128, "Context length in tokens.", bounds=DIM)
    vocab_size: int = spec(256, "Vocabulary size (256: bytes).", bounds=DIM)
    mlp_ratio: float = spec(8 / 3, "SwiGLU hidden size / width (unless d_ff).")
    d_ff: int | None = spec(
        None,
        "SwiGLU hidden size at this width (None: round(mlp_ratio x width)); other widths "
        "scale it in proportion.",
        bounds=DIM,
    )
    attn_scale: AttnScale = spec("1/d", "Attention logit scale: 1/d (muP) or 1/sqrt(d) (SP).")
    qk_norm: bool = spec(False, "RMSNorm on queries and keys (per head).")
    tie_embeddings: bool = spec(False, "Tie the LM head to the input embedding.")
    z_loss: float = spec(0.0, "z-loss coefficient (PaLM): z_loss x mean(log Z)^2.")
    n_experts: int = spec(0, "MoE: routed experts per MoE block (0: dense).")
    top_k: int = spec(2, "MoE: experts per token.")
    n_shared_experts: int = spec(0, "MoE: always-active (shared) experts.")
    expert_hidden: int | None = spec(
        None, "MoE: each expert's hidden size at this width (None: the dense d_ff).", bounds=DIM
    )
    first_dense: int = spec(0, "MoE: leading blocks that stay dense.")

    def check(self) -> None:
        """Positive sizes, then the family's own constraints (heads, GQA, MoE)."""
        positive(self, "width", "depth", "head_dim", "seq_len", "vocab_size", integer=True)
        positive(self, "n_head", "n_kv_head", "d_ff", "expert_hidden", "top_k", integer=True)
        positive(self, "mlp_ratio")
        non_negative(self, "z_loss", "n_experts", "n_shared_experts", "first_dense")
        if get_model(self.name).heads:
            self._check_heads()
            self._check_ffn()
            if self.n_experts and self.top_k > self.n_experts:
                raise ConfigError("top_k", self.top_k, f"at most n_experts={self.n_experts}")

    def _check_heads(self) -> None:
        if self.n_head is not None:
            if self.width % self.n_head:
                raise ConfigError("width", self.width, f"a multiple of n_head={self.n_head}")
            implied = self.width // self.n_head
            if self.head_dim not in (implied, _default("head_dim")):
                raise ConfigError(
                    "head_dim",
                    self.head_dim,
                    f"width / n_head = {implied} with n_head={self.n_head} (or leave it out)",
                )
        elif self.width % self.head_dim:
            raise ConfigError("width", self.width, f"a multiple of head_dim={self.head_dim}")
        if self.head_size % 2:
            raise ConfigError("head_dim", self.head_size, "an even number (RoPE rotates pairs)")
        if self.heads % self.kv_heads:
            raise ConfigError("n_kv_head", self.n_kv_head, f"a divisor of n_head={self.heads}")

    def _check_ffn(self) -> None:
        for name, hidden in (("mlp_ratio", self.ffn_hidden), ("expert_hidden", self.moe_hidden)):
            if hidden > MAX_DIM:  # d_ff from mlp_ratio x width is a tensor dimension too
                raise ConfigError(
                    name,
                    getattr(self, name),
                    f"a hidden size of at most {MAX_DIM:,} ({DIM.why}; it is {hidden:,})",
                )
        if self.d_ff is None or self.mlp_ratio == _default("mlp_ratio"):
            return
        if round(self.mlp_ratio * self.width) != self.d_ff:
            raise ConfigError(
                "mlp_ratio",
                self.mlp_ratio,
                f"d_ff / width = {self.d_ff / self.width:.6g} with d_ff={self.d_ff} (or leave "
                "it out)",
            )

    # --- derived ---------------------------------------------------------------------------
    @property
    def heads(self) -> int:
        """Attention heads at this width."""
        return self.n_head if self.n_head is not None else self.width // self.head_dim

    @property
    def head_size(self) -> int:
        """Each head's dimension at this width."""
        return self.width // self.heads

    @property
    def kv_heads(self) -> int:
        """Key/value heads at this width (GQA), n_head without GQA."""
        return self.n_kv_head if self.n_kv_head is not None else self.heads

    @property
    def ffn_hidden(self) -> int:
        """The dense SwiGLU hidden size at this width (d_ff, else round(mlp_ratio x width))."""
        return self.d_ff if self.d_ff is not None else round(self.mlp_ratio * self.width)

    @property
    def moe_hidden(self) -> int:
        """One expert's hidden size (expert_hidden, else the dense hidden size)."""
        return self.expert_hidden or self.ffn_hidden

    def is_moe(self, layer: int) -> bool:
        """Whether block ``layer`` is an MoE block."""
        return self.n_experts > 0 and layer >= self.first_dense

    @property
    def tokens_per_example(self) -> int:
        """Tokens per example: seq_len for a token model, 1 for the teacher task's MLP."""
        return self.seq_len if get_model(self.name).data == "tokens" else 1

    def at(
        self, width: int | None = None, depth: int | None = None, head_dim: int | None = None
    ) -> ModelSpec:
        """The same architecture at another width and depth: head_dim (or the head count with
        n_head; or ``head_dim`` given) kept, the GQA ratio kept where the head count allows
        (else one key/value head per head), d_ff and expert_hidden in proportion to the width;
        vocabulary, context, norms and the expert count unchanged."""
        w = self.width if width is None else width
        d = self.depth if depth is None else depth
        hd = self.head_dim if head_dim is None else head_dim
        if self.n_head is not None and head_dim is None:  # fixed heads: the head size grows
            hd = hd if hd == _default("head_dim") else w // self.n_head
        if w == self.width and hd == self.head_dim:
            return dataclasses.replace(self, depth=d)
        r = w / self.width
        changes: dict[str, object] = {"width": w, "depth": d, "head_dim": hd}
        for name in ("d_ff", "expert_hidden"):
            if getattr(self, name) is not None:
                changes[name] = max(1, round(getattr(self, name) * r))
        if self.n_kv_head is not None:
            heads = self.n_head if self.n_head is not None else max(1, w // hd)
            group = self.heads // self.kv_heads
            changes["n_kv_head"] = heads // group if heads % group == 0 else None
        return dataclasses.replace(self, **changes)


def _default(name: str) -> object:
    return next(f.default for f in dataclasses.fields(ModelSpec) if f.name == name)
