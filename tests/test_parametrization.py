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
    path = tmp_path / "base.json"
    sizeup.parametrization.save_base_shapes(TinyMLP(16), path)
    assert json.loads(path.read_text())["hidden.weight"] == [16, 16]
    p = parametrize(TinyMLP(64), str(path), rule="mup")
    assert p["hidden.weight"].m_in == 4.0


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
