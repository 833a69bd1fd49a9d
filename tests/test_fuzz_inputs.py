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
