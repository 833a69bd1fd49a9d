"""GPU-ready training, covered on the CPU: bf16 autocast, torch.compile, fused AdamW (also in
Muon's AdamW groups), MFU against a device's peak in RunResult, and benchmarks/gpu.py in its
CPU smoke mode. The real GPU figures come from benchmarks/gpu.py on a CUDA machine."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sizeup.config import RunConfig, RunResult
from sizeup.flops import device_peak_flops, gpt_exact_flops_per_token
from sizeup.registry import optimizer_names
from sizeup.train import run
from sizeup.train.build import fused_adamw

MLP = dict(model="mlp", data="teacher", width=32, base_width=16, depth=2, batch_size=16)
GPT = dict(model="gpt", width=64, depth=2, head_dim=16, base_width=32, seq_len=32, batch_size=4)


def test_bf16_autocast_trains_with_fp32_weights():
    cfg = RunConfig(**GPT, steps=6, eval_batches=1)
    plain, amp = run(cfg), run(cfg.replace(autocast=True))
    assert amp.train_loss != plain.train_loss  # the matmuls did run in bf16
    assert all(abs(a - b) < 0.02 * b for a, b in zip(amp.train_loss, plain.train_loss))
    assert amp.final_val_loss < amp.initial_val_loss
    seen = []
    run(cfg.replace(autocast=True, steps=1), on_built=lambda b: seen.append(b.model))
    assert {p.dtype for p in seen[0].parameters()} == {torch.float32}


@pytest.mark.slow
def test_compile_follows_eager():
    cfg = RunConfig(**MLP, steps=4, eval_batches=1)
    eager, compiled = run(cfg), run(cfg.replace(compile=True))
    assert max(abs(a - b) for a, b in zip(eager.train_loss, compiled.train_loss)) < 1e-5
    assert abs(eager.final_val_loss - compiled.final_val_loss) < 1e-5


@pytest.mark.parametrize("name", ["adamw", "muon"])
def test_fused_adamw_follows_foreach(name):
    from sizeup.train import build

    cfg = RunConfig(**GPT, optimizer=name, lr=0.01, weight_decay=0.1)
    assert fused_adamw(cfg) is None and fused_adamw(cfg.replace(device="cuda")) is True
    built = build(cfg)
    twin = build(cfg)
    fused = built.parametrization.optimizer(
        name, lr=0.01, weight_decay=0.1, model=twin.model, fused=True, ns_dtype=None
    )
    # the reference: the same groups with torch's default (foreach) kernel
    ref = built.parametrization.optimizer(name, lr=0.01, weight_decay=0.1, ns_dtype=None)
    assert any(g.get("fused") for g in fused.param_groups)
    x, y = built.data.batch_at(0)
    for _ in range(3):
        for model, opt in ((built.model, ref), (twin.model, fused)):
            model(x, targets=y)[1].backward()
            opt.step()
            opt.zero_grad()
    for a, b in zip(built.model.parameters(), twin.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_mfu_against_the_device_peak():
    r = run(RunConfig(**GPT, steps=4, eval_batches=1, peak_flops=1e12))
    fpt = gpt_exact_flops_per_token(RunConfig(**GPT).model)
    tokens_per_s = 4 * 32 / r.step_time
    assert r.device_name == "cpu" and r.peak_flops == 1e12 and r.world_size == 1
    assert r.mfu == pytest.approx(tokens_per_s * fpt / 1e12, rel=1e-9)
    back = RunResult.from_dict(json.loads(json.dumps(r.to_dict())))
    assert back.mfu == r.mfu
    unknown = run(RunConfig(**GPT, steps=2, eval_batches=1))
    assert math.isnan(unknown.mfu) and math.isnan(unknown.peak_flops)
    assert math.isnan(RunResult.from_dict(unknown.to_dict()).mfu)


def test_device_peaks_from_names():
    assert device_peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert device_peak_flops("NVIDIA H100 PCIe") == 756e12
    assert device_peak_flops("NVIDIA H200") == 989e12
    assert device_peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert device_peak_flops("NVIDIA A10G") == 70e12
    assert device_peak_flops("NVIDIA L40S") == 362e12
    assert device_peak_flops("cpu") is None


@pytest.mark.slow
def test_gpu_benchmark_runs_in_cpu_smoke_mode(tmp_path):
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"
    r = subprocess.run(
        [sys.executable, str(script), "--cpu-smoke", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    (out,) = tmp_path.glob("gpu-*-smoke.json")
    figures = json.loads(out.read_text())
    assert figures["device"] == "cpu" and figures["smoke"] is True
    assert figures["mup_overhead"] > 0 and figures["muon_vs_torch"] > 0
    assert figures["muon_identical"] is True and len(figures["coord_widths"]) == 4
    # every optimizer the subprocess registers, each with its ratio to plain AdamW (or a reason)
    ratios = figures["optim_step_ratios"]
    assert list(ratios) == list(optimizer_names()) and all(ratios.values())


@pytest.mark.slow
def test_gpu_width_study_runs_in_cpu_smoke_mode(tmp_path):
    """benchmarks/gpu_width.py: seeds one at a time, the summary, report and a consistent copy
    of the study in OUT after each (its figures mean nothing in smoke mode)."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_width.py"
    r = subprocess.run(
        [sys.executable, str(script), "--cpu-smoke", "--out", str(tmp_path), "--workers", "1"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["gpu_width"]["seeds_run"] == 2 and summary["device"] == "cpu"
    assert (tmp_path / "report.html").stat().st_size > 0
    from sizeup.sweep import Store

    with Store(tmp_path / "demo.db", readonly=True) as st:
        assert len(st.trials()) == 2 * 2 * 2 * 2  # widths x lrs x variants x seeds
