"""Fuzz a checkpoint's contents (issue 23): a real checkpoint of a tiny run, altered anywhere -
a key dropped, a value replaced by None, a bool, an int, a float (NaN, inf), a string, a list, a
dict, a tensor of another shape or dtype - and saved with a checksum that matches. Resuming from
it (in-process, as `sizeup train --resume` does) trains on or ends in a CheckpointError, never
another exception; the check `sizeup export` makes on it likewise. FUZZ_N examples (default 400,
as tests/test_fuzz_inputs.py)."""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from test_checkpoint_contents import TINY, write_as  # noqa: E402

from sizeup.errors import CheckpointError  # noqa: E402
from sizeup.train import Checkpointing, build, run  # noqa: E402
from sizeup.train import checkpoint as ckpt  # noqa: E402

SETTINGS = settings(
    max_examples=int(os.environ.get("FUZZ_N", "400")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
DROP = "<drop>"  # a mutation that deletes the key (or list item) instead of replacing it


class Base(tuple):
    """(state, folder, model) with a short repr: hypothesis prints its arguments on a failure."""

    def __repr__(self) -> str:
        return f"<the step-1 checkpoint of TINY in {self[1]}>"


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Base:
    """The step-1 checkpoint of a 2-step run (so a resume takes one more step through every
    restored part), a folder for the altered copies, and the run's model (export's check)."""
    d = tmp_path_factory.mktemp("fuzz")
    run(TINY, checkpoint=Checkpointing(d / "run", every=1, keep=None))
    state = torch.load(d / "run" / "step_00000001.pt", weights_only=True)
    return Base((state, d, build(TINY).model))


def _paths(node: object, prefix: tuple = ()) -> list[tuple]:
    """Every key path in a checkpoint's tree (tensors are leaves; of a long list, its first two
    items and its last: Python's 625-number generator state would drown the rest)."""
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, (list, tuple)):
        idx = range(len(node)) if len(node) <= 4 else (0, 1, len(node) - 1)
        for i in idx:
            out += _paths(node[i], (*prefix, i))
    return out


def _replace(node: object, path: tuple, value: object) -> object:
    """A copy of ``node`` with the item at ``path`` replaced by ``value`` (DROP: deleted)."""
    if not path:
        return value
    k, rest = path[0], path[1:]
    if isinstance(node, dict):
        out = dict(node)
    elif isinstance(node, (list, tuple)):
        out = list(node)
    else:
        return node  # an earlier mutation replaced the container: nothing here to alter
    if isinstance(out, dict) and k not in out or isinstance(out, list) and not _index(k, out):
        return node
    new = _replace(out[k], rest, value) if rest else value
    if new is DROP:
        del out[k]
    else:
        out[k] = new
    return tuple(out) if isinstance(node, tuple) else out


def _index(k: object, seq: list) -> bool:
    return isinstance(k, int) and k < len(seq)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([-5, -1, 0, 1, 2, 3, 7, 624, 625, 2**31, 2**63, 2**70]),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e300, -0.0, 0.5, 1.5]),
    st.text(max_size=6),
    st.sampled_from(["adamw", "wte.weight", "lm_head.weight", "input", "constant"]),
)
DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.int64, torch.uint8, torch.bool]
tensors = st.builds(
    lambda shape, dtype, fill: torch.full(shape, fill).to(dtype),
    st.lists(st.integers(0, 5), max_size=3),
    st.sampled_from(DTYPES),
    st.sampled_from([0.0, 1.0, -1.0, float("nan"), 5056.0]),
)
# what becomes of a tensor: another dtype, another shape, its first item, a view of it
RESHAPES = {
    "dtype": lambda t, d: t.to(d),
    "flat": lambda t, d: t.reshape(-1),
    "first": lambda t, d: t.reshape(-1)[0] if t.numel() else t,
    "transpose": lambda t, d: t.T if t.ndim == 2 else t.unsqueeze(0),
    "half": lambda t, d: t.reshape(-1)[: t.numel() // 2],
    "negative": lambda t, d: -t.float() - 1,
}
values = st.one_of(
    st.just(DROP),
    scalars,
    st.lists(scalars, max_size=3),
    st.lists(scalars, max_size=3).map(tuple),
    st.dictionaries(st.text(max_size=3), scalars, max_size=2),
    tensors,
    st.tuples(st.sampled_from(sorted(RESHAPES)), st.sampled_from(DTYPES)),
)


def _value(drawn: object, original: object) -> object:
    """The drawn replacement, or a tensor's reshape/dtype change applied to the original."""
    if isinstance(drawn, tuple) and len(drawn) == 2 and drawn[0] in RESHAPES:
        if not torch.is_tensor(original):
            return torch.zeros(3, dtype=drawn[1])
        return RESHAPES[drawn[0]](original, drawn[1])
    return drawn


def _at(node: object, path: tuple) -> object:
    """The item at ``path`` (None where an earlier mutation left no such item)."""
    for k in path:
        if isinstance(node, dict) and k in node:
            node = node[k]
        elif isinstance(node, (list, tuple)) and isinstance(k, int) and k < len(node):
            node = node[k]
        else:
            return None
    return node


@SETTINGS
@given(data=st.data())
def test_altered_checkpoints_resume_or_are_refused_by_name(base, data):
    state, root, model = base
    paths = _paths(state)
    sections = sorted({p[0] for p in paths})
    altered = copy.deepcopy(state)  # a resumed optimizer steps its state tensors in place
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        section = data.draw(st.sampled_from(sections), label="section")
        path = data.draw(st.sampled_from([p for p in paths if p[0] == section]), label="path")
        value = _value(data.draw(values, label="value"), _at(altered, path))
        altered = _replace(altered, path, value)
    d = Path(tempfile.mkdtemp(dir=root))
    try:
        write_as(altered, d, 1)
        try:  # the check `sizeup export` makes (its model alone)
            pt, loaded = ckpt.load(d)
            ckpt.check(pt, loaded, model)
        except CheckpointError as e:
            assert "step_00000001.pt" in str(e) and "\n" not in str(e), e
        try:  # a resume: the check against the live trainer, the restore, a step and the end
            res = run(TINY, checkpoint=Checkpointing(d, every=1, resume=True))
        except CheckpointError as e:
            assert "step_00000001.pt" in str(e) and "\n" not in str(e), e
            event("refused")
        else:
            assert res.resumed_from == 1
            event("resumed")
    finally:
        shutil.rmtree(d)
