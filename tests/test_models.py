"""Reference models: shapes, causality, fast == explicit attention, tying, GQA, options."""

from __future__ import annotations

import math

import pytest
import torch

from sizeup.config import RunConfig
from sizeup.errors import ConfigError, SizeupError
from sizeup.models import GPT, MLP, GPTConfig, build_model, gpt_config, num_params
from sizeup.models.gpt import apply_rope, rope_real, rope_tables

torch.set_num_threads(1)


def tiny(**kw) -> GPT:
    torch.manual_seed(0)
    base = dict(d_model=32, n_layer=2, head_dim=8, vocab_size=64, seq_len=16)
    return GPT(GPTConfig(**{**base, **kw}))


def tokens(b=3, t=16, vocab=64, seed=1) -> torch.Tensor:
    return torch.randint(0, vocab, (b, t), generator=torch.Generator().manual_seed(seed))


def test_shapes_and_initial_loss_near_log_vocab():
    m = tiny()
    idx = tokens()
    logits, loss = m(idx, idx)
    assert logits.shape == (3, 16, 64)
    # With std-0.02 weights the logits are ~0, so the loss is ~ln(vocab) (uniform prediction).
    assert abs(loss.item() - math.log(64)) < 0.05
    logits2, none = m(idx)
    assert none is None and torch.equal(logits, logits2)


def test_shorter_sequences_and_too_long_raise():
    m = tiny()
    assert m(tokens(t=5))[0].shape == (3, 5, 64)
    with pytest.raises(ConfigError, match="seq_len=16"):
        m(tokens(t=17))


def test_module_names_follow_the_contract():
    m = tiny(n_layer=1)
    names = dict(m.named_modules())
    for n in [
        "wte",
        "blocks.0.ln1",
        "blocks.0.attn.q",
        "blocks.0.attn.k",
        "blocks.0.attn.v",
        "blocks.0.attn.o",
        "blocks.0.attn.logits",
        "blocks.0.ln2",
        "blocks.0.mlp.gate",
        "blocks.0.mlp.up",
        "blocks.0.mlp.down",
        "ln_f",
        "lm_head",
    ]:
        assert n in names, n
    assert isinstance(names["wte"], torch.nn.Embedding)
    assert isinstance(names["blocks.0.attn.logits"], torch.nn.Identity)
    for n in ["blocks.0.attn.q", "blocks.0.mlp.down", "lm_head"]:
        assert names[n].bias is None
    assert GPT.sizeup_hints["residual_out"] == [
        "blocks.*.attn.o",
        "blocks.*.mlp.down",
        "blocks.*.mlp.experts",  # an MoE block's branches (tests/test_moe.py)
        "blocks.*.mlp.shared.down",
    ]
    # SwiGLU hidden = round(8/3 * 32) = 85
    assert m.blocks[0].mlp.gate.weight.shape == (85, 32)


def test_plain_init():
    m = tiny(d_model=128, head_dim=32)
    w = m.blocks[0].mlp.up.weight
    assert abs(w.std().item() - 0.02) < 0.001
    assert torch.equal(m.ln_f.weight, torch.ones(128))


@pytest.mark.parametrize(
    "kw", [{}, {"qk_norm": True}, {"n_kv_head": 2}, {"attn_scale": "1/sqrt(d)"}]
)
def test_causal_future_token_does_not_change_past_logits(kw):
    m = tiny(**kw).double()
    idx = tokens()
    changed = idx.clone()
    changed[:, 10] = (changed[:, 10] + 1) % 64
    a, b = m(idx)[0], m(changed)[0]
    assert torch.allclose(a[:, :10], b[:, :10], atol=1e-12)
    assert not torch.allclose(a[:, 10:], b[:, 10:])  # and the change is seen from position 10 on


@pytest.mark.parametrize(
    "kw", [{}, {"qk_norm": True}, {"n_kv_head": 1}, {"attn_scale": "1/sqrt(d)"}]
)
def test_explicit_attention_equals_fast_path_and_feeds_hooks(kw):
    m = tiny(**kw).double()
    idx = tokens()
    fast = m(idx)[0]
    seen = []
    m.blocks[1].attn.logits.register_forward_hook(lambda mod, i, o: seen.append(o.shape))
    m(idx)
    assert seen == []  # the fused path skips the Identity
    m.record_attn_logits = True
    assert m.record_attn_logits
    slow = m(idx)[0]
    assert seen == [(3, 4, 16, 16)]
    assert torch.allclose(fast, slow, atol=1e-10)


def test_attention_scale():
    # muP attention divides logits by d_head, SP by sqrt(d_head) (Tensor Programs V, sec. 4).
    assert tiny().blocks[0].attn.scale == 1 / 8
    assert tiny(attn_scale="1/sqrt(d)").blocks[0].attn.scale == 1 / math.sqrt(8)


def test_tied_embeddings_share_one_tensor():
    m = tiny(tie_embeddings=True)
    assert m.lm_head.weight is m.wte.weight
    untied = tiny()
    assert num_params(untied) - num_params(m) == 64 * 32
    # A step on the loss moves the single shared tensor, seen through both modules.
    opt = torch.optim.SGD(m.parameters(), lr=1.0)
    m(tokens(), tokens(seed=2))[1].backward()
    opt.step()
    assert m.lm_head.weight is m.wte.weight


def test_gqa_shapes_and_param_count():
    m = tiny(n_kv_head=2)  # 4 query heads share 2 key/value heads
    a = m.blocks[0].attn
    assert (a.n_head, a.n_kv_head) == (4, 2)
    assert (
        a.q.weight.shape == (32, 32)
        and a.k.weight.shape == (16, 32)
        and a.v.weight.shape == (16, 32)
    )
    # GQA equals MHA whose k/v heads are the repeated GQA heads.
    mha = tiny()
    sd = {
        k: v
        for k, v in m.state_dict().items()
        if not k.endswith(("attn.k.weight", "attn.v.weight"))
    }
    mha.load_state_dict(sd, strict=False)
    with torch.no_grad():
        for bm, bg in zip(mha.blocks, m.blocks, strict=True):
            for name in ("k", "v"):
                w = getattr(bg.attn, name).weight.view(2, 8, 32)
                getattr(bm.attn, name).weight.copy_(w.repeat_interleave(2, dim=0).reshape(32, 32))
    idx = tokens()
    assert torch.allclose(m(idx)[0], mha(idx)[0], atol=1e-5)


def test_z_loss_adds_mean_squared_logsumexp():
    m = tiny()
    with torch.no_grad():
        m.lm_head.weight.normal_(std=1.0)  # make log Z clearly non-zero
    idx, tgt = tokens(), tokens(seed=3)
    logits, plain = m(idx, tgt)
    m.config.z_loss = 1e-2
    _, with_z = m(idx, tgt)
    lse = torch.logsumexp(logits.view(-1, 64), dim=-1)
    assert torch.allclose(with_z - plain, 1e-2 * (lse**2).mean(), rtol=1e-5)


def test_rope_rotates_by_relative_position():
    # RoPE (Su et al. 2021): <R_m q, R_n k> depends on m - n only, and preserves norms.
    cos, sin = rope_tables(16, 8)
    q, k = torch.randn(8), torch.randn(8)
    rq = apply_rope(q.expand(16, 8), cos, sin)
    rk = apply_rope(k.expand(16, 8), cos, sin)
    assert torch.allclose(rq.norm(dim=-1), q.norm().expand(16), atol=1e-5)
    assert torch.allclose(rq[5] @ rk[2], rq[13] @ rk[10], atol=1e-5)
    assert torch.allclose(rq[0], q)  # position 0 is the identity
    # hand calculation: pair 0 turns by angle = position (theta_0 = 10000^0 = 1 rad per step)
    e0 = torch.tensor([1.0, 0, 0, 0, 0, 0, 0, 0])
    r = apply_rope(e0.expand(16, 8), cos, sin)
    assert torch.allclose(r[3, :2], torch.tensor([math.cos(3.0), math.sin(3.0)]), atol=1e-6)
    # pair 1 turns by 10000^(-2/8) = 0.1 rad per step
    e1 = torch.tensor([0, 0, 1.0, 0, 0, 0, 0, 0])
    r = apply_rope(e1.expand(16, 8), cos, sin)
    assert torch.allclose(r[5, 2:4], torch.tensor([math.cos(0.5), math.sin(0.5)]), atol=1e-6)
    # the real form used under torch.compile is the same rotation
    x = torch.randn(3, 2, 16, 8)
    assert torch.allclose(apply_rope(x, cos, sin), rope_real(x, cos, sin), atol=1e-6)


def test_dtypes():
    idx = tokens()
    m32 = tiny()
    m64 = tiny().double()
    assert m64(idx)[0].dtype == torch.float64
    assert torch.allclose(m32(idx)[0].double(), m64(idx)[0], atol=1e-5)
    mbf = tiny().to(torch.bfloat16)
    assert mbf(idx)[0].dtype == torch.bfloat16


def test_qk_norm_modules():
    m = tiny(qk_norm=True)
    names = dict(m.named_parameters())
    assert names["blocks.0.attn.q_norm.weight"].shape == (8,)
    assert "blocks.0.attn.k_norm.weight" in names


def test_head_resolution_and_errors():
    assert GPTConfig(d_model=64, n_layer=1, n_head=4).head_dim == 16
    assert GPTConfig(d_model=64, n_layer=1, head_dim=16).n_head == 4
    assert GPTConfig(d_model=256, n_layer=1).head_dim == 64
    with pytest.raises(ConfigError, match="d_model"):
        GPTConfig(d_model=60, n_layer=1, head_dim=16)
    with pytest.raises(ConfigError, match="n_kv_head"):
        GPTConfig(d_model=64, n_layer=1, head_dim=16, n_kv_head=3)
    with pytest.raises(ConfigError, match="attn_scale"):
        GPTConfig(d_model=64, n_layer=1, attn_scale="1/2")
    with pytest.raises(SizeupError, match="n_layer"):
        GPTConfig(d_model=64, n_layer=0)


def test_num_params_hand_count():
    # d=32, L=2, V=64, hidden=85, head_dim=8: per block 4*32*32 (q,k,v,o) + 3*32*85 (SwiGLU)
    # + 2*32 (norms); plus wte 64*32, lm_head 64*32, ln_f 32.
    per_block = 4 * 32 * 32 + 3 * 32 * 85 + 2 * 32
    total = 2 * per_block + 2 * 64 * 32 + 32
    m = tiny()
    assert num_params(m) == total
    assert num_params(m, non_embedding=True) == total - 64 * 32


def test_build_model_from_runconfig():
    cfg = RunConfig(width=64, depth=3, head_dim=16, seq_len=32, base_width=32, qk_norm=True)
    m = build_model(cfg.model)
    assert isinstance(m, GPT) and len(m.blocks) == 3 and m.config.n_head == 4
    assert m.config.qk_norm and m.config.seq_len == 32
    base = build_model(cfg.model.at(width=cfg.parametrization.base_width))
    assert base.config.d_model == 32 and base.config.head_dim == 16
    assert len(build_model(cfg.model.at(depth=1)).blocks) == 1
    assert gpt_config(cfg.model).attn_scale == "1/d"
    mlp = build_model(RunConfig(model="mlp", width=48, depth=3).model)
    assert isinstance(mlp, MLP) and len(mlp.hidden) == 2 and mlp.input.out_features == 48


def test_mlp():
    torch.manual_seed(0)
    m = MLP(in_dim=5, width=16, depth=3, out_dim=4)
    names = [n for n, _ in m.named_modules()]
    assert names == ["", "input", "hidden", "hidden.0", "hidden.1", "readout"]
    x, y = torch.randn(7, 5), torch.randint(0, 4, (7,))
    logits, loss = m(x, y)
    assert logits.shape == (7, 4)
    assert torch.allclose(loss, torch.nn.functional.cross_entropy(logits, y))
    assert m(x)[1] is None
    assert num_params(m) == 5 * 16 + 16 + 2 * (16 * 16 + 16) + 16 * 4 + 4
    assert len(MLP(5, 16, 1, 4).hidden) == 0
    assert MLP(5, 16, 1, 4, bias=False).input.bias is None
    with pytest.raises(ConfigError, match="depth"):
        MLP(5, 16, 0, 4)


def test_gpt_learns_a_repeating_pattern():
    # A tiny model must fit a periodic sequence quickly; guards against a broken mask or RoPE.
    torch.manual_seed(0)
    m = tiny()
    idx = (torch.arange(17).repeat(8, 1) * 7 + torch.arange(8)[:, None]) % 64
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    for _ in range(60):
        loss = m(idx[:, :-1], idx[:, 1:])[1]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5
    # after fitting, greedy generation continues the pattern of row 0 (step 7 mod 64)
    out = m.generate(idx[:1, :4], max_new_tokens=6, temperature=0)
    assert out.shape == (1, 10)
    assert torch.equal(out[0], idx[0, :10])


def test_generate_sampling_options():
    m = tiny()
    g = torch.Generator().manual_seed(0)
    out = m.generate(tokens(b=2, t=3), max_new_tokens=20, top_k=1, generator=g)
    assert out.shape == (2, 23)  # longer than seq_len=16: the context window slides
    greedy = m.generate(tokens(b=2, t=3), max_new_tokens=20, temperature=0)
    assert torch.equal(out, greedy)  # top_k=1 sampling is greedy
