"""Bad input gets one line naming the field and what is allowed, exit code 2, never a
traceback (issue "Hardening", items 8-10): spec shapes, malformed and non-UTF-8 files,
unwritable output paths, impossible plan targets."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sizeup.errors import ConfigError
from sizeup.sweep import SweepSpec


def cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "sizeup", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


def assert_named(r, *words):
    """Exit code 2, one line on stderr, no traceback, the named words in it."""
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    for w in words:
        assert w in lines[0], lines[0]


SPECS = [
    ({"axes": 5}, "axes"),
    ({"base": 7}, "base"),
    ({"axes": {"lr": {"log2": ["a", "b"]}}}, "axes.lr"),
    ({"axes": {"lr": {"log2": [-10, -8], "step": "x"}}}, "axes.lr.step"),
    ({"axes": {"width": {"range": [32, 64], "step": 0}}}, "axes.width.step"),
    ({"axes": {"lr": {"linspace": [0.001, 0.01], "num": -1}}}, "axes.lr.num"),
    ({"axes": {"lr": {"log2": [-10, 10000]}}}, "axes.lr.log2"),
    ({"axes": {"width": {"range": [32, 6_400_000_000]}}}, "axes.width"),
    ({"axes": {"lr": {"log2": [-10, -8], "linspace": [1, 2]}}}, "axes.lr"),
    ({"axes": {"lr": {"values": 3}}}, "axes.lr.values"),
]


@pytest.mark.parametrize("spec,field", SPECS)
def test_bad_spec_shapes_name_the_field(spec, field):
    with pytest.raises(ConfigError) as e:
        SweepSpec.from_dict(spec)
    assert e.value.field == field


def test_bad_spec_file_on_the_command_line(tmp_path):
    p = tmp_path / "s.json"
    p.write_text(json.dumps({"axes": {"lr": {"log2": [-10, 10000]}}}))
    assert_named(cli("sweep", p, "--store", tmp_path / "s.db", "--dry-run"), "axes.lr.log2")
    assert not (tmp_path / "s.db").exists()


BAD_FILES = {
    "bad.yaml": b"a: [1, 2\n",
    "bad.yml": b"base: {lr: 1e-3\n",
    "bad.toml": b"a = [",
    "bad.json": b'{"a": ',
    "latin1.yaml": b"name: caf\xe9\n",
    "list.json": b"[1, 2]",
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
@pytest.mark.parametrize("command", ["sweep", "train"])
def test_malformed_and_non_utf8_files(tmp_path, name, command):
    p = tmp_path / name
    p.write_bytes(BAD_FILES[name])
    args = [p, "--store", tmp_path / "s.db", "--dry-run"] if command == "sweep" else ["-c", p]
    assert_named(cli(command, *args), "config=", name)


def test_unwritable_outputs_are_refused_before_any_work(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("axes: {lr: [0.001]}\n")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    r = cli("sweep", spec, "--store", tmp_path / "s.db", "--export", blocker / "t.csv")
    assert_named(r, "export=")
    assert not (tmp_path / "s.db").exists()  # nothing ran, no store was made
    assert_named(cli("sweep", spec, "--store", blocker / "s.db"), "store=")
    r = cli("sweep", spec, "--store", tmp_path / "s.db", "--export", tmp_path / "t.xlsx")
    assert_named(r, "export=", ".csv or .parquet")
    assert_named(cli("plan", "--compute", "1e21", "--out", blocker / "plan"), str(blocker))


@pytest.mark.parametrize(
    "args,word",
    [
        (["--compute", "inf"], "compute=inf"),
        (["--compute", "nan"], "compute=nan"),
        (["--params", "-1"], "params="),
    ],
)
def test_impossible_plan_targets(args, word):
    assert_named(cli("plan", *args), word)


def test_a_preset_file_that_is_not_a_fit(tmp_path):
    p = tmp_path / "list.json"
    p.write_text("[1, 2]")
    assert_named(cli("plan", "--preset", p, "--compute", "1e21"), "fit=", "list")


def test_a_model_too_big_for_memory_is_refused_with_the_estimate():
    # width 10^7 used to try to allocate tens of GB and die
    r = cli("train", "--width", "10000000", "--steps", "1")
    assert_named(r, "width=10000000", "GiB", "free")
