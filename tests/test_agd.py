"""AGD (Bernstein et al. 2023, arXiv:2304.05187, Algorithm 1): one step equals the paper's
algorithm by hand in float64; the step size against hand numbers; lr is a linear gain; the
spectral rule is AGD's init; it trains the MLP and the GPT from the command line; resume is bit
for bit; FSDP2 on 2 gloo processes equals one process (global gradient norms)."""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os

import pytest
import torch
from resume_harness import straight_and_resumed
from torch import nn

from sizeup.config import RunConfig
from sizeup.errors import ConfigError
from sizeup.models import MLP
from sizeup.optim import AGD, automatic_step
from sizeup.optim.agd import layer_fans
from sizeup.parametrization import parametrize
from sizeup.parametrization.rules import init_std
from sizeup.registry import get_optimizer

GPT = dict(width=64, base_width=32, depth=1, head_dim=16, seq_len=16, batch_size=4)


def _mlp(seed: int = 0) -> nn.Module:
    """The paper's setting: a bias-free 3-layer MLP (12 -> 32 -> 32 -> 5), float64."""
    torch.manual_seed(seed)
    return MLP(12, 32, 2, 5, bias=False).double()


def _backward(model: nn.Module, seed: int = 1) -> None:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(16, 12, dtype=torch.float64, generator=gen)
    y = torch.randint(0, 5, (16,), generator=gen)
    model.zero_grad()
    model(x, y)[1].backward()


def test_eta_against_hand_numbers():
    # G = 1: log((1 + sqrt 5) / 2) = log of the golden ratio = 0.481211825...; G = 2: log 2.
    assert automatic_step(1.0) == pytest.approx(0.4812118250596034, abs=1e-15)
    assert automatic_step(2.0) == pytest.approx(math.log(2.0), abs=1e-15)
    assert automatic_step(0.0) == 0.0
    with pytest.raises(ConfigError, match="G"):
        automatic_step(-1.0)


def test_one_step_is_algorithm_1_by_hand():
    """Algorithm 1 of arXiv:2304.05187 written out for the three weights (float64): G = (1/L)
    sum ||g_l||_F sqrt(d_l/d_{l-1}), eta = log((1 + sqrt(1 + 4G))/2), W_l -= (eta/L)
    sqrt(d_l/d_{l-1}) g_l/||g_l||_F; through sizeup (rule=spectral, lr=1) and bare AGD alike."""
    model = _mlp()
    p = parametrize(model, MLP(12, 32, 2, 5, bias=False), rule="spectral")
    _backward(model)
    ws = [model.input.weight, model.hidden[0].weight, model.readout.weight]
    dims = [(32, 12), (32, 32), (5, 32)]  # (d_l, d_{l-1})
    norms = [math.sqrt(sum(v * v for v in w.grad.flatten().tolist())) for w in ws]
    big_g = sum(n * math.sqrt(a / b) for n, (a, b) in zip(norms, dims)) / 3
    eta = math.log((1 + math.sqrt(1 + 4 * big_g)) / 2)
    want = [
        w.detach() - (eta / 3) * math.sqrt(a / b) * w.grad / n
        for w, n, (a, b) in zip(ws, norms, dims)
    ]
    bare = _mlp()
    bare.load_state_dict(model.state_dict())
    _backward(bare)
    opts = [p.optimizer("agd", lr=1.0), AGD(bare.parameters())]
    for opt, m in zip(opts, (model, bare)):
        assert opt.depth == 3
        opt.step()
        assert opt.last_summary == pytest.approx(big_g, rel=1e-14)
        assert opt.last_eta == pytest.approx(eta, rel=1e-14)
        got = [m.input.weight, m.hidden[0].weight, m.readout.weight]
        for g, w in zip(got, want):
            torch.testing.assert_close(g.detach(), w, rtol=1e-14, atol=1e-16)


def test_lr_is_a_linear_gain_and_decay_is_torch_adamw():
    """lr multiplies the step and not eta; weight_decay is W(1 - lr wd) before the step."""
    deltas = []
    for lr in (1.0, 0.25):
        model = _mlp()
        w0 = model.hidden[0].weight.detach().clone()
        _backward(model)
        opt = AGD(model.parameters(), lr=lr)
        opt.step()
        deltas.append((model.hidden[0].weight.detach() - w0, opt.last_eta))
    (d1, eta1), (d2, eta2) = deltas
    assert eta1 == eta2
    # the difference of two weights near 0.2 carries their rounding, 2^-55
    torch.testing.assert_close(d2, 0.25 * d1, rtol=1e-12, atol=1e-16)
    model = _mlp()
    w0 = model.hidden[0].weight.detach().clone()
    _backward(model)
    g = model.hidden[0].weight.grad.clone()
    opt = AGD(model.parameters(), lr=0.5, weight_decay=0.1)
    opt.step()
    want = w0 * (1 - 0.05) - 0.5 * opt.last_eta / 3 * g / g.norm()  # sqrt(32/32) = 1
    torch.testing.assert_close(model.hidden[0].weight.detach(), want, rtol=1e-14, atol=1e-16)
    with pytest.raises(ConfigError, match="lr"):
        AGD(model.parameters(), lr=-1.0)
    with pytest.raises(ConfigError, match="matrix"):
        AGD([nn.Parameter(torch.ones(3))])


class OrthogonalMLP(MLP):
    """The MLP with the paper's orthogonal init, declaring no std (sizeup then measures it)."""

    sizeup_hints = {k: v for k, v in MLP.sizeup_hints.items() if k != "init_std"}

    def reset_parameters(self) -> None:
        """Orthogonal weights (AGD's init before its sqrt(d_l/d_{l-1}) scale)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.orthogonal_(m.weight)


def test_spectral_rule_is_agds_init():
    """Orthogonal x sqrt(d_l/d_{l-1}) (the paper's init) has entry RMS sqrt(min(d_l, d_{l-1}) /
    (d_l d_{l-1})) sqrt(d_l/d_{l-1}), the spectral rule's std (rules.init_std); parametrize keeps
    the model's orthogonal shape, so rule=spectral on an orthogonal init gives every singular
    value sqrt(fan_out/fan_in)."""
    for fan_out, fan_in in ((32, 12), (32, 32), (5, 32), (256, 64)):
        rms = math.sqrt(min(fan_out, fan_in) / (fan_out * fan_in)) * math.sqrt(fan_out / fan_in)
        assert rms == pytest.approx(init_std("spectral", "hidden", 0.0, 1.0, fan_in, fan_out))
    torch.manual_seed(0)
    model = OrthogonalMLP(12, 32, 2, 5, bias=False).double()
    parametrize(model, OrthogonalMLP(12, 32, 2, 5, bias=False), rule="spectral")
    for m in model.modules():
        if isinstance(m, nn.Linear):
            s = torch.linalg.svdvals(m.weight.detach())
            want = math.sqrt(m.out_features / m.in_features)
            # orthogonal_ ran in float32 before .double(): float32 rounding
            torch.testing.assert_close(s, torch.full_like(s, want), rtol=1e-6, atol=0)


def test_layer_fans_and_the_transformer_extension():
    """Every matrix is a layer (L = number of matrices), a lookup table has d_{l-1} = 1 and a
    vector is a layer with fan_in 1 outside G and L: one step changes each matrix by
    ||dW||_F = (eta/L) sqrt(d_l/d_{l-1}) and each vector by RMS eta/L (lr = 1)."""
    from sizeup.train import build

    emb = torch.zeros(256, 64)
    assert layer_fans(emb, "input", (64, 256)) == (64, 1)  # nn.Embedding (vocab, width)
    assert layer_fans(torch.zeros(64, 12), "input", (64, 12)) == (64, 12)  # Linear input
    assert layer_fans(torch.zeros(4, 8, 6)) == (8, 6)  # a stack of expert matrices
    assert layer_fans(torch.zeros(8, 3, 5, 5)) == (8, 75)  # a convolution: in x kernel
    assert layer_fans(torch.zeros(64)) == (64, 1)
    cfg = RunConfig(**GPT, optimizer="agd", lr=1.0, rule="spectral")
    built = build(cfg)
    model, opt = built.model, built.optimizer
    matrices = [n for n, p in model.named_parameters() if p.ndim >= 2]
    assert opt.depth == len(matrices) == 9  # wte, q, k, v, o, gate, up, down, lm_head
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    x = torch.randint(0, 256, (4, 16))
    model(x, x)[1].backward()
    opt.step()
    eta, depth = opt.last_eta, opt.depth
    fans = {n: f for g in opt.param_groups for n, f in zip(g["names"], g["fans"])}
    for n, p in model.named_parameters():
        d = (p.detach() - before[n]).norm().item()
        fan_out, fan_in = fans[n]
        if n == "wte.weight":
            fan_in = 1  # one-hot inputs
        assert d == pytest.approx(eta / depth * math.sqrt(fan_out / fan_in), rel=1e-5), n


def test_registry_entry():
    e = get_optimizer("agd")
    assert e.family == "lmo" and e.reads == () and e.batch_moves is None
    assert e.constant_schedule and e.typical_lr == 1.0
    with pytest.raises(ConfigError, match="no batch-transfer rule"):
        RunConfig(optimizer="agd", base_batch_size=8)


@pytest.mark.parametrize(
    "family",
    [
        ["--set", "model=mlp", "--set", "width=64", "--set", "base_width=64"]
        + ["--set", "depth=3", "--set", "batch_size=128"],
        ["--width", "64", "--set", "base_width=32", "--depth", "1", "--head-dim", "16"]
        + ["--set", "seq_len=16", "--set", "batch_size=4"],
    ],
    ids=["mlp", "gpt"],
)
def test_cli_trains_with_agd(family, tmp_path):
    """`sizeup train --set optimizer=agd` (lr 1: the paper) on the MLP and the tiny GPT."""
    from sizeup.cli import main

    main(
        ["train", "--set", "optimizer=agd", "--set", "lr=1", "--set", "rule=spectral"]
        + [*family, "--steps", "10", "-q", "--out", str(tmp_path)]
    )
    r = json.loads((tmp_path / "result.json").read_text())
    assert r["config"]["optimizer"] == "agd" and not r["diverged"]
    assert r["final_val_loss"] < r["initial_val_loss"]


def test_resume_is_bit_identical(tmp_path):
    """6 steps in one go equal 3 steps, save, load into a fresh trainer, 3 more (AGD keeps no
    state: the groups alone come back)."""
    cfg = RunConfig(**GPT, optimizer="agd", lr=0.5, rule="spectral", eval_every=0, steps=6)
    a, la, c, lb = straight_and_resumed(cfg, tmp_path, 3)
    assert la == lb
    wa = dict(a.model.named_parameters())
    for n, p in c.model.named_parameters():
        assert torch.equal(p, wa[n]), n


FSDP = dict(GPT, depth=2, steps=5, optimizer="agd", lr=1.0, rule="spectral", weight_decay=0.005)


def _fsdp_worker(rank: int, world: int, store: str, out: str) -> None:
    import torch.distributed as dist

    from sizeup.train import run

    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world, init_method=f"file://{store}")
    try:
        r = run(RunConfig(**FSDP, fsdp=True), rank=rank, world_size=world)
        with open(f"{out}.{rank}.json", "w") as f:
            json.dump({"train": r.train_loss, "val": r.final_val_loss}, f)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_fsdp_two_processes_match_one(tmp_path):
    """FSDP2 shards every matrix by rows: each ||g||_F must be the global norm (else each rank
    takes its own eta and the shards drift apart). 2 gloo processes equal 1 process (with each
    rank's local shard norms instead, the training losses differ by 5.6e-3: this test fails)."""
    from sizeup.train import run

    ctx = mp.get_context("spawn")
    out = str(tmp_path / "rank")
    procs = [
        ctx.Process(target=_fsdp_worker, args=(r, 2, str(tmp_path / "store"), out))
        for r in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    single = run(RunConfig(**FSDP))
    for r in range(2):
        assert os.path.exists(f"{out}.{r}.json"), f"rank {r} wrote nothing"
        got = json.loads((tmp_path / f"rank.{r}.json").read_text())
        assert len(got["train"]) == len(single.train_loss) == 5
        assert max(abs(a - b) for a, b in zip(got["train"], single.train_loss)) <= 1e-5
        assert abs(got["val"] - single.final_val_loss) <= 1e-5
