"""Parametrization: role inference, the rules table, base width = SP, abc-symmetry, metadata that
survives copies and wrappers, and clear errors."""

from __future__ import annotations

import copy
import io
import json
import math

import pytest
import torch
from torch import nn

import sizeup
from sizeup.errors import ConfigError, ShapeError
from sizeup.parametrization import canonical_name, get_parametrization, parametrize


class TinyMLP(nn.Module):
    """in -> w -> w -> out, biases on: every role appears."""

    def __init__(self, width: int, d_in: int = 6, d_out: int = 3):
        super().__init__()
        self.input = nn.Linear(d_in, width)
        self.hidden = nn.Linear(width, width)
        self.readout = nn.Linear(width, d_out)

    def forward(self, x):
        return self.readout(torch.relu(self.hidden(torch.relu(self.input(x)))))


class TinyLM(nn.Module):
    """Embedding -> hidden -> (tied or untied) readout, to exercise the Embedding fan swap."""

    def __init__(self, width: int, vocab: int = 11, tied: bool = False):
        super().__init__()
        self.wte = nn.Embedding(vocab, width)
        self.hidden = nn.Linear(width, width, bias=False)
        self.lm_head = nn.Linear(width, vocab, bias=False)
        if tied:
            self.lm_head.weight = self.wte.weight

    def forward(self, idx):
        return self.lm_head(torch.tanh(self.hidden(self.wte(idx))))


def _roles(p):
    return {s.name: s.role for s in p.table()}


def test_roles_inferred_from_base():
    p = parametrize(TinyMLP(64), TinyMLP(16), rule="mup")
    assert _roles(p) == {
        "input.weight": "input",
        "input.bias": "vector",
        "hidden.weight": "hidden",
        "hidden.bias": "vector",
        "readout.weight": "readout",
        "readout.bias": "vector",
    }


def test_embedding_fans_are_swapped():
    # nn.Embedding stores (num_embeddings, dim): the width dim is fan_out, so it is an input.
    p = parametrize(TinyLM(64), TinyLM(16), rule="mup")
    s = p["wte.weight"]
    assert (s.role, s.fan_in, s.fan_out, s.m_out) == ("input", 11, 64, 4.0)
    assert p["lm_head.weight"].role == "readout"


def test_delta_disambiguates_width():
    # base and model differ in the input dim too (not width): delta tells them apart.
    model, base, delta = TinyMLP(64, d_in=12), TinyMLP(16, d_in=6), TinyMLP(32, d_in=6)
    p = parametrize(model, base, delta=delta, rule="mup")
    assert p["input.weight"].role == "input"
    p2 = parametrize(TinyMLP(64, d_in=12), base, rule="mup")
    assert p2["input.weight"].role == "hidden"  # without delta both dims look infinite


def test_role_override_by_pattern():
    p = parametrize(TinyMLP(64), TinyMLP(16), rule="mup", roles={"hidden.*": "readout"})
    assert p["hidden.weight"].role == "readout"


def test_mup_adam_table_by_hand():
    # Tensor Programs V, Table 3 (Adam): hidden init sigma/sqrt(m), lr eta/m; readout init
    # sigma/m, lr eta/m; input init sigma, lr eta; vectors lr eta.  m = 64/16 = 4, sigma = 0.02.
    p = parametrize(TinyMLP(64), TinyMLP(16), rule="mup", sigma=0.02)
    t = {s.name: s for s in p.table()}
    assert t["input.weight"].init_std == pytest.approx(0.02)
    assert t["input.weight"].lr_mult == 1.0
    assert t["hidden.weight"].init_std == pytest.approx(0.02 / 2)
    assert t["hidden.weight"].lr_mult == pytest.approx(1 / 4)
    assert t["readout.weight"].init_std == pytest.approx(0.02 / 4)
    assert t["readout.weight"].lr_mult == pytest.approx(1 / 4)
    assert t["hidden.bias"].init_std is None and t["hidden.bias"].lr_mult == 1.0
    assert t["hidden.bias"].wd_mult == 0.0 and t["hidden.weight"].wd_mult == 1.0


def test_mup_sgd_column_by_hand():
    # Table 3, SGD column: input eta*m_out, hidden eta*m_out/m_in, readout eta/m_in, vector eta*m.
    p = parametrize(TinyMLP(64), TinyMLP(16), rule="mup", optimizer="sgd")
    t = {s.name: s.lr_mult for s in p.table()}
    assert t["input.weight"] == 4.0
    assert t["hidden.weight"] == 1.0
    assert t["readout.weight"] == 0.25
    assert t["hidden.bias"] == 4.0
    assert t["readout.bias"] == 1.0  # fan_out 3 is not a width dim


def test_adam_eps_column_by_hand():
    # eps follows the gradient's scale (Everett et al. 2024, "Scaling exponents across parameterizations and optimizers"): the residual stream's
    # gradient has Theta(1/n) coordinates under muP, so weights writing to width get eps/m_out;
    # the Table 3 readout's gradient is Theta(1); the Table 8 readout's is 1/m_in (multiplier).
    p = parametrize(TinyMLP(64), TinyMLP(16), rule="mup")
    t = {s.name: s.eps_mult for s in p.table()}
    assert t == {
        "input.weight": 0.25,
        "input.bias": 0.25,
        "hidden.weight": 0.25,
        "hidden.bias": 0.25,
        "readout.weight": 1.0,
        "readout.bias": 1.0,
    }
    p8 = parametrize(TinyMLP(64), TinyMLP(16), rule="mup", readout_form="table8")
    assert p8["readout.weight"].eps_mult == 0.25
    opt = p.optimizer("adamw", lr=1e-3, eps=1e-8)
    eps = {n: g["eps"] for g in opt.param_groups for n in g["names"]}
    assert eps["hidden.weight"] == pytest.approx(2.5e-9) and eps["readout.weight"] == 1e-8
    for rule in ("sp", "mup_simple"):  # no rule of one-eps families changes it
        assert {s.eps_mult for s in parametrize(TinyMLP(64), TinyMLP(16), rule=rule).table()} == {
            1.0
        }
    off = parametrize(TinyMLP(64), TinyMLP(16), rule="mup", scale_eps=False)
    assert {s.eps_mult for s in off.table()} == {1.0}


def test_spectral_init_by_hand():
    # Yang, Simon & Bernstein 2023: std = fan_in^-1/2 * min(1, sqrt(fan_out/fan_in)).
    p = parametrize(TinyMLP(64), TinyMLP(16), rule="spectral")
    t = {s.name: s for s in p.table()}
    assert t["input.weight"].init_std == pytest.approx(6**-0.5)  # fan_out 64 > fan_in 6
    assert t["hidden.weight"].init_std == pytest.approx(64**-0.5)
    assert t["readout.weight"].init_std == pytest.approx(64**-0.5 * math.sqrt(3 / 64))
    assert t["hidden.weight"].lr_mult == pytest.approx(0.25)


@pytest.mark.parametrize("rule", ["mup", "mup_simple"])
@pytest.mark.parametrize("opt", ["adamw", "sgd"])
def test_base_width_is_sp(rule, opt):
    """At base width every rule but spectral is SP: same init, same lr per tensor."""
    torch.manual_seed(0)
    a = TinyMLP(16)
    torch.manual_seed(0)
    b = TinyMLP(16)
    torch.manual_seed(1)
    pa = parametrize(a, TinyMLP(16), rule="sp", optimizer=opt)
    torch.manual_seed(1)
    pb = parametrize(b, TinyMLP(16), rule=rule, optimizer=opt)
    for (n, x), (_, y) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(x, y), n
    for sa, sb in zip(pa.table(), pb.table()):
        assert (sa.init_std, sa.lr_mult, sa.multiplier) == (sb.init_std, sb.lr_mult, sb.multiplier)


def test_readout_table8_installs_multiplier_and_matches_forward():
    torch.manual_seed(0)
    m3 = TinyMLP(64).double()
    m8 = copy.deepcopy(m3)
    parametrize(m3, TinyMLP(16), rule="mup", init=False)
    p8 = parametrize(m8, TinyMLP(16), rule="mup", readout_form="table8", init=False)
    assert p8["readout.weight"].multiplier == pytest.approx(0.25)
    with torch.no_grad():  # abc: multiplier 1/4 with weights x4 is the same function
        m8.readout.weight.mul_(4.0)
        m8.readout.bias.mul_(1.0)
    x = torch.randn(5, 6, dtype=torch.float64)
    # bias is outside the multiplier (it multiplies the input), so outputs match exactly
    assert torch.allclose(m3(x), m8(x), atol=1e-12)


def test_no_hooks_when_all_multipliers_are_one():
    m = TinyMLP(64)
    parametrize(m, TinyMLP(16), rule="mup")
    assert all(
        len(mod._forward_pre_hooks) == 0 and len(mod._forward_hooks) == 0 for mod in m.modules()
    )


def test_tied_readout_gets_table8_multiplier():
    m = TinyLM(64, tied=True)
    p = parametrize(m, TinyLM(16, tied=True), rule="mup")
    assert "lm_head.weight" not in p.scalings  # deduplicated: one tensor, the embedding
    assert p.module_multipliers["lm_head"] == (0.25, 1.0)
    assert len(m.lm_head._forward_pre_hooks) == 1


def test_metadata_survives_deepcopy_state_dict_and_wrappers():
    m = TinyMLP(64)
    p = parametrize(m, TinyMLP(16), rule="mup")
    c = copy.deepcopy(m)
    pc = get_parametrization(c)
    assert pc is not None and pc.model is c and pc is not p
    assert pc["hidden.weight"].lr_mult == p["hidden.weight"].lr_mult
    # state_dict round trip into a fresh parametrized model: tensors load, metadata stays
    fresh = TinyMLP(64)
    parametrize(fresh, TinyMLP(16), rule="mup")
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    buf.seek(0)
    fresh.load_state_dict(torch.load(buf))
    assert torch.equal(fresh.hidden.weight, m.hidden.weight)
    assert get_parametrization(fresh)["hidden.weight"].lr_mult == 0.25
    # wrapper prefixes: DDP's module., torch.compile's _orig_mod.
    assert canonical_name("module._orig_mod.hidden.weight") == "hidden.weight"
    wrapped = nn.Module()
    wrapped.module = m
    assert get_parametrization(wrapped) is p
    assert p["module.hidden.weight"].role == "hidden"


def test_metadata_survives_torch_compile():
    m = TinyMLP(64)
    p = parametrize(m, TinyMLP(16), rule="mup")
    cm = torch.compile(m)  # wrapping only; nothing is compiled until called
    assert get_parametrization(cm) is p
    names = [canonical_name(n) for n, _ in cm.named_parameters()]
    assert all(n in p.scalings for n in names)


def test_base_shapes_file(tmp_path):
    # The file carries each tensor's shape and init std, so sigma is measured from it.
    path = tmp_path / "base.json"
    base = TinyMLP(16)
    sizeup.parametrization.save_base_shapes(base, path)
    entry = json.loads(path.read_text())["hidden.weight"]
    assert entry["shape"] == [16, 16]
    assert entry["init_std"] == pytest.approx(base.hidden.weight.pow(2).mean().sqrt().item())
    p = parametrize(TinyMLP(64), str(path), rule="mup")
    assert p["hidden.weight"].m_in == 4.0
    assert p["hidden.weight"].sigma_base == entry["init_std"]
    assert p["hidden.weight"].sigma_source == "measured"
    # The older name -> shape format still reads; it has no stds, so sigma must be given.
    old = tmp_path / "old.json"
    old.write_text(json.dumps(sizeup.parametrization.base_shapes(base)))
    assert parametrize(TinyMLP(64), str(old), sigma=0.02)["hidden.weight"].m_in == 4.0
    with pytest.raises(ConfigError, match=r"base=.*sigma="):
        parametrize(TinyMLP(64), str(old))


def test_depth_scaling_multiplier_and_lr():
    class Res(nn.Module):
        sizeup_hints = {"residual_out": ["blocks.*.out"], "block": ["blocks.*"]}

        def __init__(self, depth):
            super().__init__()
            self.blocks = nn.ModuleList(
                nn.ModuleDict(
                    {"inp": nn.Linear(8, 8, bias=False), "out": nn.Linear(8, 8, bias=False)}
                )
                for _ in range(depth)
            )

    m = Res(8)
    p = parametrize(m, Res(2), rule="mup", base_depth=2, depth_exponent=0.5)
    # branch multiplier (L/L0)^-1/2 = (8/2)^-1/2 = 1/2; Adam block lr (L/L0)^(alpha-1) = 1/2.
    assert p.module_multipliers["blocks.0.out"] == (1.0, 0.5)
    assert p["blocks.3.inp.weight"].lr_mult == pytest.approx(0.5)
    p1 = parametrize(Res(8), Res(2), rule="mup", base_depth=2, depth_exponent=1.0)
    assert p1.module_multipliers["blocks.0.out"] == (1.0, 0.25)
    assert p1["blocks.3.inp.weight"].lr_mult == pytest.approx(1.0)  # CompleteP: constant lr
    # A block's gradients carry its branch multiplier, so its Adam eps does too (CompleteP,
    # Dey et al. 2025, scale eps with depth); these 8x8 matrices are not width (m_out = 1).
    assert p1["blocks.3.inp.weight"].eps_mult == pytest.approx(0.25)
    assert p["blocks.3.inp.weight"].eps_mult == pytest.approx(0.5)


def test_errors_name_the_field():
    with pytest.raises(ConfigError, match="rule"):
        parametrize(TinyMLP(64), TinyMLP(16), rule="mupp")
    with pytest.raises(ShapeError, match="base"):
        parametrize(TinyMLP(16), TinyMLP(64), rule="mup")  # base larger than model
    with pytest.raises(ShapeError, match="architecture"):
        parametrize(TinyMLP(64), TinyLM(16), rule="mup")
    with pytest.raises(ConfigError, match="roles"):
        parametrize(TinyMLP(64), TinyMLP(16), roles={"hidden.*": "middle"})
    with pytest.raises(ConfigError, match="sigma"):
        parametrize(TinyMLP(64), TinyMLP(16), sigma=-1.0)
    with pytest.raises(ConfigError, match="base"):
        parametrize(TinyMLP(64), "/nonexistent/base.json")


def test_spectral_init_norms_are_width_independent():
    """Spectral rule at init: ||W||_2 / sqrt(fan_out/fan_in) within 20% of a constant across
    widths 64..1024 for every hidden tensor (Yang, Simon & Bernstein 2023, condition 1)."""
    from sizeup.models import GPT, GPTConfig

    def gpt(d):
        return GPT(GPTConfig(d_model=d, n_layer=1, head_dim=32, vocab_size=64, seq_len=16))

    ratios: dict[str, list[float]] = {}
    torch.manual_seed(0)
    for width in (64, 128, 256, 512, 1024):
        m = gpt(width)
        p = parametrize(m, gpt(64), rule="spectral")
        params = dict(m.named_parameters())
        for s in p.table():
            if s.role != "hidden":
                continue
            w = params[s.name].detach().double()
            gram = w.T @ w if w.shape[1] <= w.shape[0] else w @ w.T  # the smaller Gram matrix
            norm = torch.linalg.eigvalsh(gram)[-1].sqrt().item()
            ratios.setdefault(s.name, []).append(norm / math.sqrt(s.fan_out / s.fan_in))
    assert len(ratios) == 7  # q, k, v, o, gate, up, down
    for name, r in ratios.items():
        mean = sum(r) / len(r)
        assert all(abs(x / mean - 1) <= 0.2 for x in r), (name, r)


def test_spectral_embedding_counts_one_hot_fan_in_as_one():
    # An embedding's input is one-hot (norm 1), so the spectral init counts fan_in = 1:
    # std = min(1, sqrt(fan_out)) = 1, the same at every width (coordinates of W e_i are O(1)).
    for w in (16, 64):
        p = parametrize(TinyLM(w), TinyLM(16), rule="spectral")
        assert p["wte.weight"].init_std == 1.0


# --- init: the base model is the reference ------------------------------------------------------
def _gpt(d: int, **kw):
    from sizeup.models import GPT, GPTConfig

    return GPT(GPTConfig(d_model=d, n_layer=2, head_dim=16, vocab_size=64, seq_len=16, **kw))


def _plain_mlp(width: int) -> nn.Sequential:
    """A plain torch MLP with torch's default nn.Linear init (uniform, std 1/sqrt(3 fan_in))."""
    return nn.Sequential(
        nn.Linear(6, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 3)
    )


@pytest.mark.parametrize("rule", ["sp", "mup", "mup_simple"])
@pytest.mark.parametrize("kind", ["gpt", "plain"])
def test_base_width_leaves_the_model_bit_for_bit(rule, kind):
    """At the base width every tensor stays exactly as the model made it (default sigma), for
    every rule whose factor there is 1; with a separate base instance as well as without."""
    make = (lambda: _gpt(32)) if kind == "gpt" else (lambda: _plain_mlp(16))
    for base in (None, "instance"):
        torch.manual_seed(0)
        model = make()
        before = {n: q.detach().clone() for n, q in model.named_parameters()}
        parametrize(model, make() if base else None, rule=rule)
        for n, q in model.named_parameters():
            assert torch.equal(q, before[n]), (n, base)


def test_wider_plain_mlp_rescales_its_own_uniform_init():
    """At 4x width (sigma measured on the base) the hidden weight's RMS is the base's RMS / 2
    (muP: sigma / sqrt(m_in)), the readout's the base's / 4, the input's the base's; the
    distribution is still torch's uniform (max |w| / RMS = sqrt(3)); biases keep their init."""
    torch.manual_seed(0)
    base, model = _plain_mlp(16), _plain_mlp(64)
    bias = model[2].bias.detach().clone()
    p = parametrize(model, base, rule="mup")

    def rms(t):
        return t.detach().double().pow(2).mean().sqrt().item()

    for i, factor in ((0, 1.0), (2, 0.5), (4, 0.25)):
        assert rms(model[i].weight) == pytest.approx(rms(base[i].weight) * factor, rel=1e-6)
        assert p[f"{i}.weight"].sigma_base == pytest.approx(rms(base[i].weight), rel=1e-12)
        assert p[f"{i}.weight"].sigma_source == "measured"
    w = model[2].weight.detach()
    assert w.abs().max().item() / rms(w) == pytest.approx(math.sqrt(3), rel=0.01)
    assert torch.equal(model[2].bias, bias) and p["2.bias"].sigma_base is None


def test_gpt_declares_its_init_std():
    """The GPT declares 0.02 (GPTConfig.init_std): the default sigma gives the same table and
    the same tensors as sigma=0.02, and a different init_std moves the table with it."""
    torch.manual_seed(0)
    a = _gpt(128)
    b = copy.deepcopy(a)
    pa = parametrize(a, _gpt(32), rule="mup")
    pb = parametrize(b, _gpt(32), rule="mup", sigma=0.02)
    for sa, sb in zip(pa.table(), pb.table()):
        assert (sa.init_std, sa.lr_mult, sa.multiplier) == (sb.init_std, sb.lr_mult, sb.multiplier)
        assert sa.sigma_base == (None if sa.role == "vector" else 0.02)
        assert sa.sigma_source == (None if sa.role == "vector" else "model hint")
    assert pb["blocks.0.mlp.up.weight"].sigma_source == "given"
    for (n, x), y in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(x, y), n
    assert pa["blocks.0.mlp.up.weight"].init_std == pytest.approx(0.02 / 2)
    p3 = parametrize(_gpt(128, init_std=0.03), _gpt(32, init_std=0.03), rule="mup")
    assert p3["blocks.0.mlp.up.weight"].init_std == pytest.approx(0.03 / 2)


def test_sizeup_mlp_declares_fan_in():
    """The reference MLP inits weights N(0, 1/fan_in) and declares "fan_in": under muP its
    hidden weights need no change at any width, its readout shrinks by 1/sqrt(m)."""
    from sizeup.models import MLP

    torch.manual_seed(0)
    model = MLP(12, 128, 3, 5)
    hidden = model.hidden[0].weight.detach().clone()
    readout = model.readout.weight.detach().clone()
    p = parametrize(model, MLP(12, 32, 3, 5), rule="mup")
    assert torch.equal(model.hidden[0].weight, hidden)
    assert torch.allclose(model.readout.weight, readout / 2, rtol=1e-6, atol=0)
    assert p["hidden.0.weight"].sigma_base == pytest.approx(32**-0.5)
    assert p["readout.weight"].init_std == pytest.approx(32**-0.5 / 4)


def test_hint_patterns_and_fallback_to_measuring():
    """A dict hint declares some tensors (fnmatch on parameter or module names); the others are
    measured on the base."""

    class Hinted(nn.Sequential):
        sizeup_hints = {"init_std": {"2": 0.05}}

    torch.manual_seed(0)
    p = parametrize(Hinted(*_plain_mlp(64)), Hinted(*_plain_mlp(16)), rule="mup")
    assert (p["2.weight"].sigma_base, p["2.weight"].sigma_source) == (0.05, "model hint")
    assert p["2.weight"].init_std == pytest.approx(0.025)
    assert p["4.weight"].sigma_source == "measured"

    class Bad(nn.Sequential):
        sizeup_hints = {"init_std": "xavier"}

    with pytest.raises(ConfigError, match=r"sizeup_hints\['init_std'\]"):
        parametrize(Bad(*_plain_mlp(64)), Bad(*_plain_mlp(16)))


def test_meta_device_target_gets_a_table():
    """A model on the meta device (a planner's huge target) gets its table, with sigma from the
    model's hint or a materialized base; nothing is initialised. Without either: ConfigError
    naming base."""
    with torch.device("meta"):
        gpt, plain, plain_base = _gpt(256), _plain_mlp(64), _plain_mlp(16)
    p = parametrize(gpt, _gpt(32), rule="mup")
    assert p["blocks.0.attn.q.weight"].init_std == pytest.approx(0.02 / 8**0.5)
    assert gpt.wte.weight.is_meta
    torch.manual_seed(0)
    real_base = _plain_mlp(16)
    p2 = parametrize(plain, real_base, rule="mup")
    assert p2["2.weight"].init_std == pytest.approx(
        real_base[2].weight.pow(2).mean().sqrt().item() / 2, rel=1e-6
    )
    with pytest.raises(ConfigError, match=r"base=.*materialized"):
        parametrize(plain, plain_base, rule="mup")
    with pytest.raises(ConfigError, match=r"base=.*materialized"):
        parametrize(plain, rule="mup")  # the meta model is its own base
    assert parametrize(plain, plain_base, rule="mup", sigma=0.02)["2.weight"].init_std == 0.01


def test_zero_and_explicit_sigma_and_the_table_columns():
    torch.manual_seed(0)
    model = _plain_mlp(64)
    p = parametrize(model, _plain_mlp(16), rule="mup", zero_readout=True)
    assert torch.count_nonzero(model[4].weight) == 0 and p["4.weight"].init_std == 0.0
    # An all-zero tensor that should not be gets N(0, target).
    torch.manual_seed(0)
    m2 = _plain_mlp(64)
    with torch.no_grad():
        m2[2].weight.zero_()
    parametrize(m2, _plain_mlp(16), rule="mup", sigma=0.02)
    assert m2[2].weight.std().item() == pytest.approx(0.01, rel=0.05)
    md = p.to_markdown()
    assert "sigma_base | sigma_source" in md and "| measured |" in md
    assert {"sigma_base", "sigma_source"} <= set(p.rows()[0])
    with pytest.raises(ConfigError, match="sigma"):
        parametrize(_plain_mlp(64), _plain_mlp(16), sigma="xavier")
