"""Executors and the driver: same results sequentially and in parallel, failures recorded,
finished trials never rerun."""

from __future__ import annotations

from collections import Counter

import pytest

from sizeup.errors import ConfigError
from sizeup.sweep import LocalExecutor, Store, run_sweep
from sizeup.sweep.testing import synthetic_loss, synthetic_run

SPEC = {
    "base": {"steps": 5},
    "axes": {"width": [32, 64], "lr": {"log2": [-10, -7]}, "rule": ["sp", "mup"]},
}


def _losses(path):
    with Store(path) as st:
        return {t.id: t.loss for t in st.trials()}


def test_sequential_and_pool_agree(tmp_path):
    a = run_sweep(SPEC, tmp_path / "a.db", runner=synthetic_run, progress=False)
    b = run_sweep(SPEC, tmp_path / "b.db", runner=synthetic_run, workers=2, progress=False)
    assert a.ran == b.ran == 16
    assert a.counts["done"] == b.counts["done"] == 16
    la, lb = _losses(tmp_path / "a.db"), _losses(tmp_path / "b.db")
    assert la == lb
    for t in Store(tmp_path / "a.db").trials():
        assert t.loss == pytest.approx(synthetic_loss(t.config))  # what the runner said


def test_crash_and_divergence_are_recorded_and_sweep_goes_on(tmp_path):
    spec = {"axes": {"lr": [2.0**-8, 1.0], "data": ["builtin", "crash"]}}
    rep = run_sweep(spec, tmp_path / "s.db", runner=synthetic_run, progress=False)
    assert rep.counts == {"queued": 0, "running": 0, "done": 1, "diverged": 1, "failed": 2}
    with Store(tmp_path / "s.db") as st:
        failed = st.trials("failed")
        assert all("RuntimeError: synthetic crash" in t.error for t in failed)
        (div,) = st.trials("diverged")
        assert div.config.optimizer.lr == 1.0 and div.result.diverged


def test_dead_worker_is_retried_once_then_failed(tmp_path, monkeypatch):
    log = tmp_path / "log.txt"
    monkeypatch.setenv("SIZEUP_SYNTH_LOG", str(log))
    spec = {"axes": {"lr": [2.0**-9, 2.0**-8, 2.0**-7], "data": ["builtin", "die"]}}
    rep = run_sweep(spec, tmp_path / "s.db", runner=synthetic_run, workers=2, progress=False)
    assert rep.counts["done"] == 3 and rep.counts["failed"] == 3
    with Store(tmp_path / "s.db") as st:
        for t in st.trials("failed"):
            assert t.config.data.source == "die" and "worker process died" in t.error
        die_ids = {t.id for t in st.trials("failed")}
    starts = Counter(
        line.split()[1] for line in log.read_text().splitlines() if line.startswith("start")
    )
    # every dying trial was retried alone once (so it started once or twice in all)
    assert all(1 <= starts[i] <= 2 for i in die_ids)
    ends = Counter(
        line.split()[1] for line in log.read_text().splitlines() if line.startswith("end")
    )
    # good trials all finished; one caught in a broken pool may have run again
    assert len(ends) == 3 and max(ends.values()) <= 2


def test_resume_never_reruns_finished_trials(tmp_path, monkeypatch):
    log = tmp_path / "log.txt"
    monkeypatch.setenv("SIZEUP_SYNTH_LOG", str(log))
    first = run_sweep(SPEC, tmp_path / "s.db", runner=synthetic_run, progress=False)
    again = run_sweep(SPEC, tmp_path / "s.db", runner=synthetic_run, workers=2, progress=False)
    assert first.ran == 16 and again.ran == 0 and again.skipped == 16
    ends = Counter(
        line.split()[1] for line in log.read_text().splitlines() if line.startswith("end")
    )
    assert len(ends) == 16 and set(ends.values()) == {1}
    # growing the spec runs only the new trials
    bigger = {**SPEC, "axes": {**SPEC["axes"], "width": [32, 64, 128]}}
    third = run_sweep(bigger, tmp_path / "s.db", runner=synthetic_run, progress=False)
    assert third.ran == 8 and third.counts["done"] == 24


def test_retry_failed_on_request(tmp_path):
    spec = {"axes": {"data": ["crash"]}}
    run_sweep(spec, tmp_path / "s.db", runner=synthetic_run, progress=False)
    assert run_sweep(spec, tmp_path / "s.db", runner=synthetic_run, progress=False).ran == 0
    rep = run_sweep(
        spec, tmp_path / "s.db", runner=synthetic_run, progress=False, retry_failed=True
    )
    assert rep.ran == 1 and rep.requeued == 1
    assert Store(tmp_path / "s.db").get(Store(tmp_path / "s.db").trials()[0].id).attempts == 2


def test_bad_executor_arguments(tmp_path):
    with pytest.raises(ConfigError, match="workers"):
        LocalExecutor(workers=0)
    with pytest.raises(ConfigError, match="executor"):
        run_sweep(SPEC, tmp_path / "unused.db", executor="slurm", runner=synthetic_run)
    # every argument is checked before the store is touched: no file is left behind
    assert not (tmp_path / "unused.db").exists()


def test_bad_spec_fails_before_the_store_is_touched(tmp_path):
    with pytest.raises(ConfigError, match="lr"):
        run_sweep({"axes": {"lr": [0.0]}}, tmp_path / "s.db", runner=synthetic_run)
    assert not (tmp_path / "s.db").exists()


def test_progress_bar_runs(tmp_path, capsys):
    run_sweep(SPEC, tmp_path / "s.db", runner=synthetic_run, progress=True)
    assert "16/16" in capsys.readouterr().err  # progress goes to stderr, plain lines off a terminal


def test_only_the_given_specs_trials_run(tmp_path):
    other = {"axes": {"lr": [2.0**-9, 2.0**-8, 2.0**-7]}}
    with Store(tmp_path / "s.db") as st:
        from sizeup.sweep import load_spec

        st.add(load_spec(other).trials())  # queued by an earlier, wider spec; never run
    rep = run_sweep(
        {"axes": {"lr": [2.0**-8]}}, tmp_path / "s.db", runner=synthetic_run, progress=False
    )
    assert rep.ran == 1 and rep.counts["queued"] == 2


def test_largest_first_order(tmp_path, monkeypatch):
    log = tmp_path / "log.txt"
    monkeypatch.setenv("SIZEUP_SYNTH_LOG", str(log))
    run_sweep(
        {"axes": {"width": [32, 128, 64]}},
        tmp_path / "s.db",
        runner=synthetic_run,
        progress=False,
        order="largest_first",
    )
    with Store(tmp_path / "s.db") as st:
        width = {t.id: t.config.model.width for t in st.trials()}
    started = [
        width[line.split()[1]] for line in log.read_text().splitlines() if line.startswith("start")
    ]
    assert started == [128, 64, 32]
    with pytest.raises(ConfigError, match="order"):
        run_sweep(
            {"axes": {"width": [32]}}, tmp_path / "s.db", runner=synthetic_run, order="random"
        )


def test_an_unguarded_script_gets_one_line_not_a_flood(tmp_path):
    # Worker processes re-import the main script: a sweep at module level would start again
    # in every worker (a screen of multiprocessing tracebacks each). sizeup says it once.
    import subprocess
    import sys

    script = tmp_path / "sweep_script.py"
    script.write_text(
        "from sizeup.sweep import run_sweep\n"
        "from sizeup.sweep.testing import synthetic_run\n"
        f"run_sweep({{'axes': {{'lr': [1e-3, 2e-3]}}}}, {str(tmp_path / 's.db')!r}, "
        "runner=synthetic_run, workers=2, progress=False)\n"
    )
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and r.stderr.count("Traceback") == 1
    assert 'if __name__ == "__main__":' in r.stderr
    assert not (tmp_path / "s.db").exists()


def test_workers_print_each_sizeup_warning_kind_once():
    """A worker shows a BatchTransferWarning for its first trial only (a batch study would
    otherwise print one per trial between the progress lines); other warnings are untouched."""
    import warnings

    from sizeup.optim import BatchTransferWarning, DecayWarning
    from sizeup.sweep.executors import _show_sizeup_warnings_once

    # record=True: what reaches the display lands in `shown` (and showwarning is restored after)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        _show_sizeup_warnings_once()
        _show_sizeup_warnings_once()  # idempotent: Ray calls it for every task
        for lr in (1e-3, 2e-3, 4e-3):
            warnings.warn(f"batch transfer: lr {lr}", BatchTransferWarning, stacklevel=1)
            warnings.warn(f"decay {lr}", DecayWarning, stacklevel=1)
            warnings.warn(f"someone else's {lr}", UserWarning, stacklevel=1)
    text = [str(w.message) for w in shown]
    assert [t for t in text if t.startswith("batch transfer")] == [
        "batch transfer: lr 0.001 [first of its kind in this worker; later trials' not repeated]"
    ]
    assert len([t for t in text if t.startswith("decay")]) == 1
    assert len([t for t in text if t.startswith("someone else's")]) == 3


# issue 23, item 12: a worker's death is said with its cause, not only counted in attempts
def test_a_killed_worker_s_cause_is_recorded(tmp_path, monkeypatch):
    monkeypatch.setenv("SIZEUP_SYNTH_LOG", str(tmp_path / "log.txt"))

    def sweep(name, sources):
        spec = {"axes": {"lr": [2.0**-8], "data": sources}}
        rep = run_sweep(spec, tmp_path / name, runner=synthetic_run, workers=2, progress=False)
        with Store(tmp_path / name) as st:
            return rep, {t.config.data.source: t for t in st.trials()}

    # dies on its first start (SIGKILL, as the out-of-memory killer), finishes when run again
    # alone: done, and why it took two attempts is in its error column
    rep, trials = sweep("once.db", ["builtin", "kill_once"])
    once = trials["kill_once"]
    assert once.status == "done" and once.attempts == 2 and not rep.failed
    assert "attempt 1: a worker of its pool exited with signal 9 (SIGKILL)" in once.error
    assert any("signal 9" in c for c in rep.deaths[once.id])
    # dies every time: failed, with its own worker's exit status
    rep, trials = sweep("dead.db", ["kill", "die"])
    killed, died = trials["kill"], trials["die"]
    # The forkserver reports 255 when it lost a child's status (CPython's
    # multiprocessing.popen_forkserver.Popen.poll on EOF): seen once in 2 runs of the suite
    # under load, for the SIGKILLed worker. Either is its own worker's exit, named.
    sigkill = ("its worker exited with signal 9 (SIGKILL)", "its worker exited with code 255")
    assert killed.status == "failed" and any(c in killed.error for c in sigkill), killed.error
    assert died.status == "failed" and "its worker exited with code 3" in died.error
    assert set(rep.failed) == {killed.id, died.id}
    assert any(c.split("with ")[1] in rep.failed[killed.id] for c in sigkill)


def test_sweep_exits_1_and_names_the_failed_trials(tmp_path):
    # issue 23, item 12: `sizeup sweep` exited 0 with a failed trial in the study
    import numpy as np
    import yaml
    from test_inputs import cli

    np.full(2000, 60000, dtype=np.uint16).tofile(tmp_path / "bad.bin")  # ids past the vocab
    base = dict(width=16, base_width=16, depth=1, head_dim=8, seq_len=16, batch_size=4, steps=2)
    spec = {"base": {**base, "eval_batches": 1}, "axes": {"data": ["builtin", "bad.bin"]}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    r = cli("sweep", "spec.yaml", "--store", "s.db", cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr, (r.stdout, r.stderr)
    with Store(tmp_path / "s.db") as st:
        (bad,) = st.trials("failed")
        assert len(st.trials("done")) == 1  # the good trial still ran
    assert "1 trial(s) of this spec failed" in r.stdout and "--retry-failed" in r.stdout
    assert f"  {bad.id}: DataError: data='bad.bin': token id 60000 is >= vocab_size" in r.stdout
    # run again: nothing to run, the failed trial is still there, still exit 1
    again = cli("sweep", "spec.yaml", "--store", "s.db", cwd=tmp_path)
    assert again.returncode == 1 and bad.id in again.stdout
