"""Step time of every registered optimizer ÷ plain AdamW's, on the reference GPT.

GPT (d_model 256, 4 layers, heads of 64, batch 8 x 128 bytes), muP from base width 64, CPU, one
thread. For each optimizer in ``sizeup.registry.optimizer_names()`` (so every newly registered
one joins with no edit): two copies of the same parametrized model, one trained with
``torch.optim.AdamW`` over all its parameters in one group ("plain AdamW"), the other with the
optimizer as sizeup builds it (its param groups, per-tensor lr and decay); the pair runs
alternately in one process (A/B blocks of steps, the order reversed every other round,
benchmarks/alternating.py) and the figure is the median over rounds of the step-time ratio. The
forward and backward are the same in both, so the ratio is the optimizer's update and its
grouping. An optimizer whose pip extra is missing, or whose registry entry does not train a GPT
(``OptimizerEntry.models``), is listed as skipped with the reason.

    python benchmarks/bench_optim.py [--rounds 7] [--steps 10]   # writes results/optim.json
    python benchmarks/bench_optim.py --quick                     # a tiny smoke run (CI)

The --quick figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from alternating import Loss, byte_batches, median_ratio, reference_gpt, step_times

from sizeup.config.optimizer import OptimSpec
from sizeup.errors import ConfigError
from sizeup.parametrization import parametrize
from sizeup.registry import get_optimizer, optimizer_names

BASELINE = "plain-adamw"
# (width, layers, head_dim, seq_len, batch) of the reference run and of --quick
REFERENCE = dict(width=256, n_layer=4, head_dim=64, seq_len=128, batch=8, base_width=64)
QUICK = dict(width=32, n_layer=1, head_dim=16, seq_len=16, batch=2, base_width=16)


def lr_for(name: str) -> float:
    """The optimizer's typical lr (its registry entry), else OptimSpec's default."""
    typical = get_optimizer(name).typical_lr
    return OptimSpec().lr if typical is None else typical


def gpt_maker(shape: dict[str, int], device: str = "cpu") -> Callable[[], tuple[Any, Any]]:
    """A function returning a fresh muP-parametrized reference GPT (same seed, same weights
    each call) and its Parametrization."""

    def make() -> tuple[Any, Any]:
        torch.manual_seed(0)
        dims = {k: shape[k] for k in ("n_layer", "head_dim", "seq_len")}
        model = reference_gpt(shape["width"], **dims).to(device)
        base = reference_gpt(shape["base_width"], **dims)
        return model, parametrize(model, base, rule="mup")

    return make


def skip_reason(name: str) -> str | None:
    """Why an optimizer is not timed on a GPT here (None: it is)."""
    entry = get_optimizer(name)
    if entry.models and "gpt" not in entry.models:
        return f"trains {', '.join(entry.models)} only (its registry entry)"
    try:
        entry.builder()
    except ConfigError as e:
        return str(e)
    return None


def optimizer_ratio(
    name: str,
    make: Callable[[], tuple[Any, Any]],
    batches: list,
    rounds: int,
    loss_fn: Loss,
    sync: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """One optimizer against plain AdamW, alternating: the median ratio and both medians."""
    lr = lr_for(name)
    plain, _ = make()
    model, p = make()
    try:
        opt = p.optimizer(name, lr=lr)
    except ConfigError as e:  # e.g. an extra imported only when built
        return {"skipped": str(e)}
    variants = {
        BASELINE: (plain, torch.optim.AdamW(plain.parameters(), lr=lr, weight_decay=0.0)),
        name: (model, opt),
    }
    times = step_times(variants, batches, rounds, loss_fn, sync)
    return {
        "ratio": median_ratio(times, name, BASELINE),
        "step_s": statistics.median(times[name]),
        "plain_adamw_step_s": statistics.median(times[BASELINE]),
        "lr": lr,
    }


def optimizer_ratios(
    make: Callable[[], tuple[Any, Any]],
    batches: list,
    rounds: int,
    loss_fn: Loss,
    sync: Callable[[], None] = lambda: None,
    names: Sequence[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """``optimizer_ratio`` of every registered optimizer (or ``names``), skipped ones with
    their reason."""
    out = {}
    for name in names or optimizer_names():
        why = skip_reason(name)
        out[name] = (
            {"skipped": why} if why else optimizer_ratio(name, make, batches, rounds, loss_fn, sync)
        )
    return out


def table(rows: dict[str, dict[str, Any]]) -> str:
    """The rows as a Markdown table: optimizer, ratio, its ms/step and plain AdamW's."""
    lines = [
        "| optimizer | ÷ plain AdamW | ms/step | plain AdamW ms/step |",
        "|---|---:|---:|---:|",
    ]
    for name, r in rows.items():
        if "skipped" in r:
            lines.append(f"| {name} | skipped: {r['skipped']} | | |")
        else:
            lines.append(
                f"| {name} | {r['ratio']:.3f} | {r['step_s'] * 1e3:.1f} "
                f"| {r['plain_adamw_step_s'] * 1e3:.1f} |"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Time every registered optimizer, print the table and write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="Tiny sizes, 2 rounds of 2 steps (CI).")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "optim.json")
    args = ap.parse_args(argv)
    shape = QUICK if args.quick else REFERENCE
    rounds, steps = (2, 2) if args.quick else (args.rounds, args.steps)
    torch.set_num_threads(1)
    batches = byte_batches(steps, batch=shape["batch"], seq=shape["seq_len"])
    rows = optimizer_ratios(gpt_maker(shape), batches, rounds, lambda m, x, y: m(x, y)[1])
    print(table(rows))
    result = {
        "what": "training step time ÷ plain torch AdamW's, median over alternating rounds",
        "quick": args.quick,
        "shape": shape,
        "rounds": rounds,
        "steps_per_round": steps,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "optimizers": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
