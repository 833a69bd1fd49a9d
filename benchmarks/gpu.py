"""GPU figures, measured on one CUDA device in under 8 minutes, written with the device named.

1. MFU of the reference GPT (d_model 1024, 12 layers, head_dim 64, seq 1024, byte vocabulary),
   bf16 autocast, torch.compile, fused AdamW: `sizeup train`'s own RunResult.mfu (median step
   time after the first step, exact matmul FLOPs, against the device's peak from its name).
2. muP overhead: median step time of the same run under `mup` / under `sp` (both compiled).
3. Muon step: sizeup.optim.Muon / torch.optim.Muon on the reference GPT's hidden matrices
   (alternating, same gradients; "original" scale, which both define).
4. A 4-width coordinate check (GPT, widths 128-1024, 4 steps, 3 seeds) on the device.
5. Every registered optimizer's training step ÷ plain torch AdamW's on the reference GPT (muP
   from base width 256, bf16 autocast, not compiled), A/B alternating, median ratio over rounds
   (benchmarks/bench_optim.py's code, with a device sync around each block of steps).

    python benchmarks/gpu.py                       # CUDA: writes benchmarks/results/gpu-<device>.json
    python benchmarks/gpu.py --cpu-smoke           # tiny sizes on the CPU, no compile: CI runs this

The smoke mode exercises every code path in seconds; its figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from alternating import byte_batches
from bench_optim import gpt_maker, optimizer_ratios, table

from sizeup.config import RunConfig, json_safe
from sizeup.train import run

REFERENCE = dict(model="gpt", width=1024, depth=12, head_dim=64, seq_len=1024, vocab_size=256)
SMOKE = dict(model="gpt", width=64, depth=2, head_dim=16, seq_len=32, vocab_size=256)


def _run_config(smoke: bool, device: str, rule: str) -> RunConfig:
    shape = SMOKE if smoke else REFERENCE
    return RunConfig(
        **shape,
        rule=rule,
        base_width=32 if smoke else 256,
        batch_size=4 if smoke else 16,
        steps=6 if smoke else 40,
        eval_batches=1,
        device=device,
        autocast=True,
        compile=not smoke,
    )


def mfu_and_mup_overhead(smoke: bool, device: str) -> dict[str, Any]:
    """The compiled bf16 reference run under mup (its MFU) and under sp (the overhead ratio)."""
    cfg = _run_config(smoke, device, "mup")
    mup = run(cfg)
    sp = run(cfg.replace(rule="sp"))
    return {
        "mfu": mup.mfu,
        "peak_flops": mup.peak_flops,
        "step_time_s": mup.step_time,
        "tokens_per_s": cfg.tokens_per_step / mup.step_time,
        "tokens_per_step": cfg.tokens_per_step,
        "sp_step_time_s": sp.step_time,
        "mup_overhead": mup.step_time / sp.step_time,
        "diverged": mup.diverged or sp.diverged,
    }


def _matrices(d: int, n_layer: int) -> list[tuple[int, int]]:
    """(fan_out, fan_in) of every hidden matrix of a GPT block stack (as bench_muon.py)."""
    h = round(8 / 3 * d)
    return [(d, d)] * 4 * n_layer + [(h, d)] * 2 * n_layer + [(d, h)] * n_layer


def muon_ratio(smoke: bool, device: str, steps: int = 20) -> dict[str, Any]:
    """Median optimizer step, sizeup Muon / torch.optim.Muon, alternating on equal matrices."""
    from sizeup.optim import Muon

    shape = SMOKE if smoke else REFERENCE
    gen = torch.Generator().manual_seed(0)
    dev = torch.device(device)
    shapes = _matrices(shape["width"], shape["depth"])
    ours = [torch.nn.Parameter((torch.randn(s, generator=gen) * 0.02).to(dev)) for s in shapes]
    ref = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    for p, q in zip(ours, ref):
        p.grad = torch.randn(p.shape, generator=gen).to(dev)
        q.grad = p.grad.clone()
    kw = dict(lr=0.02, weight_decay=0.01, momentum=0.95)
    opts = {
        "sizeup": Muon(ours, scale_mode="original", **kw),
        "torch": torch.optim.Muon(ref, adjust_lr_fn="original", **kw),
    }
    times = _alternate(opts, dev, steps)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "muon_step_s": med,
        "muon_vs_torch": med["sizeup"] / med["torch"],
        "muon_identical": all(torch.equal(p, q) for p, q in zip(ours, ref)),
    }


def _alternate(opts: dict[str, Any], dev: torch.device, steps: int) -> dict[str, list[float]]:
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    times: dict[str, list[float]] = {k: [] for k in opts}
    for i in range(steps + 3):
        for k in list(opts) if i % 2 == 0 else list(reversed(opts)):
            sync()
            t = time.perf_counter()
            opts[k].step()
            sync()
            if i >= 3:  # the first steps allocate state
                times[k].append(time.perf_counter() - t)
    return times


def coordinate_check(smoke: bool, device: str) -> dict[str, Any]:
    """A 4-width coordinate check of a 2-layer GPT run on the device."""
    from sizeup.diagnostics import coord_check

    widths = (32, 64, 128, 256) if smoke else (128, 256, 512, 1024)
    cfg = RunConfig(
        model="gpt",
        width=widths[0],
        base_width=widths[0],
        depth=2,
        seq_len=32,
        zero_readout=True,  # as benchmarks/bench_coord_check.py
        zero_query=True,
        device=device,
    )
    res = coord_check(cfg, widths=widths, steps=4, seeds=2 if smoke else 3)
    return {"coord_widths": list(widths), "coord_passed": res.passed, "coord_worst": res.worst}


def optimizer_step_ratios(smoke: bool, device: str) -> dict[str, Any]:
    """Each registered optimizer's step time ÷ plain AdamW's (bench_optim.optimizer_ratios) on
    the reference GPT, bf16 autocast on CUDA."""
    shape = SMOKE if smoke else REFERENCE
    dims = dict(width=shape["width"], n_layer=shape["depth"], head_dim=shape["head_dim"])
    dims.update(seq_len=shape["seq_len"], base_width=32 if smoke else 256)
    rounds, steps, batch = (2, 2, 4) if smoke else (5, 5, 16)
    dev = torch.device(device)
    batches = [
        (x.to(dev), y.to(dev)) for x, y in byte_batches(steps, batch=batch, seq=shape["seq_len"])
    ]

    def loss_fn(model: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            return model(x, y)[1]

    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    rows = optimizer_ratios(gpt_maker(dims, device), batches, rounds, loss_fn, sync)
    return {
        "optim_step_ratios": {k: r.get("ratio", r.get("skipped")) for k, r in rows.items()},
        "optim_steps": rows,
    }


def device_label(device: str) -> str:
    """The device's name, e.g. "NVIDIA H100 80GB HBM3", or "cpu"."""
    from sizeup.train.loop import device_name

    return device_name(device)


def main() -> None:
    """Measure every figure, print them and write them as JSON named after the device."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu-smoke", action="store_true", help="Tiny sizes on the CPU (CI).")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    smoke = args.cpu_smoke
    if not smoke and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: run on a GPU machine, or pass --cpu-smoke")
    device = "cpu" if smoke else "cuda"
    t0 = time.perf_counter()
    figures: dict[str, Any] = {"device": device_label(device), "smoke": smoke}
    figures["torch"] = torch.__version__
    for name, fn in (
        ("mfu", mfu_and_mup_overhead),
        ("muon", muon_ratio),
        ("coord", coordinate_check),
        ("optimizers", optimizer_step_ratios),
    ):
        t = time.perf_counter()
        got = fn(smoke, device)
        figures.update(got)
        print(
            f"{name}: {time.perf_counter() - t:.1f} s {json.dumps(json_safe(got), default=_plain)}"
        )
    figures["wall_s"] = time.perf_counter() - t0
    _report(figures, args.out)


def _report(figures: dict[str, Any], out: Path) -> None:
    mfu = figures["mfu"]
    print(f"device {figures['device']} (torch {figures['torch']}, smoke={figures['smoke']})")
    print(
        f"  reference GPT MFU {100 * mfu:.1f}%" if math.isfinite(mfu) else "  MFU unknown",
        f"(step {figures['step_time_s'] * 1e3:.1f} ms)",
    )
    print(f"  muP overhead (mup / sp step) {figures['mup_overhead']:.3f}")
    print(f"  Muon step sizeup / torch {figures['muon_vs_torch']:.3f}")
    print(f"  coordinate check {figures['coord_widths']}: passed={figures['coord_passed']}")
    print("  step time ÷ plain AdamW, per optimizer:")
    print(table(figures["optim_steps"]))
    print(f"  wall {figures['wall_s']:.0f} s")
    out.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", figures["device"]).strip("-").lower()
    path = out / f"gpu-{slug}{'-smoke' if figures['smoke'] else ''}.json"
    path.write_text(json.dumps(json_safe(figures), indent=2, default=_plain))
    print(f"wrote {path}")


def _plain(x: Any) -> Any:
    return x if isinstance(x, (int, float, str)) else str(x)


if __name__ == "__main__":
    main()
