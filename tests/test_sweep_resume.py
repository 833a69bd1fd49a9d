"""Kill a running sweep with SIGKILL, restart it: finished trials never run twice, all end done."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from sizeup.sweep import Store, run_sweep
from sizeup.sweep.testing import synthetic_run

SPEC = {"axes": {"width": [32, 64, 128], "lr": {"log2": [-10, -7]}}}  # 12 trials

DRIVER = """
import sys
from sizeup.sweep import run_sweep
from sizeup.sweep.testing import synthetic_run
if __name__ == "__main__":
    run_sweep({spec!r}, sys.argv[1], runner=synthetic_run, workers={workers}, progress=False)
"""


def _finished(path):
    with Store(path) as st:
        return {t.id for t in st.trials(("done", "diverged"))}


@pytest.mark.parametrize("workers", [1, 2])
def test_sigkill_then_resume(tmp_path, workers):
    db, log = tmp_path / "s.db", tmp_path / "log.txt"
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(spec=SPEC, workers=workers))
    env = {**os.environ, "SIZEUP_SYNTH_LOG": str(log), "SIZEUP_SYNTH_SLEEP": "0.25"}
    # a new session: SIGKILL to the group takes the driver and its workers down together,
    # as when a job scheduler kills the job
    proc = subprocess.Popen([sys.executable, str(script), str(db)], env=env, start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        if db.exists() and len(_finished(db)) >= 4:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _finished(db)
    with Store(db) as st:
        counts = st.counts()
    assert 4 <= len(before) < 12, "the kill must land mid-sweep"
    assert counts["running"] >= 1 or counts["queued"] >= 1
    os.environ["SIZEUP_SYNTH_LOG"] = str(log)
    try:
        rep = run_sweep(SPEC, db, runner=synthetic_run, progress=False)
    finally:
        del os.environ["SIZEUP_SYNTH_LOG"]
    assert rep.counts["done"] == 12 and rep.skipped == len(before)
    starts = Counter(
        line.split()[1] for line in log.read_text().splitlines() if line.startswith("start")
    )
    assert all(starts[i] == 1 for i in before)  # no finished trial ran twice
    assert set(starts) == _finished(db)  # every trial ran and ended done
