"""Extreme inputs get one line naming the field and what is allowed, exit code 2 (issue 23,
items 6, 7 and 11's inputs): seeds outside 64 bits, absurd widths and thread counts, a file
nested 100,000 deep, a bootstrap that cannot fit in memory, a negative isoFLOP window, an
--out that is a file, a planner target no family shape reaches, a reversed fit range and a
power schedule whose lr grows."""

from __future__ import annotations

import csv
import time

import numpy as np
import pytest
from test_inputs import assert_named, cli

from sizeup.config import RunConfig
from sizeup.errors import ConfigError

TINY = ["--steps", "1", "--width", "32", "--depth", "1", "--seq-len", "8", "--batch-size", "2"]
TINY += ["--eval-batches", "1", "-q"]


@pytest.mark.parametrize(
    "flag,value,field",
    [
        ("--seed", "-1", "seed"),
        ("--seed", str(2**70), "seed"),
        ("--width", str(10**12), "width"),
        ("--threads", "100000", "threads"),
    ],
)
def test_train_flags_out_of_bounds(flag, value, field):
    assert_named(cli("train", *TINY, flag, value), f"{field}=", "allowed")


@pytest.mark.parametrize(
    "key,value",
    [("seed", 2**70), ("seed", -1), ("width", 1e12), ("threads", 100000), ("depth", 10**9)],
)
def test_bounds_hold_for_files_sets_and_records(tmp_path, key, value):
    # the bound sits on the field: a record, a -c file and --set all meet it
    with pytest.raises(ConfigError) as e:
        RunConfig(**{key: value})
    assert e.value.field == key
    p = tmp_path / "run.yaml"
    p.write_text(f"{key}: {value}\nsteps: 1\n")
    assert_named(cli("train", "-c", p, "-q"), f"{key}=")
    assert_named(cli("train", "-q", "--set", f"{key}={value}"), f"{key}=")


def test_seed_bounds_are_what_torch_and_numpy_take():
    torch = pytest.importorskip("torch")
    top = RunConfig(seed=2**63 - 1, steps=1).run.seed
    torch.manual_seed(top + 3)  # a check's 4th seed still fits torch's 64 bits
    np.random.default_rng([top + 3, 1])


def _deep(tmp_path, suffix):
    p = tmp_path / f"deep{suffix}"
    body = "[" * 100_000 + "]" * 100_000
    p.write_text(body if suffix == ".json" else f"a: {body}\n")
    return p


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_a_deeply_nested_config_is_named(tmp_path, suffix):
    p = _deep(tmp_path, suffix)
    assert_named(cli("train", "-c", p, "-q"), "config=", "nested")
    assert_named(cli("sweep", p, "--store", tmp_path / "s.db", "--dry-run"), "nested")


@pytest.mark.parametrize(
    "command", ["chinchilla", "hp", "critical-batch", "downstream", "data-constrained"]
)
def test_a_deeply_nested_data_file_is_named_by_every_fit(tmp_path, command):
    p = _deep(tmp_path, ".json")
    assert_named(cli("fit", command, p, "--out", tmp_path / "o"), "data=", "nested")


def test_a_deeply_nested_fit_json_is_named_by_plan(tmp_path):
    p = _deep(tmp_path, ".json")
    assert_named(cli("plan", "--compute", "1e21", "--preset", p), "fit=", "nested")


@pytest.fixture
def chinchilla_csv(tmp_path):
    rng = np.random.default_rng(0)
    p = tmp_path / "runs.csv"
    with open(p, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["params", "tokens", "flops", "loss"])
        for C in (1e17, 1e18, 1e19, 1e20):
            for N in np.geomspace(1e7, 1e9, 7):
                D = C / (6 * N)
                loss = (1.7 + 400 / N**0.34 + 410 / D**0.28) * np.exp(0.01 * rng.normal())
                w.writerow([N, D, C, loss])
    return p


@pytest.mark.parametrize(
    "args,field",
    [
        (["--bootstrap", "100000000"], "bootstrap="),
        (["--approach", "2", "--window", "-3"], "window="),
        (["--approach", "2", "--window", "0"], "window="),
        (["--approach", "1", "--bootstrap", "10", "--seed", "-1"], "seed="),
        (["--approach", "1", "--bootstrap", "10", "--level", "2"], "level="),
        (["--delta", "inf"], "delta="),
    ],
)
def test_fit_chinchilla_options_out_of_bounds(tmp_path, chinchilla_csv, args, field):
    assert_named(cli("fit", "chinchilla", chinchilla_csv, *args, "--out", tmp_path / "o"), field)
    assert not (tmp_path / "o").exists()


def test_bootstrap_that_cannot_fit_in_memory_is_refused_with_the_numbers(monkeypatch):
    from sizeup.laws import intervals

    monkeypatch.setattr(intervals, "available_memory", lambda: 2.0**30)
    with pytest.raises(ConfigError, match=r"GiB is free \(at most"):
        intervals.check_resampling(100_000, 0, 0.9, bytes_each=1e5)
    intervals.check_resampling(1000, 0, 0.9, bytes_each=1e5)


def test_train_out_that_is_a_file_is_refused_before_training(tmp_path):
    f = tmp_path / "result"
    f.write_text("keep me")
    t0 = time.perf_counter()
    # 10,000 steps would take minutes: the refusal comes first
    r = cli("train", *TINY, "--steps", "10000", "--out", f)
    assert_named(r, "out=", "a folder")
    assert time.perf_counter() - t0 < 60
    assert f.read_text() == "keep me"
    assert_named(cli("parametrize", "--out", f), "out=")


def test_plan_huge_targets_answer_at_once():
    for args, field in ((["--compute", "1e35"], "compute="), (["--params", "1e300"], "params=")):
        t0 = time.perf_counter()
        r = cli("plan", *args)
        assert_named(r, field, "family shape", "--width and --depth")
        assert time.perf_counter() - t0 < 60


@pytest.mark.parametrize(
    "args,field",
    [
        (["--fit-range", "1e30,1e10"], "fit_range="),
        (["--fit-range", "0,1e20"], "fit_range="),
        (["--schedule", "power", "--power-a", "1", "--power-b", "1"], "power_b="),
        (["--schedule", "power", "--power-a", "-1", "--power-b", "-0.5"], "power_a="),
    ],
)
def test_plan_ranges_and_exponents_are_checked(args, field):
    assert_named(cli("plan", "--compute", "1e21", *args), field)


def test_shape_counts_do_not_loop_over_the_depth():
    # the planner's shape search counts thousands of shapes: each count is a product
    from sizeup.config import ModelSpec
    from sizeup.flops import gpt_exact_flops_per_token, gpt_params, md_flops_per_token

    m = ModelSpec(width=256, depth=2000, head_dim=64, n_experts=8, top_k=2, first_dense=3)
    t0 = time.perf_counter()
    for _ in range(200):
        gpt_params(m), gpt_exact_flops_per_token(m), md_flops_per_token(m)
    assert time.perf_counter() - t0 < 2.0
    small = m.replace(depth=5)
    dense, moe = small.replace(depth=3), small
    one_moe_block = gpt_params(moe) - gpt_params(small.replace(depth=4))
    assert gpt_params(moe) - gpt_params(dense) == 2 * one_moe_block


def test_wsd_without_a_validation_loss_says_so_and_keeps_the_points(tmp_path):
    # found by the numeric-option fuzz: --val-frac 0 left nothing to fit (a numpy traceback)
    args = ["--depth", "1", "--seq-len", "8", "--batch-size", "2", "--eval-batches", "1"]
    args += ["--head-dim", "8", "--widths", "8,16", "--steps", "4,8", "--workers", "1"]
    r = cli("wsd", *args, "--val-frac", "0", "--out", tmp_path / "w")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    last = r.stderr.strip().splitlines()[-1]  # after the progress bars of the runs it kept
    assert last.startswith("error: ") and "validation loss" in last and "val_frac" in last
    assert (tmp_path / "w" / "points.csv").exists()


def test_flops_and_plan_read_sizes_by_their_fields():
    # found by the fuzz: --n-head 0 divided by zero, --base-width 0 too
    assert_named(cli("flops", "--width", "256", "--depth", "2", "--n-head", "0"), "n_head=")
    assert_named(cli("plan", "--compute", "1e21", "--base-width", "0"), "base_width=")
    assert_named(cli("train", *TINY, "--mlp-ratio", "1e300"), "mlp_ratio=")
    assert_named(cli("train", *TINY, "--lr", "1e300"), "lr=")


@pytest.mark.parametrize(
    "args,words",
    [
        (["train", "--depth", "1e300"], ["--depth", "integer", "sizeup train --help"]),
        (["flops", "gpt", "--layers", "3"], ["No such option: --layers", "--help"]),
        (["nosuch"], ["No such command", "sizeup --help"]),
    ],
)
def test_a_bad_option_or_command_is_one_line(args, words):
    """Click's usage errors are one line too (click prints usage, a hint and the message on
    three): the message and where the options are listed, exit 2."""
    assert_named(cli(*args), *words)
