"""The small GPT run the training tests share (fast on one CPU thread: 64 wide, 2 blocks,
32-token sequences); each test file overrides what it is about."""

from __future__ import annotations

SMALL_GPT = dict(
    model="gpt",
    width=64,
    depth=2,
    head_dim=16,
    base_width=32,
    seq_len=32,
    batch_size=8,
    steps=12,
    eval_batches=2,
)


def small_demo_settings(axis: str):
    """The quick study of ``axis`` cut to its first two values, five lrs and two seeds: what a
    stand-in trainer runs in a second for the contract and report tests."""
    from sizeup.demo import DemoSettings, settings_for

    quick = settings_for(axis, quick=True)
    return DemoSettings(
        axis=axis,
        values=quick.values[:2],
        lr_exps=[-10, -9, -8, -7, -6],
        seeds=[0, 1],
        base=quick.base,
        variants=quick.variants,
        moves_with={k: v[:2] for k, v in quick.moves_with.items()},
    )
