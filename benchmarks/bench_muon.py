"""Muon step time: sizeup.optim.Muon / torch.optim.Muon on the same GPT-like matrices.

Both optimizers hold copies of the hidden matrices of a GPT (per block: q, k, v, o of d x d,
SwiGLU gate and up of h x d, down of d x h with h = round(8/3 d)) and get identical gradients.
Steps alternate between the two in one process so machine load hits both alike; the ratio of
median step times is printed (target <= 1.1).

    python benchmarks/bench_muon.py                     # d_model 256, 4 layers, CPU, 1 thread
    python benchmarks/bench_muon.py --d-model 1024 --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from sizeup.optim import Muon


def gpt_matrices(d_model: int, n_layer: int) -> list[tuple[int, int]]:
    """(fan_out, fan_in) of every hidden matrix of a GPT block stack."""
    h = round(8 / 3 * d_model)
    return (
        [(d_model, d_model)] * 4 * n_layer + [(h, d_model)] * 2 * n_layer + [(d_model, h)] * n_layer
    )


def main() -> None:
    """Time both optimizers alternately and print the ratio of median step times."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    shapes = gpt_matrices(args.d_model, args.n_layer)
    ours = [torch.nn.Parameter((torch.randn(s, generator=gen) * 0.02).to(dev)) for s in shapes]
    ref = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    for p, q in zip(ours, ref):
        p.grad = torch.randn(p.shape, generator=gen).to(dev)
        q.grad = p.grad.clone()
    # "original" is the scale both define; weight decay on so both do the full step.
    opts = {
        "sizeup": Muon(ours, lr=0.02, weight_decay=0.01, momentum=0.95, scale_mode="original"),
        "torch": torch.optim.Muon(
            ref, lr=0.02, weight_decay=0.01, momentum=0.95, adjust_lr_fn="original"
        ),
    }
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    times: dict[str, list[float]] = {k: [] for k in opts}
    for i in range(args.steps + 3):
        order = list(opts) if i % 2 == 0 else list(reversed(opts))
        for k in order:
            sync()
            t = time.perf_counter()
            opts[k].step()
            sync()
            if i >= 3:  # the first steps allocate state and warm caches
                times[k].append(time.perf_counter() - t)
    same = all(torch.equal(p, q) for p, q in zip(ours, ref))
    med = {k: statistics.median(v) for k, v in times.items()}
    n_params = sum(a * b for a, b in shapes)
    print(
        f"{len(shapes)} matrices, {n_params / 1e6:.2f}M params, d_model={args.d_model}, "
        f"n_layer={args.n_layer}, device={args.device}, threads={args.threads}"
    )
    for k, v in med.items():
        print(f"  {k:7s} median step {v * 1e3:8.2f} ms")
    print(
        f"  ratio sizeup / torch = {med['sizeup'] / med['torch']:.3f}  (target <= 1.1); "
        f"parameters identical after {args.steps + 3} steps: {same}"
    )


if __name__ == "__main__":
    main()
