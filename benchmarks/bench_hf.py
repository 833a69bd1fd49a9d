"""Step-time overhead of sizeup's muP on a Hugging Face transformers Llama against the same model
unparametrized.

A tiny LlamaForCausalLM (hidden 256, 4 layers, 4 heads, vocab 256, from a config: no download),
CPU, one thread, AdamW. Variants run alternately in one process (round-robin blocks of steps, the
order reversed every round), so machine noise hits all of them alike; we report the ratio of
medians. Each step is sizeup's one training step body (sizeup.train.step.forward_loss, backward,
optimizer step), the model returning a transformers ModelOutput. Target (issue #11): sizeup mup
/ plain <= 1.03. The Table 8 readout (a forward pre-hook on lm_head) is shown for information.

    python benchmarks/bench_hf.py [--rounds 7] [--steps 10]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from sizeup.models.hf import hf_model
from sizeup.parametrization import parametrize
from sizeup.train.step import forward_loss


def _llama(width: int) -> torch.nn.Module:
    return hf_model("llama", width, num_hidden_layers=4)


def _variants(lr: float = 3e-3) -> dict:
    torch.manual_seed(0)
    plain = _llama(256)
    out = {"plain": (plain, torch.optim.AdamW(plain.parameters(), lr=lr, weight_decay=0.0))}
    for name, form in (("sizeup-mup", "table3"), ("sizeup-mup-table8", "table8")):
        m = copy.deepcopy(plain)
        p = parametrize(m, _llama(64), rule="mup", attn_scale="1/d", readout_form=form)
        out[name] = (m, p.optimizer("adamw", lr=lr))
    return out


def _steps(model: torch.nn.Module, opt: torch.optim.Optimizer, batches: list) -> float:
    t0 = time.perf_counter()
    for x, y in batches:
        _, loss = forward_loss(model, x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return (time.perf_counter() - t0) / len(batches)


def main() -> None:
    """Print per-step medians and the ratios."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(args.steps):
        t = torch.randint(0, 256, (8, 129), generator=g)
        batches.append((t[:, :-1], t[:, 1:]))
    variants = _variants()
    for m, o in variants.values():  # warm-up
        m.train()
        _steps(m, o, batches[:2])
    times: dict[str, list[float]] = {k: [] for k in variants}
    for r in range(args.rounds):
        order = list(variants) if r % 2 == 0 else list(reversed(variants))
        for k in order:
            times[k].append(_steps(*variants[k], batches))
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in med.items():
        print(f"{k:>18}: {v * 1e3:7.1f} ms/step")
    print(f"sizeup-mup / plain        = {med['sizeup-mup'] / med['plain']:.3f}  (target <= 1.03)")
    print(f"sizeup-mup-table8 / plain = {med['sizeup-mup-table8'] / med['plain']:.3f}")


if __name__ == "__main__":
    main()
