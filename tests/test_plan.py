"""The planner: published targets (DeepSeek LLM, Chinchilla), a hand-computed per-layer table,
clear errors for impossible targets, warnings, time/cost and the `sizeup plan` CLI contract."""

from __future__ import annotations

import contextlib
import json
import math
import types

import pytest

from sizeup.config import ModelSpec
from sizeup.errors import ConfigError, SizeupError
from sizeup.plan import plan, read_study, shape_for
from sizeup.plan.records import params as model_params


def rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


# --- DeepSeek LLM (Bi et al. 2024), Table 2: 7B = 30 layers, d 4096, 32 heads, lr 4.2e-4,
# batch 2304 x 4096 = 9.4M tokens; 67B = 95 layers, d 8192, 64 heads, lr 3.2e-4, batch
# 4608 x 4096 = 18.9M tokens; both on 2T tokens, seq 4096.
@pytest.mark.parametrize(
    "n_layer,d_model,n_head,lr_used,batch_used",
    [
        (30, 4096, 32, 4.2e-4, 9.4e6),
        (95, 8192, 64, 3.2e-4, 18.9e6),
    ],
)
def test_deepseek_v1_reproduces_the_published_hyperparameters(
    n_layer, d_model, n_head, lr_used, batch_used
):
    p = plan(
        preset="deepseek-v1",
        n_layer=n_layer,
        d_model=d_model,
        n_head=n_head,
        seq_len=4096,
        tokens=2e12,
    )
    assert rel(p.peak_lr, lr_used) < 0.10
    assert rel(p.batch_tokens, batch_used) < 0.10
    # Hand calculation, DeepSeek LLM eq. (1): C = M D, M = 72 L d^2 + 12 L d l_seq,
    # eta = 0.3118 C^-0.1250, B = 0.2920 C^0.3271 (before rounding to whole sequences).
    M = 72 * n_layer * d_model**2 + 12 * n_layer * d_model * 4096
    C = M * 2e12
    assert p.flops == pytest.approx(C, rel=1e-12)
    assert p.peak_lr == pytest.approx(0.3118 * C**-0.1250, rel=1e-12)
    B = 0.2920 * C**0.3271
    assert p.batch_sequences % 8 == 0
    assert abs(p.batch_tokens - B) <= 4 * 4096  # rounded to the nearest 8 sequences
    assert p.steps == math.ceil(2e12 / p.batch_tokens)


def test_deepseek_7b_literal_numbers():
    # By hand: M = 30 * 4096^2 * 84 = 4.2278e10, C = 8.4557e22,
    # eta = 0.3118 * 10^(-0.125 * 22.92715) = 4.246e-4, B = 0.292 * 10^(0.3271 * 22.92715) = 9.22e6.
    p = plan(preset="deepseek-v1", n_layer=30, d_model=4096, n_head=32, seq_len=4096, tokens=2e12)
    assert p.flops == pytest.approx(8.4557e22, rel=1e-4)
    assert p.peak_lr == pytest.approx(4.246e-4, rel=1e-3)
    assert p.batch_tokens == 2248 * 4096  # 9.2226e6 / 4096 = 2251.6 -> 2248 (multiple of 8)


# --- Chinchilla (Hoffmann et al. 2022, approach 3, eq. 4): N_opt = G (C/6)^(beta/(alpha+beta)),
# D_opt = G^-1 (C/6)^(alpha/(alpha+beta)), G = (alpha A / (beta B))^(1/(alpha+beta)).
def test_chinchilla_compute_optimal_matches_the_closed_form():
    E, A, B, alpha, beta = 1.69, 406.4, 410.7, 0.34, 0.28
    C = 5.76e23
    G = (alpha * A / (beta * B)) ** (1 / (alpha + beta))
    N_opt = G * (C / 6) ** (beta / (alpha + beta))
    D_opt = (C / 6) ** (alpha / (alpha + beta)) / G
    # The same numbers with a calculator: G = 1.2016^1.6129 = 1.3445,
    # N_opt = 1.3445 * (9.6e22)^0.45161 = 3.219e10, D_opt = 9.6e22 / N_opt = 2.982e12.
    assert N_opt == pytest.approx(3.219e10, rel=1e-3)
    assert D_opt == pytest.approx(2.982e12, rel=1e-3)
    p = plan(preset="chinchilla", compute=C)
    assert p.optimum["size"] == pytest.approx(N_opt, rel=1e-9)
    assert p.optimum["tokens"] == pytest.approx(D_opt, rel=1e-9)
    # The realised shape is the family shape nearest N_opt; the budget is spent exactly.
    assert rel(p.params, N_opt) < 0.02
    assert rel(p.tokens, D_opt) < 0.02
    assert 6 * p.params * p.tokens == pytest.approx(C, rel=1e-9)
    assert p.loss == pytest.approx(E + A / p.params**alpha + B / p.tokens**beta, rel=1e-12)
    assert "6 N D" in p.flops_formula


def test_params_only_trains_compute_optimally():
    p = plan(preset="chinchilla", params=1e9)
    C = 6 * p.params * p.tokens
    n_opt, d_opt = p.optimum["size"], p.optimum["tokens"]
    assert rel(n_opt, p.params) < 1e-6  # the C at which this model is the optimum
    assert rel(d_opt, p.tokens) < 1e-6
    assert p.flops == pytest.approx(C)


def test_tokens_per_param_target():
    p = plan(preset="chinchilla", compute=1e21, tokens_per_param=20)
    # N = sqrt(C / (6 r)) = sqrt(1e21 / 120) = 2.887e9; the shape is the nearest family member.
    assert rel(p.params, math.sqrt(1e21 / 120)) < 0.03
    assert p.flops == pytest.approx(1e21, rel=1e-9)
    assert rel(p.tokens_per_param, 20) < 0.06


# --- the per-layer table, n = 100, b = 8, d = 100, alpha_data = -0.12, by hand:
#   common factor b^1/2 d^alpha = 2.828427 * 100^-0.12 = 2.828427 * 0.575440 = 1.627590
#   hidden Adam lr = eta / n * 1.627590; input, vector and (Table 8) readout lr = eta * 1.627590
#   hidden init 0.02 / sqrt(100) = 0.002 on every hidden matrix, residual outputs included
#   (sizeup.parametrize applies no GPT-2 (2L)^-1/2 factor, so neither does the plan)
#   readout (Table 8): init 0.02, multiplier 1/100
#   betas 1 - 8 (1 - 0.9) = 0.2, 1 - 8 (1 - 0.95) = 0.6; eps 1e-8 / sqrt(8) = 3.535534e-9,
#   then x the eps column (gradient scale): 1/n for input, hidden and vectors, and for the
#   Table 8 readout too (multiplier 1/n): 3.535534e-11 on every row here
# mlp_ratio 4 keeps the SwiGLU hidden ratio exactly n (64 -> 6400: 256 -> 25600); with the
# default 8/3 the GPT rounds 170.67 -> 171 and 17066.7 -> 17067, a ratio of 99.81.
HAND = {  # tensor: (init_std, multiplier, lr)
    "wte": (0.02, 1.0, 1.627590e-2),
    "blocks.*.ln1": (None, 1.0, 1.627590e-2),
    "blocks.*.attn.q": (0.002, 1.0, 1.627590e-4),
    "blocks.*.attn.k": (0.002, 1.0, 1.627590e-4),
    "blocks.*.attn.v": (0.002, 1.0, 1.627590e-4),
    "blocks.*.attn.o": (0.002, 1.0, 1.627590e-4),
    "blocks.*.ln2": (None, 1.0, 1.627590e-2),
    "blocks.*.mlp.gate": (0.002, 1.0, 1.627590e-4),
    "blocks.*.mlp.up": (0.002, 1.0, 1.627590e-4),
    "blocks.*.mlp.down": (0.002, 1.0, 1.627590e-4),
    "ln_f": (None, 1.0, 1.627590e-2),
    "lm_head": (0.02, 0.01, 1.627590e-2),
}
# The proxy (its base width, tuned lr, batch and tokens), the recipe and the target's shape,
# as `sizeup plan` takes them.
HAND_PROXY = dict(base_width=64, lr=1e-2, base_batch_tokens=64 * 1024, base_tokens=1e9)
HAND_RECIPE = dict(rule="mup", sigma=0.02, readout_form="table8", weight_decay=0.1)
HAND_SHAPE = dict(depth=24, width=6400, head_dim=128, seq_len=1024, mlp_ratio=4)


def hand_plan(**kw):
    """The hand-computed target planned from the proxy: 512 sequences of 1024 (b = 8)."""
    fields = {**HAND_PROXY, **HAND_RECIPE, **HAND_SHAPE, **kw}
    return plan(preset="chinchilla", tokens=1e11, batch_tokens=512 * 1024, **fields)


def check_against_hand(rows):
    assert [r["tensor"] for r in rows] == list(HAND)
    for r in rows:
        std, mult, lr = HAND[r["tensor"]]
        assert (r["init_std"] is None) == (std is None), r["tensor"]
        if std is not None:
            assert r["init_std"] == pytest.approx(std, rel=1e-9), r["tensor"]
        assert r["multiplier"] == pytest.approx(mult, rel=1e-9), r["tensor"]
        assert r["lr"] == pytest.approx(lr, rel=1e-5), r["tensor"]
        assert r["beta1"] == pytest.approx(0.2, rel=1e-9)
        assert r["beta2"] == pytest.approx(0.6, rel=1e-9)
        assert r["eps"] == pytest.approx(3.535534e-11, rel=1e-6), r["tensor"]
        # decay per step at peak is what torch applies, group lr x group weight_decay: none on
        # norm gains, and one width-free value on every matrix (its size is sizeup.optim's
        # weight-decay convention; the equality test below checks it against the optimizer).
        assert r["decay_per_step"] == pytest.approx(r["lr"] * r["weight_decay"], rel=1e-12)
    decays = {round(r["decay_per_step"], 15) for r in rows if r["role"] != "vector"}
    assert len(decays) == 1 and decays != {0.0}
    assert all(r["decay_per_step"] == 0 for r in rows if r["role"] == "vector")


def test_layer_table_matches_hand_computed_table():
    # Proxy d 64 -> target d 6400 (n = 100); 64 -> 512 sequences of 1024 (b = 8); 1e9 -> 1e11
    # tokens (d = 100) with alpha_data = -0.12.
    p = hand_plan(data_exponent=-0.12)
    assert (p.width_ratio, p.batch_ratio, p.data_ratio) == (100, 8, 100)
    assert p.peak_lr == pytest.approx(1.627590e-2, rel=1e-5)
    check_against_hand(p.layers)
    assert p.readout_form == "table8"
    assert all(r["count"] == (24 if r["tensor"].startswith("blocks") else 1) for r in p.layers)


def _hand_rows(**recipe):
    return {r["tensor"]: r for r in hand_plan(**recipe).layers}


def test_one_eps_when_scale_eps_is_off():
    # scale_eps=False keeps microsoft/mup's single eps: only the batch transfer moves it.
    rows = _hand_rows(scale_eps=False)
    assert {round(r["eps"], 18) for r in rows.values()} == {round(1e-8 / 8**0.5, 18)}


def test_table3_readout_is_the_abc_shift_of_table8():
    t3 = _hand_rows(readout_form="table3")["lm_head"]
    t8 = _hand_rows(readout_form="table8")["lm_head"]
    # Tensor Programs V Table 3 readout: init sigma/n, multiplier 1, Adam lr eta/n.
    assert t3["init_std"] == pytest.approx(0.02 / 100)
    assert t3["multiplier"] == 1.0
    assert t3["lr"] == pytest.approx(1e-2 * 8**0.5 / 100, rel=1e-12)
    # Same effective weight (init x multiplier) and effective update (lr x multiplier).
    assert t3["init_std"] * t3["multiplier"] == pytest.approx(t8["init_std"] * t8["multiplier"])
    assert t3["lr"] * t3["multiplier"] == pytest.approx(t8["lr"] * t8["multiplier"])
    # ... and the eps that goes with it: the Table 8 gradient is n times smaller, so is its eps.
    assert t3["eps"] == pytest.approx(t8["eps"] * 100)


def test_muon_rows_share_eta_on_hidden_matrices():
    rows = _hand_rows(optimizer="muon")
    q = rows["blocks.*.attn.q"]
    assert q["lr"] == pytest.approx(1e-2 * 8**0.5) and q["optimizer"] == "muon"
    assert q["beta1"] is None and q["eps"] is None
    assert rows["wte"]["optimizer"] == "adamw"


def test_beta_clipping_is_warned():
    proxy = dict(base_width=256, lr=3e-3, base_batch_tokens=2**17, base_tokens=1e9)
    p = plan(preset="chinchilla", params=1e9, batch_tokens=2**22, seq_len=2048, **proxy)
    assert p.batch_ratio == 32
    assert any("clipped to 0" in w for w in p.warnings)
    assert all(r["beta1"] == 0.0 for r in p.layers if r["beta1"] is not None)
    assert p.peak_lr == pytest.approx(3e-3 * 32**0.5)


def test_decay_above_one_percent_per_step_is_warned():
    # lambda x peak lr = 2.0 x 1e-2 = 2% of every matrix per step (sizeup.optim.decay_warning).
    kw = dict(preset="chinchilla", params=1e8, batch_tokens=2**19, lr_law="1e-2,0")
    assert not any("per step" in w for w in plan(**kw, weight_decay=0.1).warnings)
    assert any("per step" in w for w in plan(**kw, weight_decay=2.0).warnings)


# --- errors
def test_zero_budget_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"compute=0.*positive number of FLOPs"):
        plan(compute=0)


def test_params_larger_than_compute_allows():
    with pytest.raises(ConfigError, match=r"params=.*at most 4.08\d*e\+09 parameters"):
        plan(preset="chinchilla", compute=1e20, params=1e12)


def test_contradictory_compute_params_tokens():
    with pytest.raises(ConfigError, match="compute"):
        plan(preset="chinchilla", compute=1e21, params=1e9, tokens=1e12)  # 6ND = 6e21


@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(), "target"),
        (dict(compute=1e21, tokens=1e10, tokens_per_param=20), "tokens_per_param"),
        (dict(n_layer=12, d_model=768, params=1e10), "params"),
        (dict(n_layer=12), "width/depth"),
        (dict(compute=-1.0), "compute"),
        (dict(params=1e9, mfu=1.5), "mfu"),
        (dict(params=1e9, preset="nope"), "preset"),
        (dict(n_layer=4, d_model=256, base_width=512), "base_width"),
        (dict(params=1e9, base_batch_tokens=2**16), "base_width"),
        (dict(n_layer=2, d_model=256, tokens=1000.0, seq_len=256), "params"),
        (dict(params=1e9, lr_law="abc"), "lr_law"),
    ],
)
def test_bad_targets_name_the_field(kwargs, field):
    with pytest.raises(SizeupError, match=field.replace("/", ".")):
        plan(**kwargs)


def test_less_than_one_batch_is_an_error():
    with pytest.raises(ConfigError, match="tokens=.*at least one batch"):
        plan(
            n_layer=2,
            d_model=256,
            tokens=20000.0,
            seq_len=256,
            batch_tokens=2**20,
            min_tokens_per_param=0.0,
        )


# --- warnings
def test_warnings_critical_batch_optimum_and_extrapolation():
    p = plan(preset="chinchilla", compute=1e23, critical_batch=1e6, fit_range=(1e18, 1e20))
    assert any("critical batch" in w for w in p.warnings)
    assert any("fitted range" in w for w in p.warnings)  # 1e23 > 100 x 1e20
    assert not any("far" in w for w in p.warnings)  # compute-optimal by construction
    p = plan(
        preset="chinchilla",
        compute=1e23,
        tokens_per_param=2000,
        fit_range=(1e18, 1e22),
        critical_batch=1e9,
    )
    assert any("far" in w for w in p.warnings)
    assert not any("fitted range" in w for w in p.warnings)  # 1e23 < 100 x 1e22
    assert not any("critical batch" in w for w in p.warnings)


def test_fit_json_preset_with_bootstrap_interval_and_range(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    base = np.array([1.8, 480.0, 2000.0, 0.35, 0.37])
    samples = base * (1 + 0.02 * rng.standard_normal((50, 5)))
    fit = {
        "E": 1.8,
        "A": 480.0,
        "B": 2000.0,
        "alpha": 0.35,
        "beta": 0.37,
        "samples": samples.tolist(),
        "C_min": 1e18,
        "C_max": 1e19,
    }
    (tmp_path / "fit.json").write_text(json.dumps(fit))
    p = plan(preset=str(tmp_path / "fit.json"), compute=1e22, batch_tokens=2**20)
    lo, hi = p.loss_interval
    assert lo < p.loss < hi
    assert any("fitted range" in w for w in p.warnings)


# --- time and cost
def test_time_and_cost_by_hand():
    p = plan(
        preset="deepseek-v1",
        n_layer=30,
        d_model=4096,
        n_head=32,
        seq_len=4096,
        tokens=2e12,
        gpu="H100",
        n_gpus=512,
        mfu=0.4,
        gpu_price=2.0,
    )
    t = p.flops_exact / (512 * 989e12 * 0.4)  # H100 SXM dense bf16 peak 989 TFLOP/s
    assert p.time_s == pytest.approx(t)
    assert p.gpu_hours == pytest.approx(t / 3600 * 512)
    assert p.cost == pytest.approx(t / 3600 * 512 * 2.0)
    # The exact count (causal attention, no 72 L d^2 idealisation) is within 10% of M D.
    assert rel(p.flops_exact, p.flops) < 0.1


def test_schedule_adds_up_and_json_markdown():
    p = plan(preset="deepseek-v1", params=1e9, tokens=2e10, seq_len=2048, warmup=100)
    s = p.schedule
    assert s["warmup_steps"] + s["stable_steps"] + s["decay_steps"] == p.steps
    assert s["warmup_steps"] == 100
    d = json.loads(p.to_json())
    for key in ("peak_lr", "batch_tokens", "params", "tokens", "flops", "layers"):
        assert key in d
    md = p.to_markdown()
    # the readout form is parametrize's default (Table 3); no residual-out factor is claimed
    assert "| blocks.*.attn.o |" in md and "Table 3" in md and "peak_lr" in md
    assert "2L" not in md
    assert {e["name"] for e in p.explain} >= {
        "params",
        "tokens",
        "flops",
        "batch_tokens",
        "steps",
        "peak_lr",
        "layers",
    }


PLAN_TEMPLATE = ModelSpec(head_dim=128, seq_len=2048, vocab_size=32000, width=128, depth=1)


def test_shape_family():
    s = shape_for(7e9, PLAN_TEMPLATE)
    assert rel(model_params(s), 7e9) < 0.015
    assert s.width % 128 == 0 and 0.8 <= s.width / (128 * s.depth) <= 1.25
    # the count agrees with a hand count for a small GPT: per layer 4 d^2 (q, k, v, o)
    # + 3 d d_ff (SwiGLU) + 2 d (gains); + final gain; + 2 V d (untied embeddings).
    sh = ModelSpec(depth=2, width=64, head_dim=16, vocab_size=100, mlp_ratio=4)
    assert model_params(sh) == 2 * (4 * 64 * 64 + 3 * 64 * 256 + 2 * 64) + 64 + 2 * 100 * 64


# --- CLI contract
def test_cli_contract_writes_plan_json(tmp_path):
    from sizeup.cli import main

    main(
        [
            "plan",
            "--preset",
            "deepseek-v1",
            "--n-layer",
            "30",
            "--d-model",
            "4096",
            "--n-head",
            "32",
            "--seq-len",
            "4096",
            "--tokens",
            "2e12",
            "--out",
            str(tmp_path),
            "--explain",
        ]
    )
    d = json.loads((tmp_path / "plan.json").read_text())
    for key in ("peak_lr", "batch_tokens", "params", "tokens", "flops", "layers"):
        assert key in d
    assert rel(d["peak_lr"], 4.2e-4) < 0.1
    assert len(d["layers"]) == 12
    assert (tmp_path / "plan.md").exists()
    # run.json: the RunConfig that trains the plan (its run_config), in sections
    run_json = json.loads((tmp_path / "run.json").read_text())
    assert run_json == d["run_config"] and run_json["optimizer"]["lr"] == d["peak_lr"]
    from sizeup.config import RunConfig

    cfg = RunConfig.from_file(tmp_path / "run.json")
    assert cfg.schedule.steps == d["steps"] and cfg.data.batch_size * 4096 == d["batch_tokens"]


def test_cli_error_exits_nonzero(capsys):
    from sizeup.cli import main

    with pytest.raises(SystemExit) as e:
        main(["plan", "--compute", "0"])
    assert e.value.code == 2
    assert "compute=0" in capsys.readouterr().err


def test_critical_batch_sources():
    # Kaplan et al. 2020 eq. (5.3): B_crit(L) = 2e8 / L^(1/0.21); by hand at L = 2:
    # 2^(4.7619) = 27.13, so B_crit = 7.37e6 tokens.
    from sizeup.plan.stages import critical_batch as _critical_batch

    b, src = _critical_batch(None, type("L", (), {"extra": {}, "name": "x"})(), 1e21, 2.0)
    assert b == pytest.approx(7.37e6, rel=1e-3) and "Kaplan" in src
    p = plan(preset="chinchilla", compute=1e21)
    assert p.critical_batch == pytest.approx(2e8 / p.loss ** (1 / 0.21))
    # A fit's own critical-batch law wins over Kaplan's; an explicit value wins over both.
    fit = type(
        "L", (), {"extra": {"critical_batch": {"coef": 10.0, "exponent": 0.25}}, "name": "f"}
    )()
    assert _critical_batch(None, fit, 1e20, 2.0)[0] == pytest.approx(10.0 * 1e5)
    assert _critical_batch(5.0, fit, 1e20, 2.0) == (5.0, "given")


# --- one rules engine: the plan's table is sizeup.parametrize + Parametrization.optimizer on
# the planned model, tensor by tensor. The reference below builds that model itself (GPTConfig
# at the plan's shape, on the meta device; its base at the proxy's width and depth, and a base
# at twice the width that tells which dimensions are width, as sizeup.train.build does) and
# reads the optimizer's param groups directly.
SMALL = dict(depth=4, width=128, head_dim=16, vocab_size=64, seq_len=16)
SMALL_PROXY = dict(base_width=32, lr=1e-2, base_tokens=1e6)
B_TARGET = 64 * 16  # tokens per step
RECIPE = dict(
    rule="mup",
    optimizer="adamw",
    readout_form="table3",
    sigma="model",
    scale_eps=True,
    depth_exponent=0.5,
    weight_decay=0.1,
    beta1=0.9,
    beta2=0.95,
    eps=1e-8,
)


def _reference(recipe, depth_scaled, base_batch):
    torch = pytest.importorskip("torch")
    from sizeup import parametrize
    from sizeup.models import GPT, GPTConfig

    def gpt(d, n_layer, device="meta", mlp_ratio=8 / 3):
        cfg = GPTConfig(
            d_model=d, n_layer=n_layer, head_dim=16, vocab_size=64, seq_len=16, mlp_ratio=mlp_ratio
        )
        with torch.device(device):
            return GPT(cfg)

    # the plan rounds the target's d_ff = 8/3 x 128 = 341.3 up to 384 (a multiple of 128); the
    # base and its delta take the target's ratio 384/128 = 3, as `sizeup train -c run.json`
    # builds them (RunConfig.mlp_ratio = the plan's d_ff / d_model): d_ff 96 and 192
    model = gpt(128, 4, mlp_ratio=3.0)
    # a recipe without sigma lets parametrize read the base's own init: a real (small) base
    base = gpt(32, 2, "meta" if recipe.sigma != "model" else "cpu", mlp_ratio=3.0)
    kw = dict(
        rule=recipe.rule,
        optimizer=recipe.optimizer,
        readout_form=recipe.readout_form,
        scale_eps=recipe.scale_eps,
        sigma=recipe.sigma,
    )
    if depth_scaled:
        kw.update(base_depth=2, depth=4, depth_exponent=recipe.depth_exponent)
    p = parametrize(model, base, delta=gpt(64, 2, mlp_ratio=3.0), **kw)
    from sizeup.optim import BatchTransferWarning

    # the batch transfer says what it moved (the plan shows it in its summary instead)
    with pytest.warns(BatchTransferWarning) if base_batch else contextlib.nullcontext():
        opt = p.optimizer(
            recipe.optimizer,
            lr=1e-2,
            weight_decay=recipe.weight_decay,
            betas=(recipe.beta1, recipe.beta2),
            eps=recipe.eps,
            batch_size=B_TARGET if base_batch else None,
            base_batch_size=base_batch,
        )
    groups = {n: g for g in opt.param_groups for n in g["names"]}
    out = {}
    for s in p.table():
        g = groups[s.name]
        adam = "betas" in g and not g.get("use_muon")
        out[s.name] = dict(
            init_std=s.init_std,
            multiplier=p.effective_multiplier(s.name),
            lr=g["lr"],
            beta1=g["betas"][0] if adam else None,
            beta2=g["betas"][1] if adam else None,
            eps=g["eps"] if adam else None,
            decay_per_step=g["lr"] * g["weight_decay"],
        )
    return out


def _assert_same(plan_rows, ref):
    import re

    by_class = {r["tensor"]: r for r in plan_rows}
    assert sum(r["count"] for r in plan_rows) == len(ref)
    for name, want in ref.items():
        cls = re.sub(r"\.\d+\.", ".*.", name).removesuffix(".weight")
        row = by_class.get(name.removesuffix(".weight")) or by_class[cls]
        for k, v in want.items():
            if v is None:
                assert row[k] is None, (name, k)
            else:
                assert row[k] == pytest.approx(v, rel=1e-12), (name, k, row[k], v)


RULES_ALL = ("sp", "mup", "mup_simple", "spectral")


@pytest.mark.parametrize("rule", RULES_ALL)
@pytest.mark.parametrize("optimizer", ("adamw", "muon", "sgd"))
@pytest.mark.parametrize("readout_form", ("table3", "table8"))
@pytest.mark.parametrize("depth_scaled", (False, True))
@pytest.mark.parametrize("batch_transfer", (False, True))
def test_plan_table_is_parametrize_table(
    rule, optimizer, readout_form, depth_scaled, batch_transfer
):
    fields = {**RECIPE, "rule": rule, "optimizer": optimizer, "readout_form": readout_form}
    fields["sigma"] = 0.02
    recipe = types.SimpleNamespace(**fields)
    base_batch = B_TARGET // 4 if batch_transfer else B_TARGET
    p = plan(
        tokens=1e8,
        batch_tokens=B_TARGET,
        base_batch_tokens=base_batch,
        **({"base_depth": 2} if depth_scaled else {}),
        **SMALL_PROXY,
        **fields,
        **SMALL,
    )
    assert p.batch_ratio == (4 if batch_transfer else 1)
    assert p.peak_lr == pytest.approx(1e-2 * p.batch_ratio**0.5)
    _assert_same(p.layers, _reference(recipe, depth_scaled, base_batch if batch_transfer else None))
    assert len(p.layers) == 12  # identical rows of the 4 blocks fold into one tensor class


@pytest.mark.parametrize("sigma", ("model", "fan_in"))
def test_plan_table_is_parametrize_table_for_other_inits(sigma):
    # sigma "model": parametrize's own default (the model's own init), read from a real base
    fields = {**RECIPE, "sigma": sigma, "depth_exponent": 1.0}
    p = plan(
        tokens=1e8,
        batch_tokens=B_TARGET,
        base_batch_tokens=B_TARGET // 2,
        base_depth=2,
        **SMALL_PROXY,
        **fields,
        **SMALL,
    )
    _assert_same(p.layers, _reference(types.SimpleNamespace(**fields), True, B_TARGET // 2))


def test_law_lr_table_is_the_target_as_its_own_base():
    # A law's eta is the target's own lr: parametrize relative to the target itself (n = 1).
    p = plan(preset="deepseek-v1", tokens=1e8, **SMALL)
    assert p.lr_source == "deepseek-v1 eta(C)"
    hidden = next(r for r in p.layers if r["tensor"] == "blocks.*.attn.q")
    assert hidden["role"] == "hidden" and hidden["m_in"] == 1.0
    assert hidden["lr"] == pytest.approx(p.peak_lr) and hidden["init_std"] == pytest.approx(0.02)


def test_the_architecture_options_set_the_table():
    # Every ModelSpec field is a plan option: here QK-norm, whose norm gains are extra tensors.
    p = plan(tokens=1e8, qk_norm=True, **SMALL_PROXY, **SMALL)
    names = [r["tensor"] for r in p.layers]
    assert "blocks.*.attn.q_norm" in names and len(names) == 14
    assert p.run.model.qk_norm


# --- sweep -> plan: the proxy read from a study (sizeup.sweep.Store and the transfer analysis)
@pytest.fixture(scope="module")
def real_study(tmp_path_factory):
    # A real (tiny) muP study: 2 widths x 7 lrs of a one-block GPT, 30 steps each (seconds).
    from sizeup.sweep import run_sweep

    path = tmp_path_factory.mktemp("study") / "study.db"
    base = dict(width=32, base_width=32, depth=1, head_dim=16, seq_len=32, batch_size=8)
    spec = {
        "base": {**base, "steps": 30, "eval_batches": 2, "weight_decay": 0.05},
        "axes": {"width": [32, 64], "lr": {"log2": [-9, -3]}},
    }
    run_sweep(spec, path, progress=False)
    return path


def test_plan_from_study_reproduces_the_transfer_lr(real_study, capsys):
    import re

    from sizeup.cli import main
    from sizeup.sweep.transfer import analyze_transfer

    main(["transfer", str(real_study)])
    printed = capsys.readouterr().out
    row = re.search(r"\|\s*64\s*\|\s*([0-9.e+-]+) \(2\^", printed)  # the widest width's row
    assert row, printed
    target = ["--depth", "4", "--width", "256", "--head-dim", "16", "--seq-len", "32"]
    target += ["--vocab-size", "256", "--batch-tokens", str(8 * 32)]
    main(["plan", "--from-study", str(real_study), "--format", "json", "--tokens", "1e7", *target])

    d = json.loads(capsys.readouterr().out)
    assert d["proxy"]["lr"] == pytest.approx(float(row.group(1)), rel=5e-3)  # printed as 3 s.f.
    widest = analyze_transfer(real_study).groups[0].points[-1]
    assert d["proxy"]["lr"] == widest.opt_lr and not widest.at_edge
    # the study's batch (8 x 32 tokens) and data exponent 0: the peak lr is the tuned lr itself
    assert d["peak_lr"] == d["proxy"]["lr"] and d["batch_ratio"] == 1
    px, recipe = d["proxy"], d["recipe"]
    assert (px["width"], px["depth"], px["tuned_width"]) == (32, None, 64)
    assert recipe["parametrization"]["base_head_dim"] == 16  # the trials' heads
    assert (px["batch_tokens"], px["tokens"]) == (256, 30 * 256)
    assert recipe["parametrization"]["rule"] == "mup"
    assert recipe["optimizer"]["weight_decay"] == 0.05
    # the study trained with the model's own init (sigma "model"): so does the plan, and the
    # GPT declares 0.02
    assert recipe["parametrization"]["sigma"] == "model"
    assert d["run_config"]["parametrization"]["sigma"] == "model"
    assert next(r for r in d["layers"] if r["tensor"] == "wte")["init_std"] == 0.02
    # the same through Python
    p = plan(
        study=read_study(real_study),
        tokens=1e7,
        vocab_size=256,
        batch_tokens=256,
        depth=4,
        width=256,
        head_dim=16,
        seq_len=32,
    )
    assert p.peak_lr == d["peak_lr"] and p.layers == d["layers"]


def _synthetic_study(path, lr_log2, rules=("sp", "mup")):
    from sizeup.sweep import run_sweep
    from sizeup.sweep.testing import synthetic_run

    spec = {
        "base": {"steps": 5, "head_dim": 16},
        "axes": {"rule": list(rules), "width": [32, 64, 128, 256], "lr": {"log2": lr_log2}},
    }
    run_sweep(spec, path, runner=synthetic_run, progress=False)
    return path


def test_from_study_picks_the_mup_group_or_the_one_asked_for(tmp_path):
    # synthetic_run: muP's optimum is 2^-8 at every width, SP's 2^-8 x 32/width (2^-11 at 256)
    db = _synthetic_study(tmp_path / "s.db", [-13, -5])
    mup = read_study(db)
    assert mup.parametrization["rule"] == "mup"
    assert mup.optimizer["lr"] == pytest.approx(2**-8, rel=1e-6)
    assert (mup.parametrization["base_width"], mup.proxy.tuned_width) == (32, 256)
    sp = read_study(db, "rule=sp")
    assert sp.parametrization["rule"] == "sp"
    assert sp.optimizer["lr"] == pytest.approx(2**-11, rel=1e-6)
    with pytest.raises(ConfigError, match="from_study_group='rule=nope'.*rule=mup; rule=sp"):
        read_study(db, "rule=nope")


def test_from_study_refuses_an_optimum_at_the_grid_edge(tmp_path):
    db = _synthetic_study(tmp_path / "s.db", [-13, -9], rules=("mup",))  # optimum 2^-8 is beyond
    with pytest.raises(ConfigError, match="from_study=.*edge of the grid.*a bound"):
        read_study(db)


def test_from_study_refuses_a_study_without_finished_trials(tmp_path):
    from sizeup.config import RunConfig
    from sizeup.sweep import Store

    with Store(tmp_path / "s.db") as st:
        st.add([RunConfig()])
    with pytest.raises(ConfigError, match="finished trials"):
        read_study(tmp_path / "s.db")
    with pytest.raises(ConfigError, match="existing study file"):
        read_study(tmp_path / "missing.db")


def test_a_study_fixes_the_recipe(tmp_path):
    study = read_study(_synthetic_study(tmp_path / "s.db", [-13, -5]))
    kw = dict(preset="chinchilla", params=1e8, study=study)
    with pytest.raises(ConfigError, match="rule=.*the study's rule='mup'"):
        plan(**kw, rule="sp")
    with pytest.raises(ConfigError, match="lr=.*the study's lr="):
        plan(**kw, base_lr=1e-3)
    with pytest.raises(ConfigError, match="base_batch_tokens=.*left out with --from-study"):
        plan(**kw, base_batch_tokens=2**10)
    # the readout form is an abc-reparametrization of the same training: free to choose
    assert plan(**kw, readout_form="table8").readout_form == "table8"


# --- inputs: records declared once; flat options and the command line map onto them
OLD_FLAGS = """compute params tokens tokens_per_param n_layer d_model n_head head_dim n_kv_head
vocab_size seq_len mlp_ratio tie_embeddings aspect_ratio base_width base_depth base_lr base_batch
base_tokens rule sigma beta1 beta2 eps weight_decay optimizer readout_form scale_eps
data_exponent depth_exponent batch_tokens batch_multiple lr_law batch_law lr_nd_law batch_d_law
warmup decay_frac cooldown gpu n_gpus mfu gpu_price critical_batch fit_range""".split()


def test_every_command_line_flag_is_a_record_field():
    import inspect

    from sizeup.cli.plan import plan_command
    from sizeup.plan.options import option_fields

    fields = option_fields()
    names = {f.flat for f in fields}
    old = {a for f in fields for a in f.aliases}
    assert set(OLD_FLAGS) <= names | old  # the old names are hidden aliases
    params = inspect.signature(plan_command).parameters
    flags = {n for n in params if "__alias__" not in n}
    command = {"from_study", "from_study_group", "out", "explain", "fmt"}
    command |= {"emit"}  # torchtitan integration (issue 25): `--emit torchtitan`
    command |= {"horizon_study", "batch_study"}  # measured exponents (sizeup.sweep.exponents)
    assert names | command == flags
    # one name per concept: the plan's flags are train's where they share a record's field
    from sizeup.config import RunConfig

    shared = names & set(RunConfig.field_names())
    assert {"width", "depth", "rule", "lr", "schedule", "base_width", "base_tokens"} <= shared


def test_flat_options_and_records_give_the_same_plan():
    from sizeup.config import OptimSpec, ParamSpec
    from sizeup.plan import Hardware, Laws, Proxy, Target

    flat = plan(
        preset="deepseek-v1",
        n_layer=8,
        d_model=512,
        tokens=1e10,
        base_width=128,
        base_lr=2e-3,
        base_batch=2**16,
        rule="mup",
        warmup=10,
        gpu="1e15",
    )
    records = plan(
        Target(tokens=1e10),
        width=512,
        depth=8,
        parametrization=ParamSpec(base_width=128),
        optimizer=OptimSpec(lr=2e-3),
        proxy=Proxy(batch_tokens=2**16),
        laws=Laws(preset="deepseek-v1"),
        hardware=Hardware(gpu=1e15),
        warmup=10,
    )
    assert flat.to_dict() == records.to_dict()
    with pytest.raises(ConfigError, match="nope=1 is not allowed: a plan option"):
        plan(params=1e9, nope=1)


def test_parametrize_out_writes_the_same_table_columns(tmp_path):
    # `sizeup parametrize --out` reads the optimizer back through the planner's table function
    # (sizeup.optim.tensor_table): every tensor's lr, betas, eps and decay per step.
    from sizeup.cli import main

    main(["parametrize", "--width", "64", "--no-table", "--out", str(tmp_path), "--set",
          "weight_decay=0.1"])  # fmt: skip
    rows = json.loads((tmp_path / "parametrization.json").read_text())["tensors"]
    for r in rows:
        assert r["lr"] == pytest.approx(3e-3 * r["lr_mult"], rel=1e-12)  # RunConfig's lr 3e-3
        assert r["decay_per_step"] == pytest.approx(r["lr"] * r["weight_decay"], rel=1e-12)
        assert (r["beta1"], r["beta2"], r["update"]) == (0.9, 0.95, "adamw")
        assert r["eps"] == pytest.approx(1e-8 * r["eps_mult"], rel=1e-12)


@pytest.mark.parametrize("target", [{"compute": 1e21}, {"params": 1e9}])
def test_n_kv_head_holds_when_the_shape_comes_from_the_target(target):
    # Hardening issue, item 10: --n-kv-head was ignored unless the shape was explicit.
    p = plan(preset="chinchilla", n_kv_head=4, **target)
    assert p.model["n_kv_head"] == 4 and p.model["heads"] % 4 == 0
    assert p.run.model.kv_heads == 4  # and the run trains it
    with pytest.raises(ConfigError, match="n_kv_head"):
        plan(preset="chinchilla", n_kv_head=0, **target)


# --- the published laws side by side (sizeup.plan.compare)
@pytest.mark.parametrize(
    "n_layer,d_model,n_head,lr_used,batch_used",
    [(30, 4096, 32, 4.2e-4, 9.4e6), (95, 8192, 64, 3.2e-4, 18.9e6)],
)
def test_compare_laws_for_deepseek_7b_and_67b(n_layer, d_model, n_head, lr_used, batch_used):
    from sizeup.choices import PRESET_NAMES

    p = plan(
        preset="deepseek-v1",
        n_layer=n_layer,
        d_model=d_model,
        n_head=n_head,
        seq_len=4096,
        tokens=2e12,
        compare_laws="all",
    )
    rows = {r["name"]: r for r in p.comparison["rows"]}
    assert list(rows) == list(PRESET_NAMES)
    ds = rows["deepseek-v1"]
    # DeepSeek LLM Table 2: the lr and batch the 7B and 67B runs used
    assert rel(ds["peak_lr"], lr_used) < 0.10 and rel(ds["batch_tokens"], batch_used) < 0.10
    assert ds["peak_lr"] == p.peak_lr and ds["batch_tokens"] == p.batch_tokens  # one evaluation
    assert ds["steps"] == math.ceil(2e12 / ds["batch_tokens"]) and ds["warmup_steps"] == 2000
    assert ds["schedule"]["kind"] == "multistep"
    # every row says where its fitting setup differs from this run
    assert all(any(d.startswith("data:") for d in r["differs"]) for r in rows.values())
    assert any("N = M" in d for d in ds["differs"])
    assert any(d.startswith("schedule: fitted with multi-step") for d in ds["differs"])
    # laws without lr or batch give the loss; those read in the loss say at which loss
    assert rows["chinchilla"]["loss"] is not None and rows["chinchilla"]["peak_lr"] is None
    assert any("read at L =" in n for n in rows["minicpm"]["notes"])
    # tau = B / (eta lambda D), lambda = the recipe's 0.1
    assert ds["tau"] == pytest.approx(ds["batch_tokens"] / (ds["peak_lr"] * 0.1 * 2e12))


def test_compare_rows_by_hand_for_steplaw_and_minicpm():
    p = plan(
        preset="chinchilla", n_layer=8, d_model=512, tokens=1e10, compare_laws="steplaw,minicpm"
    )
    steplaw, minicpm = p.comparison["rows"]
    # Step Law reads non-embedding N; the plan rounds d_ff up to a multiple of 128
    N = model_params(p.run.model, embeddings=False)
    assert p.run.model.ffn_hidden == 1408  # 8/3 x 512 = 1365.3, up to 11 x 128
    assert steplaw["peak_lr"] == pytest.approx(1.79 * N**-0.713 * 1e10**0.307, rel=1e-12)
    raw = 0.58 * 1e10**0.571
    assert steplaw["batch_tokens"] == max(8, round(raw / 2048 / 8) * 8) * 2048
    # minicpm: muP hidden lr 0.01 * 256 / 512; batch 1.21e9 / L^6.24 at the plan's loss
    assert minicpm["peak_lr"] == pytest.approx(0.005)
    assert p.comparison["loss"] == p.loss
    raw = 1.21e9 / p.loss**6.24
    assert minicpm["batch_tokens"] == max(8, round(raw / 2048 / 8) * 8) * 2048


def test_compare_cli_writes_table_and_plot(tmp_path, capsys):
    from sizeup.cli import main

    main(
        ["plan", "--preset", "deepseek-v1", "--n-layer", "30", "--d-model", "4096",
         "--n-head", "32", "--seq-len", "4096", "--tokens", "2e12",
         "--compare-laws", "deepseek-v1,steplaw,kaplan", "--out", str(tmp_path)]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert "deepseek-v1" in out and "steplaw" in out and "kaplan" in out and "differs" in out
    d = json.loads((tmp_path / "plan.json").read_text())
    assert [r["name"] for r in d["comparison"]["rows"]] == ["deepseek-v1", "steplaw", "kaplan"]
    assert (tmp_path / "compare_lr.png").stat().st_size > 5000
    assert "Published laws for this target" in (tmp_path / "plan.md").read_text()


def test_compare_laws_refuses_unknown_names():
    with pytest.raises(ConfigError, match="compare_laws=.*preset names"):
        plan(params=1e9, compare_laws="chinchilla,nope")


def test_steplaw_as_the_plan_preset():
    p = plan(preset="steplaw", n_layer=8, d_model=512, tokens=1e10)
    N = model_params(p.run.model, embeddings=False)
    assert p.peak_lr == pytest.approx(1.79 * N**-0.713 * 1e10**0.307, rel=1e-12)
    assert p.lr_source == "steplaw eta(N,D)"
    assert "steplaw B(D)" in p.batch_rounding


# --- schedules and the batch ramp in the plan
SMALL_RUN = dict(preset="chinchilla", n_layer=4, d_model=256, seq_len=256, tokens=2e8)


def test_plan_multistep_and_power_schedules():
    p = plan(**SMALL_RUN, lr_schedule="multistep", batch_tokens=2**16)
    assert p.schedule["milestones"] == [[0.8, 0.316], [0.9, 0.1]]  # DeepSeek LLM's by default
    f = p.lr_schedule()
    assert f(p.steps - 1) == pytest.approx(0.1) and f(p.warmup_steps) == 1.0
    q = plan(**SMALL_RUN, lr_schedule="power", power_a=0.5, power_b=-0.51, batch_tokens=2**16)
    g = q.lr_schedule()
    s = q.warmup_steps + 100
    assert g(s) == pytest.approx(min(1, 0.5 * (s * 2**16) ** -0.51 / q.peak_lr))
    assert "min(peak, 0.5 n^-0.51)" in dict(q.summary_rows())["schedule"]
    with pytest.raises(ConfigError, match="power_b"):
        plan(**SMALL_RUN, lr_schedule="power", power_a=0.5)


def test_plan_token_ramp():
    # The batch doubles from 2^14 to 2^16 tokens over the first 2e7 tokens: switches at 1e7
    # and 2e7; steps = 1e7 / 2^14 (611) + 1e7 / 2^15 (306) + the rest at 2^16.
    p = plan(
        **SMALL_RUN, batch_tokens=2**16, batch_ramp="tokens", ramp_start_batch=2**14,
        ramp_tokens=2e7,
    )  # fmt: skip
    assert [r["batch_tokens"] for r in p.batch_ramp] == [2**14, 2**15, 2**16]
    first = math.ceil(1e7 / 2**14)
    seen = first * 2**14
    second = math.ceil((2e7 - seen) / 2**15)
    seen += second * 2**15
    assert p.steps == first + second + math.ceil((2e8 - seen) / 2**16)
    assert [r["from_step"] for r in p.batch_ramp] == [0, first, first + second]
    assert p.ramp().steps_for(2e8) == p.steps
    assert "batch ramp" in dict(p.summary_rows())
    with pytest.raises(ConfigError, match="ramp_tokens"):
        plan(**SMALL_RUN, batch_ramp="tokens", ramp_start_batch=2**14)


def test_plan_loss_ramp_follows_the_critical_batch():
    # chinchilla's L(N, n) after n tokens, Kaplan's B_crit at that loss: each switch is where
    # B_crit first reaches the doubled batch.
    p = plan(**SMALL_RUN, batch_tokens=2**19, batch_ramp="loss", ramp_start_batch=2**16)
    from sizeup.laws.presets import get_preset

    law, N = get_preset("chinchilla").loss_law, p.params
    for r in p.batch_ramp[1:]:
        L = law.loss(N, r["switch_tokens"])
        assert 2e8 / L ** (1 / 0.21) == pytest.approx(r["batch_tokens"], rel=2e-3)
    with pytest.raises(ConfigError, match="ramp=.*loss law"):
        plan(preset="deepseek-v1", n_layer=4, d_model=256, seq_len=256, tokens=2e8,
             batch_ramp="loss", ramp_start_batch=2**14)  # fmt: skip


def test_schedule_free_adamw_plan():
    pytest.importorskip("schedulefree", reason="schedule-free AdamW needs the schedulefree extra")
    p = plan(**SMALL_RUN, optimizer="adamw_schedulefree", batch_tokens=2**16)
    assert p.schedule["kind"] == "constant"  # no decay: schedule-free averages instead
    q = next(r for r in p.layers if r["tensor"] == "blocks.*.attn.q")
    assert (q["beta1"], q["beta2"]) == (0.9, 0.95)
    assert q["decay_per_step"] == pytest.approx(q["lr"] * 0.1)


# --- numbers that explain themselves (issue #15)
def test_family_shapes_are_hardware_friendly_and_show_their_rounding():
    # Chinchilla's budget under the Epoch refit: before, n_head 71 and d_ff 24235
    p = plan(preset="epoch", compute=5.76e23)
    s = p.model
    assert s["heads"] % 8 == 0 and s["width"] % 128 == 0 and s["d_ff"] % 128 == 0
    assert (s["depth"], s["width"], s["heads"], s["d_ff"]) == (70, 9216, 72, 24576)
    rows = dict(p.summary_rows())
    assert "72 heads x 128" in rows["shape"] and "a multiple of 128" in rows["shape"]
    assert "nearest the target N_opt(C)" in rows["parameters"]
    # small targets: head counts a power of two below 8
    assert shape_for(2e7, PLAN_TEMPLATE.replace(head_dim=64)).heads in (1, 2, 4, 8, 16)
    # the rounding is an option: 1 keeps d_ff = round(8/3 d) as the GPT does by itself
    explicit = dict(preset="chinchilla", n_layer=30, d_model=4096, tokens=1e11)
    assert plan(**explicit).model["d_ff"] == 11008  # 8/3 x 4096 = 10922.7, up to 86 x 128
    assert plan(**explicit, ffn_multiple=1).model["d_ff"] == 10923


def test_presets_carry_their_vocabulary():
    from sizeup.laws.presets import get_preset

    assert get_preset("deepseek-v1").vocab_size == 102_400
    # DeepSeek LLM 7B (30 layers, d 4096, d_ff 11008, vocabulary 102,400): 6.9B parameters
    p = plan(preset="deepseek-v1", n_layer=30, d_model=4096, n_head=32, seq_len=4096, tokens=2e12)
    assert p.model["vocab_size"] == 102_400 and p.model["d_ff"] == 11008
    assert p.params == pytest.approx(6.91e9, rel=2e-3)
    assert "preset deepseek-v1's vocabulary" in dict(p.summary_rows())["shape"]
    # a vocabulary the user gives wins
    q = plan(preset="deepseek-v1", n_layer=30, d_model=4096, tokens=2e12, vocab_size=32000)
    assert q.model["vocab_size"] == 32000 and "given" in dict(q.summary_rows())["shape"]
    assert get_preset("steplaw").vocab_size is None  # not stated where sizeup could read it
    assert plan(preset="steplaw", n_layer=8, d_model=512, tokens=1e10).model["vocab_size"] == 32000


def test_loss_time_and_cost_are_always_shown_or_explained():
    rows = dict(plan(preset="deepseek-v1", params=7e9, tokens=2e12).summary_rows())
    assert "no loss law in preset deepseek-v1" in rows["predicted loss"]
    assert "give --gpu" in rows["time"] and "--gpu-price" in rows["cost"]
    rows = dict(plan(preset="chinchilla", params=7e9, gpu="H100", n_gpus=64).summary_rows())
    assert rows["predicted loss"][0].isdigit() and "days on 64 x H100" in rows["time"]
    assert "give --gpu-price" in rows["cost"] and "GPU-hours" in rows["cost"]


def test_rows_are_words_not_ratios():
    p = plan(preset="deepseek-v1", params=7e9, tokens=1e13)
    rows = dict(p.summary_rows())
    assert "ratios" not in rows and "no proxy given" in rows["transfer"]
    assert "tokens per parameter" in rows["tokens"]
    assert not any("FLOP/token" in w for w in p.warnings)
    assert any("tokens per parameter is far" in w for w in p.warnings)  # DeepSeek's D/M, in N
    q = plan(
        preset="deepseek-v1",
        params=7e9,
        tokens=2e12,
        base_width=256,
        base_lr=3e-3,
        base_batch=2**20,
        base_tokens=1e9,
    )
    rows = dict(q.summary_rows())
    assert rows["transfer"].startswith("16x the proxy's width")
    assert "beta2 0.95 ->" in rows["batch transfer"] and "eps 1e-08 ->" in rows["batch transfer"]
    moved = q.batch_transfer
    assert moved["lr"] == [3e-3, pytest.approx(3e-3 * (q.batch_tokens / 2**20) ** 0.5)]
