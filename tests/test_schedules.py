"""Schedules against values computed by hand at chosen steps."""

from __future__ import annotations

import math
import pickle

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sizeup.errors import ConfigError
from sizeup.schedules import make_schedule, plot_schedule


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
