"""Many drivers on one study, drivers that vanish, stores that rot: every trial runs exactly
once, nothing finished is lost, and every failure is named (issue "Hardening")."""

from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter

import pytest

from sizeup.errors import StoreError
from sizeup.sweep import Store, run_sweep
from sizeup.sweep.testing import synthetic_run

SPEC = {"axes": {"width": [32, 64, 128, 256], "lr": {"log2": [-10, -8]}}}  # 12 trials

DRIVER = """
import sys
from sizeup.sweep import run_sweep
from sizeup.sweep.testing import synthetic_run
if __name__ == "__main__":
    run_sweep({spec!r}, sys.argv[1], runner=synthetic_run, progress=False, lease_s={lease})
"""


def _starts(log):
    lines = log.read_text().splitlines() if log.exists() else []
    return Counter(line.split()[1] for line in lines if line.startswith("start"))


def _drivers(tmp_path, n, lease=60.0, sleep="0.05"):
    db, log = tmp_path / "s.db", tmp_path / "log.txt"
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(spec=SPEC, lease=lease))
    env = {**os.environ, "SIZEUP_SYNTH_LOG": str(log), "SIZEUP_SYNTH_SLEEP": sleep}
    procs = [
        subprocess.Popen([sys.executable, str(script), str(db)], env=env, start_new_session=True)
        for _ in range(n)
    ]
    return db, log, procs


@pytest.mark.parametrize("n", [2, 4])
def test_many_drivers_split_the_work_and_none_runs_a_trial_twice(tmp_path, n):
    db, log, procs = _drivers(tmp_path, n)
    assert all(p.wait(timeout=120) == 0 for p in procs)
    starts = _starts(log)
    assert len(starts) == 12 and set(starts.values()) == {1}, starts
    with Store(db) as st:
        assert st.counts()["done"] + st.counts()["diverged"] == 12
        assert {t.attempts for t in st.trials()} == {1}


def test_a_killed_driver_s_trial_runs_again_once(tmp_path):
    # two drivers; one is killed (SIGKILL, with its whole process group) in the middle of a
    # trial; the other finishes the study, re-running the killed trial exactly once
    db, log, (victim, survivor) = _drivers(tmp_path, 2, lease=1.0, sleep="0.4")
    deadline = time.time() + 60
    victim_started = False
    while time.time() < deadline and not victim_started:
        time.sleep(0.05)
        # the victim holds a trial and has started running it (its "start" line is written)
        mine = {tid for tid, o in _running_owners(db) if o.endswith(f":{victim.pid}")}
        victim_started = bool(mine & set(_starts(log)))
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    assert survivor.wait(timeout=120) == 0
    starts = _starts(log)
    assert len(starts) == 12
    assert sorted(starts.values()).count(2) == 1 and max(starts.values()) == 2, starts
    with Store(db) as st:
        assert st.counts()["running"] == st.counts()["queued"] == 0
        assert max(t.attempts for t in st.trials()) == 2


def _running_owners(db) -> list[tuple[str, str]]:
    """(id, owner) of the running trials; [] while the drivers are still creating the file."""
    try:
        with Store(db, readonly=True, check=False) as st:
            rows = st._db.execute("SELECT id, owner FROM trials WHERE status='running'").fetchall()
    except (sqlite3.OperationalError, StoreError):
        return []
    return [(tid, owner) for tid, owner in rows if owner]


def _finished_study(tmp_path):
    db = tmp_path / "done.db"
    run_sweep(SPEC, db, runner=synthetic_run, progress=False)
    return db


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "sizeup", *args], capture_output=True, text=True, timeout=120
    )


def test_foreign_and_reused_owners_are_requeued_after_their_lease(tmp_path):
    db = _finished_study(tmp_path)
    copy = tmp_path / "copy.db"
    shutil.copy(db, copy)
    with Store(copy) as st:
        ids = [t.id for t in st.trials()][:2]
        # a container that is gone, and this machine's init process (a live, unrelated PID)
        import socket

        for tid, owner in zip(ids, ["old-container-7f3a:4242", f"{socket.gethostname()}:1"]):
            st._db.execute(
                "UPDATE trials SET status='running', owner=?, finished=NULL, heartbeat=? "
                "WHERE id=?",
                (owner, time.time(), tid),
            )
    spec = tmp_path / "s.yaml"
    spec.write_text("axes:\n  width: [32, 64, 128, 256]\n  lr: {log2: [-10, -8]}\n")
    # fresh leases: not requeued; without waiting the command says so and exits non-zero
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            "from sizeup.cli import main; main()",
            "sweep",
            str(spec),
            "--store",
            str(copy),
            "--no-wait",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert r.returncode == 1 and "2 trial(s) of this spec are unfinished" in r.stdout
    with Store(copy) as st:
        assert st.counts()["running"] == 2
        st._db.execute("UPDATE trials SET heartbeat=heartbeat-3600 WHERE status='running'")
        assert st.requeue_stale() == 2  # expired: requeued whatever host or PID


def test_requeue_running_forces_it(tmp_path):
    db = _finished_study(tmp_path)
    with Store(db) as st:
        tid = st.trials()[0].id
        st._db.execute(
            "UPDATE trials SET status='running', owner='h:7', heartbeat=? WHERE id=?",
            (time.time(), tid),
        )
    rep = run_sweep(SPEC, db, runner=synthetic_run, progress=False, requeue_running=True)
    assert rep.requeued == 1 and rep.ran == 1 and rep.unfinished == 0


def test_attempts_count_every_try_of_a_dying_worker(tmp_path):
    spec = {"base": {"data": "die"}, "axes": {"lr": [1e-3]}}
    rep = run_sweep(spec, tmp_path / "s.db", runner=synthetic_run, workers=2, progress=False)
    with Store(tmp_path / "s.db") as st:
        (t,) = st.trials()
    assert rep.counts["failed"] == 1 and "tried 2x" in t.error
    assert t.attempts == 2


def _corrupt(path):
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 8192] = random.Random(0).randbytes(8192)  # deterministic garbage
    path.write_bytes(bytes(data))


def test_a_damaged_store_is_named_and_export_salvages_it(tmp_path):
    db = _finished_study(tmp_path)
    with Store(db) as st:  # make the file big enough that half-way is inside the trials
        st._db.execute("VACUUM")
    _corrupt(db)
    spec = tmp_path / "s.yaml"
    spec.write_text("axes:\n  width: [32, 64, 128, 256]\n  lr: {log2: [-10, -8]}\n")
    r = _cli("sweep", str(spec), "--store", str(db))
    assert r.returncode == 2 and "is damaged" in r.stderr and "Traceback" not in r.stderr
    r = _cli("transfer", str(db))
    assert r.returncode == 2 and "is damaged" in r.stderr and "Traceback" not in r.stderr
    out = tmp_path / "salvaged.csv"
    r = _cli("sweep", str(spec), "--store", str(db), "--export", str(out))
    assert r.returncode == 1 and "salvaged into" in r.stdout, r.stdout + r.stderr
    assert out.exists()


def test_paths_with_hash_or_question_mark_open_that_very_file(tmp_path):
    for name in ("a#b.db", "c?d.db"):
        db = tmp_path / name
        run_sweep(SPEC, db, runner=synthetic_run, progress=False)
        with Store(db, readonly=True) as st:
            assert len(st.trials()) == 12
        # unquoted, "file:a#b.db?mode=ro" would have opened (and created) "a" read-write
        names = {p.name.removesuffix("-wal").removesuffix("-shm") for p in tmp_path.iterdir()}
        assert names <= {"a#b.db", "c?d.db"}


def test_a_bad_argument_touches_no_store(tmp_path):
    from sizeup.errors import ConfigError

    with pytest.raises(ConfigError, match="executor"):
        run_sweep(SPEC, tmp_path / "unused.db", executor="nope", runner=synthetic_run)
    assert not (tmp_path / "unused.db").exists()
    r = _cli("sweep", "nope.yaml", "--store", str(tmp_path / "x.db"))
    assert r.returncode == 2 and not (tmp_path / "x.db").exists()
