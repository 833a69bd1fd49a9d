"""`sizeup plan`: print the plan for a target run as a rich table, and write plan.json, plan.md
and run.json with --out.

The options are not listed here: they are generated from the records (the plan's own,
``sizeup.plan.records``, and the ModelSpec, ParamSpec, OptimSpec and ScheduleSpec fields it
shares with `sizeup train`, by the same names: sizeup.plan.options.option_fields), and the
values given go back to ``plan()`` by the same names.
Everything heavy is imported inside the command so `sizeup --help` stays fast.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import typer

from sizeup.cli.options import field_parameters, take_fields
from sizeup.cli.output import FORMAT, Output, Table
from sizeup.plan.options import option_fields
from sizeup.plan.records import PLAN_MODEL, PLAN_OPTIMIZER

# Options of the command itself (not planner inputs).
COMMAND_OPTIONS: dict[str, tuple[Any, Any]] = {
    "from_study": (
        Path | None,
        typer.Option(
            None,
            help="Take the proxy from a sweep study (.db): shape, batch, tokens, recipe and "
            "the transfer analysis' optimal lr at the widest width.",
        ),
    ),
    "from_study_group": (
        str | None,
        typer.Option(
            None,
            help="Which group of the study, e.g. rule=mup (default: the only one, else rule=mup).",
        ),
    ),
    "horizon_study": (
        Path | None,
        typer.Option(
            None,
            help="With --from-study: a steps study (.db) whose measured horizon exponent "
            "alpha_data replaces --data-exponent (sizeup.sweep.exponents).",
        ),
    ),
    "batch_study": (
        Path | None,
        typer.Option(
            None,
            help="With --from-study: a batch study (.db) whose measured batch exponent replaces "
            "the square-root rule's 1/2 for the lr.",
        ),
    ),
    "out": (
        Path | None,
        typer.Option(
            None,
            help="Write DIR/plan.json, DIR/plan.md and DIR/run.json (`sizeup train -c "
            "DIR/run.json`; DIR/compare_lr.png with --compare-laws).",
        ),
    ),
    # torchtitan integration (issue 25): one name per trainer a plan can be written for
    "emit": (
        str | None,
        typer.Option(
            None,
            help="Also write the job for another trainer into --out: 'torchtitan' writes "
            "DIR/torchtitan_job.py (torchtitan's config module: python -m torchtitan.train "
            "--module torchtitan_job --config sizeup_plan; needs sizeup[torchtitan]).",
        ),
    ),
    "explain": (
        bool,
        typer.Option(False, "--explain", help="Show the formula and inputs of every number."),
    ),
    "fmt": (str | None, FORMAT),
}
FIELDS = option_fields()
# The plan's own defaults where they differ from a run's, shown in the help.
SHOWN = {**PLAN_MODEL, **PLAN_OPTIMIZER, "schedule": "wsd", "warmup": None}


def register(app: typer.Typer) -> None:
    """Add the `plan` command to the sizeup app."""
    app.command("plan")(plan_command)


def plan_command(**options: Any) -> None:
    """Plan a target run: shape, tokens, FLOPs, batch, peak lr, schedule, per-layer table, loss, time."""
    from sizeup.errors import ConfigError, check_choice
    from sizeup.plan import plan, read_study

    study, group = options.pop("from_study"), options.pop("from_study_group")
    measured = {k: options.pop(k) for k in ("horizon_study", "batch_study")}
    out, explain, fmt = options.pop("out"), options.pop("explain"), options.pop("fmt")
    emit = options.pop("emit")
    output = Output(fmt)
    if group is not None and study is None:
        raise ConfigError("from_study_group", group, "given only with --from-study")
    if emit is not None:
        check_choice("emit", emit, EMITS)
        if out is None:
            raise ConfigError("emit", emit, "given with --out DIR (where the job is written)")
    for k, v in measured.items():
        if v is not None and study is None:
            raise ConfigError(k, str(v), "given only with --from-study")
    given = take_fields(options, FIELDS)
    p = plan(study=read_study(study, group, **measured) if study is not None else None, **given)
    with output:
        _print(output, p, explain)
        output.data(p.to_dict())
        if out is not None:
            path = p.save(out)
            written = [path, path.with_name("plan.md"), path.with_name("run.json")]
            if p.comparison is not None:
                written.append(path.with_name("compare_lr.png"))
            if emit is not None:
                written.append(_emit(emit, p.run, Path(out)))
            output.wrote(*written)


plan_command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    field_parameters(FIELDS, SHOWN)
    + [
        inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=opt, annotation=ann)
        for k, (ann, opt) in COMMAND_OPTIONS.items()
    ]
)
plan_command.__annotations__ = {}


# torchtitan integration (issue 25): the trainers `--emit` writes a job for
EMITS = ("torchtitan",)


def _emit(trainer: str, run: Any, out: Path) -> Path:
    """Write the plan's run as a job of ``trainer`` (EMITS) into ``out``; return its path."""
    from sizeup.integrations.torchtitan import job_module

    path = out / "torchtitan_job.py"
    path.write_text(job_module(run))
    return path


def _print(output: Output, p: Any, explain: bool) -> None:
    """Summary table, per-layer table, the laws compared, warnings and (with --explain) the
    derivations."""
    from sizeup.plan.planner import _fmt_any, _fmt_inputs

    output.table(Table("sizeup plan", ["quantity", "value"], [list(r) for r in p.summary_rows()]))
    head = p.layer_header()
    numbers = tuple(h for h in head if h not in ("tensor", "role"))
    layers = Table(f"per-layer table: {p.table_title()}", head, p.layer_rows(), right=numbers)
    output.table(layers)
    if p.comparison is not None:
        _print_comparison(output, p.comparison)
    for w in p.warnings:
        output.line(("warning:", "yellow"), f" {w}")
    if explain:
        t = Table("how each number was derived", ["quantity", "value", "formula", "inputs"])
        for e in p.explain:
            t.add(e["name"], _fmt_any(e["value"]), e["formula"], _fmt_inputs(e["inputs"]))
        output.table(t)


def _print_comparison(output: Output, comparison: dict[str, Any]) -> None:
    """The laws side by side, then each law's notes and where its setup differs."""
    from sizeup.plan.compare import HEADER, table_rows

    t = comparison["target"]
    title = f"published laws at {t['params']:.4g} parameters, {t['tokens']:.4g} tokens"
    if comparison["loss"] is not None:
        title += f" (loss-read laws at L = {comparison['loss']:.4g}, {comparison['loss_source']})"
    numbers = tuple(h for h in HEADER if h not in ("law", "schedule"))
    output.table(Table(title, HEADER, table_rows(comparison), right=numbers))  # type: ignore[arg-type]
    for r in comparison["rows"]:
        output.line((r["name"], "bold"), f" ({r['source']})")
        for n in r["notes"]:
            output.line(f"  note: {n}")
        output.line("  differs: " + "; ".join(r["differs"]))
