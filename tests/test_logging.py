"""Metrics loggers: a TensorBoard event file reads back (with tensorboard's own reader) with the
logged scalars; a W&B offline run folder holds the same history; the JSONL log has every
number exactly; sweeps log each trial under its id; a bad --log spec is refused by name. Through
`sizeup train`, every validation loss (the initial one, each periodic one, the final one) reaches
the JSONL file and TensorBoard once, a run killed and resumed from a checkpoint included."""

from __future__ import annotations

import json
import signal
import struct
import subprocess
import sys

import pytest
from small_configs import SMALL_GPT

from sizeup.config import RunConfig
from sizeup.errors import ConfigError
from sizeup.train import run
from sizeup.train.loggers import JsonlLogger, make_logger, parse_log

SMALL = dict(SMALL_GPT, batch_size=4, steps=6, eval_batches=1, eval_every=3, spectral_every=3)


def _expected(r) -> dict[str, dict[int, float]]:
    return {
        "train/loss": dict(zip(r.steps, r.train_loss)),
        "val/loss": {0: r.initial_val_loss, **dict(zip(r.val_steps, r.val_loss))},  # all of them
    }


def test_jsonl_log_has_the_run_numbers(tmp_path):
    lg = JsonlLogger(tmp_path / "log.jsonl")
    r = run(RunConfig(**SMALL), loggers=[lg])
    lg.close()
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    train = {d["step"]: d["train/loss"] for d in rows if "train/loss" in d}
    val = {d["step"]: d["val/loss"] for d in rows if "val/loss" in d}
    assert {"train/loss": train, "val/loss": val} == _expected(r)
    first = rows[1]  # step 0: the initial validation, then the first step's line
    assert rows[0] == {"step": 0, "val/loss": r.initial_val_loss}
    assert first["lr/0.input"] == pytest.approx(3e-3) and first["perf/tokens_per_s"] > 0
    assert "spectral/blocks.0.attn.q/w" in first and first["perf/mfu"] is None  # CPU: unknown
    # a resumed run logs on from its step: lines at or past it are dropped
    again = JsonlLogger(tmp_path / "log.jsonl", start_step=3)
    again.close()
    kept = [json.loads(line)["step"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert kept and max(kept) < 3


def test_tensorboard_event_file_reads_back(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    lg = make_logger(f"tensorboard:{tmp_path / 'tb'}")
    r = run(RunConfig(**SMALL), loggers=[lg])
    lg.close()
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "val/loss", "lr/0.input", "perf/tokens_per_s"} <= tags
    assert any(t.startswith("spectral/") for t in tags)
    for tag, want in _expected(r).items():
        got = {e.step: e.value for e in acc.Scalars(tag)}
        assert got.keys() == want.keys()
        assert all(got[s] == pytest.approx(v, rel=1e-6) for s, v in want.items())  # float32


def _wandb_records(path) -> list[bytes]:
    """The records of a W&B transaction log (.wandb): LevelDB's log format, 32 KiB blocks of
    records with a 7-byte header (crc32, length, type: 1 full, 2 first, 3 middle, 4 last) after
    a 7-byte file header ':W&B', magic, version."""
    buf, block, pos = path.read_bytes(), 32768, 7
    assert buf[:4] == b":W&B"
    records, pending = [], b""
    while pos + 7 <= len(buf):
        left = block - pos % block
        if left < 7:  # the block's tail is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", buf[pos : pos + 7])
        pending += buf[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            records.append(pending)
            pending = b""
    return records


def _wandb_history(run_dir) -> dict[int, dict[str, float]]:
    from wandb.proto import wandb_internal_pb2 as pb

    out: dict[int, dict[str, float]] = {}
    for data in _wandb_records(next(run_dir.glob("run-*.wandb"))):
        rec = pb.Record()
        rec.ParseFromString(data)
        if rec.WhichOneof("record_type") != "history":
            continue
        items = {
            i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item
        }
        out.setdefault(int(items.get("_step", rec.history.step.num)), {}).update(items)
    return out


def test_wandb_offline_run_holds_the_history(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    lg = make_logger("wandb:sizeup-test", RunConfig(**SMALL), directory=tmp_path, name="t")
    r = run(RunConfig(**SMALL), loggers=[lg])
    lg.close()
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    hist = _wandb_history(run_dir)
    for tag, want in _expected(r).items():
        got = {s: row[tag] for s, row in hist.items() if tag in row}
        assert got == want  # W&B keeps float64: exact
    assert hist[0]["lr/0.input"] == pytest.approx(3e-3)


def test_sweep_logs_each_trial(tmp_path):
    from sizeup.sweep import run_sweep

    configs = [
        RunConfig(**{**SMALL, "steps": 2, "spectral_every": 0}, lr=lr) for lr in (1e-3, 3e-3)
    ]
    rep = run_sweep(configs, tmp_path / "s.db", progress=False, log=[f"jsonl:{tmp_path / 'logs'}"])
    assert rep.counts.get("done") == 2
    for c in configs:
        lines = (tmp_path / "logs" / f"{c.trial_id()}.jsonl").read_text().splitlines()
        assert json.loads(lines[1])["lr/0.input"] == pytest.approx(
            c.optimizer.lr
        )  # after val/loss at 0
    with pytest.raises(ConfigError, match="log"):
        run_sweep(configs, tmp_path / "t.db", log=["jsonl:x"], runner=lambda c: None)
    assert not (tmp_path / "t.db").exists()


def test_bad_log_spec_is_refused():
    for spec in ("tensorboard", "csv:x", "jsonl:"):
        with pytest.raises(ConfigError, match="jsonl, tensorboard, wandb"):
            parse_log(spec)
    r = subprocess.run(
        [sys.executable, "-m", "sizeup", "train", "--steps", "2", "--log", "csv:x"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "log='csv:x'" in r.stderr and "Traceback" not in r.stderr


# --- every validation reaches every logger (through the CLI, as a user types it) ------------
TINY = ["--width", "32", "--depth", "1", "--steps", "20", "-q"]
TINY += ["--set", "seq_len=32", "--set", "batch_size=4", "--set", "eval_batches=1"]

# Runs `sizeup train ARGS` in this process and kills it with SIGKILL before step 12 (after the
# checkpoint at step 10), as a preempted job dies.
KILLED_CLI = (
    "import os, signal, sys\n"
    "from sizeup.cli import main\n"
    "from sizeup.train.step import Trainer\n"
    "step = Trainer.train_step\n"
    "def killing(self, x, y):\n"
    "    if self.step == 12:\n"
    "        os.kill(os.getpid(), signal.SIGKILL)\n"
    "    return step(self, x, y)\n"
    "Trainer.train_step = killing\n"
    "main(sys.argv[1:])\n"
)


def _logs(out) -> list[str]:
    return ["--log", f"jsonl:{out / 'log.jsonl'}", "--log", f"tensorboard:{out / 'tb'}"]


def _train_cli(out, *args: str) -> None:
    from sizeup.cli import main

    main(["train", *TINY, "--out", str(out), *_logs(out), *args])


def _validations(out) -> dict[int, float]:
    """result.json's validation losses by step: the initial one (step 0) and val_steps."""
    r = json.loads((out / "result.json").read_text())
    return {0: r["initial_val_loss"], **dict(zip(r["val_steps"], r["val_loss"]))}


def _assert_every_validation_logged(out) -> None:
    """The JSONL file and the TensorBoard events hold each of the run's validation losses once,
    at its step, with result.json's value (TensorBoard keeps float32); train/loss every step."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    want = _validations(out)
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    jsonl = sorted((d["step"], d["val/loss"]) for d in rows if "val/loss" in d)
    assert jsonl == sorted(want.items())  # exact, and no step twice
    assert sorted(d["step"] for d in rows if "train/loss" in d) == list(range(20))
    acc = EventAccumulator(str(out / "tb"))
    acc.Reload()
    tb = sorted((e.step, e.value) for e in acc.Scalars("val/loss"))
    assert [s for s, _ in tb] == sorted(want)
    assert all(v == pytest.approx(want[s], rel=1e-6) for s, v in tb)


@pytest.mark.parametrize(("every", "steps"), [(5, [0, 5, 10, 15, 20]), (0, [0, 20])])
def test_every_validation_reaches_every_logger(tmp_path, every, steps):
    pytest.importorskip("tensorboard")
    _train_cli(tmp_path, "--set", f"eval_every={every}")
    assert sorted(_validations(tmp_path)) == steps
    _assert_every_validation_logged(tmp_path)


def test_a_resumed_run_logs_every_validation_once(tmp_path):
    pytest.importorskip("tensorboard")
    args = [*TINY, "--set", "eval_every=5", "--checkpoint-every", "5", "--out", str(tmp_path)]
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_CLI, "train", *args, *_logs(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert [p.name for p in sorted((tmp_path / "checkpoints").glob("*.json"))] == [
        "step_00000010.json"
    ]
    _train_cli(tmp_path, "--set", "eval_every=5", "--checkpoint-every", "5", "--resume")
    assert json.loads((tmp_path / "result.json").read_text())["resumed_from"] == 10
    assert sorted(_validations(tmp_path)) == [0, 5, 10, 15, 20]
    _assert_every_validation_logged(tmp_path)
