"""Checkpoint write time / training step time, for the reference GPT, in one process.

The reference GPT (d_model 1024, 12 layers, head_dim 64, seq 1024, byte vocabulary, AdamW) takes
a few training steps (batch ``--batch-size`` sequences) and then writes checkpoints the way
`sizeup train --checkpoint-every` does (``Trainer.save``: full state dicts, torch.save hashed
on the fly, fsync, rename, sidecar); the ratio of median times is printed. A checkpoint every
N steps then costs about ratio / N of the run. ``--small`` is a quick check on a smaller GPT.

    python benchmarks/bench_checkpoint.py            # reference GPT on the CPU (slow steps)
    python benchmarks/bench_checkpoint.py --small    # d_model 256, 4 layers, seq 256
    python benchmarks/bench_checkpoint.py --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from sizeup.config import RunConfig
from sizeup.train import Trainer, build

REFERENCE = dict(width=1024, depth=12, head_dim=64, seq_len=1024)
SMALL = dict(width=256, depth=4, head_dim=64, seq_len=256)


def main() -> None:
    """Time steps and checkpoint writes alternately; print both and their ratio."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    cfg = RunConfig(
        model="gpt",
        **(SMALL if args.small else REFERENCE),
        base_width=256,
        batch_size=args.batch_size,
        steps=args.repeats + 1,
        device=args.device,
        threads=args.threads,
    )
    trainer = Trainer.from_built(cfg, build(cfg))
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    steps, writes = [], []
    with tempfile.TemporaryDirectory() as d:
        for i in range(args.repeats + 1):
            x, y = trainer.data.batch_at(i)
            sync()
            t0 = time.perf_counter()
            trainer.train_step(x, y)
            sync()
            t1 = time.perf_counter()
            side = trainer.save(d, cfg, keep=1)
            t2 = time.perf_counter()
            if i > 0:  # the first step allocates the optimizer state
                steps.append(t1 - t0)
                writes.append(t2 - t1)
        size = side.with_suffix(".pt").stat().st_size
    step, write = statistics.median(steps), statistics.median(writes)
    n = sum(p.numel() for p in trainer.model.parameters())
    print(
        f"GPT d_model={cfg.model.width} depth={cfg.model.depth} seq={cfg.model.seq_len} batch={cfg.data.batch_size}, "
        f"{n / 1e6:.1f}M params, checkpoint {size / 2**20:.0f} MiB, device={args.device}"
    )
    print(f"  median step {step * 1e3:9.1f} ms")
    print(f"  median checkpoint write {write * 1e3:9.1f} ms")
    print(f"  ratio checkpoint write / step = {write / step:.3f}")


if __name__ == "__main__":
    main()
