"""The width study over 32x on one GPU: SP vs muP, 64 -> 2048, seeds added while time allows.

The CPU studies (`sizeup demo`, docs/transfer.md) span 8x in width; this one spans 32x on a
CUDA device: the reference GPT's block (head_dim 64, SwiGLU MLP, QK-norm, byte vocabulary) at
depth 2, bf16 autocast, Adam, a constant lr after warmup, on the built-in corpus, the lr grid
2^-14 .. 2^-6 at every width, SP and muP. It is `sizeup demo`'s own study (same analysis, same
summary.json and report.html) with a wider span and a GPU-sized base; seeds are run one at a
time, and the summary is rewritten after each, so a study cut short still reports what it has.

    python benchmarks/gpu_width.py --out DIR [--budget-s 300] [--workers 6]
    python benchmarks/gpu_width.py --cpu-smoke --out DIR     # tiny, on the CPU: CI runs this
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import time
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import torch

from sizeup.demo import MUP, SP, DemoSettings, run_demo, store_name, study_base

GPU = DemoSettings(
    axis="width",
    values=[64, 128, 256, 512, 1024, 2048],
    lr_exps=list(range(-14, -5)),
    seeds=[0, 1, 2],
    base={
        **study_base(),
        "base_width": 64,
        "head_dim": 64,
        "seq_len": 256,
        "batch_size": 32,
        "steps": 200,
        "warmup": 20,
        "device": "cuda",
        "autocast": True,
    },
    variants=[SP, MUP],
    question="Tune the lr at width 64, use it at width 2048 (32x): does it still work?",
)
SMOKE = replace(
    GPU,
    values=[16, 32],
    lr_exps=[-8, -6],
    seeds=[0, 1],
    base={
        **GPU.base,
        "base_width": 16,
        "head_dim": 8,
        "seq_len": 16,
        "batch_size": 4,
        "steps": 4,
        "warmup": 1,
        "eval_batches": 1,
        "device": "cpu",
        "autocast": False,
    },
)
KEEP = ("summary.json", "report.html")  # and the study itself, demo.db


def run(settings: DemoSettings, work: Path, out: Path, budget_s: float, workers: int) -> dict:
    """Run the study a seed at a time while the next seed fits the budget; copy the summary
    and report to ``out`` after each."""
    t0, done, summary = time.perf_counter(), 0, {}
    for k in range(1, len(settings.seeds) + 1):
        t = time.perf_counter()
        s = replace(settings, seeds=settings.seeds[:k])
        summary = run_demo(work, settings=s, workers=workers, progress=True)
        done = k
        for name in KEEP:
            shutil.copy(work / name, out / name)
        db = store_name(settings.axis, quick=False)  # the file run_demo keeps the study in
        _backup(work / db, out / db)
        spent, last = time.perf_counter() - t0, time.perf_counter() - t
        print(f"seeds {s.seeds}: {last:.0f} s (total {spent:.0f} s)", flush=True)
        if spent + 1.1 * last > budget_s:
            break
    summary["gpu_width"] = {"seeds_run": done, "wall_s": time.perf_counter() - t0}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _backup(src: Path, dst: Path) -> None:
    """A consistent copy of the study (SQLite's online backup: the WAL's rows included)."""
    with closing(sqlite3.connect(src)) as a, closing(sqlite3.connect(dst)) as b:
        a.backup(b)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=None, help="Study folder (default OUT/study).")
    ap.add_argument("--budget-s", type=float, default=300.0)
    ap.add_argument("--workers", type=int, default=6)
    ap.add_argument("--cpu-smoke", action="store_true")
    a = ap.parse_args()
    if not a.cpu_smoke and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: run on a GPU machine, or pass --cpu-smoke")
    a.out.mkdir(parents=True, exist_ok=True)
    work = a.work or a.out / "study"
    s = run(SMOKE if a.cpu_smoke else GPU, work, a.out, a.budget_s, a.workers)
    print(json.dumps({k: s[k] for k in ("checks", "gpu_width") if k in s}, indent=2))


if __name__ == "__main__":
    main()
