"""Hugging Face transformers models (issue #11): parametrize, the coordinate check, export and the
Trainer, on tiny models built from configs (never a download). Families: Llama, Qwen3, GPT-2
(Conv1D, fused q/k/v, tied embeddings) and the MoE families Qwen3-MoE, Mixtral and OLMoE (3-D
expert tensors, routers)."""

from __future__ import annotations

import warnings

import pytest
import torch

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

import sizeup  # noqa: E402
from sizeup.errors import ConfigError, ShapeError, SizeupError  # noqa: E402
from sizeup.models.hf import FAMILIES, hf_model, hints  # noqa: E402
from sizeup.train.step import forward_loss  # noqa: E402

ALL = sorted(FAMILIES)
MOE = ["mixtral", "olmoe", "qwen3_moe"]
TOKENS = torch.randint(0, 256, (2, 17), generator=torch.Generator().manual_seed(0))


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _models(arch: str, width: int, base: int = 64, **kw):
    """(model at width, base, delta on meta): the base drawn without moving the model's seed."""
    torch.manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        b = hf_model(arch, base, **kw)
    with torch.device("meta"):
        d = hf_model(arch, 2 * base, **kw)
    return hf_model(arch, width, **kw), b, d


def _run(model, opt, steps: int = 5) -> list[float]:
    x, y = TOKENS[:, :-1], TOKENS[:, 1:]
    out = []
    for _ in range(steps):
        _, loss = forward_loss(model, x, y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        out.append(loss.item())
    return out


# --- parametrize ---------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ALL)
def test_roles_are_inferred(arch):
    model, base, delta = _models(arch, 128)
    p = sizeup.parametrize(model, base, delta=delta, rule="mup")
    roles = {r["name"]: r["role"] for r in p.rows()}
    emb = "transformer.wte.weight" if arch == "gpt2" else "model.embed_tokens.weight"
    assert roles[emb] == "input"
    mlp_out = {
        "gpt2": "transformer.h.0.mlp.c_proj.weight",
        "llama": "model.layers.0.mlp.down_proj.weight",
        "qwen3": "model.layers.0.mlp.down_proj.weight",
    }.get(arch, "model.layers.0.mlp.experts.down_proj")
    assert roles[mlp_out] == "hidden" and p[mlp_out].m_in == p[mlp_out].m_out == 2.0
    if arch == "gpt2":  # tied: the readout is wte itself, with the Table 8 multiplier 1/m
        assert "lm_head.weight" not in roles and p.tied == {"lm_head": emb}
        assert p.module_multipliers["lm_head"] == (0.5, 1.0)
        assert p["transformer.h.0.attn.c_attn.weight"].fan_out == 3 * 128  # Conv1D: (in, out)
    else:
        assert roles["lm_head.weight"] == "readout"
    if arch in MOE:
        assert roles["model.layers.0.mlp.gate.weight"] == "readout"  # E experts: fixed fan_out
    assert p.options["depth"] is None and hints(model)["block"]


@pytest.mark.parametrize("arch", ALL)
def test_at_base_width_mup_is_sp(arch):
    """Same init, same per-tensor lr, same losses over 5 steps, bit for bit."""
    runs = {}
    for rule in ("sp", "mup"):
        model, base, delta = _models(arch, 64)
        p = sizeup.parametrize(
            model, base, delta=delta, rule=rule, attn_scale="1/d" if rule == "mup" else None
        )
        opt = p.optimizer("adamw", lr=1e-2, weight_decay=0.1)
        init = {n: t.detach().clone() for n, t in model.named_parameters()}
        lrs = {n: g["lr"] for g in opt.param_groups for n in g["names"]}
        runs[rule] = (init, lrs, _run(model, opt), p)
    (i0, l0, loss0, _), (i1, l1, loss1, pm) = runs["sp"], runs["mup"]
    assert i0.keys() == i1.keys() and all(torch.equal(i0[n], i1[n]) for n in i0)
    assert l0 == l1
    assert loss0 == loss1
    assert {r["role"] for r in pm.rows()} >= {"hidden", "input", "vector"}  # delta gave roles
    assert all(s.scale == s.own for s in pm.attention.values()) and pm.attention


@pytest.mark.parametrize("arch", ["llama", "qwen3", "gpt2", "mixtral"])
def test_coord_check_mup_passes_sp_fails(arch):
    from sizeup.diagnostics.hf_check import hf_coord_check

    kw = dict(widths=(64, 128, 256, 512), steps=4, seeds=3, batch_size=4, seq_len=16)
    if arch == "mixtral":
        # 64 tokens over 8 experts (top 2) leave each expert ~16 tokens a step: the router's
        # update then drifts by seed noise (+0.23 +- 0.06 at t = 4 on sizeup.data's batches of
        # seeds 0-2). 256 tokens settle it (+0.14 +- 0.06, inside the one-sided band).
        kw.update(batch_size=8, seq_len=32)
    mup = hf_coord_check(arch, "mup", **kw)
    assert mup.passed, mup.worst
    sp = hf_coord_check(arch, "sp", **{**kw, "seeds": 2})
    assert not sp.passed and sp.worst["slope"] > 0.5, sp.worst


def test_attn_scale_is_anchored_at_the_base():
    model, base, delta = _models("llama", 256)
    p = sizeup.parametrize(model, base, delta=delta, attn_scale="1/d")
    attn = model.model.layers[0].self_attn
    # head_dim 16 at the base (4 heads), 64 here: 1/sqrt(16) * 16/64
    assert attn.head_dim == 64 and attn.scaling == pytest.approx(0.25 * 16 / 64)
    assert p.attention["model.layers.0.self_attn"].own == pytest.approx(64**-0.5)
    p2 = sizeup.parametrize(model, base, delta=delta, attn_scale="1/sqrt(d)")
    assert attn.scaling == pytest.approx(64**-0.5)  # what Llama computes itself
    assert p2.attention["model.layers.0.self_attn"].own == pytest.approx(64**-0.5)


def test_depth_is_counted_from_the_family_blocks():
    model, _, _ = _models("llama", 128, num_hidden_layers=4)
    _, base, delta = _models("llama", 128)
    p = sizeup.parametrize(model, base, delta=delta, base_depth=2)
    assert p.options["depth"] == 4
    branch = 2**-0.5
    assert p.module_multipliers["model.layers.3.mlp.down_proj"] == (1.0, branch)
    assert p.module_multipliers["model.layers.0.self_attn.o_proj"] == (1.0, branch)


# --- MoE ----------------------------------------------------------------------------------
def _dense(width: int, ffn: float):
    """A dense Llama whose MLP has the experts' size (intermediate = ffn x width)."""
    from sizeup.models.hf import hf_config

    cfg = hf_config("llama", width)
    cfg.intermediate_size = round(ffn * width)
    return transformers.AutoModelForCausalLM.from_config(cfg)


@pytest.mark.parametrize("arch", ["mixtral", "olmoe", "qwen3_moe"])
def test_expert_tensors_scale_as_the_dense_matrix(arch):
    """Each expert of a 3-D tensor (experts, out, in) gets what the dense Llama MLP matrix of
    the same fan-in and fan-out gets, under every rule."""
    ffn = {"mixtral": 2.0, "olmoe": 0.5, "qwen3_moe": 0.5}[arch]
    for rule in ("mup", "spectral", "mup_simple"):
        moe, mb, md = _models(arch, 256)
        pm = sizeup.parametrize(moe, mb, delta=md, rule=rule, sigma=0.02, readout_form="table8")
        # the dense matrix of the same (out, in): down (H, I); gate_up's (2I, H) is a gate_proj
        # of a dense MLP twice the experts' size
        pairs = [
            (ffn, "model.layers.0.mlp.experts.down_proj", "model.layers.0.mlp.down_proj.weight"),
            (
                2 * ffn,
                "model.layers.0.mlp.experts.gate_up_proj",
                "model.layers.0.mlp.gate_proj.weight",
            ),
        ]
        fields = ("role", "fan_in", "fan_out", "m_in", "m_out", "init_std", "multiplier")
        for dense_ffn, e, d in pairs:
            dense, db, dd = (_dense(w, dense_ffn) for w in (256, 64, 128))
            pd = sizeup.parametrize(
                dense, db, delta=dd, rule=rule, sigma=0.02, readout_form="table8"
            )
            se, sd = pm[e], pd[d]
            assert [getattr(se, f) for f in fields] == [getattr(sd, f) for f in fields], (e, rule)
            assert (se.wd_mult, se.eps_mult, se.muon) == (sd.wd_mult, sd.eps_mult, sd.muon)
            assert se.muon and tuple(se.shape) == (4, *sd.shape)
            for fam in ("adam", "sgd", "muon"):
                assert pm.lr_table[fam][e] == pd.lr_table[fam][d]


def test_router_is_a_readout_and_can_be_overridden():
    model, base, delta = _models("mixtral", 256)
    p = sizeup.parametrize(model, base, delta=delta, zero_readout=True)
    r = p["model.layers.0.mlp.gate.weight"]
    assert r.role == "readout" and r.m_in == 4.0 and r.m_out == 1.0 and r.lr_mult == 0.25
    assert model.model.layers[0].mlp.gate.weight.abs().sum() > 0  # zero_readout spares routers
    assert model.lm_head.weight.abs().sum() == 0
    model, base, delta = _models("mixtral", 256)
    p = sizeup.parametrize(model, base, delta=delta, roles={"*.mlp.gate": "hidden"})
    assert p["model.layers.0.mlp.gate.weight"].role == "hidden"
    model, base, delta = _models("mixtral", 256)
    sizeup.parametrize(model, base, delta=delta, zero_router=True)
    assert model.model.layers[0].mlp.gate.weight.abs().sum() == 0


def test_muon_orthogonalises_each_expert():
    """Muon's update of a 3-D expert tensor equals Muon applied expert by expert."""
    from sizeup.optim import Muon

    torch.manual_seed(0)
    stack = torch.nn.Parameter(torch.randn(4, 24, 16) * 0.1)
    parts = [torch.nn.Parameter(stack.detach()[e].clone()) for e in range(4)]
    opt3 = Muon([{"params": [stack], "use_muon": True}], lr=0.05, weight_decay=0.1)
    opt2 = Muon([{"params": parts, "use_muon": True}], lr=0.05, weight_decay=0.1)
    for _ in range(3):
        g = torch.randn(4, 24, 16)
        stack.grad = g.clone()
        for e, p in enumerate(parts):
            p.grad = g[e].clone()
        opt3.step()
        opt2.step()
    assert torch.equal(stack.detach(), torch.stack([p.detach() for p in parts]))


def test_muon_takes_the_expert_tensors_of_an_hf_moe():
    model, base, delta = _models("qwen3_moe", 128)
    p = sizeup.parametrize(model, base, delta=delta, rule="spectral")
    opt = p.optimizer("muon", lr=0.02)
    muon = {n for g in opt.param_groups if g["use_muon"] for n in g["names"]}
    assert "model.layers.0.mlp.experts.gate_up_proj" in muon
    assert "model.layers.0.mlp.gate.weight" not in muon  # the router is a readout: AdamW
    losses = _run(model, opt, 3)
    assert all(torch.isfinite(torch.tensor(losses)))


# --- export -------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ALL)
def test_export_gives_the_same_logits(arch, tmp_path):
    """Table 8 readout (or GPT-2's tied readout), depth multipliers and the 1/d attention scale
    folded into the weights: the plain module and from_pretrained of its folder agree."""
    layers = {"n_layer": 4} if arch == "gpt2" else {"num_hidden_layers": 4}
    model, base, delta = _models(arch, 128, **layers)
    _, base, delta = _models(arch, 128, **{k: 2 for k in layers})
    p = sizeup.parametrize(
        model, base, delta=delta, readout_form="table8", attn_scale="1/d", base_depth=2
    )
    _run(model, p.optimizer("adamw", lr=1e-2), 2)  # trained weights, not just the init
    model.eval()
    x = TOKENS
    with torch.no_grad():
        want = model(x).logits
        plain = p.export()
        got = plain(x).logits
        plain.save_pretrained(tmp_path / "plain")
        again = type(model).from_pretrained(tmp_path / "plain").eval()(x).logits
        model.save_pretrained(tmp_path / "raw")  # without export: the multipliers are lost
        raw = type(model).from_pretrained(tmp_path / "raw").eval()(x).logits
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in plain.modules())
    assert not hasattr(plain, "_sizeup")
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(again, want, rtol=1e-5, atol=1e-5)
    assert (raw - want).abs().max() > 1e-3
    assert model.model if arch != "gpt2" else model.transformer  # the original is untouched
    with torch.no_grad():
        torch.testing.assert_close(model(x).logits, want)


def test_export_of_a_qk_norm_model_scales_the_query_norm():
    model, base, delta = _models("qwen3", 128)
    p = sizeup.parametrize(model, base, delta=delta, attn_scale="1/d")
    plain = p.export()
    attn0, attn1 = model.model.layers[0].self_attn, plain.model.layers[0].self_attn
    r = p.attention["model.layers.0.self_attn"].scale / p.attention["model.layers.0.self_attn"].own
    assert r == pytest.approx(0.5**0.5)  # head_dim 32, 16 at the base: (16/32) / (16/32)^(1/2)
    torch.testing.assert_close(attn1.q_norm.weight, attn0.q_norm.weight * r)
    assert torch.equal(attn1.q_proj.weight, attn0.q_proj.weight)
    assert attn1.scaling == pytest.approx(32**-0.5)


# --- bad input -----------------------------------------------------------------------------
def test_unknown_architecture_is_refused():
    from sizeup.models.hf import hf_factory

    with pytest.raises(ConfigError, match="hf='bert'.*llama"):
        hf_factory("bert")
    with pytest.raises(ConfigError, match="width=102.*num_attention_heads=4"):
        hf_model("llama", 102)
    with pytest.raises(ConfigError, match="llama config.*valid"):
        hf_model("llama", 100)  # head_dim 25: RoPE needs an even one
    with pytest.raises(ConfigError, match="hidden_size"):
        hf_model("llama", 64, hidden_size=32)


def test_width_that_cannot_be_inferred_is_refused():
    model = hf_model("mixtral", 128, num_local_experts=8)
    base = hf_model("mixtral", 64)
    with pytest.raises(ShapeError, match="model.layers.0.mlp.experts.gate_up_proj.*8 experts"):
        sizeup.parametrize(model, base)
    with pytest.raises(ShapeError, match="base.*architecture"):
        sizeup.parametrize(hf_model("llama", 128), hf_model("qwen3", 64))
    with pytest.raises(ConfigError, match="attn_scale"):
        sizeup.parametrize(hf_model("llama", 128), hf_model("llama", 64), attn_scale="1/n")


class _Tied(torch.nn.Module):
    """An embedding and a readout sharing one tensor, with no norm declared before it."""

    def __init__(self, d: int):
        super().__init__()
        self.wte = torch.nn.Embedding(16, d)
        self.body = torch.nn.Linear(d, d)
        self.lm_head = torch.nn.Linear(d, 16, bias=False)
        self.lm_head.weight = self.wte.weight

    def forward(self, x):
        return self.lm_head(torch.relu(self.body(self.wte(x))))


class _OnePlusNorm(torch.nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(d))

    def forward(self, x):
        return (1 + self.weight) * x / x.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt()


def test_multipliers_that_cannot_be_folded_are_refused():
    from sizeup.errors import ExportError

    p = sizeup.parametrize(_Tied(64), _Tied(16), delta=_Tied(32))
    with pytest.raises(ExportError, match="lm_head.weight.*tied.*wte.weight"):
        p.export()
    model, base = _Tied(64), _Tied(16)
    model.norm = _OnePlusNorm(64)
    model.sizeup_hints = {"final_norm": "norm"}
    base.norm = _OnePlusNorm(16)
    p = sizeup.parametrize(model, base, delta=_with_norm(_Tied(32)))
    with pytest.raises(ExportError, match="norm:.*does not scale"):
        p.export()
    # a branch multiplier on a module that is not one matrix and has no down projection
    model, _, _ = _models("llama", 128, num_hidden_layers=4)
    _, base, delta = _models("llama", 128)
    p = sizeup.parametrize(model, base, delta=delta, base_depth=2, residual_out=["*.self_attn"])
    with pytest.raises(ExportError, match="model.layers.0.self_attn: its branch multiplier"):
        p.export()
    assert isinstance(ExportError("x"), SizeupError)


def _with_norm(m):
    m.norm = _OnePlusNorm(m.body.in_features)
    return m


# --- transformers.Trainer ------------------------------------------------------------------
def test_trainer_example_runs(tmp_path, monkeypatch):
    """docs/bring-your-own-model.md's example: p.optimizer and p.scheduler in
    transformers.Trainer(optimizers=(opt, sched)) on random tokens."""
    import runpy
    from pathlib import Path

    monkeypatch.chdir(tmp_path)
    example = Path(__file__).resolve().parents[1] / "examples" / "hf_trainer.py"
    ns = runpy.run_path(str(example), run_name="example")
    result, opt, p = ns["result"], ns["opt"], ns["p"]
    assert result.global_step == 3 and torch.isfinite(torch.tensor(result.training_loss))
    # every group kept its lr multiplier under the scheduler (warmup: all scaled alike)
    ratios = {g["lr"] / g["initial_lr"] for g in opt.param_groups}
    assert len({round(r, 12) for r in ratios}) == 1
    hidden = p["model.layers.0.mlp.down_proj.weight"]
    assert hidden.lr_mult == 0.5


# --- sizeup export -------------------------------------------------------------------------
def test_export_command_on_a_save_pretrained_folder(tmp_path):
    from sizeup.cli import main

    model, _, _ = _models("llama", 128, num_hidden_layers=4)
    _, base, delta = _models("llama", 128)
    opts = dict(readout_form="table8", attn_scale="1/d", base_depth=2)
    p = sizeup.parametrize(model, base, delta=delta, **opts)
    _run(model, p.optimizer("adamw", lr=1e-2), 2)
    model.save_pretrained(tmp_path / "trained")  # what a Trainer checkpoint holds
    args = ["export", str(tmp_path / "trained"), "--base-width", "64", "--out"]
    args += [str(tmp_path / "plain"), "--readout-form", "table8", "--attn-scale", "1/d"]
    main([*args, "--base-depth", "2"])
    plain = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "plain").eval()
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(TOKENS).logits, model(TOKENS).logits, rtol=1e-5, atol=1e-5)


def test_export_command_on_a_run_config(tmp_path):
    from sizeup.cli import main
    from sizeup.config import RunConfig
    from sizeup.models import GPT
    from sizeup.train.build import build

    fields = dict(model="gpt", width=64, depth=4, base_width=32, base_depth=2, seq_len=16)
    fields.update(tie_embeddings=True, vocab_size=256, steps=2, batch_size=2)
    cfg = RunConfig.from_dict(fields)
    (tmp_path / "run.yaml").write_text("\n".join(f"{k}: {v}" for k, v in fields.items()))
    built = build(cfg)
    assert built.parametrization.module_multipliers  # tied readout 1/2, branches (4/2)^-1/2
    torch.save(built.model.state_dict(), tmp_path / "model.pt")
    main(
        ["export", "-c", str(tmp_path / "run.yaml"), "--weights", str(tmp_path / "model.pt")]
        + ["--out", str(tmp_path / "plain")]
    )
    plain = GPT(built.model.config)
    plain.load_state_dict(torch.load(tmp_path / "plain" / "model.pt"))
    x = TOKENS[:, :16]
    with torch.no_grad():
        torch.testing.assert_close(plain(x)[0], built.model(x)[0], rtol=1e-5, atol=1e-5)


def test_coord_check_command_takes_an_architecture_by_name(capsys):
    from sizeup.cli import main

    with pytest.raises(SystemExit) as e:  # SP blows up: exit code 1, the CI gate
        main(
            ["coord-check", "--hf", "gpt2", "--set", "n_layer=1", "--rule", "sp"]
            + ["--widths", "64,128,256", "--steps", "2", "--seeds", "2"]  # 1: inconclusive
        )
    out = capsys.readouterr().out
    assert e.value.code == 1 and "transformer.h.0.attn.c_attn" in out and "FAILED" in out
    with pytest.raises(SystemExit) as e:
        main(["coord-check", "--hf", "bert"])
    assert e.value.code == 2
    assert "hf='bert'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["coord-check", "--hf", "llama", "--set", "hidden_size=32"])
    assert e.value.code == 2 and "hidden_size" in capsys.readouterr().err
