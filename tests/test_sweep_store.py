"""The SQLite study store: idempotent queueing, records, resume bookkeeping, export."""

from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import subprocess
import sys
import time

import pytest

from sizeup.config import RunConfig
from sizeup.errors import ConfigError, StoreError
from sizeup.sweep import Store, SweepSpec
from sizeup.sweep.store import Lease
from sizeup.sweep.testing import synthetic_run


def _configs(n=3):
    return SweepSpec(axes={"lr": [2.0**-k for k in range(8, 8 + n)]}).trials()


def test_wal_mode_and_idempotent_add(tmp_path):
    with Store(tmp_path / "s.db") as st:
        assert st.add(_configs()) == 3
        assert st.add(_configs()) == 0  # same ids: nothing new
        assert st.counts()["queued"] == 3
    mode = sqlite3.connect(tmp_path / "s.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_record_done_diverged_failed(tmp_path):
    cfgs = _configs(3)
    with Store(tmp_path / "s.db") as st:
        st.add(cfgs)
        ok = synthetic_run(cfgs[0])
        bad = synthetic_run(cfgs[1].replace(lr=1.0))  # far above the optimum: diverges
        assert bad.diverged
        assert st.record(cfgs[0].trial_id(), ok, wall_time=0.5) == "done"
        assert st.record(cfgs[1].trial_id(), bad) == "diverged"
        assert st.record(cfgs[2].trial_id(), None, error="RuntimeError: boom") == "failed"
        t = st.get(cfgs[0].trial_id())
        assert t.result.train_loss == ok.train_loss  # the loss curve round-trips
        assert math.isclose(t.loss, ok.loss)
        assert st.get(cfgs[2].trial_id()).error.startswith("RuntimeError")
        assert st.counts() == {"queued": 0, "running": 0, "done": 1, "diverged": 1, "failed": 1}
        with pytest.raises(StoreError, match="nope"):
            st.get("nope")


def test_requeue_trials_of_exited_drivers_at_once_and_others_when_their_lease_expires(tmp_path):
    cfgs = _configs(3)
    with Store(tmp_path / "s.db") as st:
        st.add(cfgs)
        assert all(st.claim(c.trial_id()) for c in cfgs)
        assert not st.claim(cfgs[0].trial_id())  # already running: a second claim fails
        # one claimed by a driver that has exited on this host, one by a live process
        # (pytest's parent), one by a driver in another container
        dead = subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
        ).stdout.strip()
        import os
        import socket

        host = socket.gethostname()
        owners = [f"{host}:{dead}", f"{host}:{os.getppid()}", "old-container-7f3a:4242"]
        for c, owner in zip(cfgs, owners):
            st._db.execute("UPDATE trials SET owner=? WHERE id=?", (owner, c.trial_id()))
        assert st.requeue_stale(lease_s=60) == 1  # the exited driver's trial, at once
        assert [c.trial_id() for c in st.queued()] == [cfgs[0].trial_id()]
        assert st.get(cfgs[0].trial_id()).attempts == 1
        st._db.execute("UPDATE trials SET heartbeat=heartbeat-120 WHERE status='running'")
        assert st.requeue_stale(lease_s=60) == 2  # leases expired: whatever host or PID
        assert st.counts()["running"] == 0


def test_force_requeue_and_lease_renewal(tmp_path):
    cfgs = _configs(2)
    with Store(tmp_path / "s.db") as st:
        st.add(cfgs)
        for c in cfgs:
            st.claim(c.trial_id())
        st._db.execute("UPDATE trials SET owner='elsewhere:1', heartbeat=0")
        st._db.execute(
            "UPDATE trials SET owner=?, heartbeat=0 WHERE id=?",
            (f"{socket.gethostname()}:{os.getpid()}", cfgs[0].trial_id()),
        )
        with Lease(st.path, lease_s=0.2):  # renews this driver's trial only
            time.sleep(0.3)
        assert st.requeue_stale(lease_s=0.2) == 1  # the other's expired; ours was renewed
        assert st.requeue_stale(lease_s=60, force=True) == 1  # --requeue-running
        assert st.counts()["queued"] == 2


def test_export_csv_parquet_and_dataframe(tmp_path):
    cfgs = _configs(3)
    with Store(tmp_path / "s.db") as st:
        st.add(cfgs)
        for c in cfgs:
            st.record(c.trial_id(), synthetic_run(c))
        df = st.to_frame(curves=True)
        assert len(df) == 3 and {"lr", "width", "status", "loss", "train_loss"} <= set(df.columns)
        st.export(tmp_path / "t.csv", curves=True)
        st.export(tmp_path / "t.parquet")
        with pytest.raises(ConfigError, match="export"):
            st.export(tmp_path / "t.xlsx")
    import pandas as pd

    csv = pd.read_csv(tmp_path / "t.csv")
    pq = pd.read_parquet(tmp_path / "t.parquet")
    assert list(csv["id"]) == list(pq["id"]) == [c.trial_id() for c in cfgs]
    assert json.loads(csv["train_loss"][0]) == pytest.approx(df["train_loss"][0])
    assert pq["loss"].tolist() == pytest.approx(df["loss"].tolist())


def test_not_a_database(tmp_path):
    p = tmp_path / "junk.db"
    p.write_text("this is not sqlite" * 100)
    with pytest.raises(StoreError, match="junk.db"):
        Store(p)


def test_config_roundtrip_rebuilds_same_trial(tmp_path):
    cfg = RunConfig(width=64, lr=2.0**-9, rule="sp", seed=3)
    with Store(tmp_path / "s.db") as st:
        st.add([cfg])
        (back,) = st.queued()
    assert back == cfg and back.trial_id() == cfg.trial_id()
