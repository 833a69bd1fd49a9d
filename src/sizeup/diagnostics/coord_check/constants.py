"""The coordinate check's constants: what it records, and the rates theory allows outputs that
vanish at init (sizeup.diagnostics.coord_check's module doc)."""

from __future__ import annotations

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

# Seeds a check needs before a slope outside the band but within its seed noise may pass (as
# "noisy"). The standard error of a slope comes from the spread of the per-seed slopes, so with
# k seeds it has k - 1 degrees of freedom and the noise allowance is Student's t_{k-1} quantile
# times it (judge.noise_multiplier): 14.0 standard errors with 2 seeds, 4.5 with 3, 3.3 with 4,
# against 2.0 for a known spread. The sweeps need only 2 seeds for an interval
# (sizeup.sweep.estimate.t_interval), because there a wide interval makes a check fail safe: no
# claim passes that the interval does not exclude. Here a wide allowance fails open: a module
# passes unless shown outside the band, and with 2 seeds (one degree of freedom) nearly any
# slope would pass that way. So with fewer than MIN_SEEDS seeds a slope outside the band within
# its allowance is INCONCLUSIVE ("run more seeds") instead of a pass, while one outside even the
# t allowance still FAILs. 3 is the CheckSpec default: the smallest count whose t allowance
# (4.5 standard errors) still separates real failures (SP: +0.5 to +2.8, standard errors of
# 0.01-0.08) from a flat module, as docs/diagnostics.md measures.
MIN_SEEDS = 3
