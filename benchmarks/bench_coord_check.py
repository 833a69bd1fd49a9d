"""Benchmark: coord check of a 2-layer GPT, widths 128..1024, 4 steps, 3 seeds (target < 60 s
on 2 CPU cores). Baseline in the same process: the same training loop (same models, same
parametrization, same batches) without any recording hooks, so the ratio is the cost of the
diagnostics themselves.

    python benchmarks/bench_coord_check.py [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import torch

from sizeup import parametrize
from sizeup.diagnostics import coord_check
from sizeup.diagnostics.coord_check import _gpt_factory, gpt_batches

WIDTHS = (128, 256, 512, 1024)
STEPS, SEEDS = 4, 3


def baseline(threads: int) -> float:
    """Plain training loop: build, parametrize, STEPS updates + one forward, no hooks."""
    torch.set_num_threads(threads)
    build = _gpt_factory(n_head=4, depth=2, seq_len=32, attn_scale="1/d", qk_norm=False)
    t0 = time.perf_counter()
    for seed in range(SEEDS):
        x, y = gpt_batches(1, 8, 32, seed)[0]
        for w in WIDTHS:
            torch.manual_seed(seed)
            m = build(w)
            p = parametrize(
                m,
                base=build(WIDTHS[0]),
                delta=build(2 * WIDTHS[0]),
                rule="mup",
                zero_readout=True,
                zero_query=True,
            )
            opt = p.optimizer("adamw", 1e-2)
            for t in range(STEPS + 1):
                with torch.set_grad_enabled(t < STEPS):
                    _, loss = m(x, targets=y)
                if t < STEPS:
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    base = baseline(args.threads)
    t0 = time.perf_counter()
    r = coord_check(
        "gpt", "mup", "adamw", widths=WIDTHS, steps=STEPS, seeds=SEEDS, threads=args.threads
    )
    full = time.perf_counter() - t0
    print(f"threads={args.threads} widths={WIDTHS} steps={STEPS} seeds={SEEDS}")
    print(f"baseline training loop (no hooks): {base:.1f} s")
    print(
        f"coord check (hooks, verdict):      {full:.1f} s  ratio {full / base:.2f}x  "
        f"[target < 60 s]  verdict passed={r.passed}, {len(r.modules)} modules"
    )


if __name__ == "__main__":
    main()
