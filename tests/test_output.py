"""Output that reads anywhere (issue #15): every table-printing command, run with stdout
redirected (a subprocess, not a terminal), prints Markdown with every module and row name
whole; ``--format json`` prints one document that parses; ``--format rich`` off a terminal is
sized to its widest table; every "wrote" line names every file written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sizeup.cli import main
from sizeup.cli.output import Output, Table, markdown_table, resolve_format
from sizeup.errors import ConfigError

SRC = Path(__file__).resolve().parents[1] / "src"


def sizeup(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`python -m sizeup ARGS` with stdout and stderr piped (not a terminal)."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "60"}
    return subprocess.run(
        [sys.executable, "-m", "sizeup", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=600,
    )


def cells(markdown: str) -> set[str]:
    """Every cell of every Markdown table row in the text."""
    out: set[str] = set()
    for line in markdown.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            out |= {c.strip() for c in line.strip().strip("|").split(" | ")}
    return out


# --- the output module ---------------------------------------------------------------------
def test_default_format_is_markdown_off_a_terminal_and_the_vocabulary_is_checked(tmp_path):
    with open(tmp_path / "f.txt", "w") as f:
        assert resolve_format(None, f) == "markdown"
    assert resolve_format("json") == "json"
    with pytest.raises(ConfigError, match="format='html'.*'rich', 'markdown', 'json'"):
        resolve_format("html")
    t = Table("t", ["name", "x"], [["a|b", ("1", "red")]], right=("x",))
    assert "| a\\|b | 1 |" in markdown_table(t) and "|---|---:|" in markdown_table(t)


def test_rich_off_a_terminal_is_as_wide_as_its_table(tmp_path):
    long = "blocks.0.mlp.gate.weight_with_a_very_long_module_name_that_rich_would_fold"
    with open(tmp_path / "out.txt", "w") as f:
        Output("rich", stream=f).table(Table("t", ["module", "slope"], [[long, "+0.01"]] * 3))
    text = (tmp_path / "out.txt").read_text()
    assert long in text and "…" not in text


# --- every table-printing command, stdout redirected -----------------------------------------
def test_parametrize_off_a_terminal_prints_every_tensor_whole():
    from sizeup.config import RunConfig
    from sizeup.train import build

    r = sizeup("parametrize", "--width", "64", "--depth", "3")
    assert r.returncode == 0, r.stderr
    names = {row["name"] for row in build(RunConfig(width=64, depth=3)).parametrization.rows()}
    assert names <= cells(r.stdout), names - cells(r.stdout)
    # the header says what the table is for; AdamW: no Muon mark, no Muon footnote
    assert "width 64, base width 32 (x2), depth 3, rule mup, optimizer adamw" in r.stdout
    assert "Muon" not in r.stdout and not any(c.endswith("*") for c in cells(r.stdout))


def test_coord_check_off_a_terminal_prints_every_module_whole(tmp_path):
    r = sizeup(
        "coord-check", "--widths", "32,64", "--steps", "1", "--seeds", "1", "--out", tmp_path
    )
    assert r.returncode in (0, 1, 3), r.stderr  # a verdict: pass, fail or inconclusive
    modules = json.loads((tmp_path / "coord_check.json").read_text())["modules"]
    shown = {c.rstrip("*") for c in cells(r.stdout)}
    assert {m["name"] for m in modules} <= shown
    assert "…" not in r.stdout
    assert f"wrote {tmp_path / 'coord_check.json'} and {tmp_path / 'coord_check.png'}" in r.stdout


def test_train_summary_off_a_terminal_names_every_row(tmp_path):
    r = sizeup(
        "train", "--width", "64", "--steps", "3", "--batch-size", "8", "--set", "base_batch_size=2"
    )
    assert r.returncode == 0, r.stderr
    rows = cells(r.stdout)
    for name in ("model", "parametrization", "optimizer", "batch", "batch transfer", "diverged"):
        assert name in rows
    # the rule's key settings and what the batch transfer moved
    assert "mup from base width 32 (width x2), init std model, attention 1/d" in r.stdout
    assert "betas (0.9, 0.95) -> (0.6, 0.8)" in r.stdout
    assert "note: batch transfer from base_batch_size=2 to batch_size=8" in r.stderr


def test_plan_off_a_terminal_prints_every_row_and_layer_whole():
    r = sizeup("plan", "--preset", "deepseek-v1", "--params", "7e9", "--tokens", "2e12")
    assert r.returncode == 0, r.stderr
    shown = cells(r.stdout)
    for row in ("shape", "parameters", "tokens", "transfer", "predicted loss", "time", "cost"):
        assert row in shown
    for tensor in ("wte", "blocks.*.attn.q", "blocks.*.mlp.down", "lm_head"):
        assert tensor in shown


def test_flops_fit_and_transfer_off_a_terminal(tmp_path):
    from sizeup.sweep import run_sweep
    from sizeup.sweep.testing import synthetic_run

    r = sizeup("flops", "gpt", "--n-layer", "2", "--d-model", "256")
    assert r.returncode == 0 and {"params", "FLOPs/token (train)"} <= cells(r.stdout)
    spec = {"base": {"steps": 5}, "axes": {"width": [32, 64], "lr": {"log2": [-10, -6]}}}
    run_sweep(spec, tmp_path / "s.db", runner=synthetic_run, progress=False)
    r = sizeup("transfer", tmp_path / "s.db")
    assert r.returncode == 0, r.stderr
    assert {"width", "optimal lr", "regret", "best loss", "32", "64"} <= cells(r.stdout)
    r = sizeup("transfer", tmp_path / "s.db", "--format", "json")
    assert json.loads(r.stdout)["groups"][0]["points"], r.stderr
    csv = tmp_path / "runs.csv"
    _isoflop_points().to_csv(csv, index=False)
    r = sizeup("fit", "chinchilla", csv, "--approach", "2", "--out", tmp_path / "fit")
    assert r.returncode == 0, r.stderr
    assert {"a (N_opt ∝ C^a)", "b (D_opt ∝ C^b)", "budgets used"} <= cells(r.stdout)
    # the wrote line names every file written, the plot too
    assert f"wrote {tmp_path / 'fit' / 'fit.json'} and {tmp_path / 'fit' / 'isoflops.png'}" in (
        r.stdout
    )


def _isoflop_points() -> pd.DataFrame:
    from sizeup.laws import ChinchillaLaw

    law = ChinchillaLaw(E=1.8, A=400.0, B=2000.0, alpha=0.34, beta=0.36)
    rows = []
    for C in np.geomspace(1e18, 1e21, 4):
        n_opt, _ = law.optimal(C)
        for f in np.geomspace(1 / 8, 8, 7):
            n = n_opt * f
            rows.append({"params": n, "flops": C, "loss": law.loss(n, C / (6 * n))})
    return pd.DataFrame(rows)


# --- --format json parses --------------------------------------------------------------------
def test_format_json_parses_for_every_table_command(tmp_path, capsys):
    docs = {}
    runs = {
        "plan": ["plan", "--preset", "chinchilla", "--compute", "1e21"],
        "flops": ["flops", "deepseek", "--n-layer", "30", "--d-model", "4096", "--seq-len", "4096"],
        "parametrize": ["parametrize", "--width", "64"],
        "train": ["train", "--width", "32", "--steps", "2"],
    }
    _isoflop_points().to_csv(tmp_path / "runs.csv", index=False)
    runs["fit"] = ["fit", "chinchilla", str(tmp_path / "runs.csv"), "--approach", "2"]
    runs["fit"] += ["--out", str(tmp_path / "fit")]
    for name, argv in runs.items():
        main([*argv, "--format", "json"])
        docs[name] = json.loads(capsys.readouterr().out)
    assert docs["plan"]["params"] > 0 and docs["plan"]["layers"]
    assert docs["flops"]["flops_per_token"] == pytest.approx(4.228e10, rel=1e-3)
    assert docs["parametrize"]["tensors"] and "header" in docs["parametrize"]
    assert docs["train"]["config"]["width"] == 32
    assert docs["fit"]["approach"] == 2
    with pytest.raises(SystemExit) as e:
        main(
            ["coord-check", "--widths", "32,64", "--steps", "1", "--seeds", "1", "--format", "json"]
        )
    assert e.value.code in (0, 1, 3, None)
    assert json.loads(capsys.readouterr().out)["sizes"] == [32, 64]


def test_bad_format_is_one_clear_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["flops", "deepseek", "--n-layer", "2", "--d-model", "128", "--format", "html"])
    assert e.value.code == 2 and "format" in capsys.readouterr().err


# --- fit: a default folder, every file named ------------------------------------------------
def test_fit_writes_a_default_folder_and_names_every_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _isoflop_points().to_csv("runs.csv", index=False)
    main(["fit", "chinchilla", "runs.csv", "--approach", "3"])
    out = capsys.readouterr().out
    assert (tmp_path / "fit-chinchilla" / "fit.json").exists()
    assert "wrote fit-chinchilla/fit.json and fit-chinchilla/approach3.png" in out


def test_flops_and_plan_share_option_names_and_defaults():
    import inspect

    from sizeup.cli.laws import flops_cmd
    from sizeup.cli.plan import plan_command
    from sizeup.plan.records import DEFAULT_VOCAB

    def flags(cmd):
        params = inspect.signature(cmd).parameters.values()
        shown = [
            p for p in params if p.name not in ("formula", "fmt") and "__alias__" not in p.name
        ]
        return {
            p.default.param_decls[0] if p.default.param_decls else "--" + p.name.replace("_", "-")
            for p in shown
        }

    plan_flags = flags(plan_command)
    # flops also counts shapes the planner does not build (MLA attention) and a throughput:
    # those options are its own; every shape option the two share is spelled alike, --d-ff and
    # the MoE ones included
    flops_only = {
        "--tokens-per-s",
        "--gpu",
        "--n-gpus",
        "--router-bias/--no-router-bias",
        "--kv-lora-rank",
        "--q-lora-rank",
        "--rope-head-dim",
        "--v-head-dim",
    }
    mine = flags(flops_cmd)
    assert mine - flops_only <= plan_flags, mine - flops_only - plan_flags
    assert {"--d-ff", "--n-experts", "--width", "--depth", "--n-kv-head"} <= mine & plan_flags
    vocab = next(
        p for p in inspect.signature(flops_cmd).parameters.values() if p.name == "vocab_size"
    )
    assert f"[default: {DEFAULT_VOCAB}]" in vocab.default.help


# --- sweeps: the dry run estimates, a run off a terminal prints progress lines ----------------
SPEC = "base: {steps: 6, batch_size: 4}\naxes:\n  width: [32, 64]\n"


def test_sweep_dry_run_says_the_trial_count_and_an_estimated_wall_time(tmp_path, capsys):
    (tmp_path / "spec.yaml").write_text(SPEC)
    main(["sweep", str(tmp_path / "spec.yaml"), "--store", str(tmp_path / "s.db"), "--dry-run"])
    out = capsys.readouterr().out
    assert "2 trials in" in out
    assert "estimated wall time" in out and "an estimate from timing a few steps" in out
    assert not (tmp_path / "s.db").exists()  # nothing ran


def test_sweep_off_a_terminal_prints_progress_lines(tmp_path):
    (tmp_path / "spec.yaml").write_text(SPEC)
    r = sizeup("sweep", tmp_path / "spec.yaml", "--store", tmp_path / "s.db")
    assert r.returncode == 0, r.stderr
    assert "sweep: 2/2 (100%)" in r.stderr and "\x1b[" not in r.stderr
    assert "ran 2 trials" in r.stdout


def test_parametrize_marks_muon_only_under_muon(capsys):
    main(["parametrize", "--width", "64", "--optimizer", "muon", "--format", "markdown"])
    out = capsys.readouterr().out
    assert "* updated by Muon" in out and "| hidden* |" in out
    assert out.splitlines()[0].endswith("rule mup, optimizer muon (lr 0.003)")
