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
