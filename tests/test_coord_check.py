"""Coordinate checks: the verdict separates right from wrong parametrizations, the recording
agrees with microsoft/mup's own coord check, depth mode, outputs, CLI and bad input.

Learning rates (chosen so one step moves every layer by Theta(1) at the base width without
diverging, see docs/diagnostics.md): AdamW 1e-2, SGD 0.5 (MLP), Muon 2e-2. Readout and query are
zero-initialised (Tensor Programs V's recommendation), the coord check's default.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from sizeup.diagnostics import coord_check, coord_modules, depth_check, log_slope
from sizeup.diagnostics.coord_check import CoordCheckResult, mlp_batches
from sizeup.errors import ConfigError

WIDTHS = (64, 128, 256, 512)


def test_log_slope_hand_values():
    # size = c * width^a -> slope a exactly.
    assert log_slope([64, 128, 256], [1.0, 2.0, 4.0]) == pytest.approx(1.0)
    assert log_slope([64, 128, 256], [3.0, 3.0, 3.0]) == pytest.approx(0.0)
    assert log_slope([1, 4], [2.0, 1.0]) == pytest.approx(-0.5)
    assert log_slope([1, 2], [0.0, 0.0]) == 0.0
    assert math.isinf(log_slope([1, 2], [1.0, float("nan")]))


# --- the verdict, on synthetic sizes -------------------------------------------------------
def _synthetic(
    slopes_by_seed: dict[str, list[float]],
    zero_at_init: set[str] = frozenset(),
    noise_z: float = 2.0,
) -> CoordCheckResult:
    """One judged step (t = 1); each module's size at t = 1 is width^slope for each seed."""
    from sizeup.diagnostics.coord_check import _verdict

    sizes = [128, 256, 512, 1024]
    w = np.asarray(sizes, dtype=float)
    stats = {}
    for name, per_seed in slopes_by_seed.items():
        arr = np.ones((2, 2, len(sizes), len(per_seed)))
        for k, a in enumerate(per_seed):
            arr[:, 1, :, k] = w**a / w[0] ** a
        if name in zero_at_init:
            arr[:, 0] = 0.0
        stats[name] = arr
    kinds = {n: "hidden" for n in stats}
    loss = np.zeros((2, len(sizes), 1))
    return _verdict("width", sizes, 1, "l1", 0.1, 1, kinds, stats, loss, {}, noise_z)


def test_verdict_band_and_seed_noise():
    r = _synthetic(
        {
            "flat": [0.0, 0.0],
            "grows": [0.3, 0.3],
            "shrinks": [-0.3, -0.3],
            "q_ok": [-0.4, -0.4],
            "q_vanishes": [-1.0, -1.0],
            "q_grows": [0.3, 0.3],
        },
        zero_at_init={"q_ok", "q_vanishes", "q_grows"},
    )
    ok = {m.name: m.passed for m in r.modules}
    # ordinary modules: |slope| <= 0.1; zero-initialised ones: -0.6 <= slope <= 0.1
    assert ok == {
        "flat": True,
        "grows": False,
        "shrinks": False,
        "q_ok": True,
        "q_vanishes": False,
        "q_grows": False,
    }
    # the worst offender is the one furthest outside its own band: q_vanishes lies 0.4 below
    # [-0.6, 0.1]; grows, 0.2 above [-0.1, 0.1]
    assert r.worst["module"] == "q_vanishes" and r.worst["band"] == [-0.6, 0.1]


def test_verdict_noisy_slopes_pass_within_two_standard_errors():
    # Mean slope 0.15 (outside 0.1), per-seed slopes 0.05 / 0.25: stderr 0.1, so 0.05 outside
    # is within 2 standard errors: passes, flagged noisy. The same mean with no spread fails.
    r = _synthetic({"noisy": [0.05, 0.25], "steady": [0.15, 0.15]})
    noisy, steady = r.module("noisy"), r.module("steady")
    assert noisy.stderr[1] == pytest.approx(0.1)
    assert noisy.passed and noisy.noisy(1)
    assert not steady.passed and steady.stderr[1] == pytest.approx(0.0, abs=1e-12)
    strict = _synthetic({"noisy": [0.05, 0.25]}, noise_z=0.0)
    assert not strict.passed  # noise_z=0: the band alone decides
    one = _synthetic({"one_seed": [0.15]})
    assert not one.passed and math.isnan(one.module("one_seed").stderr[1])


# --- the MLP -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "rule,opt,passes",
    [
        ("sp", "adamw", False),
        ("mup", "adamw", True),
        ("mup", "sgd", True),
        ("spectral", "muon", True),
    ],
)
def test_mlp_verdicts(rule, opt, passes):
    r = coord_check("mlp", rule, opt, widths=WIDTHS, steps=4, seeds=3)
    assert r.passed is passes, r.worst
    if not passes:
        # SP + Adam: the update of a hidden matrix grows like width, so its output (and the
        # logits after it) blow up; the worst offender is one of those, with slope >~ 0.5.
        assert r.worst["module"] in ("hidden.0", "readout", "logits")
        assert r.worst["slope"] > 0.5


def test_mlp_mean_abs_matches_microsoft_mup():
    # The same MLP parametrized by microsoft/mup (MuReadout with zero init, set_base_shapes,
    # MuAdam) and by sizeup (mup rule, Table 3 form): per-module mean |x| must agree within 5%.
    # mup's records start at t=1 for the forward pass at init; ours at t=0.
    mup = pytest.importorskip("mup")
    from mup.coord_check import get_coord_data

    lr, steps, seeds = 1e-2, 3, 3
    batch = mlp_batches(1, 64, seed=7)[0]

    class MupMLP(torch.nn.Module):
        def __init__(self, width: int):
            super().__init__()
            self.input = torch.nn.Linear(32, width)
            self.hidden = torch.nn.ModuleList([torch.nn.Linear(width, width)])
            self.readout = mup.MuReadout(width, 10, readout_zero_init=True)

        def forward(self, x):
            h = torch.relu(self.input(x))
            return self.readout(torch.relu(self.hidden[0](h)))

    from sizeup import parametrize
    from sizeup.models import MLP

    calls = iter(range(10**6))

    def make(width: int):
        def build():
            # mup builds seeds in the outer loop and widths in the inner one; replay exactly the
            # draws sizeup's coord_check makes for (seed, width), so both start from one init.
            seed = next(calls) // len(WIDTHS)
            torch.manual_seed(seed)
            ref = MLP(32, width, 2, 10)
            parametrize(
                ref,
                base=MLP(32, 64, 2, 10),
                delta=MLP(32, 128, 2, 10),
                rule="mup",
                sigma="fan_in",
                zero_readout=True,
            )
            m = MupMLP(width)
            mup.set_base_shapes(m, MupMLP(64), delta=MupMLP(128))
            with torch.no_grad():  # MuReadout keeps its zero init (readout_zero_init=True)
                for a, b in ((m.input, ref.input), (m.hidden[0], ref.hidden[0])):
                    a.weight.copy_(b.weight)
                    a.bias.copy_(b.bias)
            return m

        return build

    df = get_coord_data(
        {w: make(w) for w in WIDTHS},
        [batch],
        optimizer="adam",
        lr=lr,
        nsteps=steps + 1,
        nseeds=seeds,
        show_progress=False,
        cuda=False,
    )
    # torch's Adam defaults betas=(0.9, 0.999), which mup's MuAdam keeps.
    # MuAdam keeps one eps for every tensor: compare like with like (scale_eps=False).
    ours = coord_check(
        "mlp",
        "mup",
        "adamw",
        lr,
        WIDTHS,
        steps=steps,
        seeds=seeds,
        data=lambda seed: [batch],
        optimizer_kwargs={"betas": (0.9, 0.999)},
        parametrize_kwargs={"scale_eps": False},
    )
    for name in ("input", "hidden.0", "readout"):
        curve = ours.module(name)
        for t in range(steps + 1):
            for i, w in enumerate(WIDTHS):
                theirs = df[(df.module == name) & (df.t == t + 1) & (df.width == w)].l1.mean()
                if t == 0 and name == "readout":
                    assert curve.l1[t][i] == theirs == 0.0  # zero readout init
                    continue
                assert curve.l1[t][i] == pytest.approx(theirs, rel=0.05), (name, t, w)


# --- the GPT -------------------------------------------------------------------------------
# Default GPT settings: widths 128..1024 (4 heads, so head_dim 32..256), 3 seeds, base init
# 1/sqrt(fan_in), zero readout and query, Adam eps scaled per tensor. The zero-initialised
# queries and attention logits are judged one-sided (crosstalk, see the module doc and
# docs/diagnostics.md); every other module must be flat within 0.1 (+ 2 standard errors).
@pytest.mark.slow
def test_gpt_sp_adam_fails():
    r = coord_check("gpt", "sp", "adamw", steps=4, seeds=2)
    assert not r.passed
    assert r.worst["slope"] > 0.5


def _assert_gpt_passes(r: CoordCheckResult) -> None:
    assert r.sizes == [128, 256, 512, 1024]
    assert r.passed, r.worst
    zero = {m.name for m in r.modules if m.zero_init}
    # exactly 0 at init: the queries and their logits (zero query), the logits (zero readout)
    assert zero == {
        "blocks.0.attn.q",
        "blocks.0.attn.logits",
        "blocks.1.attn.q",
        "blocks.1.attn.logits",
        "lm_head",
        "logits",
    }, zero
    for m in r.modules:
        assert m.band == ((-0.6, 0.1) if m.zero_init else (-0.1, 0.1)), m.name


@pytest.mark.slow
def test_gpt_mup_adam_passes():
    _assert_gpt_passes(coord_check("gpt", "mup", "adamw", steps=4))


@pytest.mark.slow
def test_gpt_mup_sgd_passes():
    _assert_gpt_passes(coord_check("gpt", "mup", "sgd", steps=4))


@pytest.mark.slow
def test_gpt_spectral_muon_passes():
    _assert_gpt_passes(coord_check("gpt", "spectral", "muon", steps=4))


@pytest.mark.slow
def test_gpt_one_wrong_row_fails_on_the_queries():
    # The one-sided band for zero-initialised outputs is not a blank cheque: give the queries
    # the readout's SGD lr (eta/m instead of eta) and their update vanishes like 1/width.
    r = coord_check(
        "gpt",
        "mup",
        "sgd",
        steps=4,
        seeds=2,
        parametrize_kwargs={"roles": {"blocks.*.attn.q": "readout"}},
    )
    assert not r.passed
    assert r.worst["module"].endswith(("attn.q", "attn.logits")) and r.worst["slope"] < -0.7


def test_causal_attention_logits_recorded_on_used_entries():
    # Only the lower triangle of (T, T) scores is used by the model (the rest is masked to
    # -inf); the recorder measures exactly those entries.
    from sizeup.diagnostics.coord_check import CoordRecorder

    lin = torch.nn.Identity()
    rec = CoordRecorder(lin, [], causal=["s"])
    scores = torch.full((1, 1, 3, 3), 100.0).tril() + torch.ones(3, 3).tril()
    rec.record("s", scores, causal=True)
    assert rec.stats["s"][0] == pytest.approx(101.0)
    rec.record("s", scores)
    assert rec.stats["s"][0] == pytest.approx(101.0 * 6 / 9)


@pytest.mark.slow
def test_gpt_mup_sqrt_attention_flagged_on_attention_logits():
    r = coord_check("gpt", "mup", "adamw", steps=4, seeds=2, attn_scale="1/sqrt(d)")
    assert not r.passed
    assert r.worst["kind"] == "attn_logits"
    assert r.worst["slope"] > 0.3  # q.k grows like head_dim, divided by sqrt(head_dim)


# --- depth mode ----------------------------------------------------------------------------
@pytest.mark.slow
def test_depth_mode_flat_only_with_depth_scaling():
    # Depth-muP (branch x (L/2)^-1/2, Adam lr x (L/2)^-1/2), width 64, 4 steps, 3 seeds, base
    # init fan_in: the residual stream's slope over depths 2..32 stays within 0.1 at every step
    # (measured +0.08 at init, then within +-0.04); without the scaling it grows ~ +0.6..+0.8.
    depths = (2, 4, 8, 16, 32)
    scaled = depth_check("gpt", "mup", "adamw", depths=depths, width=64)
    plain = depth_check("gpt", "mup", "adamw", depths=depths, width=64, depth_scaling=False)
    res = scaled.module("residual")
    assert all(abs(s) <= 0.1 for s in res.slopes), res.slopes
    assert min(plain.module("residual").slopes) > 0.3  # ~sqrt(L) growth at every step
    assert scaled.passed and not plain.passed


# --- outputs -------------------------------------------------------------------------------
def test_json_png_and_roundtrip(tmp_path):
    from sizeup.diagnostics.plots import plot_coord_check

    r = coord_check("mlp", "sp", "adamw", widths=(64, 128), steps=2, seeds=1)
    path = r.save(tmp_path)
    plot_coord_check(r, tmp_path / "coord_check.png")
    d = json.loads(path.read_text())
    assert d["passed"] is False and isinstance(d["passed"], bool)
    assert d["worst"]["module"] and {m["name"] for m in d["modules"]} >= {"input", "logits"}
    assert (tmp_path / "coord_check.png").stat().st_size > 5000
    back = CoordCheckResult.from_dict(d)
    assert back.passed == r.passed and back.worst == r.worst


def test_cli_writes_json_and_fails_with_exit_code(tmp_path):
    from sizeup.cli import main

    with pytest.raises(SystemExit) as e:
        main(
            [
                "coord-check",
                "--model",
                "mlp",
                "--rule",
                "sp",
                "--optimizer",
                "adamw",
                "--lr",
                "0.01",
                "--widths",
                "64,128,256",
                "--steps",
                "2",
                "--seeds",
                "1",
                "--out",
                str(tmp_path),
            ]
        )
    assert e.value.code == 1
    assert json.loads((tmp_path / "coord_check.json").read_text())["passed"] is False
    try:
        main(
            [
                "coord-check",
                "--model",
                "mlp",
                "--rule",
                "mup",
                "--widths",
                "64,128,256,512",
                "--steps",
                "2",
                "--seeds",
                "3",
                "--out",
                str(tmp_path),
            ]
        )
    except SystemExit as e:  # a pass may return normally or exit 0
        assert e.code in (0, None)
    assert json.loads((tmp_path / "coord_check.json").read_text())["passed"] is True


def test_cli_noise_and_eps_flags_reach_the_check(tmp_path):
    from sizeup.cli import main

    try:
        main(
            [
                "coord-check",
                "--model",
                "mlp",
                "--rule",
                "mup",
                "--widths",
                "64,128",
                "--steps",
                "1",
                "--seeds",
                "2",
                "--noise-z",
                "0",
                "--no-scale-eps",
                "--out",
                str(tmp_path),
            ]
        )
    except SystemExit as e:
        assert e.code in (0, 1, None)
    d = json.loads((tmp_path / "coord_check.json").read_text())
    assert d["settings"]["parametrize"]["scale_eps"] is False
    assert {m["noise_z"] for m in d["modules"]} == {0.0}
    assert all(len(m["stderr"]) == 2 for m in d["modules"])  # one per step, from 2 seeds
    with pytest.raises(ConfigError, match="noise_z"):
        coord_check("mlp", widths=(64, 128), noise_z=-1)


def test_recorded_modules_gpt():
    from sizeup.models import GPT, GPTConfig

    names = coord_modules(GPT(GPTConfig(d_model=32, n_layer=2, n_head=2)))
    for n, kind in [
        ("wte", "hidden"),
        ("blocks.0.attn.logits", "attn_logits"),
        ("blocks.1", "residual"),
        ("blocks.0.ln1", "hidden"),
        ("ln_f", "hidden"),
        ("blocks.1.mlp.down", "hidden"),
        ("lm_head", "logits"),
        ("logits", "logits"),
    ]:
        assert names[n] == kind


# --- bad input -----------------------------------------------------------------------------
def test_errors_name_the_field():
    with pytest.raises(ConfigError, match="widths.*at least two"):
        coord_check("mlp", widths=(64,))
    with pytest.raises(ConfigError, match="widths.*increasing"):
        coord_check("mlp", widths=(128, 64))
    with pytest.raises(ConfigError, match="widths.*increasing"):
        coord_check("mlp", widths=(64, 64))
    with pytest.raises(ConfigError, match="modules.*nope"):
        coord_check("mlp", widths=(64, 128), modules=["nope"])
    with pytest.raises(ConfigError, match="rule"):
        coord_check("mlp", rule="bogus", widths=(64, 128), steps=1, seeds=1)
    with pytest.raises(ConfigError, match="optimizer"):
        coord_check("mlp", optimizer="adagrad", widths=(64, 128))
    with pytest.raises(ConfigError, match="model"):
        coord_check("cnn", widths=(64, 128))
    with pytest.raises(ConfigError, match="depths"):
        depth_check("gpt", depths=(4, 2))
    with pytest.raises(ConfigError, match="device"):
        coord_check("mlp", widths=(64, 128), device="tpu:0")
    with pytest.raises(ConfigError, match="noise_z"):
        depth_check("gpt", depths=(2, 4), noise_z=-1)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="device.*no CUDA"):
            coord_check("mlp", widths=(64, 128), device="cuda")
