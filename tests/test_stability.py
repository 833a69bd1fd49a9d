"""Stability monitors (Wortsman et al. 2023) and the horizon rule: hand checks and the trainer."""

from __future__ import annotations

import math

import pytest
import torch
from small_configs import SMALL_GPT
from torch import nn

from sizeup.config import RunConfig
from sizeup.errors import ConfigError
from sizeup.models.gpt import GPT, GPTConfig
from sizeup.optim import transfer_horizon
from sizeup.train import build, run
from sizeup.train.monitors import AttentionLogitMonitor, OutputLogitMonitor

SMALL = dict(SMALL_GPT, batch_size=4, eval_batches=1, lr=0.01)


def test_monitors_log_without_changing_the_run():
    plain = run(RunConfig(**SMALL))
    watched = run(RunConfig(**SMALL, attn_logits_every=5, output_logits_every=5))
    assert watched.train_loss == plain.train_loss  # measuring does not perturb training
    attn = watched.diagnostics["attn_logits"]
    assert [d["step"] for d in attn] == [0, 5, 10]
    last = attn[-1]
    assert last["max"] == max(last["blocks.0.attn.logits/max"], last["blocks.1.attn.logits/max"])
    assert 0 < last["min_entropy"] <= math.log(SMALL["seq_len"])
    out = watched.diagnostics["output_logits"][-1]
    assert out["max_abs"] > 0 and out["log_z_abs_max"] >= abs(out["log_z_mean"])


def test_attention_monitor_by_hand():
    # one block, one head: the monitor's max |logit| is the largest causal q.k * scale
    torch.manual_seed(0)
    model = GPT(GPTConfig(d_model=16, n_layer=1, head_dim=16, seq_len=8, attn_scale="1/sqrt(d)"))
    x = torch.randint(0, 256, (2, 8))
    seen = {}
    model.record_attn_logits = True
    h = model.blocks[0].attn.logits.register_forward_hook(lambda m, i, o: seen.update(s=o))
    with torch.no_grad():
        model(x)
    h.remove()
    model.record_attn_logits = False
    causal = seen["s"].masked_fill(torch.ones(8, 8, dtype=torch.bool).triu(1), 0.0)
    got = AttentionLogitMonitor(model, every=1, probe=x).measure(0, model)
    assert got["max"] == pytest.approx(float(causal.abs().max()))
    assert model.record_attn_logits is False  # switched back
    with torch.no_grad():
        logits = model(x)[0]
    o = OutputLogitMonitor(every=1, probe=x).measure(0, model)
    assert o["log_z_mean"] == pytest.approx(float(logits.logsumexp(-1).mean()), rel=1e-6)


def test_attention_monitor_needs_hook_points():
    with pytest.raises(ConfigError, match="attention-score hook points"):
        AttentionLogitMonitor(nn.Linear(4, 4), every=1, probe=torch.zeros(1, 4))
    with pytest.raises(ConfigError, match="every"):
        OutputLogitMonitor(every=0, probe=torch.zeros(1, 4))


def test_horizon_rule_by_hand():
    # Bjorck et al. 2024: lr x (D / D0)^alpha_data; 4x the tokens at alpha -0.5 halves the lr
    assert transfer_horizon(0.01, 4000, 1000, -0.5) == pytest.approx(0.005)
    assert transfer_horizon(0.01, 1000, 1000, -0.5) == 0.01
    with pytest.raises(ConfigError, match="base_tokens"):
        transfer_horizon(0.01, 1000, 0, -0.5)
    cfg = RunConfig(**SMALL, base_tokens=3 * 4 * 32, data_exponent=-0.5)  # D/D0 = 12/3 = 4
    lrs = {g["lr"] for g in build(cfg).optimizer.param_groups}
    plain = {g["lr"] for g in build(RunConfig(**SMALL)).optimizer.param_groups}
    assert sorted(lrs) == pytest.approx(sorted(v / 2 for v in plain))
    assert RunConfig(**SMALL).tokens == 12 * 4 * 32
    with pytest.raises(ConfigError, match="base_tokens"):
        RunConfig(base_tokens=0)
    # new fields at their defaults keep every existing trial id
    assert RunConfig(**SMALL).trial_id() == RunConfig(**SMALL, data_exponent=0.0).trial_id()
