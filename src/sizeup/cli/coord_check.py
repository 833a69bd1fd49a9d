"""`sizeup coord-check`: a coordinate check with a verdict, as its exit code (a CI gate): 0 when
it passes, 1 when it fails, 3 when it is inconclusive (too few seeds to tell a slope outside the
band from seed noise: run more seeds), 2 for bad input (as every command).

It checks the run `sizeup train` would train from the same config file, flags and `--set`s (every
RunConfig field is an option, sizeup.cli.options): that model, init, parametrization and
optimizer, built at each of the check's widths against the config's base width, or at each of
its depths (``--depths``; residual branches scaled from the smallest depth unless
``--no-depth-scaling`` or ``--base-depth`` says otherwise). The check's own settings (widths or
depths, steps, seeds, tolerance, ...) are the CheckSpec's fields. ``--hf ARCH`` checks a
transformers family instead, with ``--set`` reading its config fields.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from sizeup.choices import HF_ARCHS, choices_help
from sizeup.cli.options import run_options
from sizeup.cli.output import FORMAT, Output, Table
from sizeup.config import CheckSpec, OptimSpec, ParamSpec, RunConfig
from sizeup.errors import ConfigError

# The exit code of each verdict (docs/diagnostics.md); 2 is bad input, as for every command.
EXIT_CODES = {"pass": 0, "fail": 1, "inconclusive": 3}

# The check runs the config's peak lr, constant, for its own steps: the schedule is not an option.
SCHEDULE_FIELDS = ("steps", "schedule", "warmup", "decay_frac", "cooldown", "milestones")
EXCLUDED = (*SCHEDULE_FIELDS, "power_a", "power_b")


def register(app: typer.Typer) -> None:
    """Add the `coord-check` command to the sizeup app."""
    app.command("coord-check")(coord_check_cmd)


@run_options(exclude=EXCLUDED, lazy=True, records={"check": CheckSpec})
def coord_check_cmd(
    cfg: Callable[[], RunConfig],
    check: CheckSpec,
    given: dict[str, Any],
    depth_scaling: bool = typer.Option(
        True,
        help="Depth mode: scale residual branches from the smallest depth (when --base-depth "
        "is not given).",
    ),
    first_seed: int = typer.Option(None, "--first-seed", hidden=True),
    out: Path = typer.Option(None, help="Write coord_check.json and coord_check.png here."),
    hf: str = typer.Option(
        None,
        "--hf",
        help="A transformers architecture ("
        + choices_help(HF_ARCHS)
        + "); --set then sets its config fields. Widths: hidden size (default 64,128,256), "
        "heads fixed.",
    ),
    fmt: str = FORMAT,
) -> None:
    """Check that every activation of the run `sizeup train` would train stays flat in width."""
    from sizeup.cli.train import optimizer_notes
    from sizeup.diagnostics.coord_check import coord_check

    output = Output(fmt)
    if first_seed is not None:  # its old name: the run's seed is the check's first seed
        given = {**given, "seed": first_seed}
    if hf:
        result = _hf_result(hf, given, check)
    else:
        run = _run_config(cfg, given, check, depth_scaling)
        with optimizer_notes(True):  # a batch transfer or a large decay: one line each
            result = coord_check(run, check, progress=True)
    with output:
        _report(output, result, out)
    if not result.passed:
        # SystemExit, not typer.Exit: sizeup.cli.main runs click with standalone_mode=False,
        # where click turns typer.Exit into a return value and the exit code would be lost.
        raise SystemExit(EXIT_CODES[result.verdict])


def _run_config(
    cfg: Callable[[], RunConfig], given: dict[str, Any], check: CheckSpec, scaling: bool
) -> RunConfig:
    """The RunConfig checked: the command line's, its seed the one given, and in depth mode
    with the residual branches scaled from the smallest depth unless told otherwise."""
    run = cfg()
    if "seed" in given:
        run = run.replace(seed=given["seed"])
    if check.axis == "depth" and scaling and run.parametrization.base_depth is None:
        run = run.replace(base_depth=check.depths[0])
    return run


def _hf_result(arch: str, given: dict[str, Any], check: CheckSpec) -> Any:
    """--hf: the transformers family ``arch`` with ``--set`` config overrides; the
    parametrization and optimizer fields given on the command line over the HF defaults."""
    from sizeup.diagnostics.hf_check import hf_coord_check

    if given["config"] is not None:
        raise ConfigError("--hf", arch, "no --config: --hf checks a transformers architecture")
    spec_fields = {i.flat: i.name for i in ParamSpec.field_info()}
    opt_fields = {i.flat: i.name for i in OptimSpec.field_info()}
    param = {spec_fields[k]: v for k, v in given.items() if k in spec_fields}
    opt = {opt_fields[k]: v for k, v in given.items() if k in opt_fields}
    return hf_coord_check(
        arch,
        check=check,
        parametrization=ParamSpec(**param) if param else None,
        optimizer=OptimSpec(**{"lr": 1e-2, **opt}),
        overrides=hf_overrides(given["sets"]),
        progress=True,
    )


def hf_overrides(sets: list[str]) -> dict[str, Any]:
    """``--set key=value`` pairs as transformers config fields (values read as YAML: numbers,
    booleans, null, lists)."""
    import yaml

    out = {}
    for item in sets:
        if "=" not in item:
            raise ConfigError("--set", item, "key=value with key a field of the model's config")
        k, v = item.split("=", 1)
        out[k.strip()] = yaml.safe_load(v.strip())
    return out


def _report(output: Output, result: Any, out: Path | None) -> None:
    """The table (every module), the worst module, the noisy ones, what to do when the verdict
    is inconclusive, and the JSON + figure under ``out``; with --format json the check's JSON
    document."""
    title, columns, rows, caption = result.table_cells()
    output.table(Table(title, columns, rows, caption, right=tuple(columns[2:-1])))
    output.data(result.to_dict())
    w = result.worst
    if w:
        slope = w["slope"] if w["slope"] is None else round(w["slope"], 3)
        what = " (its update)" if w.get("judged") == "update" else ""
        output.line(
            "worst: ",
            (w["module"], "bold"),
            f" ({w['kind']}) at t={w['step']}: slope{what} {slope}",
        )
    noisy = [m.name for m in result.modules if m.noisy(result.judge_from)]
    if noisy:
        verb = "lies" if len(noisy) == 1 else "lie"
        output.line(
            ("noisy", "yellow"),
            f": {', '.join(noisy)} {verb} outside the band but within the seed noise "
            f"({result.seeds} seeds); more --seeds settle it.",
        )
    if result.advice:
        output.line((result.advice, "yellow"))
    if out is not None:
        from sizeup.diagnostics.plots import plot_coord_check

        path = result.save(out)
        png = plot_coord_check(result, out / "coord_check.png")
        output.wrote(path, png)
