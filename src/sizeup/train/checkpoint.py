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
import math
import os
import random
import re
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import torch
from torch import nn

from sizeup.config import RunConfig, json_safe
from sizeup.errors import CheckpointError, ConfigError
from sizeup.registry import get_optimizer, optimizer_names, resolve
from sizeup.wrapping import canonical_name

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
    not against a model or a config: ``read`` adds those for a resume; `sizeup export` compares
    the config itself, to say what differs in its own terms, and calls ``check`` with its model.
    Any failure is a CheckpointError naming the file and the problem."""
    pt, record = _sidecar(Path(path))
    _verify(pt, record)
    try:
        with warnings.catch_warnings():
            # torch warns about the pickle protocol of a file it then refuses: the refusal says it
            warnings.simplefilter("ignore")
            state = torch.load(pt, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises several kinds for a bad file
        raise CheckpointError(
            refusal(pt, f"cannot be read by torch.load(weights_only=True): {_torch_reason(e)}")
        ) from None
    if not isinstance(state, dict) or not _equal(state.get("format"), FORMAT):
        raise CheckpointError(refusal(pt, "is not a sizeup checkpoint"))
    saved = state.get("config")
    if not isinstance(saved, dict) or not all(isinstance(k, str) for k in saved):
        raise CheckpointError(refusal(pt, f"holds config={_kind(saved)}, not a run config"))
    if not _equal(state.get("version"), VERSION):
        raise CheckpointError(
            f"checkpoint file {pt} has format version {_kind(state.get('version'))}; this sizeup "
            f"reads version {VERSION}"
        )
    if not (_is_int(state.get("step")) and _equal(state.get("step"), record.get("step"))):
        raise CheckpointError(
            refusal(
                pt,
                f"holds step={_kind(state.get('step'))} but its sidecar says {_kind(record.get('step'))}",
            )
        )
    return pt, state


def _torch_reason(e: BaseException) -> str:
    """What torch.load found wrong, in one line: the unpickler's own reason where it gives one,
    without torch's advice to load the file with weights_only=False (which would run whatever
    code the file holds)."""
    text = str(e)
    found = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\. Please use|\n\n|$)", text, re.S)
    reason = found.group(1) if found else text.split(". ")[0]
    return " ".join(reason.split())[:200] or type(e).__name__


def refusal(pt: Path, problem: str) -> str:
    """The one line a refused checkpoint gets: the file, what is wrong with it, and what to do
    (the earlier checkpoints beside it, or a fresh start)."""
    step = int(pt.stem.split("_", 1)[1]) if pt.stem.split("_", 1)[-1].isdigit() else None
    earlier = [side.stem for s, side in saved_steps(pt.parent) if step is None or s < step]
    if earlier:
        todo = (
            f"the earlier checkpoints there are {', '.join(earlier[-3:])}: move {pt.stem}.pt and "
            f"{pt.stem}.json aside and --resume continues from the newest left (`sizeup export "
            "--checkpoint` takes one by name), or start fresh with another --out"
        )
    else:
        todo = f"no earlier checkpoint is in {pt.parent}: start fresh with another --out"
    return f"checkpoint file {pt} {problem}; {todo}"


def read(
    path: str | Path, config: RunConfig, ignore: tuple[str, ...] = (), *, trainer: Any
) -> dict:
    """Load and check a checkpoint (a sidecar, its .pt file, or a folder: its newest) for a run
    of ``config``: intact (size and SHA-256), a sizeup checkpoint of this version (``load``),
    written by the same config (but MAY_CHANGE and ``ignore``), and, given the ``trainer`` it is
    to be restored into, every part of it the shape and type that trainer holds (``check``).
    Any failure is a CheckpointError naming the file and the problem; nothing is changed."""
    pt, state = load(path)
    diff = config_diff(state["config"], config, ignore)
    if diff:
        raise CheckpointError(
            f"checkpoint {pt} was written by another run config ({'; '.join(diff)}): resume "
            "with the config that wrote it, or choose another --out"
        )
    check(pt, state, trainer.model, trainer.optimizer, trainer.scheduler)
    return state


# --- what a checkpoint must hold ----------------------------------------------------------------
# A checkpoint whose bytes are intact may still hold the wrong things (written by another program,
# or edited and re-summed): every part is checked against what the objects it is restored into
# hold before any of it is applied, so a bad one is a CheckpointError naming the part, never a
# traceback from deep inside torch halfway through a restore.
SECTIONS = ("step", "config", "model", "optimizer", "scheduler", "trainer", "result", "rng")
HISTORY = ("steps", "train_loss", "val_steps", "val_loss")  # the loss curves a resume continues
# An optimizer param group's values are set from the run config, and a checkpoint's must equal
# the resuming run's (a beta above 1 would overflow torch's bias correction), except those that
# change as a run goes - the lr (its schedule), schedule-free AdamW's step count, weight sum and
# largest lr - which are checked for their kind, and the kernel choice (foreach, fused), which is
# the resuming machine's (the device may change between a checkpoint and its resume).
RUNNING = ("lr", "k", "weight_sum", "lr_max", "scheduled_lr", "train_mode")
KERNELS = ("foreach", "fused")
LARGEST_INT = 2**53  # a counter beyond this is no run's (and floats cannot hold it exactly)


class _Bad(Exception):
    """One thing wrong with a checkpoint's contents (``check`` names the file around it)."""


def _kind(x: Any) -> str:
    """A value as a refusal shows it: a tensor by shape and dtype, else its repr (or type)."""
    if torch.is_tensor(x):
        return f"a tensor of shape {tuple(x.shape)} and dtype {x.dtype}"
    text = " ".join(repr(x).split())  # one line, whatever the value's repr
    return text if len(text) <= 40 else f"a {type(x).__name__}"


def _need(ok: bool, where: str, value: Any, allowed: str) -> None:
    """Raise _Bad unless ok: ``where`` holds ``value`` where ``allowed`` belongs."""
    if not ok:
        raise _Bad(f"holds {where}={_kind(value)} where {allowed} belongs")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def check(
    pt: Path,
    state: dict,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
) -> None:
    """Check a loaded checkpoint's contents before anything of it is applied: every section
    there, the step an integer >= 0 within its run, the weights the keys, shapes and dtypes of
    ``model``'s, the optimizer state one tensor of each parameter's shape per slot (alike for
    every parameter its groups update alike) and, given the ``optimizer`` and ``scheduler`` it is
    restored into, its groups and counters the kinds of value theirs hold; the divergence record,
    loss history and generator states of the types and sizes a restore sets. Else a
    CheckpointError naming the file, the part and what to do (``refusal``). `sizeup export`
    (which reads only the weights) calls it with its model alone: a checkpoint damaged anywhere is
    refused whole."""
    try:
        missing = [k for k in SECTIONS if k not in state]
        if missing:
            raise _Bad(
                f"has no {', '.join(missing)} (a sizeup checkpoint holds {', '.join(SECTIONS)})"
            )
        _check_step(state)
        problem = model_problem(state["model"], model)
        if problem:
            raise _Bad(f"holds model weights that do not fit the model ({problem})")
        _check_optimizer(state["optimizer"], model, optimizer)
        _check_scheduler(state["scheduler"], scheduler)
        _check_trainer(state["trainer"], state["step"])
        _check_result(state["result"], state["step"])
        _check_rng(state["rng"])
    except _Bad as e:
        raise CheckpointError(refusal(pt, str(e))) from None


def _check_step(state: dict) -> None:
    """An integer >= 0, and no later than the last step of the run that wrote it."""
    step = state["step"]
    _need(_is_int(step) and step >= 0, "step", step, "an integer >= 0")
    steps = _current(state["config"]).get("steps")
    _need(not _is_int(steps) or step <= steps, "step", step, f"a step of its {steps}-step run")


def model_problem(weights: Any, model: nn.Module) -> str | None:
    """What keeps ``weights`` (a state dict) from loading into ``model`` - keys missing or
    unexpected, a tensor of another shape or dtype - in a few words, or None when it fits. The
    one check of weights against a model: a resume's and `sizeup export`'s."""
    if not isinstance(weights, Mapping):
        return f"{_kind(weights)}, not a dict of tensors by name"
    own = {canonical_name(k): v for k, v in model.state_dict().items()}
    missing = [k for k in own if k not in weights]
    unexpected = [str(k) for k in weights if k not in own]
    wrong = [k for k in own if k in weights and not _fits(weights[k], own[k])]
    parts = [
        f"{what}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("shape", wrong))
        if keys
    ]
    if wrong:
        k = wrong[0]
        parts.append(f"{k} is {_kind(weights[k])}, the model's {_kind(own[k])}")
    return "; ".join(parts) or None


def _fits(saved: Any, own: torch.Tensor) -> bool:
    """A dense tensor of ``own``'s shape and dtype."""
    return (
        torch.is_tensor(saved)
        and saved.layout == torch.strided
        and saved.shape == own.shape
        and saved.dtype == own.dtype
    )


def _check_optimizer(saved: Any, model: nn.Module, optimizer: Any) -> None:
    """Param groups naming the model's parameters (given the live optimizer: its groups, with
    values of the kinds its groups hold), and per-parameter state that fits them."""
    ok = isinstance(saved, Mapping) and "state" in saved and "param_groups" in saved
    _need(ok, "optimizer", saved, "a dict of 'state' and 'param_groups'")
    groups = saved["param_groups"]
    ok = isinstance(groups, list) and bool(groups) and all(isinstance(g, Mapping) for g in groups)
    _need(ok, "optimizer['param_groups']", groups, "a list of dicts")
    params = dict(model.named_parameters(remove_duplicate=False))
    params = {canonical_name(n): p for n, p in params.items()}
    if optimizer is not None:
        live = optimizer.param_groups
        _need(len(groups) == len(live), "optimizer['param_groups']", groups, f"{len(live)} groups")
        names = {id(p): canonical_name(n) for n, p in model.named_parameters()}
        for i, (g, own) in enumerate(zip(groups, live)):
            own = {**own, "params": [names.get(id(p), "?") for p in own["params"]]}
            _check_group(g, own, f"optimizer['param_groups'][{i}]")
    for i, g in enumerate(groups):
        names = g.get("params")
        ok = isinstance(names, list) and all(isinstance(n, str) and n in params for n in names)
        where = f"optimizer['param_groups'][{i}]['params']"
        _need(ok, where, names, "a list of the model's parameter names")
    _check_state(saved["state"], groups, params)


def _check_group(saved: Mapping, own: dict, where: str) -> None:
    """One param group against the live optimizer's: every key there; the values that change as
    a run goes (``RUNNING``) and the kernel choice (``KERNELS``) of the kinds the live group
    holds, every other value (set from the config, and the parameters' names) equal to it."""
    for k, v in own.items():
        at = f"{where}[{k!r}]"
        if k not in saved:
            # A key a newer torch adds to its optimizers (as 2.x added `decoupled_weight_decay`
            # to Adam) is missing from an older torch's checkpoint: it must equal this run's
            # anyway, so ``restore`` takes this run's. A running value cannot be made up.
            _need(k not in RUNNING, at, None, f"a value like {_kind(v)}")
            continue
        if k in RUNNING or k in KERNELS:
            _same_kind(saved[k], v, at)
        else:
            _need(
                _equal(saved[k], v), at, saved[k], f"{_kind(v)} (this run's, set from its config)"
            )


def _equal(a: Any, b: Any) -> bool:
    """a equals b, of the same type (a tuple and a list alike: torch.save may turn one into the
    other)."""
    if isinstance(b, (list, tuple)):
        return (
            isinstance(a, (list, tuple))
            and len(a) == len(b)
            and all(_equal(x, y) for x, y in zip(a, b))
        )
    if torch.is_tensor(b):
        return _fits(a, b) and bool(torch.equal(a, b))
    return type(a) is type(b) and a == b


def _check_state(state: Any, groups: list, params: dict[str, torch.Tensor]) -> None:
    """Empty (an optimizer that has not stepped), or state for every trained parameter the
    groups name and for no other, each slot a tensor of its parameter's shape and dtype, a
    finite count >= 0 or a factored / per-side state (``_factor``), and the same slots for
    every parameter of one shape updated alike (by the group's ``update``: Muon's and AdamW's
    parameters keep different ones)."""
    _need(isinstance(state, Mapping), "optimizer['state']", state, "a dict by parameter name")
    if not state:
        return
    kind = {n: repr(g.get("update", i)) for i, g in enumerate(groups) for n in g["params"]}
    group_of = {n: g for g in groups for n in g["params"]}
    for n in state:
        _need(n in kind, "optimizer['state'] key", n, "a parameter the groups name")
    first: dict[tuple[str, tuple[int, ...]], tuple[str, list]] = {}
    for n in kind:
        if n not in state:
            _need(not params[n].requires_grad, f"optimizer['state'][{n!r}]", None, "its state")
            continue
        factors = _factor_shapes(group_of[n], params[n])
        slots = _slots(state[n], params[n], f"optimizer['state'][{n!r}]", factors)
        # one shape: an optimizer may keep other state for another (Adafactor factors a
        # matrix's second moment, not a vector's; Shampoo preconditions matrices only)
        ref, ref_slots = first.setdefault((kind[n], tuple(params[n].shape)), (n, slots))
        if slots != ref_slots:
            raise _Bad(
                f"holds optimizer['state'] slots {_slot_names(slots)} for {n} but "
                f"{_slot_names(ref_slots)} for {ref} (parameters of one shape updated alike "
                "keep alike state)"
            )


def _slot_names(slots: list[tuple[str, str]]) -> str:
    shown = {"full": "{}", "count": "{} (a count)", "factor": "{} (of the parameter's sides)"}
    return "(" + ", ".join(shown[what].format(k) for k, what in slots) + ")"


def _factor_shapes(group: Mapping, param: torch.Tensor) -> dict[str, tuple[int, ...]]:
    """The state slots an optimizer keeps in another shape than its parameter's (Dion's right
    factor Q), as the registry entry of the group's ``update`` declares them
    (``OptimizerEntry.state_shapes``); none for most optimizers, or for a group too damaged to
    say (its slots are then held to the parameter's shape, and refused by name)."""
    name = group.get("update")
    if not isinstance(name, str) or name not in optimizer_names():
        return {}
    fn = get_optimizer(name).state_shapes
    if fn is None:
        return {}
    try:
        return {k: tuple(v) for k, v in resolve(fn)(tuple(param.shape), group).items()}
    except (ConfigError, KeyError, TypeError, ValueError):
        return {}


def _slots(
    entry: Any,
    param: torch.Tensor,
    where: str,
    factors: Mapping[str, tuple[int, ...]] | None = None,
) -> list[tuple[str, str]]:
    """(slot, 'full', 'count' or 'factor') of one parameter's optimizer state, each checked; a
    slot in ``factors`` (declared by the optimizer's registry entry) is a tensor of that shape
    (and the parameter's dtype); a tensor of the parameter's sides is a factored state."""
    factors = factors or {}
    ok = isinstance(entry, Mapping) and all(isinstance(k, str) for k in entry)
    _need(ok, where, entry, "a dict of named tensors")
    out = []
    for key, v in sorted(entry.items()):
        if torch.is_tensor(v) and v.ndim == 0 and v.dtype.is_floating_point:
            out.append((key, "count"))
            v = v.item()
        elif _is_number(v):
            out.append((key, "count"))
        elif key in factors:
            like = torch.empty(factors[key], dtype=param.dtype, device="meta")
            allowed = f"a tensor of shape {factors[key]} and dtype {param.dtype}"
            _need(_fits(v, like), f"{where}[{key!r}]", v, allowed)
            out.append((key, "full"))
            continue
        elif _factor(v, param) and not _fits(v, param):
            # adafactor, soap, shampoo: a factored or per-side state
            out.append((key, "factor"))
            continue
        else:
            allowed = (
                f"a tensor of the parameter's shape {tuple(param.shape)} and dtype {param.dtype}"
                " (or, for a factored or preconditioned state, of its sides)"
            )
            _need(_fits(v, param), f"{where}[{key!r}]", v, allowed)
            out.append((key, "full"))
            continue
        _need(math.isfinite(v) and v >= 0, f"{where}[{key!r}]", v, "a finite count >= 0")
    return out


# --- lion, adafactor, soap, shampoo: optimizer state that is not of the parameter's shape ------
def _factor(saved: Any, own: torch.Tensor) -> bool:
    """A factored or per-side state of ``own``: a dense tensor of its dtype (or float32, for a
    bfloat16 parameter: Shampoo's preconditioners) whose every size is one of its sizes (Adafactor's row and column moments, Shampoo's and SOAP's side x side
    preconditioners), or a list of such tensors and empty lists (SOAP keeps one per side, []
    for a side it does not precondition)."""
    if isinstance(saved, (list, tuple)):
        return all(_factor(x, own) or (isinstance(x, (list, tuple)) and not x) for x in saved)
    return (
        torch.is_tensor(saved)
        and saved.layout == torch.strided
        and saved.dtype in (own.dtype, torch.promote_types(own.dtype, torch.float32))
        and saved.ndim >= 1
        and all(n in own.shape for n in saved.shape)
    )


def _same_kind(saved: Any, live: Any, where: str) -> None:
    """``saved`` holds the kind of value ``live`` does (recursively): a bool (or None) for a
    flag, an integer for an integer (in [0, LARGEST_INT] for one >= 0), a finite number for a
    float (>= 0 for one >= 0),
    the same string (names and choices do not change within a run), a sequence as long, a
    tensor of the same shape and dtype, a dict with every key."""
    if isinstance(live, (list, tuple)):
        ok = isinstance(saved, (list, tuple)) and len(saved) == len(live)
        _need(ok, where, saved, f"a list of {len(live)}")
        for j, (a, b) in enumerate(zip(saved, live)):
            _same_kind(a, b, f"{where}[{j}]")
    elif isinstance(live, Mapping):
        _need(isinstance(saved, Mapping), where, saved, "a dict")
        for k, v in live.items():
            _need(k in saved, f"{where}[{k!r}]", None, f"a value like {_kind(v)}")
            _same_kind(saved[k], v, f"{where}[{k!r}]")
    else:
        _need(_same_scalar(saved, live), where, saved, _scalar_kind(live))


def _same_scalar(saved: Any, live: Any) -> bool:
    if live is None or isinstance(live, bool):
        return saved is None or isinstance(saved, bool)
    if _is_int(live):
        return _is_int(saved) and abs(saved) <= LARGEST_INT and (saved >= 0 or live < 0)
    if isinstance(live, float):
        finite = _is_number(saved) and math.isfinite(saved)
        return finite and (saved >= 0 or live < 0)
    if isinstance(live, str):
        return saved == live
    if torch.is_tensor(live):
        return _fits(saved, live)
    return type(saved) is type(live)


def _scalar_kind(live: Any) -> str:
    if live is None or isinstance(live, bool):
        return "True, False or None"
    if _is_int(live):
        return "an integer" + (f" in [0, {LARGEST_INT}]" if live >= 0 else "")
    if isinstance(live, float):
        return "a finite number" + (" >= 0" if live >= 0 else "")
    if isinstance(live, str) or torch.is_tensor(live):
        return _kind(live)
    return f"a {type(live).__name__}"


def _check_scheduler(saved: Any, scheduler: Any) -> None:
    """The lr scheduler's counters, of the kinds the live scheduler holds (its lr functions come
    from the config, not the checkpoint)."""
    if scheduler is None:
        _need(saved is None or isinstance(saved, Mapping), "scheduler", saved, "a dict or None")
        return
    own = {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}
    _need(isinstance(saved, Mapping), "scheduler", saved, "the lr scheduler's state (a dict)")
    _same_kind(saved, own, "scheduler")
    # The base lrs are set from the config (so `restore` can give each group the lr of the
    # schedule at the saved step, whatever lr a group holds): they must be this run's.
    base = saved.get("base_lrs")
    _need(_equal(base, own["base_lrs"]), "scheduler['base_lrs']", base, "this run's base lrs")
    epoch = saved.get("last_epoch")
    _need(_is_int(epoch) and 0 <= epoch <= LARGEST_INT, "scheduler['last_epoch']", epoch, ">= 0")


def _check_trainer(t: Any, step: int) -> None:
    """The divergence reference (a number or None), the diverged step (a step before ``step``,
    or None) and the monitors' history (lists of records by monitor)."""
    keys = ("reference", "diverged_step", "diagnostics")
    ok = isinstance(t, Mapping) and all(k in t for k in keys)
    _need(ok, "trainer", t, "a dict of " + ", ".join(keys))
    ref, div, diag = t["reference"], t["diverged_step"], t["diagnostics"]
    _need(ref is None or _is_number(ref), "trainer['reference']", ref, "a number or None")
    ok = div is None or (_is_int(div) and 0 <= div <= step)
    _need(ok, "trainer['diverged_step']", div, f"a step in [0, {step}] or None")
    ok = diag is None or (
        isinstance(diag, Mapping)
        and all(
            isinstance(v, list) and all(isinstance(r, Mapping) for r in v) for v in diag.values()
        )
    )
    _need(ok, "trainer['diagnostics']", diag, "a dict of lists of records by monitor")


def _check_result(result: Any, step: int) -> None:
    """None (a checkpoint of a WSD trunk holds no loss curves), or the run's loss curves so
    far: steps (in [0, ``step``]) with a loss (a number or None) each, the initial validation
    loss."""
    if result is None:
        return
    _need(isinstance(result, Mapping), "result", result, "the run's result so far (a dict)")
    for steps, losses in (("steps", "train_loss"), ("val_steps", "val_loss")):
        s, v = result.get(steps), result.get(losses)
        ok = isinstance(s, list) and all(_is_int(x) and 0 <= x <= step for x in s)
        _need(ok, f"result[{steps!r}]", s, f"a list of steps in [0, {step}]")
        ok = isinstance(v, list) and len(v) == len(s) and all(x is None or _is_number(x) for x in v)
        _need(ok, f"result[{losses!r}]", v, f"a list of {len(s)} losses (one per {steps})")
    v = result.get("initial_val_loss")
    _need(v is None or _is_number(v), "result['initial_val_loss']", v, "a number or None")


def _check_rng(rng: Any) -> None:
    """Generator states a restore can set: torch's (a uint8 tensor of its size), Python's
    (``random.setstate`` accepts it: tried on a generator of its own) and the GPUs' (uint8)."""
    ok = isinstance(rng, Mapping) and "torch" in rng and "python" in rng
    _need(ok, "rng", rng, "a dict of 'torch' and 'python' generator states")
    own = torch.get_rng_state()
    t = rng["torch"]
    ok = torch.is_tensor(t) and t.dtype == torch.uint8 and t.shape == own.shape
    _need(ok, "rng['torch']", t, f"torch's generator state ({_kind(own)})")
    try:
        random.Random().setstate(_as_tuple(rng["python"]))  # a throwaway generator: a probe
        ok = True
    except Exception:  # noqa: BLE001 - setstate raises many kinds (KeyError for a dict, ...)
        ok = False
    _need(ok, "rng['python']", rng["python"], "Python's random.getstate()")
    cuda = rng.get("cuda", [])
    ok = isinstance(cuda, (list, tuple)) and all(
        torch.is_tensor(c) and c.dtype == torch.uint8 and c.ndim == 1 for c in cuda
    )
    if ok and cuda and torch.cuda.is_available():
        ok = all(c.numel() == torch.cuda.get_rng_state(0).numel() for c in cuda)
    _need(ok, "rng['cuda']", cuda, "the GPUs' generator states (torch.cuda.get_rng_state_all())")


def history(state: dict) -> dict[str, Any]:
    """A checked checkpoint's loss curves (``HISTORY``) and initial validation loss, None losses
    as NaN (as RunResult.from_dict reads them); empty when it holds none."""
    r = state["result"] or {k: [] for k in HISTORY}
    out: dict[str, Any] = {k: list(r[k]) for k in HISTORY}
    for k in ("train_loss", "val_loss"):
        out[k] = [math.nan if v is None else v for v in out[k]]
    v = r.get("initial_val_loss")
    out["initial_val_loss"] = math.nan if v is None else v
    return out


# --- AGD: an optimizer that keeps no state -----------------------------------------------------
def _restore_stateless(trainer: Any, state: dict) -> None:
    """Weights and param groups of a checkpoint whose optimizer state is empty (AGD keeps none):
    torch's loader would run a step to create state, find no tensor to read a device from, and
    fail; an empty state needs no loading, only the groups' settings (in the live order)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    set_model_state_dict(
        trainer.model, state["model"], options=StateDictOptions(full_state_dict=True)
    )
    for g, saved in zip(trainer.optimizer.param_groups, state["optimizer"]["param_groups"]):
        g.update({k: v for k, v in saved.items() if k != "params"})


def restore(trainer: Any, state: dict) -> None:
    """Put a checkpoint ``read`` checked into ``trainer`` (built from the same config): weights,
    optimizer, scheduler, step, divergence record, monitor history and generator states. Every
    rank calls it with the full state (FSDP2 keeps its own shard)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    # Empty per-parameter entries (schedule-free AdamW's train()/eval() touch its state
    # defaultdict before any step) would make torch take the fresh optimizer for an initialised
    # one and find no tensors in it.
    state_of = trainer.optimizer.state
    for p in [p for p, st in state_of.items() if not st]:
        del state_of[p]
    groups = trainer.optimizer.param_groups
    saved_groups = state["optimizer"]["param_groups"]
    # this machine's kernels, and what an older torch's checkpoint lacks (``_check_group``)
    # ... and, without a scheduler (the lr is then the config's throughout), the lr
    own = KERNELS + (("lr",) if trainer.scheduler is None else ())
    kept = [
        {k: v for k, v in g.items() if k in own or (k != "params" and k not in saved)}
        for g, saved in zip(groups, saved_groups)
    ]
    if state["optimizer"]["state"]:
        set_state_dict(
            trainer.model,
            trainer.optimizer,
            model_state_dict=state["model"],
            optim_state_dict=state["optimizer"],
            options=StateDictOptions(full_state_dict=True),
        )
    else:
        _restore_stateless(trainer, state)
    for g, own in zip(trainer.optimizer.param_groups, kept):
        g.update(own)  # a GPU run's fused AdamW resumes on a CPU; an older torch's on this one
    _restore_lists(trainer, state["optimizer"]["state"])
    if trainer.scheduler is not None and state["scheduler"] is not None:
        sched = dict(state["scheduler"])
        sched["lr_lambdas"] = [None] * len(trainer.scheduler.lr_lambdas)
        trainer.scheduler.load_state_dict(sched)
        # each group's lr is the schedule's at the saved step, as LambdaLR.get_lr computes it
        # (the saved one is that same number, unless the file was altered: an lr of 1e38 would
        # overflow the next step's float32 update)
        sc = trainer.scheduler
        lrs = [b * f(sc.last_epoch) for b, f in zip(sc.base_lrs, sc.lr_lambdas, strict=True)]
        for g, lr in zip(trainer.optimizer.param_groups, lrs, strict=True):
            g["lr"] = lr
        sc._last_lr = lrs
    t = state["trainer"]
    trainer.step = state["step"]
    trainer.reference = float("nan") if t["reference"] is None else t["reference"]
    trainer.diverged_step = t["diverged_step"]
    trainer.diagnostics = dict(t["diagnostics"] or {})
    _set_rng(state["rng"])


# --- soap: per-parameter state kept in lists -----------------------------------------------
def _restore_lists(trainer: Any, saved: Mapping) -> None:
    """Per-parameter state held in lists, taken from the saved state as it is (its tensors on
    the parameter's device): ``set_state_dict`` drops a list with no tensor (SOAP's [[]]: no
    preconditioner for a vector) and loses the empty lists beside tensors (SOAP's [[], Q]: a
    side it does not rotate), which would shift the sides."""
    params = {canonical_name(n): p for n, p in trainer.model.named_parameters()}
    for name, entry in saved.items():
        p = params.get(name)
        live = trainer.optimizer.state.get(p) if p is not None else None
        if not live:
            continue
        for key, value in entry.items():
            if isinstance(value, (list, tuple)):
                live[key] = _on(value, p.device)


def _on(value: Any, device: torch.device) -> Any:
    """``value`` (lists of tensors and lists) copied, its tensors on ``device``."""
    if isinstance(value, (list, tuple)):
        return type(value)(_on(v, device) for v in value)
    return value.detach().to(device, copy=True) if torch.is_tensor(value) else value


def _set_rng(rng: dict[str, Any]) -> None:
    torch.set_rng_state(rng["torch"])
    random.setstate(_as_tuple(rng["python"]))
    if "cuda" in rng and torch.cuda.is_available():
        # the GPUs this process sees (the device may change between a checkpoint and its resume)
        for i, state in enumerate(rng["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(state, i)


def _as_tuple(x: Any) -> Any:
    """random.setstate wants tuples where torch.save may have kept lists."""
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x
