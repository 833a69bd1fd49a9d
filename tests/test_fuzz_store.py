"""Fuzz a study's rows (issue 23): every column of a stored trial given a value of the wrong
type or JSON shape (NULL, integers, floats with NaN and inf, text, JSON of every shape, blobs,
and the row's own config/result JSON with one field replaced by junk), then every reader run in
process: Store.trials and to_frame (reader and writer), the salvaging read and export, the
transfer analysis, the laws loader, the planner's study reader, and a sweep resuming the study.
Each ends in a result or a SizeupError, never another exception. The CLI's one-line form of the
same errors is checked in tests/test_store_damage.py (a subprocess per example is too slow).

FUZZ_N sets the number of examples (default 400; 10,000 took about an hour on 2 busy cores)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
import warnings
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from test_store_damage import study_runner  # noqa: E402

from sizeup.errors import SizeupError, StoreWarning  # noqa: E402
from sizeup.laws.io import load_study  # noqa: E402
from sizeup.plan.study import read_study  # noqa: E402
from sizeup.sweep import Store, run_sweep  # noqa: E402
from sizeup.sweep.transfer import analyze_transfer  # noqa: E402

SPEC = {
    "base": {"steps": 5, "head_dim": 16},
    "axes": {"width": [32, 64], "lr": {"log2": [-11, -5], "step": 2}},
}  # 8 trials
COLUMNS = [
    "id",
    "seq",
    "status",
    "config",
    "result",
    "error",
    "loss",
    "created",
    "started",
    "finished",
    "wall_time",
    "attempts",
    "owner",
    "heartbeat",
]
N_ROWS = 8

JSON_TEXT = [
    "[1,2]",
    "null",
    "{}",
    "[]",
    '"text"',
    "1",
    "1e400",
    "NaN",
    "-Infinity",
    "true",
    "{",
    "",
    "abc",
    '{"config": {}}',
    '{"config": null}',
    '{"config": {}, "steps": "abc"}',
    '{"config": {}, "final_val_loss": [1]}',
    '{"config": {}, "tokens": 1e400}',
    '{"config": {}, "tokens": 100000000000000000000000}',
    '{"config": {}, "diverged": "no"}',
    '{"config": {}, "surprise": 1}',
    '{"width": "wide"}',
    '{"width": -64}',
    '{"width": 1e12}',
    '{"lr": "NaN"}',
    '{"model": {"width": {"nested": [1, {"x": null}]}}}',
    "[" * 5000 + "]" * 5000,  # deeper than the JSON decoder's recursion limit
    '{"a": ' * 3000 + "1" + "}" * 3000,
    "done",
    "queued",
    "running",
    "DONE",
    "host:1",
    "host:99999999999999999999999",
    "\u00e9\x00",
]
JUNK = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
VALUES = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(JSON_TEXT),
    st.text(max_size=20),
    st.binary(max_size=20),
    JUNK.map(lambda v: json.dumps(v)),
)


@st.composite
def edits(draw):
    """1-3 (rowid, column, value) edits; a value for config/result is either a junk value or
    the row's own JSON with one field replaced by junk (marked by a ('field', key, junk))."""
    out = []
    for _ in range(draw(st.integers(1, 3))):
        rowid = draw(st.integers(1, N_ROWS))
        column = draw(st.sampled_from(COLUMNS))
        if column in ("config", "result") and draw(st.booleans()):
            out.append((rowid, column, ("field", draw(st.text(max_size=20)), draw(JUNK))))
        else:
            out.append((rowid, column, draw(VALUES)))
    return out


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    db = tmp_path_factory.mktemp("fuzz") / "study.db"
    run_sweep(SPEC, db, runner=study_runner, progress=False)
    return db


def _apply(db: Path, changes) -> None:
    with sqlite3.connect(db) as c:
        for rowid, column, value in changes:
            if isinstance(value, tuple):  # one field of the row's own JSON replaced
                (text,) = c.execute(
                    f"SELECT {column} FROM trials WHERE rowid=?", (rowid,)
                ).fetchone()
                d = json.loads(text) if isinstance(text, str) and text.startswith("{") else {}
                keys = sorted(d)  # mostly a field the row has, so its other fields stay sound
                key = keys[len(value[1]) % len(keys)] if keys and value[1] not in d else value[1]
                d[key] = value[2]
                value = json.dumps(d)
            try:
                c.execute(f"UPDATE trials SET {column}=? WHERE rowid=?", (value, rowid))
            except sqlite3.IntegrityError:  # NOT NULL, a duplicate id: SQLite itself refuses
                pass
    c.close()


def _with(store: Store, read):
    with store:
        return read(store)


_SEEN: set[str] = set()  # the decoded tables the analyses have already run on


def _read_everything(db: Path, out: Path) -> None:
    """Every reader of a study: each gives a result or a SizeupError. The analyses (transfer,
    laws, planner) see only what the store decodes, so each decoded table runs them once: most
    junk is refused and leaves one of a few tables, and the fuzz spends its time on the rows."""

    def reader(**kw):
        return Store(db, readonly=True, **kw)

    table = _tried(lambda: _with(reader(), lambda s: s.to_frame(curves=True).to_csv()))
    _tried(lambda: _with(reader(), lambda s: s.trials()))
    _tried(lambda: _with(Store(db), lambda s: s.trials()))
    _tried(lambda: _with(reader(check=False), lambda s: s.damage()))
    _tried(lambda: _with(reader(check=False), lambda s: s.export(out, curves=True, salvage=True)))
    if table not in _SEEN:
        _SEEN.add(table)
        _tried(lambda: analyze_transfer(db, n_boot=20))
        _tried(lambda: load_study(db))
        _tried(lambda: read_study(db))
    # last, as it writes: the sweep resuming this study (without waiting on 'running' rows)
    _tried(lambda: run_sweep(SPEC, db, runner=study_runner, progress=False, wait=False))


def _tried(read):
    """What ``read`` returns, or None on a SizeupError (any other exception fails the test)."""
    try:
        return read()
    except SizeupError:
        return None


@settings(
    max_examples=int(os.environ.get("FUZZ_N", "400")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(changes=edits())
@example(changes=[(1, "seq", 2**63 - 8)])  # found by the fuzz: the next seq overflowed
def test_any_stored_row_reads_or_is_named(base, changes):
    with tempfile.TemporaryDirectory() as d:
        db = Path(d) / "study.db"
        shutil.copy(base, db)
        _apply(db, changes)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", StoreWarning)
            _read_everything(db, Path(d) / "out.csv")
