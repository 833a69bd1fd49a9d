"""Param groups, weight decay (torch's meaning, the same at every width) and batch transfer
against hand calculations and torch's own AdamW."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from sizeup.errors import ConfigError, SizeupError
from sizeup.optim import SGDW, DecayWarning, build_optimizer, group_table, transfer_batch
from sizeup.parametrization.rules import Scaling
from sizeup.schedules import make_schedule
from sizeup.wrapping import canonical_name

# name -> (role, lr_mult, wd_mult); the lr multipliers are muP's Adam column at m_in = 2.
ROLES = {
    "0.weight": ("input", 1.0, 1.0),
    "0.bias": ("vector", 1.0, 0.0),
    "2.weight": ("hidden", 0.5, 1.0),
    "2.bias": ("vector", 1.0, 0.0),
    "4.weight": ("readout", 0.5, 1.0),
    "4.bias": ("vector", 1.0, 0.0),
}


def mlp(dtype=torch.float64) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3)
    ).to(dtype)


def scalings(model: nn.Module, roles=ROLES) -> dict[str, Scaling]:
    out = {}
    for n, p in model.named_parameters():
        role, lr_mult, wd_mult = roles[n]
        out[n] = Scaling(
            n,
            role,
            tuple(p.shape),
            p.shape[-1],
            p.shape[0],
            1.0,
            1.0,
            None,
            1.0,
            lr_mult,
            wd_mult,
            muon=role == "hidden",
        )
    return out


def test_group_lrs_are_eta_times_lr_mult():
    m = mlp()
    opt = build_optimizer(m, scalings(m), "adamw", lr=0.01, betas=(0.8, 0.9), eps=1e-10)
    lr_of = {n: g["lr"] for g in opt.param_groups for n in g["names"]}
    for n, (_, lr_mult, _) in ROLES.items():
        assert lr_of[n] == pytest.approx(0.01 * lr_mult)
    # Identical settings share a group: input weight and the gains differ by wd_mult only.
    assert len(opt.param_groups) == 4
    g = next(g for g in opt.param_groups if g["role"] == "vector")
    assert g["names"] == ["0.bias", "2.bias", "4.bias"] and g["betas"] == (0.8, 0.9)
    assert g["eps"] == 1e-10 and g["lr_mult"] == 1.0 and g["wd_mult"] == 0.0
    assert sum(len(r["names"]) for r in group_table(opt)) == 6


def test_missing_scaling_names_the_parameter():
    m = mlp()
    sc = scalings(m)
    del sc["2.weight"]
    with pytest.raises(ConfigError, match=r"missing: 2\.weight"):
        build_optimizer(m, sc, "adamw", lr=1e-3)


def test_frozen_parameters_are_skipped():
    m = mlp()
    m[0].weight.requires_grad_(False)
    sc = scalings(m)
    del sc["0.weight"]
    opt = build_optimizer(m, sc, "sgd", lr=1e-3)
    assert "0.weight" not in [n for g in opt.param_groups for n in g["names"]]


def test_wrapped_model_names_resolve():
    assert canonical_name("module._orig_mod.blocks.0.attn.q.weight") == "blocks.0.attn.q.weight"
    m = mlp()
    sc = scalings(m)

    class DDPLike(nn.Module):  # DDP and DataParallel put the model under .module
        def __init__(self, inner: nn.Module):
            super().__init__()
            self.module = inner

    for wrapped in (DDPLike(m), torch.compile(m), DDPLike(torch.compile(m))):
        opt = build_optimizer(wrapped, sc, "adamw", lr=1e-3)
        assert sum(len(g["params"]) for g in opt.param_groups) == 6


@pytest.mark.filterwarnings("ignore::sizeup.optim.DecayWarning")  # lr 0.3 x 0.1: 3% per step
@pytest.mark.parametrize("name", ["adamw", "sgd", "muon"])
def test_weight_decay_hand_calculation(name):
    # Zero gradients: Adam's and SGD's own updates vanish (0 / (0 + eps), zero momentum), so only
    # the decay acts, and by hand W_t = W_0 * prod_s (1 - eta f(s) lambda) for every matrix,
    # whatever its lr_mult (input 1, hidden and readout 0.5 here): torch's lr x weight_decay with
    # the base lr eta_t, the same at every width. Muon's matrices decay with muon_lr.
    lam, steps = 0.1, 6
    f = make_schedule("cosine", steps=steps, warmup=2)
    for eta in (1e-3, 0.3):
        m = mlp()
        w0 = {n: p.detach().clone() for n, p in m.named_parameters()}
        muon_lr = 0.02 if name == "muon" else None
        opt = build_optimizer(
            m, scalings(m), name, lr=eta, weight_decay=lam, muon_lr=muon_lr, momentum=0.5
        )
        sched = torch.optim.lr_scheduler.LambdaLR(opt, f)
        for _ in range(steps):
            for p in m.parameters():
                p.grad = torch.zeros_like(p)
            opt.step()
            sched.step()
        for n, p in m.named_parameters():
            base_lr = muon_lr if name == "muon" and n == "2.weight" else eta
            wd_mult = ROLES[n][2]  # 0 for the biases: no decay at all
            factor = math.prod(1 - base_lr * f(s) * lam * wd_mult for s in range(steps))
            torch.testing.assert_close(p.detach(), w0[n] * factor, rtol=1e-14, atol=0, msg=n)


def test_weight_decay_is_torch_adamw_at_the_base_width():
    """mup at the base width with weight_decay=0.1: the same 20-step trajectory as
    torch.optim.AdamW(weight_decay=0.1) on the same tensors (same lr, schedule, betas, eps)."""
    from sizeup.models import MLP
    from sizeup.parametrization import parametrize

    torch.manual_seed(0)
    ours, theirs = MLP(12, 32, 3, 5).double(), MLP(12, 32, 3, 5).double()
    p = parametrize(ours, MLP(12, 32, 3, 5), rule="mup")
    theirs.load_state_dict(ours.state_dict())
    w_init = ours.input.weight.detach().clone()
    assert {s.eps_mult for s in p.table()} == {1.0}  # scale_eps is the identity at base width
    kw = dict(lr=3e-2, betas=(0.9, 0.95), eps=1e-8)
    f = make_schedule("cosine", steps=20, warmup=4)
    decay = [q for n, q in theirs.named_parameters() if n.endswith("weight")]
    rest = [q for n, q in theirs.named_parameters() if not n.endswith("weight")]
    groups = [dict(params=decay, weight_decay=0.1), dict(params=rest, weight_decay=0.0)]
    opts = [p.optimizer("adamw", weight_decay=0.1, **kw), torch.optim.AdamW(groups, **kw)]
    scheds = [torch.optim.lr_scheduler.LambdaLR(o, f) for o in opts]
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        x, y = torch.randn(16, 12, generator=g, dtype=torch.float64), torch.randint(0, 5, (16,))
        for model, opt, sched in zip((ours, theirs), opts, scheds):
            model(x, y)[1].backward()
            opt.step()
            opt.zero_grad()
            sched.step()
    for (n, a), b in zip(ours.named_parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=n)
    assert (ours.input.weight - w_init).abs().max() > 1e-3  # it trained


def test_weight_decay_is_the_same_at_every_width():
    """At 4x the base width every matrix group has lr x weight_decay = eta_t x lambda (its own lr
    is eta/4 for hidden and readout), and a zero-gradient step removes exactly that fraction."""
    from sizeup.models import MLP
    from sizeup.parametrization import parametrize

    torch.manual_seed(0)
    model = MLP(12, 128, 3, 5).double()
    p = parametrize(model, MLP(12, 32, 3, 5), rule="mup")
    eta, lam = 3e-2, 0.1
    opt = p.optimizer("adamw", lr=eta, weight_decay=lam)
    f = make_schedule("cosine", steps=10, warmup=2)
    torch.optim.lr_scheduler.LambdaLR(opt, lambda s: f(s + 3))  # at step 3 of the schedule
    matrices = [g for g in opt.param_groups if g["wd_mult"] > 0]
    assert {g["role"] for g in matrices} == {"input", "hidden", "readout"}
    assert {g["lr_mult"] for g in matrices} == {1.0, 0.25}
    for g in matrices:
        assert g["lr"] * g["weight_decay"] == pytest.approx(eta * f(3) * lam, rel=1e-12)
    before = {n: q.detach().clone() for n, q in model.named_parameters()}
    for q in model.parameters():
        q.grad = torch.zeros_like(q)
    opt.step()
    for n, q in model.named_parameters():
        kept = 1 - eta * f(3) * lam if n.endswith("weight") else 1.0
        torch.testing.assert_close(q.detach(), before[n] * kept, rtol=1e-14, atol=0, msg=n)


def test_decay_warning_above_one_percent_per_step():
    m = mlp()
    with pytest.warns(DecayWarning, match=r"weight_decay=0\.1 at lr=0\.3"):
        build_optimizer(m, scalings(m), "adamw", lr=0.3, weight_decay=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_optimizer(m, scalings(m), "adamw", lr=3e-3, weight_decay=0.1)  # 0.03%: no warning
        build_optimizer(m, scalings(m), "adamw", lr=0.05, weight_decay=0.1)  # 0.5%: none
    with pytest.warns(DecayWarning, match=r"lr=0\.5"):  # Muon's own lr is checked too
        build_optimizer(m, scalings(m), "muon", lr=1e-3, muon_lr=0.5, weight_decay=0.1)


def test_adamw_first_step_by_hand():
    # Adam's first bias-corrected step is g / (|g| + eps) (Kingma & Ba 2015, Alg. 1 with
    # m_hat = g, v_hat = g^2); decoupled decay multiplies by (1 - eta * lambda) first (the base
    # eta, though this hidden matrix steps with eta * 0.5).
    m = mlp()
    eta, lam, eps = 0.01, 0.2, 1e-8
    opt = build_optimizer(m, scalings(m), "adamw", lr=eta, weight_decay=lam, eps=eps)
    w0 = m[2].weight.detach().clone()
    g = torch.randn_like(w0)
    for p in m.parameters():
        p.grad = torch.zeros_like(p)
    m[2].weight.grad = g
    opt.step()
    lr_group = eta * 0.5
    want = w0 * (1 - eta * lam) - lr_group * g / (g.abs() + eps)
    torch.testing.assert_close(m[2].weight.detach(), want, rtol=1e-13, atol=1e-15)


def test_sgdw_matches_torch_sgd_without_decay_and_decouples_it():
    m1, m2 = mlp(), mlp()
    sc = scalings(m1)
    o1 = build_optimizer(m1, sc, "sgd", lr=0.05, momentum=0.9, nesterov=True)
    assert isinstance(o1, SGDW)
    o2 = torch.optim.SGD(
        [{"params": [p], "lr": 0.05 * ROLES[n][1]} for n, p in m2.named_parameters()],
        lr=0.05,
        momentum=0.9,
        nesterov=True,
    )
    x, y = torch.randn(16, 4, dtype=torch.float64), torch.randint(0, 3, (16,))
    for _ in range(3):
        for m, o in ((m1, o1), (m2, o2)):
            o.zero_grad()
            nn.functional.cross_entropy(m(x), y).backward()
            o.step()
    for a, b in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # One SGD step with decay, by hand: W1 = W0 (1 - lr lambda) - lr * g (momentum buffer = g).
    m = mlp()
    o = build_optimizer(m, scalings(m), "sgd", lr=0.05, weight_decay=0.1, momentum=0.0)
    w0 = m[0].weight.detach().clone()
    g = torch.randn_like(w0)
    m[0].weight.grad = g
    o.step()
    want = w0 * (1 - 0.05 * 0.1) - 0.05 * g
    torch.testing.assert_close(m[0].weight.detach(), want, rtol=1e-14, atol=0)
    assert o.param_groups[0]["weight_decay"] == 0.1  # restored after step


def test_transfer_batch_hand_calculation():
    # Malladi et al. 2022 square-root rule with kappa = 64/16 = 4: lr x 2, 1 - 4(1 - beta), eps / 2.
    lr, betas, eps = transfer_batch(1e-3, (0.9, 0.95), 1e-8, 64, 16)
    assert lr == pytest.approx(2e-3)
    assert betas == pytest.approx((0.6, 0.8))
    assert eps == pytest.approx(5e-9)
    lr, betas, eps = transfer_batch(1e-3, (0.9, 0.99), 1e-8, 8, 32)  # kappa = 1/4
    assert (lr, eps) == (pytest.approx(5e-4), pytest.approx(2e-8))
    assert betas == pytest.approx((0.975, 0.9975))
    assert transfer_batch(3e-3, (0.9, 0.95), 1e-8, 16, 16) == (3e-3, (0.9, 0.95), 1e-8)


def test_transfer_batch_beta_out_of_range():
    # kappa = 16: 1 - 16 * 0.1 = -0.6 for beta1 = 0.9; the limit is B0 / (1 - beta1) = 160.
    with pytest.raises(ConfigError, match=r"batch_size=256.*at most 160"):
        transfer_batch(1e-3, (0.9, 0.99), 1e-8, 256, 16)
    _, betas, _ = transfer_batch(1e-3, (0.9, 0.99), 1e-8, 256, 16, clip=True)
    assert betas == pytest.approx((0.0, 0.84))
    with pytest.raises(ConfigError, match="base_batch_size"):
        transfer_batch(1e-3, (0.9, 0.99), 1e-8, 16, 0)


def test_build_optimizer_applies_batch_transfer():
    m = mlp()
    opt = build_optimizer(
        m,
        scalings(m),
        "adamw",
        lr=1e-3,
        weight_decay=0.1,
        betas=(0.9, 0.95),
        eps=1e-8,
        batch_size=64,
        base_batch_size=16,
    )
    g = next(g for g in opt.param_groups if g["role"] == "hidden")
    assert g["lr"] == pytest.approx(2e-3 * 0.5)
    assert g["betas"] == pytest.approx((0.6, 0.8)) and g["eps"] == pytest.approx(5e-9)
    # The decay follows the transferred base lr (2e-3), not the group's muP lr (1e-3).
    assert g["lr"] * g["weight_decay"] == pytest.approx(2e-3 * 0.1)
    sgd = build_optimizer(
        m, scalings(m), "sgd", lr=1e-3, momentum=0.9, batch_size=32, base_batch_size=16
    )
    assert sgd.param_groups[0]["momentum"] == pytest.approx(0.8)


@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(spec="adam2"), "optimizer"),
        (dict(lr=-1.0), "lr"),
        (dict(lr=float("nan")), "lr"),
        (dict(weight_decay=-0.1), "weight_decay"),
        (dict(betas=(0.9, 1.0)), "beta2"),
        (dict(eps=0.0), "eps"),
        (dict(momentum=1.5), "momentum"),
        (dict(muon_scale="fro"), "muon_scale"),
        (dict(base_batch_size=16), "batch_size"),
    ],
)
def test_bad_arguments_name_the_field(kwargs, field):
    m = mlp()
    args = dict(spec="adamw", lr=1e-3) | kwargs
    with pytest.raises(SizeupError, match=field):
        build_optimizer(m, scalings(m), **args)


def test_muon_flag_on_a_vector_is_refused():
    m = mlp()
    sc = scalings(m)
    s = sc["2.bias"]
    sc["2.bias"] = Scaling(
        s.name, s.role, s.shape, s.fan_in, s.fan_out, 1, 1, None, 1, 1, 0, muon=True
    )
    with pytest.raises(ConfigError, match="2.bias"):
        build_optimizer(m, sc, "muon", lr=1e-3)


def test_gpt_groups_from_the_trainer():
    # End to end on the reference GPT: the trainer's parametrization feeds build_optimizer.
    from sizeup.config import RunConfig
    from sizeup.train import build

    built = build(RunConfig(width=64, base_width=32, depth=2, optimizer="muon", lr=3e-3))
    opt = built.optimizer
    muon = {n: g for g in opt.param_groups if g["use_muon"] for n in g["names"]}
    assert sorted(muon) == sorted(
        f"blocks.{i}.{m}.weight"
        for i in range(2)
        for m in ("attn.q", "attn.k", "attn.v", "attn.o", "mlp.gate", "mlp.up", "mlp.down")
    )
    h = built.model.blocks[0].mlp.up.weight.shape[0]
    assert muon["blocks.0.mlp.up.weight"]["update_scale"] == pytest.approx(math.sqrt(h / 64))
    assert muon["blocks.0.mlp.down.weight"]["update_scale"] == pytest.approx(math.sqrt(64 / h))
    adam = {n: g for g in opt.param_groups if not g["use_muon"] for n in g["names"]}
    scalings = built.parametrization.scalings_for("muon")
    for n, g in adam.items():
        assert g["lr"] == pytest.approx(3e-3 * scalings[n].lr_mult)
    assert adam["lm_head.weight"]["lr"] == pytest.approx(3e-3 / 2)  # muP readout: eta / m_in


# --- schedule-free AdamW (Defazio et al. 2024), from the schedulefree package
def test_schedule_free_adamw_is_the_package_optimizer_on_sizeups_groups():
    sf = pytest.importorskip("schedulefree", reason="needs the schedulefree extra")
    m, ref = mlp(), mlp()
    lam, lr = 0.1, 0.01
    opt = build_optimizer(
        m, scalings(m), "adamw_schedulefree", lr=lr, weight_decay=lam, warmup_steps=2
    )
    # the same groups by hand: lr x lr_mult, and a decay that removes eta x lambda of every
    # matrix per step whatever its lr multiplier (sizeup's convention, module doc of
    # sizeup.optim.groups): group weight_decay = lambda x wd_mult / lr_mult; none on biases
    groups = [
        {"params": [p], "lr": lr * ROLES[n][1], "weight_decay": lam * ROLES[n][2] / ROLES[n][1]}
        for n, p in ref.named_parameters()
    ]
    want = sf.AdamWScheduleFree(groups, lr=lr, betas=(0.9, 0.95), eps=1e-8, warmup_steps=2)
    want.train()
    x = torch.randn(16, 4, dtype=torch.float64)
    for _ in range(3):
        for model, o in ((m, opt), (ref, want)):
            o.zero_grad()
            model(x).square().mean().backward()
            o.step()
    for (n, a), b in zip(m.named_parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=0, msg=n)
    from sizeup.optim import tensor_table

    rows = tensor_table([{"name": n} for n, _ in m.named_parameters()], opt)
    assert {(r["beta1"], r["beta2"]) for r in rows} == {(0.9, 0.95)}


def test_schedule_free_without_the_package_says_how_to_get_it(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "schedulefree", None)
    m = mlp()
    with pytest.raises(ConfigError, match="optimizer='adamw_schedulefree'.*schedulefree"):
        build_optimizer(m, scalings(m), "adamw_schedulefree", lr=0.01)


def test_batch_transfer_says_what_it_moved():
    """batch_size=256 from base 64 turns betas (0.9, 0.95) into (0.6, 0.8): a warning names
    every value before and after; none at the base batch."""
    from sizeup.optim import BatchTransferWarning

    m = mlp()
    kw = dict(model=m, scalings=scalings(m), spec="adamw", lr=1e-3)
    with pytest.warns(BatchTransferWarning) as rec:
        build_optimizer(**kw, batch_size=256, base_batch_size=64)
    msg = str(rec[0].message)
    assert "lr 0.001 -> 0.002" in msg and "betas (0.9, 0.95) -> (0.6, 0.8)" in msg
    assert "eps 1e-08 -> 5e-09" in msg
    with warnings.catch_warnings():
        warnings.simplefilter("error", BatchTransferWarning)
        build_optimizer(**kw, batch_size=64, base_batch_size=64)
        build_optimizer(**kw)
