"""The coordinate check's constants: what it records, and the rates theory allows outputs that
vanish at init (sizeup.diagnostics.coord_check's module doc)."""

from __future__ import annotations

# Seeds a check needs for a verdict from seed noise: declared with the field it governs.
from sizeup.config.check import MIN_SEEDS  # noqa: F401

STATS = ("l1", "rms")
KINDS = ("hidden", "residual", "attn_logits", "logits")
LOGITS = "logits"  # pseudo-module: the model's final output
RESIDUAL = "residual"  # pseudo-module (depth mode): the last block's output

# How fast the crosstalk part of a zero-initialised output fades with width (module doc of
# sizeup.diagnostics.coord_check).
CROSSTALK_SLOPE = 0.5
# How fast an output that vanishes at init shrinks with width: a sum of n random terms of size
# 1/n (muP's readout, 1/d attention scores over a growing head), n^-1/2 by the central limit.
VANISH_SLOPE = 0.5

# The verdicts a check (and each module) can give.
PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"
