"""`sizeup plan`: print the plan for a target run as a rich table, and write plan.json and
plan.md with --out.

The options are not listed here: they are generated from the planner's input records
(``sizeup.plan.options.option_specs``: every record field is an option, named and documented
where the field is declared), and the values given go back to ``plan()`` by the same names.
Everything heavy is imported inside the command so `sizeup --help` stays fast.
"""

from __future__ import annotations

import inspect
import typing
from pathlib import Path
from typing import Any

import typer

from sizeup.cli.output import FORMAT, Output, Table
from sizeup.plan.options import OptionSpec, option_specs

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
    "out": (
        Path | None,
        typer.Option(
            None,
            help="Write DIR/plan.json and DIR/plan.md (and DIR/compare_lr.png with "
            "--compare-laws).",
        ),
    ),
    "explain": (
        bool,
        typer.Option(False, "--explain", help="Show the formula and inputs of every number."),
    ),
    "fmt": (str | None, FORMAT),
}


def register(app: typer.Typer) -> None:
    """Add the `plan` command to the sizeup app."""
    app.command("plan")(plan_command)


def _cli_type(t: Any) -> type:
    """The command-line type of a record field: int, float or bool when the field is one of
    those (or None), else text that the record parses (choices, 'c,e' laws, 'fan_in', ...)."""
    args = [a for a in (typing.get_args(t) or (t,)) if a is not type(None)]
    if len(args) == 1 and args[0] in (int, float, bool):
        return args[0]
    return str


def _parameter(spec: OptionSpec) -> inspect.Parameter:
    """One typer option for a record field; its default stays the record's (None = not given)."""
    decl = spec.flag or "--" + spec.name.replace("_", "-")
    shown = spec.default
    if isinstance(shown, float):
        shown = f"{shown:g}"
    text = spec.help + (f" (default {shown})" if spec.default is not None else "")
    return inspect.Parameter(
        spec.name,
        inspect.Parameter.KEYWORD_ONLY,
        default=typer.Option(None, decl, help=text, show_default=False),
        annotation=_cli_type(spec.type) | None,
    )


def plan_command(**options: Any) -> None:
    """Plan a target run: shape, tokens, FLOPs, batch, peak lr, schedule, per-layer table, loss, time."""
    from sizeup.errors import ConfigError
    from sizeup.plan import Proxy, plan

    study, group = options.pop("from_study"), options.pop("from_study_group")
    out, explain, fmt = options.pop("out"), options.pop("explain"), options.pop("fmt")
    output = Output(fmt)
    if group is not None and study is None:
        raise ConfigError("from_study_group", group, "given only with --from-study")
    proxy = Proxy.from_study(study, group) if study is not None else None
    p = plan(proxy=proxy, **options)
    with output:
        _print(output, p, explain)
        output.data(p.to_dict())
        if out is not None:
            path = p.save(out)
            written = [path, path.with_name("plan.md")]
            if p.comparison is not None:
                written.append(path.with_name("compare_lr.png"))
            output.wrote(*written)


plan_command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [_parameter(s) for s in option_specs()]
    + [
        inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=opt, annotation=ann)
        for k, (ann, opt) in COMMAND_OPTIONS.items()
    ]
)
plan_command.__annotations__ = {}


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
