"""Command-line options generated from the records, and the pieces every command shares.

Every option that sets a record's field is generated here from the field's declaration
(sizeup.config.fields: its flat name, help, type, choices and old names), so a command never
restates one and one concept has one name in every command: ``--width`` in `train`, `plan`,
`flops` and `coord-check` alike. A field's old names are hidden aliases (``--d-model`` for
``--width``, ``--init-std`` for ``--sigma``), kept for one release. Options are grouped in
``--help`` by the record they belong to.

``run_options`` gives a command the whole RunConfig (``--config FILE``, one option per field,
``--set key=value``) and hands it the RunConfig they describe.
"""

from __future__ import annotations

import functools
import inspect
import os
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import typer

from sizeup.config import SECTIONS, FieldInfo, Record, RunConfig, field_for, load_mapping
from sizeup.config.run_config import flatten
from sizeup.errors import ConfigError

_ALIAS = "__alias__"  # parameter-name marker of a hidden old-name option


def option_name(name: str) -> str:
    """The flag of a flat name: ``base_width`` -> ``--base-width``."""
    return "--" + name.replace("_", "-")


def _cli_type(info: FieldInfo) -> Any:
    """The command-line type: int, float or bool where the field is one of those, else text
    that the record parses (choices, 'model'/'fan_in'/numbers, 'q:m' pairs, ...)."""
    return info.kind if info.kind in (int, float, bool) else str


def _help(info: FieldInfo, default: Any) -> str:
    allowed = info.allowed()
    text = info.help
    if allowed is not None and not any(a in text for a in allowed):
        text += " (" + " | ".join(allowed) + ")"
    if info.bounds is not None:
        text += f" ({info.bounds.text(integer=info.kind is int)})"
    if default is not None:
        shown = f"{default:g}" if isinstance(default, float) else default
        text += f" [default: {shown}]"
    return text


def field_parameters(
    fields: Iterable[FieldInfo],
    defaults: Mapping[str, Any] | None = None,
    panels: bool = True,
) -> list[inspect.Parameter]:
    """One keyword parameter per field (default None: not given), named by its flat name, plus
    a hidden one per old name. ``defaults``: the command's own defaults, shown in the help."""
    defaults = defaults or {}
    out = []
    for info in fields:
        if not info.cli:
            continue
        flag = option_name(info.flat)
        decls = [f"{flag}/--no-{info.flat.replace('_', '-')}" if info.kind is bool else flag]
        if info.switch is not None:
            decls = [info.switch]
        panel = info.section or None
        default = defaults.get(info.flat, info.default)
        option = typer.Option(
            None,
            *decls,
            help=_help(info, default),
            show_default=False,
            rich_help_panel=panel if panels else None,
        )
        t = _cli_type(info)
        out.append(_param(info.flat, option, t))
        for alias in info.aliases:
            hidden = typer.Option(None, option_name(alias), hidden=True)
            out.append(_param(f"{info.flat}{_ALIAS}{alias}", hidden, t))
    return out


def _param(name: str, option: Any, t: Any) -> inspect.Parameter:
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=t | None
    )


def take_fields(kw: dict[str, Any], fields: Iterable[FieldInfo]) -> dict[str, Any]:
    """Pop the generated field options from a command's keyword arguments: flat name -> value
    for each one given (an old-name alias counts as its field; both spellings is an error)."""
    given: dict[str, Any] = {}
    for info in fields:
        if not info.cli:
            continue
        value = kw.pop(info.flat, None)
        for alias in info.aliases:
            old = kw.pop(f"{info.flat}{_ALIAS}{alias}", None)
            if old is None:
                continue
            if value is not None:
                raise ConfigError(alias, old, f"left out: --{info.flat} is given (its new name)")
            value = old
        if value is not None:
            given[info.flat] = value
    return given


def run_fields(exclude: Iterable[str] = ()) -> list[FieldInfo]:
    """RunConfig's fields as options, section by section, less the flat names in ``exclude``
    (a command's own option of that name, e.g. coord-check's check ``--steps``)."""
    skip = set(exclude)
    return [info for cls in SECTIONS.values() for info in cls.field_info() if info.flat not in skip]


def parse_sets(sets: list[str]) -> dict[str, Any]:
    """``--set key=value`` pairs as {key: value}; the key is any RunConfig field name (flat,
    dotted or old), read by the field's type when the RunConfig is built."""
    out: dict[str, Any] = {}
    for item in sets:
        if "=" not in item:
            raise ConfigError("--set", item, "key=value with key a RunConfig field")
        k, v = item.split("=", 1)
        field_for(k.strip(), v)  # an unknown key is named before anything else
        out[k.strip()] = v.strip()
    return out


def config_from_cli(
    config: Path | None,
    flags: Mapping[str, Any],
    sets: list[str],
    defaults: Mapping[str, Any] | None = None,
) -> RunConfig:
    """The RunConfig of a command line: the command's own defaults, a config file (flat or in
    sections), the field options and `--set key=value` pairs, each over the one before."""
    merged = flatten(defaults or {})
    if config is not None:
        merged.update(flatten(load_mapping(config)))
    merged.update(flatten(flags))
    merged.update(flatten(parse_sets(sets)))
    return RunConfig(**merged)


CONFIG_OPTION = typer.Option(
    None, "--config", "-c", help="YAML/TOML/JSON file of RunConfig fields (flat or in sections)."
)
SET_OPTION = typer.Option(
    [],
    "--set",
    help="Any RunConfig field as key=value (flat or dotted name, e.g. model.width=256); "
    "repeatable, over the flags.",
)


def run_options(
    *,
    exclude: Iterable[str] = (),
    defaults: Mapping[str, Any] | None = None,
    lazy: bool = False,
    records: Mapping[str, type[Record]] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command ``--config``, one option per RunConfig field (grouped by section; those
    in ``exclude`` left to the command) and ``--set``, and call it with ``cfg``, the RunConfig
    they describe. ``defaults`` are the command's own RunConfig defaults, under everything the
    user gives (wsd's tiny models). A command that also wants to know which fields were given
    takes a ``given`` parameter ({flat name: value} plus "config" and "sets"); with ``lazy``
    its ``cfg`` is a function that builds the RunConfig when called (coord-check --hf reads
    --set as a transformers config instead). ``records``: more records the command reads
    (parameter name -> record type, e.g. coord-check's CheckSpec): their fields become options
    too, and the command gets the record built from them."""
    fields = run_fields(exclude)
    extra = {name: cls.field_info() for name, cls in (records or {}).items()}
    shown = flatten(defaults or {})

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        hints = typing.get_type_hints(fn)
        own = [
            p.replace(
                kind=inspect.Parameter.KEYWORD_ONLY, annotation=hints.get(p.name, p.annotation)
            )
            for p in inspect.signature(fn).parameters.values()
            if p.name not in ("cfg", "given", *(records or {}))
        ]
        wants_given = "given" in inspect.signature(fn).parameters

        def command(**kw: Any) -> Any:
            config, sets = kw.pop("config"), kw.pop("sets")
            for name, cls in (records or {}).items():
                kw[name] = cls(**take_fields(kw, extra[name]))
            flags = take_fields(kw, fields)
            build = functools.partial(config_from_cli, config, flags, sets, defaults)
            told = {"given": {**flags, "config": config, "sets": sets}} if wants_given else {}
            return fn(cfg=build if lazy else build(), **kw, **told)

        group = [
            inspect.Parameter(
                "config",
                inspect.Parameter.KEYWORD_ONLY,
                default=CONFIG_OPTION,
                annotation=Path | None,
            ),
            *field_parameters(fields, shown),
            inspect.Parameter(
                "sets", inspect.Parameter.KEYWORD_ONLY, default=SET_OPTION, annotation=list[str]
            ),
            *(p for infos in extra.values() for p in field_parameters(infos)),
        ]
        command.__signature__ = inspect.Signature(group + own)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in group + own}
        command.__name__, command.__doc__ = fn.__name__, fn.__doc__
        return command

    return decorate


def ints(field: str, text: str) -> list[int]:
    """Comma-separated positive integers ("64,128,256"), or a ConfigError naming ``field``."""
    try:
        vals = [int(float(v)) for v in text.split(",") if v.strip()]
    except ValueError as e:
        raise ConfigError(field, text, "comma-separated positive integers, e.g. 64,128,256") from e
    if not vals or min(vals) < 1:
        raise ConfigError(field, text, "comma-separated positive integers, e.g. 64,128,256")
    return vals


def writable(field: str, path: Path | None, folder: bool = False) -> Path | None:
    """Check before any work that ``path`` can be written (a file, or with ``folder`` a folder
    made on demand): the nearest existing ancestor must be a writable folder."""
    if path is None:
        return None
    if not folder and path.is_dir():
        raise ConfigError(field, str(path), "a file path, not a folder")
    if folder and path.exists() and not path.is_dir():
        raise ConfigError(field, str(path), "a folder (this is a file): another path, or remove it")
    probe = path if folder else path.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK):
        raise ConfigError(field, str(path), f"a path under a writable folder ({probe} is not)")
    return path


__all__ = [
    "config_from_cli",
    "field_parameters",
    "ints",
    "option_name",
    "parse_sets",
    "run_fields",
    "run_options",
    "take_fields",
    "writable",
]
