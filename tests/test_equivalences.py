"""Equivalences that must hold exactly: the abc-symmetry (float64, 1e-10) and agreement with
microsoft's mup (MuReadout + set_base_shapes + MuAdam) on the MLP and the GPT."""

from __future__ import annotations

import copy

import pytest
import torch

from sizeup.models import GPT, MLP, GPTConfig
from sizeup.parametrization import get_parametrization, parametrize


def _gpt(width: int, depth: int = 2) -> GPT:
    return GPT(GPTConfig(d_model=width, n_layer=depth, head_dim=16, vocab_size=64, seq_len=16))


def _batches(n: int, kind: str, seed: int = 0, batch: int = 4):
    g = torch.Generator().manual_seed(seed)
    if kind == "gpt":
        for _ in range(n):
            x = torch.randint(0, 64, (batch, 17), generator=g)
            yield x[:, :-1], x[:, 1:]
    else:
        for _ in range(n):
            yield (
                torch.randn(batch, 12, generator=g, dtype=torch.float64),
                torch.randint(0, 5, (batch,), generator=g),
            )


def _train(model, opt, kind: str, steps: int) -> list[float]:
    losses = []
    for x, y in _batches(steps, kind):
        _, loss = model(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses


SHIFTS_GPT = {
    "wte.weight": 2.0,
    "blocks.0.attn.q.weight": 3.0,
    "blocks.1.mlp.down.weight": 0.5,
    "lm_head.weight": 0.25,
}
SHIFTS_MLP = {"input.weight": 2.0, "hidden.0.weight": 3.0, "readout.weight": 0.125}


def _shifted_pair(kind: str, **kw):
    """A float64 model parametrized with mup, and a copy with SHIFTS moved by abc_shift."""
    torch.manual_seed(0)
    if kind == "gpt":
        a, base, shifts = _gpt(64).double(), _gpt(32), SHIFTS_GPT
    else:
        a, base, shifts = MLP(12, 64, 2, 5).double(), MLP(12, 32, 2, 5), SHIFTS_MLP
    pa = parametrize(a, base, rule="mup", **kw)
    b = copy.deepcopy(a)
    pb = get_parametrization(b)
    for name, theta in shifts.items():
        pb.abc_shift(name, theta)
    return a, pa, b, pb, shifts


@pytest.mark.parametrize("kind", ["gpt", "mlp"])
@pytest.mark.parametrize("opt_name", ["adamw", "sgd"])
def test_abc_symmetry_float64(kind, opt_name):
    """Multiplier x theta, init / theta, lr / theta (Adam, eps -> 0) or / theta^2 (SGD): the same
    5 training steps to 1e-10 (Yang & Hu 2021, Tensor Programs IV, abc-parametrization symmetry)."""
    a, pa, b, pb, shifts = _shifted_pair(kind, optimizer=opt_name)
    assert pb[next(iter(shifts))].multiplier == next(iter(shifts.values()))
    kw = dict(eps=1e-30) if opt_name == "adamw" else dict(momentum=0.9)
    lr = 1e-2 if opt_name == "adamw" else 0.05
    la = _train(a, pa.optimizer(opt_name, lr=lr, **kw), kind, 5)
    lb = _train(b, pb.optimizer(opt_name, lr=lr, **kw), kind, 5)
    assert la[-1] != la[0]  # it trained
    for x, y in zip(la, lb):
        assert abs(x - y) <= 1e-10, (la, lb)


@pytest.mark.parametrize("kind", ["gpt", "mlp"])
def test_abc_symmetry_exact_for_finite_eps(kind):
    """With eps scaled per tensor (scale_eps, eps x theta under a shift) the abc-symmetry holds
    for Adam at any eps, here a large 1e-4: the weight's gradient grows by theta, and so does its
    eps. With one eps for every tensor (microsoft/mup's choice) the same shifts change training."""
    losses = {}
    for scale_eps in (True, False):
        a, pa, b, pb, shifts = _shifted_pair(kind, scale_eps=scale_eps)
        if scale_eps:
            name, theta = next(iter(shifts.items()))
            assert pb[name].eps_mult == pytest.approx(pa[name].eps_mult * theta, rel=1e-15)
        la = _train(a, pa.optimizer("adamw", lr=1e-2, eps=1e-4), kind, 5)
        lb = _train(b, pb.optimizer("adamw", lr=1e-2, eps=1e-4), kind, 5)
        losses[scale_eps] = max(abs(x - y) for x, y in zip(la, lb))
    assert losses[True] <= 1e-10, losses
    assert losses[False] > 1e-8, losses  # the check can fail: a fixed eps breaks the symmetry


# --- microsoft/mup -------------------------------------------------------------------------
mup = pytest.importorskip(
    "mup", reason="microsoft mup is a test-only dependency (pip install mup --no-deps)"
)


def _mup_copy(model, readout_attr: str):
    """The same model with its readout replaced by mup's MuReadout (same weights)."""
    m = copy.deepcopy(model)
    old = getattr(m, readout_attr)
    new = mup.MuReadout(old.in_features, old.out_features, bias=old.bias is not None)
    new = new.to(old.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(old.weight)
        if old.bias is not None:
            new.bias.copy_(old.bias)
    setattr(m, readout_attr, new)
    return m


def _build(kind: str, width: int):
    if kind == "gpt":
        return _gpt(width), "lm_head"
    return MLP(12, width, 3, 5), "readout"


@pytest.mark.parametrize("kind", ["mlp", "gpt"])
@pytest.mark.parametrize("width", [64, 512])
def test_matches_microsoft_mup(kind, width):
    """sizeup's mup rule == mup's MuReadout + set_base_shapes + MuAdam: same per-tensor lr and
    the same loss over 20 Adam steps (to 1e-6; eps 1e-12 on both sides)."""
    torch.manual_seed(0)
    model, attr = _build(kind, width)
    base, _ = _build(kind, 32)
    model, base = model.double(), base.double()
    # Table 8 form: readout multiplier 1/m, lr eta: exactly what MuReadout + MuAdam do.
    # scale_eps=False: MuAdam keeps one eps for every tensor.
    p = parametrize(
        model, base, rule="mup", readout_form="table8", sigma=0.02, init=True, scale_eps=False
    )
    theirs = _mup_copy(model, attr)  # same weights after our init
    for mod in theirs.modules():
        mod._forward_pre_hooks.clear()
        mod._forward_hooks.clear()
    mup.set_base_shapes(theirs, _mup_copy(base, attr), rescale_params=False)
    lr = 3e-3
    ours_opt = p.optimizer("adamw", lr=lr, eps=1e-12, betas=(0.9, 0.95))
    their_opt = mup.MuAdam(theirs.parameters(), lr=lr, eps=1e-12, betas=(0.9, 0.95))

    ours_lr = {id(q): g["lr"] for g in ours_opt.param_groups for q in g["params"]}
    their_lr = {id(q): g["lr"] for g in their_opt.param_groups for q in g["params"]}
    for (n, q_ours), (_, q_theirs) in zip(model.named_parameters(), theirs.named_parameters()):
        assert ours_lr[id(q_ours)] == pytest.approx(their_lr[id(q_theirs)], rel=1e-12), n

    if kind == "mlp":
        batches = [(x, y) for x, y in _batches(20, "mlp")]
    else:
        batches = list(_batches(20, "gpt"))
    la, lb = [], []
    for x, y in batches:
        for m, opt, out in ((model, ours_opt, la), (theirs, their_opt, lb)):
            _, loss = m(x, y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            out.append(loss.item())
    assert len(set(la)) > 1  # it trained
    for x, y in zip(la, lb):
        assert abs(x - y) <= 1e-6, (la, lb)


def test_table3_equals_table8_by_abc():
    """Our default Table 3 form and mup's Table 8 form train identically once the readout weight
    is moved by the abc-symmetry (theta = m)."""
    torch.manual_seed(1)
    m3 = MLP(12, 256, 2, 5).double()
    p3 = parametrize(m3, MLP(12, 32, 2, 5), rule="mup")
    m8 = copy.deepcopy(m3)
    p8 = parametrize(m8, MLP(12, 32, 2, 5), rule="mup", readout_form="table8", init=False)
    with torch.no_grad():
        m8.readout.weight.mul_(8.0)  # m = 256/32
    # Table 8's readout eps is eps/m (its gradient is m times smaller): exact even at eps 1e-4.
    assert p8["readout.weight"].eps_mult == pytest.approx(p3["readout.weight"].eps_mult / 8.0)
    la = _train(m3, p3.optimizer("adamw", lr=1e-2, eps=1e-4), "mlp", 10)
    lb = _train(m8, p8.optimizer("adamw", lr=1e-2, eps=1e-4), "mlp", 10)
    for x, y in zip(la, lb):
        assert abs(x - y) <= 1e-10
