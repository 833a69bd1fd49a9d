"""Fuzz (hypothesis) of issue 23's advice checks that are pure functions: the collapse criterion
on any recorded curve, and `sizeup wsd`'s suggested widths for any optimum. FUZZ_N examples
each (default 400; FUZZ_N=10000 for the issue's run)."""

from __future__ import annotations

import math
import os

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from sizeup.config import RunConfig, RunResult  # noqa: E402
from sizeup.train.loop import COLLAPSE_TAIL, COLLAPSE_TOL, collapsed  # noqa: E402

SETTINGS = settings(
    max_examples=int(os.environ.get("FUZZ_N", "400")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
U = math.log(256)
losses = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(U - 1e-3, U + 1e-3),
    st.just(U),
)


@SETTINGS
@given(
    train=st.lists(losses, max_size=12),
    final=losses,
    initial=losses,
)
def test_collapse_is_never_claimed_for_a_curve_that_moves(train, final, initial):
    r = RunResult(config={}, steps=list(range(len(train))), train_loss=train)
    r.final_val_loss, r.initial_val_loss = final, initial
    onset = collapsed(r, U)
    ends = train[1:][-COLLAPSE_TAIL:] + ([final] if math.isfinite(final) else [])
    if onset is None:
        # not claimed: something it reads is off the uniform loss, or there is nothing to read
        assert not ends or any(not abs(v - U) <= COLLAPSE_TOL for v in ends)
    else:
        assert ends and all(abs(v - U) <= COLLAPSE_TOL for v in ends)
        assert 1 <= onset <= len(train) + 1


@SETTINGS
@given(
    w_opt=st.floats(1e-6, 1e9),
    head_dim=st.sampled_from([2, 8, 16, 64, 128]),
    base_mult=st.integers(1, 64),
)
def test_suggested_widths_are_always_enough_for_approach2(w_opt, head_dim, base_mult):
    from sizeup.cli.wsd import bracketing_widths
    from sizeup.laws.chinchilla import PROFILE_SIZES

    base = head_dim * base_mult
    cfg = RunConfig(head_dim=head_dim, base_width=base, width=base)
    widths = bracketing_widths(w_opt, cfg)
    assert len(set(widths)) == len(widths) >= PROFILE_SIZES
    assert widths == sorted(widths)
    assert all(w % head_dim == 0 and w >= base for w in widths)
