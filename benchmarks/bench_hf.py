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

import torch
from alternating import byte_batches, median_step_times

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


def main() -> None:
    """Print per-step medians and the ratios."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(1)
    batches = byte_batches(args.steps)
    med = median_step_times(
        _variants(), batches, args.rounds, lambda m, x, y: forward_loss(m, x, y)[1]
    )
    for k, v in med.items():
        print(f"{k:>18}: {v * 1e3:7.1f} ms/step")
    print(f"sizeup-mup / plain        = {med['sizeup-mup'] / med['plain']:.3f}  (target <= 1.03)")
    print(f"sizeup-mup-table8 / plain = {med['sizeup-mup-table8'] / med['plain']:.3f}")


if __name__ == "__main__":
    main()
