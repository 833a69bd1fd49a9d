"""torchtitan's own trainer on one GPU running the job sizeup emits (torchtitan's Llama 3 with
SizeupConverter and SizeupOptimizers, sizeup.integrations.torchtitan): its tokens/s and MFU as
torchtitan's MetricsProcessor reports them, beside sizeup's own trainer (`sizeup.train.run`, its
GPT) on the same shape: width 1024, 12 blocks, head_dim 64, context 1024, byte vocabulary,
global batch 16 sequences, muP against a width-256 base, bf16, compiled.

    python benchmarks/gpu_torchtitan.py              # CUDA: benchmarks/results/torchtitan-<device>.json
    python benchmarks/gpu_torchtitan.py --cpu-smoke  # CPU: the same path, tiny, in about a minute

Both run torchtitan's own Trainer (``job.build()``, ``trainer.train()``) on the job loaded through
torchtitan's ConfigManager, with this script's random tokens and byte tokenizer (no download:
the device has no network). torchtitan 0.3.0's Trainer assumes a GPU (its device type falls
back to "cuda"), so --cpu-smoke first applies ``cpu_shims`` (device type "cpu", a stand-in
device module for the memory monitor, no process-group timeouts) and uses causal SDPA attention
(flex attention compiles); its figures mean nothing, its losses and table show the job trains
torchtitan's model with sizeup's parametrization.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torchtitan.components.dataloader import BaseDataLoader
from torchtitan.components.tokenizer import BaseTokenizer
from torchtitan.config import ConfigManager

from sizeup.config import RunConfig, json_safe
from sizeup.integrations import torchtitan as tt
from sizeup.parametrization import get_parametrization
from sizeup.train import run

REFERENCE = dict(model="gpt", width=1024, depth=12, head_dim=64, seq_len=1024, vocab_size=256)
SMOKE = dict(model="gpt", width=64, depth=2, head_dim=16, seq_len=32, vocab_size=256)


class RandomTokens(BaseDataLoader):
    """Uniform random tokens, a fresh batch per step (torchtitan's (input dict, labels) form)."""

    @dataclass(kw_only=True, slots=True)
    class Config(BaseDataLoader.Config):
        vocab_size: int = 256

    def __init__(self, config: Config, *, dp_rank: int, seq_len: int, local_batch_size: int, **_):
        self.vocab, self.seq_len, self.batch = config.vocab_size, seq_len, local_batch_size
        self.generator = torch.Generator().manual_seed(dp_rank)

    def __iter__(self):
        while True:
            t = torch.randint(
                0, self.vocab, (self.batch, self.seq_len + 1), generator=self.generator
            )
            yield {"input": t[:, :-1]}, t[:, 1:]

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        pass


class ByteTokenizer(BaseTokenizer):
    """A tokenizer that only knows its vocabulary size (the data are token ids already)."""

    @dataclass(kw_only=True, slots=True)
    class Config(BaseTokenizer.Config):
        vocab_size: int = 256

    def __init__(self, config: Config, **_):
        super().__init__()
        self.vocab_size = config.vocab_size

    def encode(self, text: str, *args, **kwargs) -> list[int]:
        return list(text.encode())

    def decode(self, ids: list[int], *args, **kwargs) -> str:
        return bytes(ids).decode(errors="replace")

    def get_vocab_size(self) -> int:
        return self.vocab_size


def run_config(smoke: bool) -> RunConfig:
    return RunConfig(
        **(SMOKE if smoke else REFERENCE),
        rule="mup",
        base_width=32 if smoke else 256,
        batch_size=4 if smoke else 16,
        steps=6 if smoke else 40,
        schedule="constant",
        eval_batches=1,
        device="cpu" if smoke else "cuda",
        autocast=not smoke,
        compile=not smoke,
    )


def titan_job(cfg: RunConfig, smoke: bool) -> Any:
    """The emitted job, loaded through torchtitan's ConfigManager, with synthetic data."""
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "torchtitan_job.py").write_text(tt.job_module(cfg))
        sys.path.insert(0, d)
        try:
            job = ConfigManager().parse_args(
                ["--module", "torchtitan_job", "--config", "sizeup_plan"]
            )
        finally:
            sys.path.remove(d)
    vocab = cfg.model.vocab_size
    job.tokenizer = ByteTokenizer.Config(vocab_size=vocab)
    job.dataloader = RandomTokens.Config(vocab_size=vocab)
    job.metrics.log_freq = 1
    job.training.mixed_precision_param = "bfloat16"
    job.compile.enable = not smoke
    job.dump_folder = tempfile.mkdtemp(prefix="titan-")
    if smoke:  # causal SDPA: flex attention compiles; CUDA graphs need CUDA
        shape = replace(tt.shape_of(job.model_spec.model), attn_backend="sdpa")
        job.model_spec = tt.model_spec(shape, [job.model_spec.model.sizeup])
        job.training.disable_cuda_graphs = True
    return job


def cpu_shims() -> None:
    """Let torchtitan 0.3.0's Trainer run on a CPU (--cpu-smoke only): its modules' device type
    "cpu" instead of the "cuda" it falls back to, a stand-in device module for the memory
    monitor (no memory statistics on a CPU), and no process-group timeouts (torch's CPU build
    has no torch.distributed.set_timeout)."""
    import torchtitan.components.metrics  # noqa: F401  (imported so its globals are patched)
    import torchtitan.distributed.parallel_dims  # noqa: F401
    import torchtitan.distributed.utils as dist_utils

    cpu = SimpleNamespace(
        get_device_name=lambda *a: "cpu",
        current_device=lambda: 0,
        get_device_properties=lambda *a: SimpleNamespace(total_memory=2**34),
        reset_peak_memory_stats=lambda *a: None,
        empty_cache=lambda: None,
        memory_stats=lambda *a: {},
        set_device=lambda *a: None,
        synchronize=lambda *a: None,
    )
    for name, mod in list(sys.modules.items()):
        if name.startswith("torchtitan") and getattr(mod, "device_type", None) == "cuda":
            mod.device_type = "cpu"
            if hasattr(mod, "device_module"):
                mod.device_module = cpu
    dist_utils.set_pg_timeouts = lambda *a, **k: None


def titan_run(job: Any) -> dict[str, Any]:
    """torchtitan's own Trainer (job.build(), trainer.train()) on one device: the median
    tokens/s and MFU of its logged steps after the first two (compilation), its losses, and the
    per-layer table of the model it trained (the converter's)."""
    for k, v in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "localhost",
                 "MASTER_PORT": "29512"}.items():  # fmt: skip
        os.environ.setdefault(k, v)
    trainer = job.build()
    logged: list[dict[str, Any]] = []
    log = trainer.metrics_processor.logger.log
    trainer.metrics_processor.logger.log = lambda m, step: (logged.append(dict(m)), log(m, step))
    trainer.train()
    par = get_parametrization(trainer.model_parts[0])
    trainer.close()
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    steady = logged[2:] or logged
    mfu = [m["mfu(%)"] / 100 for m in steady if "mfu(%)" in m]
    return {
        "steps": len(logged),
        "tokens_per_s": statistics.median(m["throughput(tps)"] for m in steady),
        "mfu": statistics.median(mfu) if mfu else None,
        "losses": [m["loss_metrics/global_avg_loss"] for m in logged],
        "optimizer": type(trainer.optimizers.optimizers[0]).__name__,
        "table": par.rows() if par is not None else None,
    }


def sizeup_own(cfg: RunConfig) -> dict[str, Any]:
    """sizeup's own trainer on the same shape (its GPT): tokens/s and MFU of its RunResult."""
    r = run(cfg)
    tokens = cfg.data.batch_size * cfg.model.seq_len
    return {"tokens_per_s": tokens / r.step_time if r.step_time else None, "mfu": r.mfu}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu-smoke", action="store_true")
    args = ap.parse_args()
    smoke = args.cpu_smoke or not torch.cuda.is_available()
    if smoke:
        cpu_shims()
    cfg = run_config(smoke)
    job = titan_job(cfg, smoke)
    device = "cpu" if smoke else torch.cuda.get_device_name()
    out = {
        "device": device,
        "torch": torch.__version__,
        "shape": SMOKE if smoke else REFERENCE,
        "torchtitan": titan_run(job),
        "sizeup": sizeup_own(cfg),
    }
    print(json.dumps(json_safe(out), indent=2))
    if not smoke:
        slug = re.sub(r"[^a-z0-9]+", "-", device.lower()).strip("-")
        path = Path(__file__).parent / "results" / f"torchtitan-{slug}.json"
        path.write_text(json.dumps(json_safe(out), indent=2))
        print("wrote", path)


if __name__ == "__main__":
    main()
