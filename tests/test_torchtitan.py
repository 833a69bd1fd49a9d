"""sizeup inside torchtitan (sizeup.integrations.torchtitan; the extra ``sizeup[torchtitan]``):
the converter's per-layer table equals sizeup.parametrize on the same torchtitan Llama, training
through torchtitan's optimizer container gives the losses of sizeup's own path, the coordinate
check passes on torchtitan's model, and the job a plan emits loads in torchtitan's ConfigManager.

The models are torchtitan's Llama 3 at debug-flavour proportions shrunk for a CPU (4 heads, two
blocks, a 256-token vocabulary) with causal SDPA attention (its flex attention compiles)."""

from __future__ import annotations

import importlib
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("torchtitan", reason="the torchtitan extra: pip install 'sizeup[torchtitan]'")
try:
    tt = importlib.import_module("sizeup.integrations.torchtitan")
except Exception as err:  # e.g. triton missing: the module says what to install
    pytest.skip(f"torchtitan does not import here: {err}", allow_module_level=True)

from sizeup.config import OptimSpec, ParamSpec, RunConfig  # noqa: E402
from sizeup.diagnostics.coord_check import ModelFactory, coord_check  # noqa: E402
from sizeup.errors import ConfigError  # noqa: E402
from sizeup.parametrization import ModelHints, get_parametrization, parametrize  # noqa: E402

VOCAB, SEQ = 256, 16
MUP = {"rule": "mup", "base_width": 32, "base_head_dim": 8}  # 4 heads at the base too


def shape(width: int, **kw) -> tt.LlamaShape:
    """The test Llama: 4 heads (head_dim grows with width), MLP 2 x width, two blocks."""
    return tt.LlamaShape(
        dim=width,
        n_layers=2,
        n_heads=4,
        hidden_dim=2 * width,
        vocab_size=VOCAB,
        attn_backend="sdpa",
        **kw,
    )


def materialize(config, seed: int = 0) -> torch.nn.Module:
    """What torchtitan's Trainer does: build on meta, allocate, init_weights."""
    torch.manual_seed(seed)
    with torch.device("meta"):
        model = config.build()
    model.to_empty(device="cpu")
    with torch.no_grad():
        model.init_weights()
    return model


def converted(width: int, attn_scale: str | None = "1/d", seed: int = 0, **spec):
    conv = tt.SizeupConverter.Config(parametrization={**MUP, **spec}, attn_scale=attn_scale)
    return materialize(tt.model_spec(shape(width), [conv]).model, seed)


def own_path(width: int, attn_scale: str | None = "1/d", seed: int = 0, **spec):
    """sizeup's own path on torchtitan's stock model: build it plain, then parametrize it with
    the torchtitan hints against a base and a delta of the same family."""

    p = ParamSpec(**{**MUP, **spec})

    def plain(sh: tt.LlamaShape, device: str | None = None) -> torch.nn.Module:
        cfg = tt.llama_config(sh)
        for layer in cfg.layers:  # the scale as a float field (what the converter does)
            layer.attention.head_dim = sh.head_dim
        if device == "meta":
            with torch.device("meta"):
                m = cfg.build()
        else:
            m = materialize(cfg, seed)
        m.sizeup_hints = tt.titan_hints(cfg)
        return m

    model = plain(shape(width))
    base, delta = (
        plain(tt.base_shape(shape(width), p.replace(base_width=w)), "meta")
        for w in (p.base_width, 2 * p.base_width)
    )
    hints = ModelHints(attn_scale=attn_scale)
    return model, parametrize(model, base, p, delta=delta, hints=hints)


def batches(seed: int, n: int = 3) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1000 + seed)
    out = []
    for _ in range(n):
        tokens = torch.randint(0, VOCAB, (4, SEQ + 1), generator=g)
        out.append((tokens[:, :-1], tokens[:, 1:]))
    return out


def losses(model, optimizer, data) -> list[float]:
    out = []
    for x, y in data:
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), y.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        out.append(loss.item())
    return out


# --- the per-layer table ----------------------------------------------------------------------
def test_converter_table_equals_parametrize():
    model = converted(128)
    par = get_parametrization(model)
    ref_model, ref = own_path(128)
    assert par.rows() == ref.rows()
    assert par.attention == ref.attention
    assert par.module_multipliers == ref.module_multipliers
    for (n, p), (n2, q) in zip(model.named_parameters(), ref_model.named_parameters()):
        assert n == n2
        assert torch.equal(p, q), n  # the same init, rescaled the same way


def test_converter_table_by_hand():
    """muP, Tensor Programs V Table 3 (Yang et al. 2022), width 128 over base 32 (m = 4), Adam:
    hidden init sigma_base / sqrt(m), lr 1/m; readout init sigma_base / m (lm_head's
    sigma_base is torchtitan's base_dim^-1/2), lr 1/m; input (embedding) kept, lr 1; vectors
    lr 1, no decay. Attention with 4 heads: head_dim 128/4 = 32 over 32/4 = 8, so 1/d anchored
    at the base: scale = 8^-1/2 * 8 / 32."""
    par = get_parametrization(converted(128))
    rows = {r["name"]: r for r in par.rows()}
    wqkv = rows["layers.0.attention.qkv_linear.wqkv.weight"]
    assert (wqkv["role"], wqkv["lr_mult"]) == ("hidden", 0.25)
    assert wqkv["init_std"] == pytest.approx(0.02 / 2, rel=1e-12)
    wo = rows["layers.1.attention.wo.weight"]  # torchtitan's depth init: 0.02 / sqrt(2 * 2)
    assert wo["init_std"] == pytest.approx(0.02 / 2 / 2, rel=1e-12)
    head = rows["lm_head.weight"]
    assert (head["role"], head["lr_mult"]) == ("readout", 0.25)
    assert head["init_std"] == pytest.approx(32**-0.5 / 4, rel=1e-12)
    emb = rows["tok_embeddings.weight"]
    assert (emb["role"], emb["lr_mult"], emb["init_std"]) == ("input", 1.0, 1.0)
    norm = rows["norm.weight"]
    assert (norm["role"], norm["lr_mult"], norm["wd_mult"]) == ("vector", 1.0, 0.0)
    scale = par.attention["layers.0.attention"].scale
    assert scale == pytest.approx(8**-0.5 * 8 / 32, rel=1e-12)
    model = converted(128)
    assert model.layers["0"].attention.scaling == pytest.approx(scale, rel=1e-15)


def test_converter_at_base_width_is_torchtitan():
    """At the base width (and its head size) muP changes nothing: the converted model's
    tensors and logits are torchtitan's own."""
    model = converted(32)
    plain = materialize(tt.llama_config(shape(32)))
    for (n, p), (_, q) in zip(model.named_parameters(), plain.named_parameters()):
        assert torch.equal(p, q), n
    x = batches(0)[0][0]
    torch.testing.assert_close(model(x), plain(x), rtol=1e-6, atol=1e-6)


# --- training ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["adamw", "muon"])
def test_training_equals_own_path(name):
    """Three steps through torchtitan's optimizer container (SizeupOptimizers, over the model the
    converter parametrized at init) give bit-identical losses to sizeup's own path (parametrize
    + Parametrization.optimizer) on the same torchtitan model: same init, same groups, same
    update; tolerance 0 (the same float operations in the same order)."""
    spec = OptimSpec(name=name, lr=3e-3, weight_decay=0.1)
    model = converted(64)
    container = tt.SizeupOptimizers.Config(optimizer=spec.to_dict()).build(model_parts=[model])
    ref_model, ref = own_path(64)
    data = batches(0)
    ours = losses(model, container, data)
    theirs = losses(ref_model, ref.optimizer(spec), data)
    assert ours == theirs
    assert all(math.isfinite(v) for v in ours) and ours[-1] < ours[0]


def test_schedule_keeps_group_ratios():
    """torchtitan's LambdaLR scales every sizeup group by one factor: the lr ratios hold."""
    model = converted(64)
    opts = tt.SizeupOptimizers.Config(optimizer={"lr": 1e-3}).build(model_parts=[model])
    sched = tt.LRSchedulersContainer.Config(warmup_steps=4, decay_ratio=0.5).build(
        optimizers=opts, training_steps=10
    )
    first = [g["lr"] for g in opts.optimizers[0].param_groups]
    opts.step()  # no gradients yet: nothing moves
    sched.step()
    second = [g["lr"] for g in opts.optimizers[0].param_groups]
    ratios = {round(b / a, 12) for a, b in zip(first, second)}
    assert len(ratios) == 1  # warmup (1/4 -> 2/4 of each group's eta x lr_mult)


def test_optimizers_need_the_converter():
    plain = materialize(tt.llama_config(shape(32)))
    with pytest.raises(ConfigError, match="SizeupConverter"):
        tt.SizeupOptimizers.Config().build(model_parts=[plain])


def test_what_the_converter_refuses():
    conv = tt.SizeupConverter.Config(parametrization=MUP)
    with pytest.raises(ConfigError, match="enable_weight_tying"):
        tt.model_spec(shape(64, tie_embeddings=True), [conv])
    conv = tt.SizeupConverter.Config(parametrization={**MUP, "zero_query": True})
    with pytest.raises(ConfigError, match="zero_query"):
        tt.model_spec(shape(64), [conv])
    tt.model_spec(shape(64, fuse_qkv=False), [conv])  # separate wq: zero_query applies


def test_depth_scaling_multiplies_the_branches():
    """base_depth 1 on 2 blocks: every residual branch output (wo, w2) x (2/1)^-1/2 (Depth-muP,
    alpha 0.5), the same as parametrize's own path."""
    model = converted(64, base_depth=1)
    mults = get_parametrization(model).module_multipliers
    for i in range(2):
        for name in (f"layers.{i}.attention.wo", f"layers.{i}.feed_forward.w2"):
            assert mults[name] == (1.0, pytest.approx(2**-0.5, rel=1e-12))
    _, ref = own_path(64, base_depth=1)
    assert ref.module_multipliers == mults


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="rule"):
        tt.SizeupConverter.Config(parametrization={"rule": "nope"})
    with pytest.raises(ConfigError, match="attn_scale"):
        tt.SizeupConverter.Config(attn_scale="1/d^2")
    with pytest.raises(ConfigError, match="schedule-free"):
        tt.SizeupOptimizers.Config(optimizer={"name": "adamw_schedulefree"})
    with pytest.raises(ConfigError, match="sgd-nope"):
        tt.SizeupOptimizers.Config(optimizer={"name": "sgd-nope"})


# --- the coordinate check ---------------------------------------------------------------------
def test_coord_check_passes_on_torchtitan_model():
    """width -> torchtitan model (converted, so parametrized at init), trained by SizeupOptimizers;
    widths 32..128 (head_dim 8..32), 3 seeds, 3 steps."""
    spec = OptimSpec(lr=1e-2)

    def optimizer(model):  # the torch optimizer torchtitan's container steps (one model part)
        container = tt.SizeupOptimizers.Config(optimizer=spec.to_dict())
        return container.build(model_parts=[model]).optimizers[0]

    factory = ModelFactory(
        build=lambda w: converted(w, seed=torch.initial_seed()),
        data=few_tokens,
        parametrization=None,
        optimizer=optimizer,
        causal=True,
        name="torchtitan llama3",
    )
    r = coord_check(factory, widths=(32, 64, 128), steps=3, seeds=3)
    assert r.passed, r.worst


def few_tokens(seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One sequence of 8 tokens: fewer tokens than the narrowest width. With 64 tokens (4 x 16)
    at widths 32..128 the hidden outputs shrank (slopes -0.14 to -0.31 at step 3, 3 seeds;
    -0.18 for feed_forward.w2 over 64..256): the crosstalk of an update over many tokens, which
    fades as width^-1/2 (sizeup.diagnostics.coord_check's module doc), not growth."""
    g = torch.Generator().manual_seed(1000 + seed)
    tokens = torch.randint(0, VOCAB, (1, 9), generator=g)
    return [(tokens[:, :-1], tokens[:, 1:])]


# --- the job ------------------------------------------------------------------------------------
def run_config() -> RunConfig:
    return RunConfig.from_dict(
        {
            "model": {"width": 128, "depth": 2, "head_dim": 32, "vocab_size": 2048, "seq_len": 64},
            "parametrization": MUP,
            "optimizer": {"name": "adamw", "lr": 2e-3, "grad_clip": 1.0},
            "schedule": {"name": "wsd", "steps": 100, "warmup": 5, "decay_frac": 0.2},
            "data": {"batch_size": 16, "micro_batch_size": 4},
        }
    )


def test_emitted_job_loads_in_torchtitan(tmp_path, monkeypatch):
    """The emitted module loads through torchtitan's own ConfigManager (its tyro command line
    included, with an override) and holds the plan: shape, steps, batch with gradient
    accumulation (16 = 4 per step x 4 micro-batches on one rank), schedule, lr, converter."""
    from torchtitan.config import ConfigManager

    run = run_config()
    (tmp_path / "torchtitan_job.py").write_text(tt.job_module(run))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("torchtitan_job", None)
    cfg = ConfigManager().parse_args(
        ["--module", "torchtitan_job", "--config", "sizeup_plan", "--training.steps", "120"]
        + ["--optimizer.optimizer.lr", "0.001"]  # sizeup's OptimSpec fields on its command line
    )
    assert cfg.training.steps == 120
    assert (cfg.training.global_batch_size, cfg.training.local_batch_size) == (16, 4)
    assert cfg.training.seq_len == 64 and cfg.training.max_norm == 1.0
    sched = cfg.lr_scheduler
    assert (sched.warmup_steps, sched.decay_ratio, sched.decay_type) == (5, 0.2, "linear")
    assert isinstance(cfg.optimizer, tt.SizeupOptimizers.Config)
    assert cfg.optimizer.optimizer["lr"] == 0.001
    assert tt.job_config(run).optimizer.optimizer["lr"] == 2e-3
    assert cfg.model_spec.pipelining_fn is None  # torchtitan refuses pipelining by name
    got = tt.shape_of(cfg.model_spec.model)
    assert (got.dim, got.n_layers, got.n_heads, got.hidden_dim) == (128, 2, 4, run.model.ffn_hidden)
    assert cfg.model_spec.model.sizeup.parametrization["base_width"] == 32
    assert cfg.model_spec.model.sizeup.attn_scale == run.model.attn_scale


def test_job_batch_over_data_parallel_ranks(tmp_path, monkeypatch):
    """Without a micro batch the batch is split over the data-parallel ranks (the emitted module
    reads torchrun's WORLD_SIZE); one that does not divide is refused by name."""
    run = run_config().replace(data=run_config().data.replace(micro_batch_size=None))
    assert tt.job_config(run, data_parallel=4).training.local_batch_size == 4
    (tmp_path / "torchtitan_job.py").write_text(tt.job_module(run))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("WORLD_SIZE", "8")
    sys.modules.pop("torchtitan_job", None)
    job = importlib.import_module("torchtitan_job").sizeup_plan()
    assert (job.training.local_batch_size, job.training.global_batch_size) == (2, 16)
    with pytest.raises(ConfigError, match="local_batch_size"):
        tt.job_config(run, data_parallel=3)


def test_job_refuses_what_torchtitan_llama_lacks():
    run = run_config()
    with pytest.raises(ConfigError, match="qk_norm"):
        tt.job_config(run.replace(model=run.model.replace(qk_norm=True)))
    with pytest.raises(ConfigError, match="schedule"):
        tt.job_config(run.replace(schedule=run.schedule.replace(cooldown="exponential")))


def test_plan_emit_torchtitan(tmp_path, monkeypatch):
    """`sizeup plan --emit torchtitan --out DIR` writes DIR/torchtitan_job.py beside run.json,
    and that job is the run's (the same sections)."""
    from typer.testing import CliRunner

    from sizeup.cli import app

    out = tmp_path / "plan"
    args = ["plan", "--params", "2e7", "--out", str(out), "--emit", "torchtitan"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    monkeypatch.syspath_prepend(str(out))
    sys.modules.pop("torchtitan_job", None)
    job = importlib.import_module("torchtitan_job")
    sections = json.loads((out / "run.json").read_text())
    assert job.RUN == sections
    run = RunConfig.from_dict(sections)
    cfg = job.sizeup_plan()
    assert cfg.training.steps == run.schedule.steps
    assert cfg.optimizer.optimizer["lr"] == run.optimizer.lr


def test_plan_emit_needs_out():
    r = subprocess.run(
        [sys.executable, "-m", "sizeup", "plan", "--params", "2e7", "--emit", "torchtitan"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2 and "--out" in r.stderr, r.stderr


# --- torchtitan's own flavours and checkpoints ---------------------------------------------------
def test_stock_flavour_takes_the_converter():
    """torchtitan's own model_registry("debugmodel", converters=[...]) (dim 256, 16 heads,
    6 blocks, flex attention; only initialised here): the table is sizeup's, against a base of
    width 128 with the same head size (8 heads)."""
    from torchtitan.models.llama3 import model_registry

    conv = tt.SizeupConverter.Config(parametrization={"rule": "mup", "base_width": 128})
    model = materialize(model_registry("debugmodel", converters=[conv]).model)
    rows = {r["name"]: r for r in get_parametrization(model).rows()}
    assert rows["layers.5.feed_forward.w2.weight"]["role"] == "hidden"
    assert rows["layers.5.feed_forward.w2.weight"]["lr_mult"] == 0.5
    assert rows["lm_head.weight"]["init_std"] == pytest.approx(128**-0.5 / 2, rel=1e-12)


def test_separate_qkv_and_optimizer_checkpoint():
    """fuse_qkv=False gives wq/wk/wv (the query hint's names); the container's state_dict is
    torchtitan's FQN-keyed one (its groups carry param_names)."""
    conv = tt.SizeupConverter.Config(parametrization=MUP, attn_scale="1/d")
    model = materialize(tt.model_spec(shape(64, fuse_qkv=False), [conv]).model)
    rows = {r["name"]: r for r in get_parametrization(model).rows()}
    assert rows["layers.0.attention.qkv_linear.wq.weight"]["role"] == "hidden"
    opts = tt.SizeupOptimizers.Config(optimizer={"name": "muon", "lr": 0.02}).build(
        model_parts=[model]
    )
    losses(model, opts, batches(0, 1))
    state = opts.state_dict()
    assert any(k.startswith("state.layers.0.attention.qkv_linear.wq.weight") for k in state), list(
        state
    )[:5]
    opts.load_state_dict(state)


# --- FSDP2 --------------------------------------------------------------------------------------
FSDP_RUNS = {
    "adamw": {"name": "adamw", "lr": 3e-3, "weight_decay": 0.1},
    # Newton-Schulz in float32: bf16 flips roundings when a gradient is summed in another order
    "muon": {"name": "muon", "lr": 0.02, "ns_dtype": "float32"},
}


def _fsdp_worker(rank: int, world: int, store: str, out: str, init: str) -> None:
    """One rank: torchtitan's model sharded by fully_shard (blocks, then the root) before its
    init, so the converter parametrizes DTensors; then the one-process run's initial weights,
    and three steps on this rank's half of each batch through SizeupOptimizers."""
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import distribute_tensor

    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world, init_method=f"file://{store}")
    try:
        weights, res = torch.load(init), {}
        for name, spec in FSDP_RUNS.items():
            conv = tt.SizeupConverter.Config(parametrization=MUP, attn_scale="1/d")
            with torch.device("meta"):
                model = tt.model_spec(shape(64), [conv]).model.build()
            for layer in model.layers.values():
                fully_shard(layer)
            fully_shard(model)
            model.to_empty(device="cpu")
            with torch.no_grad():
                model.init_weights()
                rows = get_parametrization(model).rows()
                for n, p in model.named_parameters():
                    p.copy_(distribute_tensor(weights[n], p.device_mesh, p.placements))
            opts = tt.SizeupOptimizers.Config(optimizer=spec).build(model_parts=[model])
            half = slice(2 * rank, 2 * rank + 2)
            mine = losses(model, opts, [(x[half], y[half]) for x, y in batches(0)])
            mean = torch.tensor(mine)
            dist.all_reduce(mean)
            res[name] = {"rows": rows, "losses": (mean / world).tolist()}
        with open(f"{out}.{rank}.json", "w") as f:
            json.dump(res, f)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_fsdp2_two_processes_match_one(tmp_path):
    """FSDP2 on 2 gloo processes: the converter's table read from the sharded model is the
    unsharded one's, and AdamW and Muon (sizeup's registry, built by SizeupOptimizers over
    DTensors) follow the one-process run on the same global batch to 1e-5 (gloo sums in
    another order)."""
    import multiprocessing as mp

    model = converted(64)
    init = tmp_path / "init.pt"
    torch.save({n: p.detach().clone() for n, p in model.named_parameters()}, init)
    ctx = mp.get_context("spawn")
    out = str(tmp_path / "rank")
    procs = [
        ctx.Process(target=_fsdp_worker, args=(r, 2, str(tmp_path / "store"), out, str(init)))
        for r in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=600)
    got = [json.loads((tmp_path / f"rank.{r}.json").read_text()) for r in range(2)]
    rows = json.loads(json.dumps(get_parametrization(model).rows()))
    for name, spec in FSDP_RUNS.items():
        single = converted(64)
        opts = tt.SizeupOptimizers.Config(optimizer=spec).build(model_parts=[single])
        ref = losses(single, opts, batches(0))
        for g in got:
            assert g[name]["rows"] == rows
            assert max(abs(a - b) for a, b in zip(g[name]["losses"], ref)) <= 1e-5, name


# --- torchtitan's own trainer -------------------------------------------------------------------
@pytest.mark.slow
def test_torchtitan_trainer_runs_the_emitted_job():
    """benchmarks/gpu_torchtitan.py --cpu-smoke: torchtitan's own Trainer (job.build(),
    trainer.train(), its FSDP-ready parallelize, init, loss, clipping and scheduler) runs 6 steps
    of the emitted job on the CPU (with the script's device shims), through SizeupOptimizers, and
    the model it trained carries the converter's table."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_torchtitan.py"
    r = subprocess.run(
        [sys.executable, str(script), "--cpu-smoke"], capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout)["torchtitan"]
    assert out["steps"] == 6 and all(math.isfinite(v) for v in out["losses"])
    assert out["optimizer"] == "AdamW"  # sizeup's adamw, built by SizeupOptimizers
    rows = {row["name"]: row for row in out["table"]}
    head = rows["lm_head.weight"]  # width 64 over base 32: Table 3 readout, Adam lr 1/m
    assert (head["role"], head["lr_mult"]) == ("readout", 0.5)
    assert head["init_std"] == pytest.approx(32**-0.5 / 2, rel=1e-12)
