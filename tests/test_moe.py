"""Mixture-of-experts in sizeup's own GPT (issue #11): expert tensors scale as their dense
matrices, the router as a readout, Muon per expert, export, and the parameter and FLOP counts
of two published MoEs checked against a hand calculation."""

from __future__ import annotations

import pytest
import torch

import sizeup
from sizeup.flops import gpt_exact_flops_per_token, gpt_params
from sizeup.models import GPT, GPTConfig, num_params


def _gpt(d: int, layers: int = 3, **kw) -> GPT:
    moe = dict(n_experts=4, top_k=2, n_shared_experts=1, expert_hidden=d // 2, first_dense=1)
    return GPT(GPTConfig(d_model=d, n_layer=layers, head_dim=16, vocab_size=64, **{**moe, **kw}))


def test_moe_gpt_forward_and_counts():
    cfg = GPTConfig(
        d_model=64,
        n_layer=3,
        vocab_size=64,
        n_experts=4,
        top_k=2,
        n_shared_experts=1,
        expert_hidden=32,
        first_dense=1,
    )
    m = GPT(cfg)
    x = torch.randint(0, 64, (2, 16))
    logits, loss = m(x, x)
    loss.backward()
    assert logits.shape == (2, 16, 64) and torch.isfinite(loss)
    assert m.blocks[1].mlp.experts.up.grad.abs().sum() > 0
    assert num_params(m) == gpt_params(cfg)
    # by hand: one token uses 2 of the 4 experts in each of the 2 MoE blocks
    unused = 2 * 2 * 3 * 64 * 32
    assert gpt_params(cfg, active=True) == gpt_params(cfg) - unused


def test_moe_config_is_checked():
    from sizeup.errors import ConfigError

    with pytest.raises(ConfigError, match="top_k=5.*n_experts=4"):
        GPTConfig(d_model=64, n_layer=2, n_experts=4, top_k=5)
    with pytest.raises(ConfigError, match="n_experts"):
        GPTConfig(d_model=64, n_layer=2, n_experts=-1)


def test_expert_tensors_get_the_dense_matrix_multipliers():
    """Each expert (experts, out, in) gets what the dense SwiGLU matrix of the same (out, in)
    gets; the router is a readout (fan_out = experts, fixed)."""
    for rule in ("mup", "spectral", "mup_simple"):
        moe = sizeup.parametrize(
            _gpt(128, 6), _gpt(32, 2), delta=_gpt(64, 2), rule=rule, base_depth=2
        )
        # the dense GPT whose SwiGLU hidden equals the experts' (mlp_ratio 1/2)
        dense = sizeup.parametrize(
            _gpt(128, 6, n_experts=0, mlp_ratio=0.5),
            _gpt(32, 2, n_experts=0, mlp_ratio=0.5),
            delta=_gpt(64, 2, n_experts=0, mlp_ratio=0.5),
            rule=rule,
            base_depth=2,
        )
        for part in ("gate", "up", "down"):
            e, d = moe[f"blocks.3.mlp.experts.{part}"], dense[f"blocks.3.mlp.{part}.weight"]
            same = ("role", "fan_in", "fan_out", "m_in", "m_out", "init_std", "multiplier")
            assert [getattr(e, f) for f in same] == [getattr(d, f) for f in same], (rule, part)
            assert (e.lr_mult, e.eps_mult, e.wd_mult, e.muon) == (
                d.lr_mult,
                d.eps_mult,
                d.wd_mult,
                d.muon,
            )
        assert (
            moe.module_multipliers["blocks.3.mlp.experts"]
            == dense.module_multipliers["blocks.3.mlp.down"]
        )
        r = moe["blocks.3.mlp.router.weight"]
        assert r.role == "readout" and r.m_out == 1.0 and r.m_in == 4.0


def test_moe_gpt_export_and_muon():
    model = _gpt(64, 4, tie_embeddings=True, qk_norm=True, attn_scale="1/sqrt(d)")
    base, delta = (_gpt(w, 2, tie_embeddings=True, qk_norm=True) for w in (32, 48))
    p = sizeup.parametrize(model, base, delta=delta, base_depth=2, attn_scale="1/d")
    opt = p.optimizer("muon", lr=0.02)
    assert any("blocks.1.mlp.experts.up" in g["names"] and g["use_muon"] for g in opt.param_groups)
    x = torch.randint(0, 64, (2, 16))
    for _ in range(2):
        _, loss = model(x, x)
        loss.backward()
        opt.step()
        opt.zero_grad()
    with torch.no_grad():
        want = model(x)[0]
        plain = p.export()
        torch.testing.assert_close(plain(x)[0], want, rtol=1e-5, atol=1e-5)
    fresh = GPT(model.config)  # the unmodified architecture, its own attention scale 1/sqrt(d)
    fresh.load_state_dict(plain.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fresh(x)[0], want, rtol=1e-5, atol=1e-5)


# --- published MoEs: total and active parameters, FLOPs per token --------------------------
# DeepSeek-MoE 16B: deepseek-ai/deepseek-moe-16b-base config.json (DeepseekConfig): hidden 2048,
# 28 layers, 16 heads (MHA, head 128), vocab 102400, untied; first_k_dense_replace 1 with a dense
# SwiGLU of 10944; then 64 routed experts of 1408, 2 shared, top-6 (Dai et al. 2024,
# arXiv:2401.06066: "16.4B total, 2.8B activated").
DEEPSEEK_MOE = dict(
    d_model=2048,
    n_layer=28,
    n_head=16,
    vocab_size=102400,
    mlp_hidden=10944,
    n_experts=64,
    top_k=6,
    n_shared_experts=2,
    expert_hidden=1408,
    first_dense=1,
    seq_len=4096,
)
# Moonlight-16B-A3B: moonshotai/Moonlight-16B-A3B config.json (the DeepSeek-V3 architecture, as
# in Megatron's moonlight model args): hidden 2048, 27 layers, 16 heads, vocab 163840, untied;
# MLA with kv_lora_rank 512, no query LoRA, qk_nope 128 + qk_rope 64, v_head 128; first layer
# dense (11264), then 64 routed experts of 1408, 2 shared, top-6, a correction bias per expert
# (noaux_tc); "16B total, 3B activated" (Liu et al. 2025, "Muon is Scalable for LLM Training").
MOONLIGHT = dict(
    d_model=2048,
    n_layer=27,
    n_head=16,
    head_dim=128,
    vocab_size=163840,
    mlp_hidden=11264,
    n_experts=64,
    top_k=6,
    n_shared_experts=2,
    expert_hidden=1408,
    first_dense=1,
    kv_lora_rank=512,
    qk_rope_head_dim=64,
    v_head_dim=128,
    router_bias=True,
    seq_len=8192,
)


def test_deepseek_moe_16b_by_hand():
    d, V, L = 2048, 102400, 28
    attn = 4 * d * d  # q, k, v, o: 16 heads x 128
    dense_mlp = 3 * d * 10944
    expert = 3 * d * 1408
    router, shared = 64 * d, 2 * expert
    norms = 2 * d
    total = L * (attn + norms) + dense_mlp + 27 * (router + 64 * expert + shared) + d + 2 * V * d
    active = L * (attn + norms) + dense_mlp + 27 * (router + 6 * expert + shared) + d + 2 * V * d
    assert gpt_params(**DEEPSEEK_MOE) == total == 16_375_728_128
    assert gpt_params(**DEEPSEEK_MOE, active=True) == active == 2_828_650_496
    assert total / 1e9 == pytest.approx(16.4, abs=0.05) and active / 1e9 == pytest.approx(
        2.8, abs=0.05
    )
    ctx = (4096 + 1) / 2  # causal: a query sees (s + 1)/2 keys on average
    per_layer = 2 * 16 * (128 + 128) * ctx  # scores and weighted values
    matmuls = L * attn + dense_mlp + 27 * (router + 6 * expert + shared) + V * d  # + head
    assert gpt_exact_flops_per_token(**DEEPSEEK_MOE) == pytest.approx(
        3 * (2 * matmuls + L * per_layer), rel=1e-12
    )


def test_moonlight_16b_a3b_by_hand():
    d, V, L, H = 2048, 163840, 27, 16
    q = d * H * (128 + 64)
    kv = d * (512 + 64) + 512 * H * (128 + 128)
    o = H * 128 * d
    attn, attn_norm = q + kv + o, 512  # + the latent's norm
    dense_mlp = 3 * d * 11264
    expert = 3 * d * 1408
    router, bias, shared = 64 * d, 64, 2 * expert
    body = L * (attn + attn_norm + 2 * d) + dense_mlp + d
    total = body + 26 * (router + bias + 64 * expert + shared) + 2 * V * d
    active = body + 26 * (router + bias + 6 * expert + shared) + 2 * V * d
    assert gpt_params(**MOONLIGHT) == total == 15_960_110_208
    assert gpt_params(**MOONLIGHT, active=True) == active == 2_914_776_192
    assert round(total / 1e9) == 16 and round(active / 1e9) == 3
    ctx = (8192 + 1) / 2
    per_layer = 2 * H * ((128 + 64) + 128) * ctx
    matmuls = L * (q + kv + o) + dense_mlp + 26 * (router + 6 * expert + shared) + V * d
    assert gpt_exact_flops_per_token(**MOONLIGHT) == pytest.approx(
        3 * (2 * matmuls + L * per_layer), rel=1e-12
    )


def test_flops_command_and_planner_count_an_moe(capsys):
    from sizeup.cli import main
    from sizeup.plan import plan
    from sizeup.plan.records import flops_per_token, params

    # DeepSeek-MoE 16B (Dai et al. 2024, Table 1): 28 layers, d 2048, 16 heads, the first block
    # dense with d_ff 10944, 64 routed experts (top 6) and 2 shared of hidden 1408 each
    shape = ["--n-layer", "28", "--d-model", "2048", "--n-head", "16", "--vocab-size", "102400"]
    shape += ["--d-ff", "10944", "--n-experts", "64", "--top-k", "6", "--n-shared-experts", "2"]
    shape += ["--expert-hidden", "1408", "--first-dense", "1", "--seq-len", "4096"]
    main(["flops", "gpt", *shape])
    out = capsys.readouterr().out
    assert "16,375,728,128" in out and "2,828,650,496" in out
    # `sizeup plan` takes the same shape options, and plans the same model
    main(["plan", "--preset", "deepseek-v1", "--tokens", "2e12", "--format", "json", *shape])
    import json

    d = json.loads(capsys.readouterr().out)
    assert d["params"] == 16_375_728_128 and d["params_active"] == 2_828_650_496
    run = d["run_config"]["model"]
    assert (run["n_experts"], run["top_k"], run["expert_hidden"], run["d_ff"]) == (
        64,
        6,
        1408,
        10944,
    )
    p = plan(preset="chinchilla", tokens=2e11, **{a.lstrip("-").replace("-", "_"): b
             for a, b in zip(shape[::2], shape[1::2])})  # fmt: skip
    m = p.run.model
    assert m.ffn_hidden == 10944 and params(m) == 16_375_728_128
    assert params(m, active=True) == 2_828_650_496
    assert flops_per_token(m, "6ND") == 6 * 2_828_650_496  # C = 6 N_active D
    # DeepSeek's M for an MoE counts what a token uses, exactly (its dense formula, 72 L d^2 +
    # 12 L d l, would count 28 dense 2048-wide blocks: 33% low)
    dense = 72 * 28 * 2048**2 + 12 * 28 * 2048 * 4096
    moe = flops_per_token(m, "MD")
    assert moe > 1.3 * dense
    nonemb_active = params(m, active=True, embeddings=False) - (28 * 2 + 1) * 2048 - 27 * 0
    assert moe == pytest.approx(6 * (nonemb_active) + 12 * 28 * 2048 * 4096, rel=1e-9)


def test_planner_table_of_an_moe():
    from sizeup.plan import plan

    p = plan(
        preset="chinchilla",
        tokens=1e8,
        depth=4,
        width=256,
        head_dim=32,
        vocab_size=512,
        seq_len=64,
        n_experts=4,
        top_k=2,
        n_shared_experts=1,
        expert_hidden=128,
        first_dense=1,
        base_width=64,
        lr=3e-3,
        base_batch_tokens=4096,
    )
    by = {r["tensor"]: r for r in p.layers}
    assert by["blocks.*.mlp.experts.up"]["role"] == "hidden"
    assert by["blocks.*.mlp.experts.up"]["lr"] == pytest.approx(by["blocks.*.attn.q"]["lr"])
    assert by["blocks.*.mlp.router"]["role"] == "readout"
    # the plan's run trains that MoE: run.json carries the experts (the MoE plan used to train
    # a dense model)
    assert p.run.model.n_experts == 4 and p.run.model.expert_hidden == 128


def test_dense_gpt_export_folds_the_attention_scale_into_q():
    """Table 8 readout, depth branches, and a 1/d scale set by sizeup on a 1/sqrt(d) GPT: the
    query projection carries the ratio; a fresh GPT of the same config reproduces the logits."""
    mk = lambda d, L: GPT(  # noqa: E731
        GPTConfig(d_model=d, n_layer=L, n_head=4, vocab_size=64, attn_scale="1/sqrt(d)")
    )
    model = mk(128, 4)
    p = sizeup.parametrize(
        model, mk(32, 2), delta=mk(64, 2), readout_form="table8", attn_scale="1/d", base_depth=2
    )
    assert model.blocks[0].attn.scale == pytest.approx(8**-0.5 * 8 / 32)  # s_base d_base / d
    x = torch.randint(0, 64, (2, 16))
    with torch.no_grad():
        want = model(x)[0]
        plain = p.export()
        fresh = GPT(model.config)
        fresh.load_state_dict(plain.state_dict())
        torch.testing.assert_close(fresh(x)[0], want, rtol=1e-5, atol=1e-5)
    r = 0.5  # (8/32) / (8/32)^(1/2)
    torch.testing.assert_close(plain.blocks[0].attn.q.weight, model.blocks[0].attn.q.weight * r)
    assert plain.blocks[0].attn.scale == pytest.approx(32**-0.5)
