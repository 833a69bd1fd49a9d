"""Schedules against values computed by hand at chosen steps."""

from __future__ import annotations

import math
import pickle

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sizeup.errors import ConfigError
from sizeup.schedules import (
    DEEPSEEK_LLM_MILESTONES,
    BatchRamp,
    loss_ramp,
    make_schedule,
    parse_milestones,
    parse_ramp,
    plot_schedule,
    token_ramp,
)


def test_constant_with_linear_warmup():
    f = make_schedule("constant", steps=10, warmup=4)
    # (s + 1) / warmup during warmup: 1/4, 2/4, 3/4, then 1.
    assert [f(s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert f(9) == 1.0


def test_cosine_hand_values():
    f = make_schedule("cosine", steps=10)
    assert f(0) == 1.0
    assert f(5) == pytest.approx(0.5)  # (1 + cos(pi/2)) / 2
    assert f(10) == pytest.approx(0.0)
    # p = 2.5/10: (1 + cos(pi/4)) / 2 = 0.853553...
    g = make_schedule("cosine", steps=4)
    assert g(1) == pytest.approx((1 + math.cos(math.pi / 4)) / 2)
    h = make_schedule("cosine", steps=10, min_ratio=0.1)
    assert h(5) == pytest.approx(0.1 + 0.9 * 0.5)
    assert h(10) == pytest.approx(0.1)
    # Warmup 2 of 10: f(0)=1/2, f(2)=1, p(6) = (6-2)/8 = 1/2 -> 0.5.
    w = make_schedule("cosine", steps=10, warmup=2)
    assert w(0) == 0.5 and w(2) == 1.0 and w(6) == pytest.approx(0.5)


@pytest.mark.parametrize(
    "cooldown,mid",
    [
        ("linear", 0.5),
        ("1-sqrt", 1 - math.sqrt(0.5)),  # 0.29289...
        ("exponential", 0.01**0.5),  # r^p with r = 0.01 when min_ratio = 0
    ],
)
def test_wsd_cooldowns(cooldown, mid):
    f = make_schedule("wsd", steps=100, decay_frac=0.2, cooldown=cooldown)
    assert f.decay_start == 80
    assert f(0) == 1.0 and f(79) == 1.0 and f(80) == 1.0
    assert f(90) == pytest.approx(mid)
    end = 0.01 if cooldown == "exponential" else 0.0
    assert f(100) == pytest.approx(end)
    assert f(99) > f(100)  # the last real step still has a positive lr


def test_wsd_min_ratio_and_warmup():
    f = make_schedule("wsd", steps=20, warmup=5, decay_frac=0.5, cooldown="linear", min_ratio=0.2)
    assert f(0) == pytest.approx(0.2)  # warmup 1/5
    assert f(9) == 1.0
    assert f(15) == pytest.approx(0.2 + 0.8 * 0.5)
    e = make_schedule("wsd", steps=10, decay_frac=1.0, cooldown="exponential", min_ratio=0.1)
    assert e(5) == pytest.approx(0.1**0.5)


def test_lambdalr_drives_optimizer_lr():
    w = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([w], lr=0.3)
    f = make_schedule("wsd", steps=10, warmup=2, decay_frac=0.4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, f)
    seen = []
    for _ in range(10):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([0.3 * f(s) for s in range(10)])
    assert seen[0] == pytest.approx(0.15)
    assert pickle.loads(pickle.dumps(f)) == f  # sweeps ship schedules to worker processes


@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(kind="linear", steps=10), "schedule"),
        (dict(kind="cosine", steps=0), "steps"),
        (dict(kind="cosine", steps=10, warmup=11), "warmup"),
        (dict(kind="wsd", steps=10, decay_frac=1.5), "decay_frac"),
        (dict(kind="wsd", steps=10, cooldown="cubic"), "cooldown"),
        (dict(kind="cosine", steps=10, min_ratio=1.0), "min_ratio"),
        (dict(kind="multistep", steps=10), "milestones"),
        (dict(kind="multistep", steps=10, milestones=((0.9, 0.1), (0.8, 0.3))), "milestones"),
        (dict(kind="multistep", steps=10, milestones=((0.8, 1.5),)), "milestones"),
        (dict(kind="power", steps=10, power_b=-0.5, peak_lr=0.01, batch_tokens=8), "power_a"),
        (
            dict(kind="power", steps=10, power_a=1, power_b=0.5, peak_lr=0.01, batch_tokens=8),
            "power_b",
        ),
        (dict(kind="power", steps=10, power_a=1, power_b=-0.5, batch_tokens=8), "peak_lr"),
        (dict(kind="power", steps=10, power_a=1, power_b=-0.5, peak_lr=0.01), "batch_tokens"),
    ],
)
def test_bad_values_name_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        make_schedule(**kwargs)


def test_plot_schedule(tmp_path):
    path = tmp_path / "lr.png"
    plot_schedule(
        [make_schedule("cosine", 50, warmup=5), make_schedule("wsd", 50, cooldown="1-sqrt")],
        path=path,
    )
    assert path.stat().st_size > 1000


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(["constant", "cosine", "wsd"]),
    steps=st.integers(1, 500),
    warm_frac=st.floats(0, 1),
    decay_frac=st.floats(0, 1),
    cooldown=st.sampled_from(["linear", "1-sqrt", "exponential"]),
    min_ratio=st.floats(0, 0.99),
)
def test_schedule_properties(kind, steps, warm_frac, decay_frac, cooldown, min_ratio):
    # Any schedule stays in (0, 1] over the run's steps and never rises after warmup.
    warmup = int(warm_frac * steps)
    f = make_schedule(
        kind, steps, warmup=warmup, decay_frac=decay_frac, cooldown=cooldown, min_ratio=min_ratio
    )
    v = f.values()
    assert all(0.0 < x <= 1.0 for x in v)
    after = v[warmup:]
    assert all(b <= a + 1e-12 for a, b in zip(after, after[1:]))


def test_multistep_is_deepseek_llm():
    # DeepSeek LLM section 2.3: 1 until 80% of the tokens, 0.316 until 90%, then 0.1.
    f = make_schedule("multistep", 10, warmup=2, milestones=((0.8, 0.316), (0.9, 0.1)))
    assert f.values() == [0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.316, 0.1]


def test_power_scheduler_by_hand():
    # lr = min(peak, a n^b), n the tokens seen before the step (Shen et al. 2024). With a = 0.1,
    # b = -0.5, peak 0.01 and 100 tokens per step: a (100 s)^-0.5 / peak = 1 / sqrt(s), so the
    # multiplier is 1 until s = 1, 1/2 at s = 4, 1/4 at s = 16. The last 20% of 20 steps (from
    # step 16) cool down linearly from the value reached there: 0.25 * (1 - 2/4) at step 18.
    f = make_schedule(
        "power", 20, decay_frac=0.2, power_a=0.1, power_b=-0.5, peak_lr=0.01, batch_tokens=100
    )
    assert f(0) == 1.0 and f(1) == 1.0
    assert f(4) == pytest.approx(0.5) and f(9) == pytest.approx(1 / 3)
    assert f.decay_start == 16 and f(16) == pytest.approx(0.25)
    assert f(18) == pytest.approx(0.125) and f(20) == 0.0
    # with warmup 2 the first step is halved
    w = make_schedule(
        "power", 20, warmup=2, power_a=0.1, power_b=-0.5, peak_lr=0.01, batch_tokens=100
    )
    assert w(0) == 0.5


def test_token_ramp_by_hand():
    # 100 -> 400 tokens over the first 1000 tokens: doubling at 500, the full batch at 1000.
    r = token_ramp(100, 400, 1000)
    assert r.stages == ((0.0, 100), (500.0, 200), (1000.0, 400))
    # 5 steps of 100 (500 tokens), 3 of 200 (to 1100: a step starts below 1000 and runs whole),
    # then ceil(900 / 400) = 3 of 400: 11 steps, 2300 tokens for a 2000-token budget.
    assert r.steps_for(2000) == 11
    assert [r.tokens_before(s) for s in (0, 5, 8, 11)] == [0, 500, 1100, 2300]
    assert [(t["from_step"], t["batch_tokens"], t["steps"]) for t in r.table(2000)] == [
        (0, 100, 5),
        (5, 200, 3),
        (8, 400, 3),
    ]
    assert token_ramp(2304, 9216, 1e6).stages[-1] == (1e6, 9216)  # 4x: two doublings
    # 3072 -> 15360 (5x, DeepSeek-V3's sequences): three doublings, the last capped at 15360
    assert [b for _, b in token_ramp(3072, 15360, 3e3).stages] == [3072, 6144, 12288, 15360]


def test_loss_ramp_doubles_where_the_critical_batch_reaches_it():
    # A critical batch that grows as n / 10 reaches 200 at n = 2000, 400 at 4000, 800 at 8000.
    r = loss_ramp(100, 800, lambda n: n / 10, 1e5)
    assert [b for _, b in r.stages] == [100, 200, 400, 800]
    assert [t for t, _ in r.stages[1:]] == pytest.approx([2000, 4000, 8000], rel=2e-3)
    # a run too short to reach 800 stops doubling where its critical batch does
    assert [b for _, b in loss_ramp(100, 800, lambda n: n / 10, 5000).stages] == [100, 200, 400]


def test_schedule_counts_tokens_through_the_ramp():
    # multistep at 80% of the *tokens*: with the ramp above, 80% of 2300 tokens = 1840 are
    # seen before step 10 (1900 tokens; step 9 starts at 1500).
    r = token_ramp(100, 400, 1000)
    f = make_schedule("multistep", 11, milestones=((0.8, 0.316),), ramp=r)
    assert [f(s) for s in (9, 10)] == [1.0, 0.316]
    g = make_schedule("power", 11, power_a=0.1, power_b=-0.5, peak_lr=0.01, ramp=r)
    assert g(8) == pytest.approx(min(1.0, 0.1 * 1100**-0.5 / 0.01))
    assert pickle.loads(pickle.dumps(g)) == g


@pytest.mark.parametrize("stages", [(), ((10.0, 4),), ((0.0, 4), (0.0, 8)), ((0.0, 4), (10.0, 0))])
def test_bad_ramps_are_refused(stages):
    with pytest.raises(ConfigError):
        BatchRamp(stages)


def test_parse_ramp_and_milestones():
    """The one reader of the pairs a run config, a sweep axis, --set and the planner give."""
    assert parse_ramp("0:4,1e6:8,2e6:16") == ((0.0, 4), (1e6, 8), (2e6, 16))
    assert (
        parse_ramp([[0, 4.0], ["1e3", "8"]]) == ((0.0, 4), (1000.0, 8)) and parse_ramp(None) is None
    )
    # a run config's batches in sequences -> tokens (seq_len 128)
    assert BatchRamp(parse_ramp("0:4,1e6:8")).scaled(128).stages == ((0.0, 512), (1e6, 1024))
    assert parse_milestones("0.8:0.316,0.9:0.1") == DEEPSEEK_LLM_MILESTONES
    for bad in ("0:4,1e6", "1:4", "0:4,0:8", "0:4.5", "0:4,inf:8", "0:-2", "0:4;1:8"):
        with pytest.raises(ConfigError, match="batch_ramp"):
            parse_ramp(bad)
    for bad in ("0.8", "0.9:0.1,0.8:0.3", "1.2:0.5", "x:y"):
        with pytest.raises(ConfigError, match="milestones"):
            parse_milestones(bad)
