"""A study store that is damaged, locked, read-only or on a full disk (issue 23, Store 1-5):
every command ends in one line naming the file and what to do (exit 2) or reads what it can
with one warning line; never a traceback, never a change to the store; and every reader leaves
the study's folder exactly as it found it (no -wal/-shm files).

CLI checks run the real command in a subprocess (tests/test_inputs.py's ``cli``); the lock and
the full disk are reproduced in process through ``main`` (a 30 s busy timeout and a real full
disk are out of reach of a test), with the second process holding the lock a real one.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from test_inputs import assert_named, cli

from sizeup.cli import main
from sizeup.errors import StoreError
from sizeup.sweep import Store, run_sweep
from sizeup.sweep import store as store_module
from sizeup.sweep.testing import synthetic_run

SPEC = {
    "base": {"steps": 5, "head_dim": 16},
    "axes": {"width": [32, 64, 128, 256], "lr": {"log2": [-13, -5], "step": 2}},
}  # 20 trials; the optimum 2^-8 inside the grid at every width
SPEC_YAML = (
    "base: {steps: 5, head_dim: 16}\naxes:\n  width: [32, 64, 128, 256]\n"
    "  lr: {log2: [-13, -5], step: 2}\n"
)
PLAN = ["--tokens", "1e9", "--width", "256", "--depth", "4", "--head-dim", "16"]


def study_runner(cfg):
    """synthetic_run with params and FLOPs, so the laws' fits have something to fit."""
    r = synthetic_run(cfg)
    r.params = 12 * cfg.model.depth * cfg.model.width**2
    r.flops = 6.0 * r.params * r.tokens
    return r


@pytest.fixture(scope="module")
def intact(tmp_path_factory):
    """A finished study, closed (no -wal beside it), copied by each test that changes it."""
    db = tmp_path_factory.mktemp("intact") / "study.db"
    run_sweep(SPEC, db, runner=study_runner, progress=False)
    assert sorted(p.name for p in db.parent.iterdir()) == ["study.db"]
    return db


def _copy(intact: Path, tmp_path: Path, name: str = "study.db") -> Path:
    d = tmp_path / "d"
    d.mkdir(exist_ok=True)
    shutil.copy(intact, d / name)
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC_YAML)
    return d / name


def _readers(db: Path, tmp_path: Path) -> dict[str, list]:
    """Every command that only reads a study."""
    return {
        "transfer": ["transfer", db],
        "fit hp": ["fit", "hp", db, "--out", tmp_path / "fit"],
        "plan": ["plan", "--from-study", db, *PLAN],
    }


def _edit(db: Path, sql: str, *args) -> None:
    with sqlite3.connect(db) as c:
        c.execute(sql, args)
    c.close()


def _one_warning(r, *words):
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert "Traceback" not in r.stderr and len(lines) == 1, r.stderr
    assert lines[0].startswith("warning:"), lines
    for w in words:
        assert w in lines[0], lines[0]


# --- 1. damage quick_check cannot see, and rows that do not decode -----------------------
def test_a_truncated_file_is_named_and_export_salvages_it(intact, tmp_path):
    db = _copy(intact, tmp_path)
    os.truncate(db, db.stat().st_size - 1000)  # a half-copied file
    spec = tmp_path / "spec.yaml"
    for _name, args in {"sweep": ["sweep", spec, "--store", db], **_readers(db, tmp_path)}.items():
        r = cli(*args)
        assert_named(r, "study.db", "shorter than", "--export")
    out = tmp_path / "salvaged.csv"
    r = cli("sweep", spec, "--store", db, "--export", out)  # what the line says to do works
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "salvaged into" in r.stdout and out.exists(), r.stdout
    assert 0 < len(out.read_text().splitlines()) - 1 < 20


BAD_ROWS = [
    ("result", "[1,2]"),
    ("config", "null"),
    ("loss", "abc"),
    ("attempts", "many"),
    ("result", '{"final_val_loss": "low"}'),
    ("status", "finished"),
]


@pytest.mark.parametrize("column,value", BAD_ROWS)
def test_a_bad_row_is_left_out_by_readers_and_named_by_the_sweep(intact, tmp_path, column, value):
    db = _copy(intact, tmp_path)
    _edit(db, f"UPDATE trials SET {column}=? WHERE rowid=7", value)
    for name, args in _readers(db, tmp_path).items():
        r = cli(*args)
        assert r.returncode == 0, (name, r.stderr)
        _one_warning(r, "study.db", "1 trial row", column)
    spec = tmp_path / "spec.yaml"
    r = cli("sweep", spec, "--store", db)
    assert_named(r, "study.db", "rowid 7", column, "--export")
    out = tmp_path / "salvaged.csv"
    r = cli("sweep", spec, "--store", db, "--export", out)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "salvaged into" in r.stdout and "1 row(s) unreadable" in r.stdout, r.stdout
    assert len(out.read_text().splitlines()) == 1 + 19


# --- 2. a store another process holds ---------------------------------------------------
HOLD = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(120)
"""


def test_a_locked_store_is_named_in_one_line(intact, tmp_path, monkeypatch, capsys):
    db = _copy(intact, tmp_path)
    monkeypatch.setattr(store_module, "BUSY_S", 0.2)  # the user's default waits 30 s
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(db)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(SystemExit) as e:
            main(["sweep", str(tmp_path / "spec.yaml"), "--store", str(db)])
        assert e.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "study.db" in err[0] and "another process" in err[0], err
        with pytest.raises(StoreError, match="locked by another process"):
            with Store(db) as st:
                st.record(st.trials()[0].id, None, "x")
        # a reader is not held up: WAL lets it read while the lock is held
        main(["transfer", str(db)])
        assert "Traceback" not in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()


# --- 3. a read-only file, a read-only folder --------------------------------------------
def _immutable(path: Path, on: bool) -> None:
    """chattr +i: refuses writes even to root (chmod does not, and this sandbox runs as root)."""
    r = subprocess.run(["chattr", "+i" if on else "-i", str(path)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"chattr is not available here: {r.stderr.strip()}")


def test_a_read_only_store_refuses_writers_and_serves_readers(intact, tmp_path):
    db = _copy(intact, tmp_path)
    before = db.read_bytes()
    _immutable(db, True)
    try:
        r = cli("sweep", tmp_path / "spec.yaml", "--store", db)
        assert_named(r, "study.db", "read-only")
        assert sorted(p.name for p in db.parent.iterdir()) == ["study.db"]
        _immutable(db.parent, True)  # and a read-only folder: no -wal/-shm can be made
        try:
            for name, args in _readers(db, tmp_path).items():
                r = cli(*args)
                assert r.returncode == 0 and not r.stderr.strip(), (name, r.stderr)
        finally:
            _immutable(db.parent, False)
    finally:
        _immutable(db, False)
    assert db.read_bytes() == before
    assert sorted(p.name for p in db.parent.iterdir()) == ["study.db"]


def test_a_wal_in_a_read_only_folder_is_named(intact, tmp_path):
    """A sweep killed in a read-only folder's study leaves a -wal (recent trials) that SQLite
    can read only with a -shm file it cannot make there: one line saying to copy both."""
    db = _copy(intact, tmp_path)
    writer = subprocess.run(
        [sys.executable, "-c", KILLED, str(db)], capture_output=True, text=True, timeout=60
    )
    assert writer.returncode == 0, writer.stderr
    (db.parent / "study.db-shm").unlink()
    _immutable(db.parent, True)
    try:
        with pytest.raises(StoreError, match="cannot be opened.*-wal file.*copy the study"):
            Store(db, readonly=True)
    finally:
        _immutable(db.parent, False)


KILLED = """
import os, sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA wal_autocheckpoint=0")
db.execute("UPDATE trials SET error='late' WHERE rowid=1")
os._exit(0)  # killed: its -wal and -shm stay
"""


def test_a_study_on_a_read_only_mount_is_read(intact, tmp_path):
    """The issue's case itself: a read-only bind mount (in a private mount namespace)."""
    db = _copy(intact, tmp_path)
    d = db.parent
    script = (
        f"mount --bind {d} {d} && mount -o remount,ro,bind {d} && "
        f"{sys.executable} -m sizeup transfer {db}"
    )
    r = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True)
    if "mount" in r.stderr and r.returncode != 0 and "sizeup" not in r.stderr:
        pytest.skip(f"no private read-only mount here: {r.stderr.strip()}")
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr
    assert "optimal lr" in r.stdout


# --- 4. a full disk -----------------------------------------------------------------------
def test_a_full_disk_is_named_and_nothing_is_half_recorded(tmp_path, monkeypatch, capsys):
    """SQLite's max_page_count makes the file unable to grow, which SQLite reports exactly as
    a full disk (SQLITE_FULL, 'database or disk is full'): the same error path."""
    db = tmp_path / "study.db"
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC_YAML)
    record = Store.record

    def filling(self, *args, **kwargs):  # the disk fills up once the trials run
        if not hasattr(self, "_full"):
            self._full = self._db.execute("PRAGMA page_count").fetchone()[0] + 2
            self._db.execute(f"PRAGMA max_page_count={self._full}")
        return record(self, *args, **kwargs)

    monkeypatch.setattr(Store, "record", filling)
    monkeypatch.setattr("sizeup.sweep.driver.default_runner", study_runner)
    with pytest.raises(SystemExit) as e:
        main(["sweep", str(spec), "--store", str(db)])
    assert e.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "study.db" in err[0] and "full" in err[0], err
    monkeypatch.setattr(Store, "record", record)
    with Store(db, readonly=True) as st:
        assert [r[0] for r in st._db.execute("PRAGMA integrity_check")] == ["ok"]
        trials = st.trials()
        assert len(trials) == 20
        assert all((t.result is None) == (t.status in ("queued", "running")) for t in trials)
        assert any(t.status == "running" for t in trials)  # the one that could not be recorded
    # space again: the trial left running (by this very process) runs again with the rest
    run_sweep(SPEC, db, runner=study_runner, progress=False, requeue_running=True)
    with Store(db, readonly=True) as st:
        assert st.counts()["done"] + st.counts()["diverged"] == 20


# --- 5. readers create no file; sweep keeps out of other SQLite files --------------------
def test_readers_leave_the_folder_unchanged(intact, tmp_path):
    db = _copy(intact, tmp_path)
    listing = sorted(p.name for p in db.parent.iterdir())
    for name, args in _readers(db, tmp_path).items():
        r = cli(*args)
        assert r.returncode == 0, (name, r.stderr)
        assert sorted(p.name for p in db.parent.iterdir()) == listing, name
    out = tmp_path / "t.csv"
    r = cli("sweep", tmp_path / "spec.yaml", "--store", db, "--export", out)
    assert r.returncode == 0 and out.exists(), r.stderr
    assert sorted(p.name for p in db.parent.iterdir()) == listing
    with Store(db, readonly=True) as st:
        assert len(st.to_frame()) == 20
        assert sorted(p.name for p in db.parent.iterdir()) == listing


def test_a_reader_beside_a_running_sweep_reads_its_latest_trials(intact, tmp_path):
    db = _copy(intact, tmp_path)
    with Store(db) as writer:  # a driver with the study open: its -wal holds new rows
        writer._db.execute("PRAGMA wal_autocheckpoint=0")
        tid = writer.trials()[0].id
        writer._db.execute("UPDATE trials SET status='failed' WHERE id=?", (tid,))
        with Store(db, readonly=True) as st:
            assert st.counts()["failed"] == 1


def test_sweep_keeps_out_of_an_sqlite_file_that_is_not_a_study(tmp_path):
    other = tmp_path / "notes.db"
    with sqlite3.connect(other) as c:
        c.execute("CREATE TABLE notes(text)")
        c.execute("INSERT INTO notes VALUES ('mine')")
    c.close()
    before = other.read_bytes()
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC_YAML)
    r = cli("sweep", spec, "--store", other)
    assert_named(r, "notes.db", "not a sizeup study", "notes")
    assert other.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db", "spec.yaml"]
    empty = tmp_path / "empty.db"
    empty.touch()  # an empty file is a new study
    run_sweep(SPEC, empty, runner=study_runner, progress=False)
    with Store(empty, readonly=True) as st:
        assert len(st) == 20


def test_the_python_api_names_the_same_problems(intact, tmp_path):
    db = _copy(intact, tmp_path)
    _edit(db, "UPDATE trials SET config=? WHERE rowid=3", '{"width": "wide"}')
    with Store(db) as st, pytest.raises(StoreError, match="rowid 3.*config"):
        st.trials()
    with Store(db, readonly=True) as st:
        with pytest.warns(store_module.StoreWarning, match="1 trial row"):
            assert len(st.to_frame()) == 19
        assert len(st.trials(salvage=True)) == 19 and st.unreadable == 1
