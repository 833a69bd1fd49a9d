"""The Ray executor: same losses as the local executor for the same seeds; dead workers are
retried once then recorded failed; every Ray flag is checked before the store is touched (issue
23, item 9): a number out of range, an --address nothing answers at and a --ray-host that is not
this machine's are one line and exit code 2 without starting Ray, and a request no node can
satisfy is refused before the store is created."""

from __future__ import annotations

import glob
import json
import os
import time

import pytest
from test_inputs import assert_named, cli

from sizeup.sweep import RayExecutor, Store, run_sweep
from sizeup.sweep.testing import synthetic_run

ray = pytest.importorskip("ray", reason='the Ray executor needs pip install "sizeup[ray]"')

# a tiny real GPT: two lrs x two seeds, a few seconds each
SPEC = {
    "base": {
        "width": 32,
        "depth": 1,
        "seq_len": 32,
        "batch_size": 4,
        "steps": 8,
        "eval_batches": 1,
        "rule": "mup",
    },
    "axes": {"lr": [2.0**-8, 2.0**-6], "seed": [0, 1]},
}


@pytest.fixture(scope="module")
def ray_local():
    RayExecutor(local_cpus=2)._init()  # the local cluster sizeup starts (loopback only)
    yield
    ray.shutdown()


def _ray_listening_addresses() -> set[str]:
    """Local addresses of every TCP socket a Ray process listens on (from /proc/net/tcp*)."""
    listen = {}
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(f).read().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A":  # TCP_LISTEN
                listen[cols[9]] = cols[1].rsplit(":", 1)[0]
    found = set()
    for fd in glob.glob("/proc/[0-9]*/fd/*"):
        try:
            target = os.readlink(fd)
            cmd = open(f"/proc/{fd.split('/')[2]}/cmdline").read()
        except OSError:
            continue
        inode = target[len("socket:[") : -1] if target.startswith("socket:[") else None
        if inode in listen and "ray" in cmd:
            found.add(listen[inode])
    return found


LOOPBACK = {"0100007F", "0000000000000000FFFF00000100007F", "00000000000000000000000001000000"}


@pytest.mark.slow
def test_local_cluster_listens_on_loopback_only(ray_local):
    addresses = _ray_listening_addresses()
    assert addresses, "found no socket of the Ray processes"
    assert addresses <= LOOPBACK, addresses  # 127.0.0.1, ::ffff:127.0.0.1 or ::1


@pytest.mark.slow
def test_an_impossible_request_fails_with_the_reason(tmp_path, ray_local):
    from sizeup.errors import ConfigError

    with pytest.raises(ConfigError, match="gpus_per_trial.*no node of this Ray cluster has 1 GPU"):
        run_sweep(SPEC, tmp_path / "s.db", executor="ray", num_gpus=1, progress=False)
    assert not (tmp_path / "s.db").exists()  # refused before the store was created


@pytest.mark.slow
def test_ray_matches_local(tmp_path, ray_local):
    run_sweep(SPEC, tmp_path / "local.db", progress=False)
    rep = run_sweep(SPEC, tmp_path / "ray.db", executor=RayExecutor(), progress=False)
    assert rep.counts["done"] == 4
    with Store(tmp_path / "local.db") as a, Store(tmp_path / "ray.db") as b:
        la = {t.id: t.result.train_loss for t in a.trials()}
        lb = {t.id: t.result.train_loss for t in b.trials()}
    assert la.keys() == lb.keys()
    for k in la:
        assert la[k] == lb[k]  # bit for bit: same seed, one thread, same code path
    assert len({tuple(v) for v in la.values()}) == 4  # the seeds and lrs really differ


@pytest.mark.slow
def test_ray_records_crashes_and_dead_workers(tmp_path, ray_local):
    spec = {"axes": {"lr": [2.0**-8], "data": ["builtin", "crash", "die"]}}
    rep = run_sweep(spec, tmp_path / "s.db", executor="ray", runner=synthetic_run, progress=False)
    assert rep.counts["done"] == 1 and rep.counts["failed"] == 2
    with Store(tmp_path / "s.db") as st:
        errors = {t.config.data.source: t.error for t in st.trials("failed")}
    assert "synthetic crash" in errors["crash"]
    assert "ray task failed (tried 2x)" in errors["die"]
    assert st_attempts(tmp_path / "s.db", "die") == 2


def st_attempts(path, data):
    with Store(path) as st:
        return next(t.attempts for t in st.trials() if t.config.data.source == data)


# (flags, the field the refusal names): each refused before Ray starts or the store is opened
BAD_FLAGS = [
    (["--gpus-per-trial", "nan"], "gpus_per_trial"),
    (["--gpus-per-trial", "-1"], "gpus_per_trial"),
    (["--cpus-per-trial", "inf"], "cpus_per_trial"),
    (["--cpus-per-trial", "0"], "cpus_per_trial"),
    (["--workers", "0"], "workers"),
    (["--address", "127.0.0.1:1"], "address"),  # nothing listens there: refused at once
    (["--address", "not an address"], "address"),
    (["--address", "ray://127.0.0.1:99999"], "address"),
    (["--ray-host", "999.1.1.1"], "ray_host"),
    (["--ray-host", "no-such-host.invalid"], "ray_host"),
    (["--ray-host", "192.0.2.1"], "ray_host"),  # a valid address (TEST-NET-1), not this machine's
    (["--ray-host", "127.0.0.1", "--address", "auto"], "ray_host"),
]


@pytest.mark.parametrize("flags,field", BAD_FLAGS, ids=[" ".join(f) for f, _ in BAD_FLAGS])
def test_bad_ray_flags_are_one_line_before_the_store_is_created(tmp_path, flags, field):
    (tmp_path / "spec.json").write_text(json.dumps(SPEC))
    t0 = time.perf_counter()
    r = cli(
        "sweep", tmp_path / "spec.json", "--store", tmp_path / "s.db", "--executor", "ray", *flags
    )
    assert_named(r, f"{field}=")
    assert time.perf_counter() - t0 < 30  # no Ray retries, no cluster start
    assert not (tmp_path / "s.db").exists()


def test_bad_ray_flags_leave_an_existing_store_unchanged(tmp_path):
    (tmp_path / "spec.json").write_text(json.dumps(SPEC))
    Store(tmp_path / "s.db").close()
    before = (tmp_path / "s.db").read_bytes()
    r = cli(
        "sweep",
        tmp_path / "spec.json",
        "--store",
        tmp_path / "s.db",
        "--executor",
        "ray",
        "--gpus-per-trial",
        "nan",
    )
    assert_named(r, "gpus_per_trial=nan")
    assert (tmp_path / "s.db").read_bytes() == before


def test_ray_flags_without_the_ray_executor_are_refused(tmp_path):
    (tmp_path / "spec.json").write_text(json.dumps(SPEC))
    r = cli("sweep", tmp_path / "spec.json", "--store", tmp_path / "s.db", "--address", "auto")
    assert_named(r, "address=", "--executor ray")
    assert not (tmp_path / "s.db").exists()


def test_a_ray_host_of_this_machine_is_accepted_without_ray():
    from sizeup.sweep.executors import check_address, local_address

    assert local_address("127.0.0.1") == "127.0.0.1"
    assert local_address("localhost") in ("127.0.0.1", "::1")
    check_address("auto")  # Ray finds the cluster itself
