"""Fuzz the two inputs users write by hand, `-c` run configs and sweep spec files: every input
ends in a valid config or a SizeupError that names a field, never another exception (issue
"Hardening"). Hypothesis draws the values; the CLI half checks one line and exit code 2."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from sizeup.config import RunConfig  # noqa: E402
from sizeup.errors import ConfigError, SizeupError  # noqa: E402
from sizeup.sweep import SweepSpec  # noqa: E402

FIELDS = list(RunConfig.field_names())

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [
            "",
            "yes",
            "no",
            "false",
            "True",
            "3e-3",
            "1e400",
            "-1",
            "0",
            "nan",
            "inf",
            "abc",
            "64",
            "64.0",
            "fan_in",
            "model",
            "mup",
            "sp",
            "gpt",
            "mlp",
            "cpu",
            "cuda",
            "wsd",
            "1/d",
            "none",
            "null",
            "[1, 2]",
            "\u00e9",
            "1_000",
        ]
    ),
    st.text(max_size=8),
)
values = st.one_of(
    scalars,
    st.lists(scalars, max_size=3),
    st.dictionaries(st.text(max_size=4), scalars, max_size=2),
)
keys = st.one_of(st.sampled_from(FIELDS), st.sampled_from(["init_mode", "widht", "zip", ""]))
configs = st.dictionaries(keys, values, max_size=6)

SETTINGS = settings(
    max_examples=int(__import__("os").environ.get("FUZZ_N", "400")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _keys(x) -> set[str]:
    """Every mapping key anywhere in x (a user may name any of them)."""
    if isinstance(x, dict):
        return {str(k) for k in x} | set().union(*(_keys(v) for v in x.values()))
    if isinstance(x, list):
        return set().union(*(_keys(v) for v in x)) if x else set()
    return set()


def _names_a_field(e: SizeupError, known: set[str]) -> bool:
    field = getattr(e, "field", None)
    return field is not None and str(field).split(".")[0].split("[")[0] in known


@SETTINGS
@given(configs)
def test_run_configs_end_valid_or_with_a_named_field(d):
    try:
        cfg = RunConfig.from_dict(d)
    except SizeupError as e:
        assert isinstance(e, ConfigError) and _names_a_field(e, set(FIELDS) | set(d)), e
        return
    # what was accepted is typed and round-trips
    for name, v in cfg.to_dict().items():
        assert not (isinstance(v, float) and not math.isfinite(v)), (name, v)
    assert RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


generators = st.one_of(
    st.fixed_dictionaries({"log2": st.lists(scalars, max_size=3)}, optional={"step": scalars}),
    st.fixed_dictionaries({"linspace": st.lists(scalars, max_size=3)}, optional={"num": scalars}),
    st.fixed_dictionaries({"range": st.lists(scalars, max_size=3)}, optional={"step": scalars}),
    st.fixed_dictionaries({"values": values}),
)
axes = st.one_of(
    scalars,
    st.dictionaries(
        st.sampled_from(["lr", "width", "seed", "rule", "qk_norm", "zip", "grid", "nope"]),
        st.one_of(values, generators),
        max_size=3,
    ),
)
specs = st.fixed_dictionaries(
    {},
    optional={
        "base": st.one_of(scalars, configs),
        "axes": axes,
        "name": scalars,
        "zip": st.one_of(
            scalars, st.dictionaries(st.sampled_from(["lr", "seed"]), st.lists(scalars, max_size=3))
        ),
    },
)


@SETTINGS
@given(specs)
def test_sweep_specs_end_valid_or_with_a_named_field(d):
    known = set(FIELDS) | {"base", "axes", "zip", "name", "spec", "config"} | _keys(d)
    try:
        spec = SweepSpec.from_dict(d)
    except SizeupError as e:
        assert isinstance(e, ConfigError) and _names_a_field(e, known | set(d)), e
        return
    assert all(isinstance(c, RunConfig) for c in spec.trials())


@pytest.mark.parametrize(
    "text,field",
    [
        ("qk_norm: 'no'\n", None),  # read as False, strictly: a valid config
        ("qk_norm: maybe\n", "qk_norm"),
        ("seed: abc\n", "seed"),
        ("weight_decay: .nan\n", "weight_decay"),
        ("lr: 3e-3\n", None),  # YAML 1.1 gives a string; numeric strings are numbers
        ("beta1: x\n", "beta1"),
        ("device: foo\n", "device"),
        ("grad_clip: .inf\n", "grad_clip"),
    ],
)
def test_the_cli_reads_configs_strictly(tmp_path, text, field):
    p = tmp_path / "run.yaml"
    p.write_text(
        text + "steps: 1\nwidth: 32\ndepth: 1\nseq_len: 16\nbatch_size: 2\neval_batches: 1\n"
    )
    r = subprocess.run(
        [sys.executable, "-m", "sizeup", "train", "-c", str(p), "-q"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if field is None:
        assert r.returncode == 0, r.stderr
        return
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {field}="), r.stderr


def test_quoted_booleans_mean_what_they_say():
    for text, want in (
        ("no", False),
        ("false", False),
        ("off", False),
        ("0", False),
        ("yes", True),
        ("true", True),
        ("on", True),
        ("1", True),
    ):
        assert RunConfig(qk_norm=text).model.qk_norm is want
        assert RunConfig(tie_embeddings=text).model.tie_embeddings is want
    with pytest.raises(ConfigError, match="qk_norm"):
        RunConfig(qk_norm="nope")


# --- every numeric option of every command, at its extremes (issue 23) -----------------------
# The options are read from the click commands typer generates, so a new numeric option is
# fuzzed without a change here. Each example runs the command in this process (a subprocess
# per example would take a second before any work) on a tiny valid base, with one to three
# options set to an extreme: it must exit 0 (or 1, a verdict: a failed check, failed trials)
# or 2 with one message, never a traceback.
import contextlib  # noqa: E402
import csv  # noqa: E402
import io  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

EXTREMES = ["-1", "0", "nan", "inf", "-inf", "1e300", str(2**70), str(-(2**70))]
TINY_RUN = ["--width", "32", "--depth", "1", "--seq-len", "8", "--batch-size", "2"]
TINY_RUN += ["--eval-batches", "1", "--steps", "1"]
# the base command lines (a path in {tmp}); each is valid and quick as it stands
COMMANDS: dict[tuple[str, ...], list[str]] = {
    ("train",): [*TINY_RUN, "-q"],
    ("parametrize",): [*TINY_RUN, "--no-table"],
    ("plan",): ["--compute", "1e21"],
    ("flops",): ["--width", "256", "--depth", "2"],
    ("wsd",): [*TINY_RUN[:-2], "--head-dim", "8", "--widths", "8,16", "--steps", "4,8"]
    + ["--workers", "1", "--out", "{tmp}/wsd"],
    ("coord-check",): [*TINY_RUN[:-2], "--head-dim", "8", "--widths", "16,32", "--steps", "1"]
    + ["--seeds", "1"],
    ("sweep",): ["{tmp}/spec.yaml", "--store", "{tmp}/s.db", "--dry-run"],
    ("transfer",): ["{tmp}/study.db"],
    ("export",): ["-c", "{tmp}/run.yaml", "--weights", "{tmp}/w.pt", "--out", "{tmp}/plain"],
    ("fit", "chinchilla"): ["{tmp}/ch.csv", "--out", "{tmp}/fit"],
    ("fit", "hp"): ["{tmp}/hp.csv", "--out", "{tmp}/fit"],
    ("fit", "critical-batch"): ["{tmp}/cb.csv", "--out", "{tmp}/fit"],
    ("fit", "downstream"): ["{tmp}/ds.csv", "--out", "{tmp}/fit"],
    ("fit", "data-constrained"): ["{tmp}/dc.csv", "--out", "{tmp}/fit"],
    ("fit", "mixing"): ["{tmp}/mix.csv", "--proportions", "a,b", "--losses", "la,lb"]
    + ["--out", "{tmp}/fit"],
}
ALLOWED_EXITS = {("coord-check",): {0, 1, 2}, ("sweep",): {0, 1, 2}, ("transfer",): {0, 1, 2}}
EXAMPLE_SECONDS = 120  # a command that runs longer than this on its tiny base hangs
# FUZZ_N examples in all, shared by the commands (FUZZ_N=10000: about 700 per command)
CLI_SETTINGS = settings(
    SETTINGS,
    max_examples=max(10, int(os.environ.get("FUZZ_N", "400")) // len(COMMANDS)),
)


def numeric_options(path: tuple[str, ...]) -> list[str]:
    """Every visible option of the command whose value is an int or a float (lists too)."""
    import typer.main

    from sizeup.cli import app

    cmd = typer.main.get_command(app)
    for name in path:
        cmd = cmd.commands[name]
    return sorted(
        max(p.opts, key=len)
        for p in cmd.params
        if p.param_type_name == "option"
        and not getattr(p, "hidden", False)
        and not getattr(p, "is_flag", False)
        and _is_number(p)
    )


def _is_number(param) -> bool:
    """Whether an option takes an int or a float (optional, or a list of them)."""
    import typing

    kind = getattr(param, "type", None)  # click's own options
    if kind is not None:
        return getattr(kind, "name", "") in ("integer", "float")
    t = param.type_descriptor.annotation  # typer's: the annotation it converts by
    for _ in range(3):
        args = [a for a in typing.get_args(t) if a is not type(None)]
        if not args:
            break
        t = args[0]
    return t in (int, float)


def _write_csv(path: Path, header: list[str], rows: list[list[float]]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


@pytest.fixture(scope="module")
def cli_inputs(tmp_path_factory):
    """The files the base command lines read: fit tables, a sweep spec, a study, a run
    config with its weights."""
    import numpy as np

    tmp = tmp_path_factory.mktemp("cli_fuzz")
    rng = np.random.default_rng(0)
    ch, hp, dc = [], [], []
    for C in (1e17, 1e18, 1e19, 1e20):
        for N in np.geomspace(1e7, 1e9, 7):
            D = C / (6 * N)
            loss = (1.7 + 400 / N**0.34 + 410 / D**0.28) * np.exp(0.01 * rng.normal())
            ch.append([N, D, C, loss])
            for lr in (1e-3, 3e-3, 1e-2):
                hp.append([C, lr * (C / 1e17) ** -0.1, 2e5 * (C / 1e17) ** 0.3, loss + lr])
            dc.append([N, D, D / (1 + rng.integers(0, 4)), loss])
    _write_csv(tmp / "ch.csv", ["params", "tokens", "flops", "loss"], ch)
    _write_csv(tmp / "hp.csv", ["flops", "lr", "batch_tokens", "loss"], hp)
    _write_csv(tmp / "dc.csv", ["params", "tokens", "unique_tokens", "loss"], dc)
    loss = np.linspace(2.0, 4.0, 12)
    _write_csv(tmp / "cb.csv", ["loss", "batch"], [[x, 1e6 / x**3] for x in loss])
    acc = 0.25 + 0.7 / (1 + np.exp(4 * (loss - 3)))
    _write_csv(tmp / "ds.csv", ["loss", "accuracy"], list(map(list, zip(loss, acc))))
    mix = []
    for a in np.linspace(0.05, 0.95, 12):
        mix.append([a, 1 - a, 2 + np.exp(-2 * a), 2 + np.exp(-2 * (1 - a))])
    _write_csv(tmp / "mix.csv", ["a", "b", "la", "lb"], mix)
    (tmp / "spec.yaml").write_text(
        "base: {steps: 1, width: 32, depth: 1, seq_len: 8, batch_size: 2, eval_batches: 1}\n"
        "axes: {lr: [0.001, 0.01]}\n"
    )
    shutil.copy(Path(__file__).parent / "data" / "study_v0_1.db", tmp / "study.db")
    (tmp / "run.yaml").write_text("width: 32\ndepth: 1\nseq_len: 8\nsteps: 1\n")
    torch = pytest.importorskip("torch")
    from sizeup.train import build

    torch.save(build(RunConfig.from_file(tmp / "run.yaml")).model.state_dict(), tmp / "w.pt")
    return tmp


class _Hang(Exception):
    pass


def _alarm(signum, frame):
    raise _Hang()


def run_in_process(argv: list[str]) -> tuple[int, str]:
    """(exit code, stdout + stderr) of `sizeup ARGV` run here, the process restored after it
    (torch threads, warnings filters, working directory)."""
    import torch

    from sizeup.cli import main

    out = io.StringIO()
    code = 0
    cwd, threads = os.getcwd(), torch.get_num_threads()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(EXAMPLE_SECONDS)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            with warnings.catch_warnings():
                try:
                    main(argv)
                except SystemExit as e:
                    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        os.chdir(cwd)
        torch.set_num_threads(threads)
    return code, out.getvalue()


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=" ".join)
def test_every_numeric_option_at_its_extremes(path, cli_inputs):
    options = numeric_options(path)
    if not options:
        pytest.skip(f"sizeup {' '.join(path)} has no numeric option (yet)")
    base = [a.replace("{tmp}", str(cli_inputs)) for a in COMMANDS[path]]
    code, text = run_in_process([*path, *base])  # the base itself is valid
    assert code in ALLOWED_EXITS.get(path, {0}), text
    changes = st.lists(
        st.tuples(st.sampled_from(options), st.sampled_from(EXTREMES)),
        min_size=1,
        max_size=3,
        unique_by=lambda t: t[0],
    )

    @CLI_SETTINGS
    @given(changes)
    def check(chosen):
        argv = [*path, *base]
        for flag, value in chosen:
            if flag in argv:  # the base sets it: replace its value
                i = argv.index(flag)
                argv[i + 1] = value
            else:
                argv += [flag, value]
        try:
            code, text = run_in_process(argv)
        except _Hang:
            raise AssertionError(
                f"sizeup {' '.join(argv)}: still running after {EXAMPLE_SECONDS} s"
            ) from None
        except Exception as e:  # a traceback: what the user would have seen
            raise AssertionError(f"sizeup {' '.join(argv)}: {type(e).__name__}: {e}") from e
        assert code in ALLOWED_EXITS.get(path, {0, 2}) | {2}, (argv, code, text[-2000:])
        assert "Traceback" not in text, (argv, text[-2000:])
        if code == 2:
            assert text.strip(), argv

    check()
