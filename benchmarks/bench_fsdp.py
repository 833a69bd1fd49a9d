"""FSDP2 step time / DDP step time on the same model, 2 gloo processes on the CPU.

Both trainers live in the same 2-process group and step alternately on the same batches
(``sizeup.train.Trainer.train_step``: forward, backward, clipping, AdamW, the loss mean over
ranks), so machine load hits both alike; rank 0 prints the ratio of median step times. FSDP2
all-gathers each block's parameters in forward and backward and reduce-scatters the gradients
where DDP all-reduces them: on 2 CPU processes over gloo it pays for that communication without
the memory it saves mattering, so a ratio above 1 is expected here.

    python benchmarks/bench_fsdp.py                  # GPT d_model 256, 4 layers, seq 128, batch 16
    python benchmarks/bench_fsdp.py --width 512 --steps 20
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sizeup.config import RunConfig
from sizeup.train import Trainer, build


def _worker(rank: int, args: argparse.Namespace, store: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2, init_method=f"file://{store}")
    try:
        cfg = RunConfig(
            model="gpt",
            width=args.width,
            depth=args.depth,
            head_dim=64,
            base_width=64,
            seq_len=args.seq_len,
            batch_size=args.batch_size,
            steps=args.steps + 3,
            grad_clip=1.0,
        )
        trainers = {
            "ddp": Trainer.from_built(cfg, build(cfg, rank, 2), world_size=2),
            "fsdp": Trainer.from_built(
                cfg.replace(fsdp=True), build(cfg.replace(fsdp=True), rank, 2), world_size=2
            ),
        }
        times = _alternate(trainers, args.steps)
        if rank == 0:
            med = {k: statistics.median(v) for k, v in times.items()}
            print(
                f"GPT d_model={args.width} depth={args.depth} seq={args.seq_len} "
                f"batch={args.batch_size} (global), 2 gloo processes, 1 thread each"
            )
            for k, v in med.items():
                print(f"  {k:5s} median step {v * 1e3:8.1f} ms")
            print(f"  ratio FSDP2 / DDP = {med['fsdp'] / med['ddp']:.3f}")
    finally:
        dist.destroy_process_group()


def _alternate(trainers: dict[str, Trainer], steps: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {k: [] for k in trainers}
    for i in range(steps + 3):
        order = list(trainers) if i % 2 == 0 else list(reversed(trainers))
        for k in order:
            t = trainers[k]
            x, y = t.data.batch_at(i)
            dist.barrier()
            t0 = time.perf_counter()
            t.train_step(x, y)
            dist.barrier()
            if i >= 3:  # warm-up: allocation, first all-gathers
                times[k].append(time.perf_counter() - t0)
    return times


def main() -> None:
    """Spawn the two ranks and let rank 0 print the ratio."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as d:
        mp.spawn(_worker, args=(args, os.path.join(d, "store")), nprocs=2, join=True)


if __name__ == "__main__":
    main()
