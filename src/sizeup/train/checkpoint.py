"""Checkpoints: a run's whole state in one file, so a killed run resumes bit for bit.

A checkpoint folder holds, per saved step, ``step_00000040.pt`` and its sidecar
``step_00000040.json``. The ``.pt`` file (``torch.save``; read back with
``torch.load(weights_only=True)``, so loading one runs no pickled code) holds:

    format, version, step, config    "sizeup-checkpoint", 1, the step reached, the RunConfig
    model, optimizer                 full state dicts keyed by parameter name (torch's
                                     ``get_state_dict(full_state_dict=True)``: under FSDP2 the
                                     shards are gathered on rank 0), so a checkpoint does not
                                     depend on the number of processes or on sharding
    scheduler                        LambdaLR's counters (the lr function comes from the config)
    trainer                          divergence reference, diverged step, monitor history
    result                           the RunResult so far (loss curves)
    rng                              torch CPU (and CUDA) generator states, Python's ``random``

Data needs no state: batch ``k`` is a pure function of ``k`` (``batch_at``), so the step is the
data position. The sidecar (written after the ``.pt`` file is complete and renamed into place)
records the step, the file's size and SHA-256 and the config: a checkpoint exists exactly when
its sidecar does, a crash while writing leaves the previous one as it was, and a file whose bytes
changed is refused by name rather than half loaded. A checkpoint resumes only a run whose config
agrees in every field except those that do not change the trajectory (``MAY_CHANGE``).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from pathlib import Path
from typing import IO, Any

import torch

from sizeup.config import RunConfig, json_safe
from sizeup.errors import CheckpointError, ConfigError

FORMAT, VERSION = "sizeup-checkpoint", 1
# Fields a resumed run may set differently: how it is run and watched, not what it computes
# (FSDP, the number of processes and gradient accumulation change float summation order only;
# see docs/training.md): a run resumes on a machine with less memory at a smaller micro-batch.
MAY_CHANGE = (
    "threads",
    "log_every",
    "eval_every",
    "spectral_every",
    "noise_every",
    "device",
    "compile",
    "fsdp",
    "peak_flops",
    "micro_batch_size",
)
# A WSD branch follows its own schedule from a stable-phase checkpoint.
SCHEDULE_FIELDS = (
    "schedule",
    "steps",
    "decay_frac",
    "cooldown",
    "milestones",
    "power_a",
    "power_b",
)


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def stem(step: int) -> str:
    """The file name (without suffix) of the checkpoint at ``step``."""
    return f"step_{step:08d}"


def saved_steps(directory: str | Path) -> list[tuple[int, Path]]:
    """(step, sidecar path) of every checkpoint in ``directory``, oldest first."""
    d = Path(directory)
    out = []
    for side in d.glob("step_*.json") if d.is_dir() else ():
        try:
            out.append((int(side.stem.split("_", 1)[1]), side))
        except ValueError:
            continue
    return sorted(out)


def latest(directory: str | Path) -> Path | None:
    """The sidecar of the newest checkpoint in ``directory``, or None."""
    found = saved_steps(directory)
    return found[-1][1] if found else None


def check_fresh(directory: str | Path) -> None:
    """Refuse to start a new run in a folder that holds another run's checkpoints (it would
    overwrite them): resume it, or write elsewhere."""
    side = latest(directory)
    if side is not None:
        raise CheckpointError(
            f"checkpoint folder {directory} already holds a run's checkpoint ({side.name}); "
            "pass --resume to continue that run, or choose another --out (nothing was written)"
        )


# --- gather and write ---------------------------------------------------------------------------
def gather(trainer: Any) -> tuple[dict, dict]:
    """(model, optimizer) full state dicts keyed by parameter name. A collective under FSDP2
    (every rank calls it; rank 0 gets the tensors, on the CPU)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_state_dict(trainer.model, trainer.optimizer, options=opts)


def _rng_state() -> dict[str, Any]:
    out: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def payload(trainer: Any, config: RunConfig, model: dict, optim: dict, result: Any) -> dict:
    """Everything one checkpoint file holds (see the module doc)."""
    sched = None
    if trainer.scheduler is not None:
        sched = {k: v for k, v in trainer.scheduler.state_dict().items() if k != "lr_lambdas"}
    return {
        "format": FORMAT,
        "version": VERSION,
        "step": trainer.step,
        "config": config.to_dict(),
        "model": model,
        "optimizer": optim,
        "scheduler": sched,
        "trainer": {
            "reference": trainer.reference,
            "diverged_step": trainer.diverged_step,
            "diagnostics": json_safe(trainer.diagnostics),
        },
        "result": None if result is None else result.to_dict(),
        "rng": _rng_state(),
    }


class _Hashing:
    """A file wrapper that hashes what is written through it (one pass over the bytes)."""

    def __init__(self, f: IO[bytes]):
        self.f, self.sha, self.size = f, hashlib.sha256(), 0

    def write(self, b: bytes) -> int:
        self.sha.update(b)
        self.size += len(b)
        return self.f.write(b)

    def flush(self) -> None:
        self.f.flush()


def _write_atomic(path: Path, write: Any) -> None:
    """Write through ``write(file)`` to a temporary name, fsync, rename into place."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write(state: dict, directory: str | Path, keep: int | None = None) -> Path:
    """Write one checkpoint (the .pt file, then its sidecar) and keep the newest ``keep``
    (None: all). Returns the sidecar's path."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    name = stem(state["step"])
    hashed: list[_Hashing] = []

    def save(f: IO[bytes]) -> None:
        h = _Hashing(f)
        torch.save(state, h)
        hashed.append(h)

    _write_atomic(d / f"{name}.pt", save)
    side = {
        "format": FORMAT,
        "version": VERSION,
        "step": state["step"],
        "file": f"{name}.pt",
        "bytes": hashed[0].size,
        "sha256": hashed[0].sha.hexdigest(),
        "config": state["config"],
        "time": time.time(),
    }
    text = json.dumps(side, indent=2).encode()
    _write_atomic(d / f"{name}.json", lambda f: f.write(text))
    if keep is not None:
        for _, old in saved_steps(d)[:-keep]:
            old.unlink(missing_ok=True)  # the sidecar first: the checkpoint is then gone
            old.with_suffix(".pt").unlink(missing_ok=True)
    return d / f"{name}.json"


def save(
    trainer: Any,
    config: RunConfig,
    directory: str | Path,
    result: Any = None,
    keep: int | None = None,
) -> Path | None:
    """Checkpoint ``trainer`` at its current step (every rank calls this; rank 0 writes).
    Returns the sidecar path on rank 0, None elsewhere."""
    model, optim = gather(trainer)
    out = None
    if _rank() == 0:
        out = write(payload(trainer, config, model, optim, result), directory, keep)
    _barrier()  # no rank runs ahead of a checkpoint that is not on disk yet
    return out


# --- read, check and restore --------------------------------------------------------------------
def _sidecar(path: Path) -> tuple[Path, dict]:
    """(the .pt file, its sidecar record) for a sidecar, a .pt file or a folder (newest)."""
    if path.is_dir():
        side = latest(path)
        if side is None:
            raise CheckpointError(f"checkpoint folder {path} holds no checkpoint (step_*.json)")
        path = side
    side = path if path.suffix == ".json" else path.with_suffix(".json")
    if not side.is_file():
        raise CheckpointError(
            f"checkpoint {path} has no sidecar {side.name} (a checkpoint whose write did not "
            "finish, or not a sizeup checkpoint)"
        )
    try:
        record = json.loads(side.read_text())
        pt = side.with_name(record["file"])
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"checkpoint sidecar {side} is corrupt ({e})") from None
    return pt, record


def _verify(pt: Path, record: dict) -> None:
    """The file's size and SHA-256 are the ones recorded when it was written."""
    if not pt.is_file():
        raise CheckpointError(f"checkpoint file {pt} is missing (its sidecar names it)")
    sha, size = hashlib.sha256(), 0
    with open(pt, "rb") as f:
        while chunk := f.read(1 << 24):
            sha.update(chunk)
            size += len(chunk)
    if size != record.get("bytes") or sha.hexdigest() != record.get("sha256"):
        raise CheckpointError(
            f"checkpoint file {pt} is corrupt: {size} bytes with SHA-256 {sha.hexdigest()[:12]}, "
            f"written as {record.get('bytes')} bytes with {str(record.get('sha256'))[:12]}"
        )


def config_diff(saved: dict, config: RunConfig, ignore: tuple[str, ...] = ()) -> list[str]:
    """'field: checkpoint value vs this run's' for each field that differs (ignoring MAY_CHANGE
    and ``ignore``)."""
    # A checkpoint of an older sizeup names its fields by their old flat names (init_std):
    # read back through RunConfig, every field compares under today's name, and one added
    # since compares at its default. Pairs (milestones, batch_ramp) compare as JSON would
    # write them: tuples and lists alike.
    saved, now = _plain(_current(saved)), _plain(config.to_dict())
    skip = set(MAY_CHANGE) | set(ignore)
    keys = sorted((set(saved) | set(now)) - skip)
    return [
        f"{k}={saved.get(k)!r} in the checkpoint, {now.get(k)!r} here"
        for k in keys
        if saved.get(k) != now.get(k)
    ]


def _current(saved: dict) -> dict:
    """A stored config in today's flat view (as stored when it no longer reads as a config)."""
    try:
        return RunConfig.from_dict(saved).to_dict()
    except ConfigError:
        return saved


def _plain(d: dict) -> dict:
    return json.loads(json.dumps(d, default=str))


def load(path: str | Path) -> tuple[Path, dict]:
    """(the .pt file, its state) of a checkpoint (a sidecar, its .pt file, or a folder: its
    newest), checked to be intact (size and SHA-256) and a sizeup checkpoint of this version, but
    not against a config: ``read`` adds that for a resume; `sizeup export` compares the config
    itself, to say what differs in its own terms. Any failure is a CheckpointError naming the
    file and the problem."""
    pt, record = _sidecar(Path(path))
    _verify(pt, record)
    try:
        state = torch.load(pt, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises several kinds for a bad file
        raise CheckpointError(f"checkpoint file {pt} cannot be read: {e}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint file {pt} is not a sizeup checkpoint")
    if state.get("version") != VERSION:
        raise CheckpointError(
            f"checkpoint file {pt} has format version {state.get('version')}; this sizeup "
            f"reads version {VERSION}"
        )
    return pt, state


def read(path: str | Path, config: RunConfig, ignore: tuple[str, ...] = ()) -> dict:
    """Load and check a checkpoint (a sidecar, its .pt file, or a folder: its newest) for a run
    of ``config``: intact (size and SHA-256), a sizeup checkpoint of this version (``load``), and
    written by the same config (but MAY_CHANGE and ``ignore``). Any failure is a CheckpointError
    naming the file and the problem; nothing is changed."""
    pt, state = load(path)
    diff = config_diff(state["config"], config, ignore)
    if diff:
        raise CheckpointError(
            f"checkpoint {pt} was written by another run config ({'; '.join(diff)}): resume "
            "with the config that wrote it, or choose another --out"
        )
    return state


def restore(trainer: Any, state: dict) -> None:
    """Put a checked checkpoint into ``trainer`` (built from the same config): weights,
    optimizer, scheduler, step, divergence record, monitor history and generator states. Every
    rank calls it with the full state (FSDP2 keeps its own shard)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    # Empty per-parameter entries (schedule-free AdamW's train()/eval() touch its state
    # defaultdict before any step) would make torch take the fresh optimizer for an initialised
    # one and find no tensors in it.
    state_of = trainer.optimizer.state
    for p in [p for p, st in state_of.items() if not st]:
        del state_of[p]
    set_state_dict(
        trainer.model,
        trainer.optimizer,
        model_state_dict=state["model"],
        optim_state_dict=state["optimizer"],
        options=StateDictOptions(full_state_dict=True),
    )
    if trainer.scheduler is not None and state["scheduler"] is not None:
        sched = dict(state["scheduler"])
        sched["lr_lambdas"] = [None] * len(trainer.scheduler.lr_lambdas)
        trainer.scheduler.load_state_dict(sched)
    t = state["trainer"]
    trainer.step = state["step"]
    trainer.reference = float("nan") if t["reference"] is None else t["reference"]
    trainer.diverged_step = t["diverged_step"]
    trainer.diagnostics = dict(t["diagnostics"] or {})
    _set_rng(state["rng"])


def _set_rng(rng: dict[str, Any]) -> None:
    torch.set_rng_state(rng["torch"])
    random.setstate(_as_tuple(rng["python"]))
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def _as_tuple(x: Any) -> Any:
    """random.setstate wants tuples where torch.save may have kept lists."""
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x
