"""Gradient accumulation (micro_batch_size): k micro-batches make the step one pass over the
batch makes (float64, to ~1e-12) with AdamW and Muon, clipping on, for the GPT and the MLP;
under DDP and FSDP2 on 2 gloo processes the accumulated run is the 1-process run and gradients
are reduced once per step; tokens, FLOPs, the noise scale and the memory estimate count what
they should; a micro-batch that does not divide each rank's batch is refused by name.

The distributed ranks write their results to files and the test judges those: gloo's teardown
can abort a process after a clean run (a torch bug), so exit codes alone would not tell."""

from __future__ import annotations

import json
import multiprocessing as mp
import subprocess
import sys

import pytest
import torch

from sizeup.config import RunConfig
from sizeup.errors import ConfigError
from sizeup.train import build, run

# Tiny float64 GPT: 2 blocks of width 32, 16-token sequences, 8 per step, clipping that bites
# (grad_clip 0.5 is below the first steps' gradient norms) and decoupled weight decay.
TINY = dict(
    model="gpt",
    width=32,
    depth=2,
    head_dim=16,
    base_width=32,
    seq_len=16,
    batch_size=8,
    steps=4,
    eval_batches=1,
    dtype="float64",
    grad_clip=0.5,
    weight_decay=0.1,
)
MLP = dict(
    model="mlp",
    data="teacher",
    width=32,
    depth=2,
    base_width=16,
    batch_size=16,
    steps=4,
    eval_batches=1,
    dtype="float64",
    grad_clip=0.5,
)
OPTIMIZERS = {
    "adamw": dict(optimizer="adamw", lr=3e-3),
    # Newton-Schulz in float64: in bf16 last-bit differences of the summed gradient would flip
    # roundings (docs/training.md), which is bf16, not accumulation.
    "muon": dict(optimizer="muon", lr=0.02, ns_dtype="float64"),
}
RTOL = 1e-10  # float64; measured: weights 4e-13 (GPT, AdamW), 1.4e-12 (GPT, Muon), 3e-16 (MLP)


def _run(cfg: RunConfig, **kwargs):
    """(RunResult, the trained model) of a run of cfg (keyword arguments go to run)."""
    models = []
    r = run(cfg, on_built=lambda b: models.append(b.model), **kwargs)
    return r, models[0]


def _trained(cfg: RunConfig):
    """(RunResult, {name: weight}) of a run of cfg."""
    r, model = _run(cfg)
    return r, {n: p.detach().clone() for n, p in model.named_parameters()}


def _rel(a: dict, b: dict) -> float:
    """Largest relative difference (Frobenius) between two sets of named weights."""
    assert a.keys() == b.keys()
    return max(float((a[n] - b[n]).norm() / b[n].norm().clamp_min(1e-300)) for n in a)


def _close(got: list[float], want: list[float], rtol: float = RTOL) -> bool:
    return len(got) == len(want) and all(
        abs(g - w) <= rtol * abs(w) for g, w in zip(got, want, strict=True)
    )


@pytest.mark.parametrize("opt", list(OPTIMIZERS))
@pytest.mark.parametrize("model", ["gpt", "mlp"])
def test_accumulated_micro_batches_make_the_one_pass_step(opt, model):
    """micro_batch_size = batch/4 and batch/2 against one pass: the weights after 4 steps, every
    logged train loss and the validation losses agree to 1e-10 in float64; tokens and FLOPs
    count the full batch."""
    base = RunConfig(**(TINY if model == "gpt" else MLP), **OPTIMIZERS[opt])
    ref, w_ref = _trained(base)
    assert not ref.diverged and ref.final_val_loss < ref.initial_val_loss
    for k in (4, 2):
        r, w = _trained(base.replace(micro_batch_size=base.data.batch_size // k))
        assert _rel(w, w_ref) <= RTOL, (k, _rel(w, w_ref))
        assert any(not torch.equal(w[n], w_ref[n]) for n in w)  # k passes: last bits differ
        assert _close(r.train_loss, ref.train_loss), k
        assert _close(r.val_loss, ref.val_loss) and _close(
            [r.initial_val_loss], [ref.initial_val_loss]
        )
        assert (
            (r.tokens, r.flops)
            == (ref.tokens, ref.flops)
            == (
                4 * base.tokens_per_step,
                6.0 * ref.params * 4 * base.tokens_per_step,
            )
        )


def test_without_micro_batch_size_the_step_is_unchanged():
    """micro_batch_size=None and a micro-batch as large as the batch are one pass: bit for bit
    the same run."""
    cfg = RunConfig(**TINY, **OPTIMIZERS["adamw"])
    a, wa = _trained(cfg)
    b, wb = _trained(cfg.replace(micro_batch_size=cfg.data.batch_size))
    assert a.train_loss == b.train_loss and a.val_loss == b.val_loss
    assert all(torch.equal(wa[n], wb[n]) for n in wa)


def test_a_micro_batch_that_does_not_divide_is_refused_by_name():
    from sizeup.data import check_divisible, make_data

    for bad in (dict(micro_batch_size=3), dict(micro_batch_size=0), dict(micro_batch_size=2.5)):
        with pytest.raises(ConfigError, match="micro_batch_size"):
            RunConfig(**{**TINY, **bad})
    with pytest.raises(ConfigError, match=r"micro_batch_size=4 .*batch_ramp stage of 2"):
        RunConfig(**{**TINY, "micro_batch_size": 4, "batch_ramp": "0:2,256:8"})
    cfg = RunConfig(**{**TINY, "micro_batch_size": 4})  # divides 8 ...
    check_divisible(cfg, 2)
    with pytest.raises(ConfigError, match=r"micro_batch_size=4 .*world_size=4 = 2"):
        check_divisible(cfg, 4)  # ... but not a rank's 2 of 4 ranks
    with pytest.raises(ConfigError, match="micro_batch_size"):
        make_data(cfg, rank=0, world_size=4)
    assert RunConfig(**TINY).trial_id() == RunConfig(**TINY, micro_batch_size=None).trial_id()


def test_memory_estimate_counts_one_micro_batch():
    """Weights and optimizer state are the same; the activations are the micro-batch's."""
    from sizeup.train.build import memory_estimate

    cfg = RunConfig(**{**TINY, "batch_size": 64, "dtype": "float32"})
    n, full = memory_estimate(cfg)
    _, micro = memory_estimate(cfg.replace(micro_batch_size=16))
    per_seq = (
        cfg.model.seq_len * (16 * cfg.model.width * cfg.model.depth + 2 * cfg.model.vocab_size) * 4
    )
    assert full - micro == pytest.approx((64 - 16) * per_seq)
    assert micro == pytest.approx(n * 4 * 4 + 16 * per_seq)


def test_trainer_takes_the_micro_batch_from_its_config_and_forks_keep_it():
    """from_built reads micro_batch_size, a fork keeps it (WSD branches accumulate as the
    trunk), and a fork advanced to the end is the run, bit for bit."""
    from sizeup.train import Trainer

    cfg = RunConfig(**{**TINY, "steps": 6}, **OPTIMIZERS["adamw"], micro_batch_size=2)
    full = run(cfg)
    trunk = Trainer.from_built(cfg, build(cfg))
    assert trunk.micro_batch_size == 2
    trunk.start()
    trunk.advance(3)
    fork = trunk.fork()
    assert fork.micro_batch_size == 2
    losses = []
    fork.advance(6, on_step=lambda step, loss: losses.append(loss))
    assert losses == full.train_loss[3:] and fork.finish() == full.final_val_loss


def test_a_checkpoint_resumes_at_another_micro_batch(tmp_path):
    """micro_batch_size changes float rounding only, so a checkpoint resumes at another one
    (a preempted run moved to a smaller GPU) and ends where the run would, to float64 rounding."""
    from sizeup.train import Trainer

    cfg = RunConfig(**{**TINY, "steps": 6}, **OPTIMIZERS["muon"])
    full, w_full = _trained(cfg)
    first = Trainer.from_built(cfg, build(cfg))
    first.start()
    first.advance(3)
    side = first.save(tmp_path, cfg)
    small = cfg.replace(micro_batch_size=2)
    second = Trainer.from_built(small, build(small))
    second.load(side, small)
    losses = []
    second.advance(6, on_step=lambda step, loss: losses.append(loss))
    assert _close(losses, full.train_loss[3:])
    w = {n: p.detach() for n, p in second.model.named_parameters()}
    assert _rel(w, w_full) <= RTOL


def test_noise_scale_measures_the_full_batch():
    """The noise-scale monitor's B_big is the step's whole batch and B_small the run's
    micro-batch: micro-batches of 2 in a batch of 8 measure what the unaccumulated run measures
    (a quarter of its batch, 2), to float rounding; micro-batches of 4 take 2 passes."""
    from sizeup.train.loop import _monitors

    cfg = RunConfig(**{**TINY, "steps": 3}, **OPTIMIZERS["adamw"], noise_every=1)
    plain = run(cfg).diagnostics["noise_scale"]
    accum = run(cfg.replace(micro_batch_size=2)).diagnostics["noise_scale"]
    assert [d["step"] for d in accum] == [0, 1, 2]
    for a, b in zip(accum, plain, strict=True):
        assert _close([a[k] for k in b if k != "step"], [b[k] for k in b if k != "step"])
    built = build(cfg.replace(micro_batch_size=4))
    (mon,) = _monitors(cfg.replace(micro_batch_size=4), built, built.data.val_batches())
    assert mon.microbatches == 2 and mon.batches()[0].shape[0] == 8


def test_coordinate_check_of_an_accumulating_config_is_the_one_pass_check():
    """The coordinate check trains a config's steps in one pass per step (its recorder reads
    one forward per step): the same records, bit for bit, with or without micro_batch_size."""
    import numpy as np

    from sizeup.diagnostics import coord_check

    cfg = RunConfig(**{**TINY, "dtype": "float32"}, micro_batch_size=2)
    kw = dict(widths=(32, 64), steps=2, seeds=1, same_batch=False, modules=["wte", "lm_head"])
    accum = coord_check(cfg, **kw)
    plain = coord_check(cfg.replace(micro_batch_size=None), **kw)
    assert np.array_equal(accum.loss, plain.loss)
    assert [m.delta_slopes for m in accum.modules] == [m.delta_slopes for m in plain.modules]


def test_cli_sets_the_micro_batch_and_summarises_it(tmp_path):
    """`sizeup train --set micro_batch_size=2` trains with it; the summary names the passes."""
    r = subprocess.run(
        [sys.executable, "-m", "sizeup", "train", "--width", "32", "--steps", "2"]
        + ["--set", "seq_len=16", "--set", "batch_size=8", "--set", "micro_batch_size=2"]
        + ["--format", "markdown", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert "8 per step (4 micro-batches of 2)" in r.stdout
    data = json.loads((tmp_path / "result.json").read_text())
    assert data["config"]["micro_batch_size"] == 2 and data["tokens"] == 2 * 8 * 16
    bad = subprocess.run(
        [sys.executable, "-m", "sizeup", "train", "--set", "micro_batch_size=5"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "micro_batch_size=5" in bad.stderr
    assert "Traceback" not in bad.stderr


# --- two gloo processes ----------------------------------------------------------------------
DIST_STEPS = 4


def _gathered(model: torch.nn.Module) -> dict[str, list]:
    from sizeup.wrapping import full_tensor

    return {n: full_tensor(p.detach()).tolist() for n, p in model.named_parameters()}


def _ddp_runs(rank: int, world: int) -> dict:
    """DDP, micro-batches of 2 of each rank's 4: the run (losses, weights, noise scale), and
    how many gradient all-reduces (DDP comm-hook calls) 2 steps take with and without them."""
    import torch.distributed as dist
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

    from sizeup.train import Trainer

    cfg = RunConfig(**TINY, **OPTIMIZERS["adamw"], micro_batch_size=2, noise_every=1)
    r, model = _run(cfg, rank=rank, world_size=world)
    out = {"train": r.train_loss, "val": r.val_loss, "weights": _gathered(model)}
    out["noise"] = r.diagnostics["noise_scale"]
    calls = {}
    for micro in (None, 2):
        c = cfg.replace(micro_batch_size=micro, noise_every=0)
        trainer = Trainer.from_built(c, build(c, rank, world), world_size=world)
        seen = []

        def hook(state, bucket, seen=seen):
            seen.append(1)
            return allreduce_hook(state, bucket)

        trainer.train_model.register_comm_hook(dist.group.WORLD, hook)
        trainer.advance(2)
        calls[str(micro)] = len(seen)
    out["allreduces"] = calls
    return out


def _fsdp_runs(rank: int, world: int) -> dict:
    """FSDP2, micro-batches of 2 (and 1) of each rank's 4, AdamW and Muon: losses and gathered
    weights, and how many gradient reduce-scatters one step takes with and without them."""
    import torch.distributed as dist

    out = {}
    for name, opt in OPTIMIZERS.items():
        for micro in (2, 1):
            cfg = RunConfig(**TINY, **opt, micro_batch_size=micro, fsdp=True)
            r, model = _run(cfg, rank=rank, world_size=world)
            key = f"{name}/{micro}"
            out[key] = {"train": r.train_loss, "val": r.val_loss, "weights": _gathered(model)}
    counted = dist.reduce_scatter_single
    calls = []

    def counting(*args, **kwargs):
        calls.append(1)
        return counted(*args, **kwargs)

    dist.reduce_scatter_single = counting
    try:
        for micro in (None, 2):
            calls.clear()
            run(
                RunConfig(**{**TINY, "steps": 1}, micro_batch_size=micro, fsdp=True),
                rank=rank,
                world_size=world,
            )
            out[f"reduce_scatters/{micro}"] = len(calls)
    finally:
        dist.reduce_scatter_single = counted
    return out


def _worker(rank: int, world: int, store: str, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world, init_method=f"file://{store}")
    try:
        res = {"ddp": _ddp_runs(rank, world), "fsdp": _fsdp_runs(rank, world)}
        with open(f"{out}.{rank}.json", "w") as f:
            json.dump(res, f)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_ranks_accumulating_match_one_process(tmp_path):
    """2 gloo ranks, each accumulating micro-batches of its half of the batch, follow 1 process
    taking the whole batch in one pass (float64, to 1e-10): under DDP (AdamW; its noise scale
    too, whose B_big is then the global batch) and under FSDP2 (AdamW and Muon). Gradients are
    reduced over the ranks once per step however many micro-batches it takes (DDP comm-hook
    calls, FSDP2 reduce-scatters: as many as without accumulation)."""
    ctx = mp.get_context("spawn")
    out = str(tmp_path / "rank")
    procs = [
        ctx.Process(target=_worker, args=(r, 2, str(tmp_path / "store"), out)) for r in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=600)
    got = [json.loads((tmp_path / f"rank.{r}.json").read_text()) for r in range(2)]
    one = {}
    for name, opt in OPTIMIZERS.items():
        cfg = RunConfig(**TINY, **opt, noise_every=1 if name == "adamw" else 0)
        r, w = _trained(cfg)
        one[name] = (r, {n: p.tolist() for n, p in w.items()})
    for g in got:
        ref, w_ref = one["adamw"]
        ddp = g["ddp"]
        assert _close(ddp["train"], ref.train_loss) and _close(ddp["val"], ref.val_loss)
        assert _rel(_tensors(ddp["weights"]), _tensors(w_ref)) <= RTOL
        # 1 process: a quarter (2) of its 8 against the 8; 2 ranks: micro-batches of 2, B_big 8.
        for a, b in zip(ddp["noise"], ref.diagnostics["noise_scale"], strict=True):
            assert _close([a[k] for k in b if k != "step"], [b[k] for k in b if k != "step"])
        assert ddp["allreduces"]["2"] == ddp["allreduces"]["None"] > 0
        for name in OPTIMIZERS:
            ref, w_ref = one[name]
            for micro in (2, 1):
                f = g["fsdp"][f"{name}/{micro}"]
                assert _close(f["train"], ref.train_loss), (name, micro)
                assert _close(f["val"], ref.val_loss), (name, micro)
                assert _rel(_tensors(f["weights"]), _tensors(w_ref)) <= RTOL, (name, micro)
        assert g["fsdp"]["reduce_scatters/2"] == g["fsdp"]["reduce_scatters/None"] > 0


def _tensors(weights: dict[str, list]) -> dict[str, torch.Tensor]:
    return {n: torch.tensor(w, dtype=torch.float64) for n, w in weights.items()}
