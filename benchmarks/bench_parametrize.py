"""Step-time overhead of sizeup's muP against an unparametrized model and microsoft's mup.

GPT (d_model 256, 4 layers), CPU, one thread. The three variants run alternately in one process
(round-robin blocks of steps), so machine noise hits all of them alike; we report the ratio of
medians. Targets (Foundation issue): sizeup mup / plain <= 1.03, sizeup mup / microsoft mup <= 1.0.

    python benchmarks/bench_parametrize.py [--rounds 7] [--steps 10]
"""

from __future__ import annotations

import argparse
import copy

import torch
from alternating import byte_batches, median_step_times, reference_gpt

from sizeup.parametrization import parametrize


def _variants(lr: float = 3e-3):
    torch.manual_seed(0)
    plain = reference_gpt(256)
    ours = copy.deepcopy(plain)
    p = parametrize(ours, reference_gpt(64), rule="mup")
    out = {
        "plain": (plain, torch.optim.AdamW(plain.parameters(), lr=lr, weight_decay=0.0)),
        "sizeup-mup": (ours, p.optimizer("adamw", lr=lr)),
    }
    try:
        import mup

        theirs = copy.deepcopy(plain)
        for mod in theirs.modules():
            mod._forward_pre_hooks.clear()
            mod._forward_hooks.clear()
        theirs.lm_head = mup.MuReadout(256, 256, bias=False)
        base = reference_gpt(64)
        base.lm_head = mup.MuReadout(64, 256, bias=False)
        mup.set_base_shapes(theirs, base)
        out["microsoft-mup"] = (theirs, mup.MuAdamW(theirs.parameters(), lr=lr, weight_decay=0.0))
    except ImportError:
        print("microsoft mup not installed: skipping that comparison")
    return out


def main() -> None:
    """Print per-step medians and the two ratios."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(1)
    batches = byte_batches(args.steps)
    med = median_step_times(_variants(), batches, args.rounds, lambda m, x, y: m(x, y)[1])
    for k, v in med.items():
        print(f"{k:>14}: {v * 1e3:7.1f} ms/step")
    print(f"sizeup-mup / plain         = {med['sizeup-mup'] / med['plain']:.3f}  (target <= 1.03)")
    if "microsoft-mup" in med:
        print(
            f"sizeup-mup / microsoft-mup = {med['sizeup-mup'] / med['microsoft-mup']:.3f}"
            "  (target <= 1.0)"
        )


if __name__ == "__main__":
    main()
