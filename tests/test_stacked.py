"""Stacked trials (sizeup.train.stacked, issue 24): K trials of one shape trained as one
stacked model give each member the RunResult and the final weights of the same trial run
alone (sizeup.train.run), to float rounding: the batched kernels (vmap's batched matmuls, the
per-member norms of the clip, batched Newton-Schulz) reduce in another order, so the tests ask
float64 runs for 1e-10 and a float32 run for 1e-5 (float32's eps is 1.2e-7; ten steps of
Adam amplify a rounding difference by at most a few hundred here)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from sizeup.config import RunConfig, RunResult
from sizeup.config.stacking import stack_key
from sizeup.errors import ConfigError
from sizeup.sweep import Store, run_sweep
from sizeup.sweep.executors import LocalExecutor, make_executor, stacks
from sizeup.sweep.testing import StackedSynthetic, synthetic_run
from sizeup.train import run
from sizeup.train.build import memory_estimate
from sizeup.train.stacked import (
    MAX_AUTO_STACK,
    NotStackable,
    StackedTrainer,
    auto_stack_size,
    check_stackable,
    run_stack,
)

TINY = dict(
    model="gpt",
    width=64,
    base_width=32,
    depth=1,
    head_dim=16,
    seq_len=16,
    batch_size=4,
    steps=10,
    eval_batches=2,
    eval_every=4,
    warmup=2,
    schedule="cosine",
)
# three lrs per optimizer around where the tiny GPT trains (its loss falls at each)
LRS = {"adamw": (1e-3, 3e-3, 1e-2), "sgd": (0.1, 0.3, 1.0), "muon": (0.01, 0.03, 0.1)}


def _members(optimizer: str, dtype: str = "float64") -> list[RunConfig]:
    """Three members: different lr and seed, one clipped harder, one not clipped, one on
    another schedule; for AdamW also different betas, weight decay, eps and z-loss, for SGD and
    Muon a different momentum. Muon's Newton-Schulz in the run's own dtype (bf16
    would round both runs alike only up to bf16's 3 digits)."""
    extra = {"ns_dtype": None} if optimizer == "muon" else {}
    base = RunConfig.from_dict({**TINY, "optimizer": optimizer, "dtype": dtype, **extra})
    lrs = LRS[optimizer]
    cfgs = [
        base.replace(lr=lrs[0], seed=0, grad_clip=0.5),
        base.replace(lr=lrs[1], seed=1),
        base.replace(lr=lrs[2], seed=2, grad_clip=0.2),
    ]
    cfgs[1] = cfgs[1].replace(schedule="wsd", warmup=3)  # its own lr schedule
    if optimizer != "adamw":
        cfgs[2] = cfgs[2].replace(momentum=0.8)
    if optimizer == "adamw":
        cfgs[1] = cfgs[1].replace(beta1=0.8, beta2=0.99, weight_decay=0.1)
        cfgs[2] = cfgs[2].replace(weight_decay=0.05, eps=1e-6, z_loss=1e-3)
    return cfgs


def _solo(cfg: RunConfig) -> tuple[RunResult, dict[str, torch.Tensor]]:
    """The trial run alone, and its final weights."""
    held = {}
    res = run(cfg, on_built=lambda b: held.update(model=b.model))
    return res, {n: p.detach().clone() for n, p in held["model"].named_parameters()}


def _stacked(cfgs: list[RunConfig]) -> tuple[list[RunResult], list[dict[str, torch.Tensor]]]:
    held: dict[str, StackedTrainer] = {}
    results = run_stack(cfgs, on_built=lambda s: held.update(stack=s))
    models = [t.model for t in held["stack"].trainers]
    return results, [{n: p.detach().clone() for n, p in m.named_parameters()} for m in models]


def _close(a: list[float], b: list[float], tol: float) -> bool:
    return len(a) == len(b) and all(
        (math.isnan(x) and math.isnan(y)) or abs(x - y) <= tol * max(1.0, abs(y))
        for x, y in zip(a, b)
    )


def _assert_member_equals_solo(
    got: RunResult, weights: dict[str, torch.Tensor] | None, cfg: RunConfig, tol: float
) -> None:
    solo, solo_weights = _solo(cfg)
    assert got.diverged == solo.diverged and got.diverged_step == solo.diverged_step
    assert got.steps == solo.steps and got.val_steps == solo.val_steps
    assert _close(got.train_loss, solo.train_loss, tol), (got.train_loss, solo.train_loss)
    assert _close(got.val_loss, solo.val_loss, tol), (got.val_loss, solo.val_loss)
    assert _close([got.initial_val_loss], [solo.initial_val_loss], tol)
    assert _close([got.final_val_loss], [solo.final_val_loss], tol)
    assert got.tokens == solo.tokens and got.params == solo.params
    if weights is None:
        return
    assert weights.keys() == solo_weights.keys()
    for name, w in weights.items():
        diff = float((w - solo_weights[name]).abs().max())
        assert diff <= tol * max(1.0, float(solo_weights[name].abs().max())), (name, diff)


@pytest.mark.parametrize("optimizer", ["adamw", "sgd", "muon"])
def test_stack_equals_solo_runs_float64(optimizer: str) -> None:
    cfgs = _members(optimizer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # vmap's sdpa fallback is a performance note
        results, weights = _stacked(cfgs)
        for cfg, res, w in zip(cfgs, results, weights):
            assert not res.diverged and res.diagnostics["stack"]["size"] == 3
            _assert_member_equals_solo(res, w, cfg, tol=1e-10)


def test_stack_equals_solo_runs_float32() -> None:
    cfgs = _members("adamw", dtype="float32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results, weights = _stacked(cfgs)
        for cfg, res, w in zip(cfgs, results, weights):
            _assert_member_equals_solo(res, w, cfg, tol=1e-5)


def test_a_diverged_member_leaves_the_stack_and_the_others_go_on() -> None:
    cfgs = _members("adamw")
    cfgs[1] = cfgs[1].replace(lr=1e4)  # blows up at once
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results, weights = _stacked(cfgs)
        assert [r.diverged for r in results] == [False, True, False]
        assert results[1].diverged_step is not None and len(results[1].train_loss) < 10
        assert math.isnan(results[1].final_val_loss)
        for cfg, res, w in zip(cfgs, results, weights):
            # the diverged one too: its curve and its step. Not its weights: after a step at
            # lr 1e4 they are rounding differences amplified (3e-3 relative, measured), as
            # two solo runs on different BLAS builds would differ
            _assert_member_equals_solo(res, None if res.diverged else w, cfg, tol=1e-10)


def test_what_cannot_stack_is_refused_naming_the_field() -> None:
    base = RunConfig.from_dict(TINY)
    with pytest.raises(NotStackable, match="optimizer='adamw_schedulefree'.*adamw, sgd, muon"):
        check_stackable([base.replace(optimizer="adamw_schedulefree")])
    with pytest.raises(NotStackable, match="width=128.*64"):
        check_stackable([base, base.replace(width=128, lr=1e-2)])
    with pytest.raises(NotStackable, match="n_experts=4"):
        check_stackable([base.replace(n_experts=4)])
    with pytest.raises(NotStackable, match="spectral_every"):
        check_stackable([base.replace(spectral_every=2)])
    assert isinstance(NotStackable("x", 1, "y"), ConfigError)
    # lr, seed, betas, decay, schedule and clipping are a member's own: one stack
    member = base.replace(lr=1e-2, seed=3, beta1=0.8, weight_decay=0.1, warmup=0, grad_clip=1.0)
    assert stack_key(member) == stack_key(base)
    check_stackable([base, member])


def test_executor_groups_trials_by_shape() -> None:
    base = RunConfig.from_dict(TINY)
    cfgs = [base.replace(lr=2.0**-k) for k in range(5)] + [base.replace(width=128)]
    got = list(stacks(iter(cfgs), 2))
    assert [len(s) for s in got] == [2, 2, 1, 1]
    assert sorted(c.trial_id() for s in got for c in s) == sorted(c.trial_id() for c in cfgs)
    assert all(len({stack_key(c) for c in s}) == 1 for s in got)
    with pytest.raises(ConfigError, match="stack=-1"):
        LocalExecutor(stack=-1)
    with pytest.raises(ConfigError, match="stack=2.*ray"):
        make_executor("ray", stack=2)


class _Refusing:
    """A stand-in runner whose stacks are refused, as an optimizer without a batched update
    is: the executor runs each member alone."""

    def __init__(self) -> None:
        self.stacked: list[int] = []

    def __call__(self, cfg: RunConfig) -> RunResult:
        return RunResult(config=cfg.to_dict(), final_val_loss=cfg.optimizer.lr)

    def stack(self, cfgs: list[RunConfig]) -> list[RunResult]:
        self.stacked.append(len(cfgs))
        check_stackable(cfgs)
        raise AssertionError("unreachable: schedule-free AdamW does not stack")


def test_a_refused_stack_runs_its_trials_one_at_a_time() -> None:
    base = RunConfig.from_dict({**TINY, "optimizer": "adamw_schedulefree"})
    cfgs = [base.replace(lr=lr) for lr in (1e-3, 2e-3, 4e-3)]
    runner = _Refusing()
    events = list(LocalExecutor(stack=3).run(cfgs, runner))
    ends = [e for e in events if e[0] == "end"]
    assert runner.stacked == [3]
    assert [e[2].final_val_loss for e in ends] == [1e-3, 2e-3, 4e-3]
    assert all(e[3] is None for e in ends)
    assert all(
        "optimizer='adamw_schedulefree'" in e[2].diagnostics["sweep"]["unstacked"] for e in ends
    )


def test_sweep_with_stack_3_writes_the_rows_of_stack_1(tmp_path) -> None:
    spec = {
        "base": {**TINY, "steps": 6, "eval_every": 0},
        "axes": {"lr": [1e-3, 3e-3, 1e-2]},
        "seeds": 2,
    }
    rows = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for n in (1, 3):
            db = tmp_path / f"stack{n}.db"
            rep = run_sweep(spec, db, stack=n, progress=False)
            assert rep.ran == 6 and rep.tally["done"] == 6
            with Store(db, readonly=True) as st:
                rows[n] = {t.id: t for t in st.trials()}
    assert rows[1].keys() == rows[3].keys()
    for tid, one in rows[1].items():
        three = rows[3][tid]
        assert three.status == one.status == "done"
        assert three.config == one.config
        assert _close(three.result.train_loss, one.result.train_loss, 1e-5)
        assert _close([three.loss], [one.loss], 1e-5)
        assert three.result.diagnostics["stack"]["size"] == 3
        assert "stack" not in one.result.diagnostics


def test_a_pool_runs_stacks_and_records_every_member(tmp_path) -> None:
    spec = {
        "base": {"model": "mlp", "steps": 5},
        "axes": {"width": [32, 64], "lr": {"log2": [-10, -6]}},
        "seeds": 2,
    }
    one = run_sweep(spec, tmp_path / "one.db", runner=synthetic_run, progress=False)
    rep = run_sweep(
        spec, tmp_path / "pool.db", runner=StackedSynthetic(), workers=2, stack=4, progress=False
    )
    assert rep.ran == one.ran == 20 and rep.counts == one.counts
    with (
        Store(tmp_path / "one.db", readonly=True) as a,
        Store(tmp_path / "pool.db", readonly=True) as b,
    ):
        want = {t.id: t.loss for t in a.trials()}
        got = {t.id: t for t in b.trials()}
    assert want == {tid: t.loss for tid, t in got.items()}
    # 10 trials per width: stacks of 4, 4 and 2 (a width's trials never share a stack)
    sizes = sorted(t.result.diagnostics["stack"]["size"] for t in got.values())
    assert sizes == sorted([4] * 16 + [2] * 4)


def test_the_stack_size_from_memory() -> None:
    cfg = RunConfig.from_dict(TINY)
    _, need = memory_estimate(cfg)
    # half the free memory over a member's estimate, between 1 and MAX_AUTO_STACK
    assert auto_stack_size(cfg, 10 * need) == 5
    assert auto_stack_size(cfg, 1e6 * need) == MAX_AUTO_STACK == 8
    assert auto_stack_size(cfg, need) == 1 and auto_stack_size(cfg, 0.0) == 1
    assert 1 <= auto_stack_size(cfg) <= MAX_AUTO_STACK  # this machine's free memory
    got = list(stacks(iter([cfg.replace(seed=s) for s in range(7)]), 0, size_for=lambda c: 3))
    assert [len(s) for s in got] == [3, 3, 1]
