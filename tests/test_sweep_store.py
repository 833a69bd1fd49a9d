"""The SQLite study store: idempotent queueing, records, resume bookkeeping, export."""

from __future__ import annotations

import json
import math
import sqlite3
import subprocess
import sys

import pytest

from sizeup.config import RunConfig
from sizeup.errors import ConfigError, StoreError
from sizeup.sweep import Store, SweepSpec
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


def test_requeue_only_trials_of_dead_drivers(tmp_path):
    cfgs = _configs(2)
    with Store(tmp_path / "s.db") as st:
        st.add(cfgs)
        st.mark_running(cfgs[0].trial_id())
        st.mark_running(cfgs[1].trial_id())
        # one claimed by a driver that has exited, one by a live process (pytest's parent)
        dead = subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
        ).stdout.strip()
        import os
        import socket

        host = socket.gethostname()
        st._db.execute(
            "UPDATE trials SET owner=? WHERE id=?", (f"{host}:{dead}", cfgs[0].trial_id())
        )
        st._db.execute(
            "UPDATE trials SET owner=? WHERE id=?", (f"{host}:{os.getppid()}", cfgs[1].trial_id())
        )
        assert st.requeue_interrupted() == 1
        assert [c.trial_id() for c in st.queued()] == [cfgs[0].trial_id()]
        assert st.get(cfgs[0].trial_id()).attempts == 1


def test_export_csv_parquet_and_dataframe(tmp_path):
    cfgs = _configs(3)
    with Store(tmp_path / "s.db") as st:
        st.add(cfgs)
        for c in cfgs:
            st.record(c.trial_id(), synthetic_run(c))
        df = st.to_dataframe(curves=True)
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
