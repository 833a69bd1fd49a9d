"""FLOPs-per-token formulas and MFU against hand calculations."""

import pytest

from sizeup.errors import SizeupError
from sizeup.flops import (
    flops_per_token,
    gpt_exact_flops_per_token,
    gpt_params,
    mfu,
    peak_flops,
    training_time_s,
)


def test_deepseek_7b_hand_calculation():
    # DeepSeek LLM (Bi et al. 2024) 7B: 30 layers, d = 4096, l_seq = 4096.
    # M = 72*30*4096^2 + 12*30*4096*4096 = (2160 + 360) * 16,777,216 = 42,278,584,320
    assert flops_per_token("deepseek", 30, 4096, 4096) == 42_278_584_320


def test_megatron_expanded_equals_narayanan_factored_form():
    # Narayanan et al. 2021 (no recomputation): 72 L d^2 (1 + s/(6d) + V/(12 L d)); GPT-3 175B shape
    L, d, s, V = 96, 12288, 2048, 51200
    factored = 72 * L * d**2 * (1 + s / (6 * d) + V / (12 * L * d))
    assert flops_per_token("megatron", L, d, s, V) == pytest.approx(factored, rel=1e-12)
    # and it is about 6N for N = 175e9 (Kaplan), within the few % the attention adds
    assert flops_per_token("megatron", L, d, s, V) / (6 * 175e9) == pytest.approx(1.0, abs=0.06)


def test_kaplan_is_six_n_non_embedding():
    # Kaplan et al. 2020: N = 12 n_layer d^2, C_train = 6N per token (+ 6 L n_ctx d with context)
    assert flops_per_token("kaplan", 2, 10, 7) == 6 * 12 * 2 * 100
    assert (
        flops_per_token("kaplan", 2, 10, 7, include_attention=True)
        == 6 * 12 * 2 * 100 + 6 * 2 * 7 * 10
    )
    assert flops_per_token("kaplan", 2, 10, 7, n_params=1000) == 6000


def test_chinchilla_appendix_f_tiny_by_hand():
    # Hoffmann et al. 2022 Appendix F with L=1, d=2, s=2, V=3, ffw=8, key_size*heads=2, heads=1:
    # embeddings 2*2*3*2 = 24; QKV 2*3*2*2*2 = 48; KQ logits 2*2*2*2 = 16; softmax 3*1*2*2 = 12;
    # reduction 2*2*2*2 = 16; final linear 2*2*2*2 = 16 -> attention 108; dense 2*2*(16+16) = 128;
    # logits 2*2*2*3 = 24. Forward = 24 + 108 + 128 + 24 = 284 per sequence; x3 / s = 426.
    got = flops_per_token("chinchilla", 1, 2, 2, 3, d_ff=8, attn_dim=2, n_head=1)
    assert got == pytest.approx(426.0)


def test_gpt_exact_tiny_by_hand():
    # d=4, L=1, 2 heads of 2, 1 kv head (GQA), hidden=round(8/3*4)=11, V=5, s=3.
    # q,o: 2*4*4*2 = 64; k,v: 2*4*2*2 = 32; QK^T and AV over 3 keys: 2*2*2*3*2 = 48;
    # SwiGLU: 2*4*11*3 = 264; head 2*4*5 = 40. Forward 448 -> training 1344.
    kw = dict(d_model=4, n_layer=1, n_head=2, n_kv_head=1, vocab_size=5, seq_len=3)
    assert gpt_exact_flops_per_token(causal=False, **kw) == 1344
    # causal: on average (3+1)/2 = 2 keys -> attention 32, forward 432, training 1296
    assert gpt_exact_flops_per_token(causal=True, **kw) == 1296
    # params: q 16 + o 16 + k 8 + v 8 + mlp 132 + 2 norms 8 + final norm 4 = 192; + embeddings 2*20
    assert gpt_params(**kw) == 232
    assert gpt_params(tie_embeddings=True, **kw) == 212
    assert gpt_params(embeddings=False, **kw) == 192


def test_gpt_exact_accepts_a_model_spec():
    from sizeup.config import RunConfig

    cfg = RunConfig(width=64, depth=2, head_dim=32, seq_len=16)
    a = gpt_exact_flops_per_token(cfg.model)
    b = gpt_exact_flops_per_token(d_model=64, n_layer=2, head_dim=32, seq_len=16, vocab_size=256)
    assert a == b


def test_gpt_exact_matches_torch_flop_counter_when_models_exist():
    torch = pytest.importorskip("torch")
    models = pytest.importorskip("sizeup.models")
    from torch.utils.flop_counter import FlopCounterMode

    cfg = models.GPTConfig(d_model=64, n_layer=2, n_head=2, vocab_size=256, seq_len=32)
    model = models.GPT(cfg)
    model.record_attn_logits = True  # explicit attention so the counter sees both matmuls
    idx = torch.zeros(1, 32, dtype=torch.long)
    with FlopCounterMode(display=False) as fc:
        model(idx)
    want = (
        gpt_exact_flops_per_token(
            d_model=64, n_layer=2, n_head=2, vocab_size=256, seq_len=32, causal=False
        )
        / 3
    )
    assert fc.get_total_flops() / 32 == pytest.approx(want, rel=1e-6)


def test_mfu_and_time():
    # 1e5 tokens/s at 6e9 FLOPs/token on one H100 (989 TFLOP/s): 6e14 / 9.89e14 = 0.60667
    assert mfu(1e5, 6e9, "H100") == pytest.approx(6e14 / 989e12)
    assert mfu(1e5, 6e9, 1e15, n_devices=2) == pytest.approx(0.3)
    assert peak_flops("a100") == 312e12
    assert training_time_s(1e18, 1e15, mfu=0.5) == pytest.approx(2000.0)


@pytest.mark.parametrize(
    "bad",
    [
        lambda: flops_per_token("palm", 1, 2, 3),
        lambda: flops_per_token("deepseek", 0, 2, 3),
        lambda: flops_per_token("deepseek", 1, -2, 3),
        lambda: mfu(-1, 1, "H100"),
        lambda: peak_flops("TPUv9"),
        lambda: gpt_exact_flops_per_token(d_model=10, n_layer=1, head_dim=4),
    ],
)
def test_bad_input_names_the_field(bad):
    with pytest.raises(SizeupError):
        bad()
