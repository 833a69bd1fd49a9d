"""`sizeup coord-check`: a coordinate check with a verdict; exit code 1 when it fails (CI gate).

It checks the run `sizeup train` would train from the same config file, flags and `--set`s (the
shared option group in sizeup.cli.options): that model, init, parametrization and optimizer,
built at each of the check's widths against the config's base width. The check's own settings
(widths, steps, seeds, tolerance, ...) are its own options. Depth mode (``--depths``) checks the
built-in GPT family across depths.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from sizeup.choices import HF_ARCHS, choices_help
from sizeup.cli.options import ints, run_options
from sizeup.cli.output import FORMAT, Output, Table
from sizeup.config import RunConfig
from sizeup.errors import ConfigError


def register(app: typer.Typer) -> None:
    """Add the `coord-check` command to the sizeup app."""
    app.command("coord-check")(coord_check_cmd)


@run_options(lazy=True)
def coord_check_cmd(
    cfg: Callable[[], RunConfig],
    given: dict[str, Any],
    widths: str = typer.Option(
        None,
        help="Increasing widths, comma-separated (default 64,128,256,512; GPT 128,256,512,1024).",
    ),
    steps: int = typer.Option(4, help="Training steps; t = 0..steps are recorded."),
    seeds: int = typer.Option(3, help="Seeds averaged per width."),
    first_seed: int = typer.Option(
        None, help="Seeds first_seed.. (default: the config's seed; another draw of the check)."
    ),
    same_batch: bool = typer.Option(
        True,
        "--same-batch/--fresh-batches",
        help="Repeat the first batch every step, or train on batch t at step t as `train` does.",
    ),
    stat: str = typer.Option("l1", help="Size of an output: l1 (mean |x|) | rms."),
    out: Path = typer.Option(None, help="Write coord_check.json and coord_check.png here."),
    modules: str = typer.Option(None, help="Only these modules (comma-separated fnmatch)."),
    tolerance: float = typer.Option(0.1, help="Pass when |slope| <= tolerance."),
    noise_z: float = typer.Option(
        2.0,
        help="Fail only when outside the band by more than "
        "this many standard errors of the seed noise (0: strict).",
    ),
    depths: str = typer.Option(
        None, help="Depth mode (built-in GPT family): depths, e.g. 2,4,8,16,32."
    ),
    depth_scaling: bool = typer.Option(True, help="Depth mode: scale residual branches."),
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
    output = Output(fmt)
    judging = dict(
        steps=steps,
        seeds=seeds,
        first_seed=first_seed,
        same_batch=same_batch,
        stat=stat,
        tolerance=tolerance,
        noise_z=noise_z,
        progress=True,
    )
    if hf:
        result = _hf_result(hf, given, widths, modules, judging)
    elif depths:
        result = _depth_result(given, ints("depths", depths), depth_scaling, judging)
    else:
        from sizeup.cli.train import optimizer_notes
        from sizeup.diagnostics.coord_check import coord_check

        with optimizer_notes(True):  # a batch transfer or a large decay: one line each
            result = coord_check(
                config=cfg(),
                widths=ints("widths", widths) if widths else None,
                modules=modules.split(",") if modules else None,
                **judging,
            )
    with output:
        _report(output, result, noise_z, out)
    if not result.passed:
        # SystemExit, not typer.Exit: sizeup.cli.main runs click with standalone_mode=False,
        # where click turns typer.Exit into a return value and the exit code would be lost.
        raise SystemExit(1)


def _depth_result(
    flags: dict[str, Any],
    depths: list[int],
    depth_scaling: bool,
    judging: dict[str, Any],
) -> Any:
    """Depth mode: the built-in GPT family (not a RunConfig) across ``depths`` at --width."""
    from sizeup.diagnostics.coord_check import depth_check

    if flags["config"] is not None or flags["sets"]:
        raise ConfigError(
            "depths", depths, "no --config/--set: depth mode checks the built-in GPT family"
        )
    given = {k: v for k, v in flags.items() if v is not None and k in ("rule", "optimizer", "lr")}
    judging = {**judging, "first_seed": judging["first_seed"] or 0}
    return depth_check(
        flags["model"] or "gpt",
        depths=depths,
        depth_scaling=depth_scaling,
        width=flags["width"] or 64,
        base_width=flags["base_width"],
        **given,
        **judging,
    )


def _hf_result(
    arch: str,
    flags: dict[str, Any],
    widths: str | None,
    modules: str | None,
    judging: dict[str, Any],
) -> Any:
    """--hf: the transformers family ``arch`` with ``--set`` config overrides."""
    from sizeup.diagnostics.hf_check import hf_coord_check

    if flags["config"] is not None:
        raise ConfigError("--hf", arch, "no --config: --hf checks a transformers architecture")
    given = {k: v for k, v in flags.items() if v is not None and k in ("optimizer", "lr")}
    judging = {**judging, "first_seed": judging["first_seed"] or 0}
    return hf_coord_check(
        arch,
        flags["rule"] or "mup",
        overrides=hf_overrides(flags["sets"]),
        widths=ints("widths", widths) if widths else None,
        modules=modules.split(",") if modules else None,
        base_width=flags["base_width"],
        **given,
        **judging,
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


def _report(output: Output, result: Any, noise_z: float, out: Path | None) -> None:
    """The table (every module), the worst module, the noisy ones, and the JSON + figure under
    ``out``; with --format json the check's JSON document."""
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
            f": {', '.join(noisy)} {verb} outside the band but within "
            f"{noise_z:g} standard errors of the seed noise; more --seeds settle it.",
        )
    if out is not None:
        from sizeup.diagnostics.plots import plot_coord_check

        path = result.save(out)
        png = plot_coord_check(result, out / "coord_check.png")
        output.wrote(path, png)
