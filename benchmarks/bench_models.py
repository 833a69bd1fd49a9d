"""Benchmark the reference GPT and the data pipeline on CPU (1 thread), as ratios measured
alternately in one process so that machine load cancels out.

    python benchmarks/bench_models.py [--width 256] [--depth 4] [--rounds 5]

Prints:
  explicit / fused attention   training-step time with record_attn_logits=True vs the default
                               F.scaled_dot_product_attention path (how much the fast path saves)
  rope halves / rope complex   a split-halves RoPE (cat + 4 mul, the common textbook form) vs the
                               complex-multiply form the model uses in eager mode, fwd + bwd on q
  rope real pairs / complex    the real-arithmetic form the model uses under torch.compile
  data / step                  time to draw one batch (builtin corpus, and a uint16 memmap)
                               relative to one training step (the data loader's overhead)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from sizeup.config import RunConfig
from sizeup.data import make_data, write_bin
from sizeup.models import build_model
from sizeup.models.gpt import apply_rope, rope_real, rope_tables


def median_time(fn, reps: int) -> float:
    """Median wall time of fn() over reps calls (seconds)."""
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def rope_halves(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Baseline RoPE in the split-halves form (same rotation, different pairing)."""
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


def main() -> None:
    """Run the benchmarks and print the ratios."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)

    cfg = RunConfig(
        width=args.width, depth=args.depth, head_dim=32, seq_len=args.seq, batch_size=args.batch
    )
    model = build_model(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    data = make_data(cfg)
    x, y = data.next_train()

    def step() -> None:
        loss = model(x, y)[1]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    # --- attention: fused vs explicit, alternating ---
    step()
    fused, explicit = [], []
    for _ in range(args.rounds):
        model.record_attn_logits = False
        fused.append(median_time(step, 2))
        model.record_attn_logits = True
        explicit.append(median_time(step, 2))
    model.record_attn_logits = False
    t_step = float(np.median(fused))

    # --- RoPE forms, forward + backward on a (B, H, T, D) query ---
    hd = 32
    q = torch.randn(args.batch, args.width // hd, args.seq, hd, requires_grad=True)
    g = torch.randn_like(q)
    cos, sin = rope_tables(args.seq, hd)
    cos_h = torch.cat([cos, cos], -1)[:, : hd // 2]  # halves form uses the same angles
    sin_h = torch.cat([sin, sin], -1)[:, : hd // 2]
    halves, real, complex_ = [], [], []
    for _ in range(args.rounds):
        halves.append(median_time(lambda: rope_halves(q, cos_h, sin_h).backward(g), 5))
        real.append(median_time(lambda: rope_real(q, cos, sin).backward(g), 5))
        complex_.append(median_time(lambda: apply_rope(q, cos, sin).backward(g), 5))

    # --- data: one batch vs one step ---
    with tempfile.TemporaryDirectory() as tmp:
        path = write_bin(
            Path(tmp) / "tok.bin", np.random.default_rng(0).integers(0, 256, 2_000_000)
        )
        mm = make_data(cfg.replace(data=str(path)))
        t_builtin = median_time(data.next_train, 200)
        t_memmap = median_time(mm.next_train, 200)

    print(f"GPT width={args.width} depth={args.depth} batch={args.batch}x{args.seq}, 1 thread")
    print(f"  training step (fused attention)   {t_step * 1e3:8.1f} ms")
    print(f"  explicit / fused attention        {np.median(explicit) / t_step:8.3f}")
    print(f"  rope halves / rope complex        {np.median(halves) / np.median(complex_):8.3f}")
    print(f"  rope real pairs / rope complex    {np.median(real) / np.median(complex_):8.3f}")
    print(f"  data(builtin) / step              {t_builtin / t_step:8.5f}")
    print(f"  data(uint16 memmap) / step        {t_memmap / t_step:8.5f}")


if __name__ == "__main__":
    main()
