"""Command-line pieces every command shares: the RunConfig option group (``run_options``),
`--set key=value` parsing, comma-separated integer lists and output paths checked before any
work. `train`, `parametrize`, `coord-check` and `wsd` take the group from one decorator, so they
spell their options alike and build their RunConfig the same way."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from sizeup.choices import MODELS, OPTIMIZERS, RULES, choices_help
from sizeup.config import RunConfig, load_mapping
from sizeup.errors import ConfigError


def config_from_cli(
    config: Path | None,
    overrides: dict[str, Any],
    sets: list[str],
    defaults: dict[str, Any] | None = None,
) -> RunConfig:
    """Merge a command's own defaults, a config file, explicit flags and `--set key=value`
    pairs (each over the one before) into a RunConfig."""
    d: dict[str, Any] = dict(defaults or {})
    d.update(load_mapping(config) if config is not None else {})
    d.update({k: v for k, v in overrides.items() if v is not None})
    fields = {f.name: f for f in dataclasses.fields(RunConfig)}
    for item in sets:
        if "=" not in item:
            raise ConfigError("--set", item, "key=value with key a RunConfig field")
        k, v = item.split("=", 1)
        k = k.strip().replace("-", "_")
        if k not in fields:
            raise ConfigError(k, v, "a RunConfig field: " + ", ".join(sorted(fields)))
        d[k] = v.strip()  # RunConfig reads it by the field's type (config.parse_field)
    return RunConfig.from_dict(d)


# Options shared by every command that builds a run from a RunConfig (train, parametrize,
# coord-check, wsd): one declaration, so their names, help and defaults agree.
OPT = dict(
    config=typer.Option(None, "--config", "-c", help="YAML/TOML/JSON file of RunConfig fields."),
    model=typer.Option(None, help=choices_help(MODELS)),
    width=typer.Option(None, help="d_model (GPT) or hidden width (MLP)."),
    depth=typer.Option(None, help="Transformer blocks or MLP hidden layers."),
    rule=typer.Option(None, help=choices_help(RULES)),
    base_width=typer.Option(None, help="Width of the base (proxy) model."),
    optimizer=typer.Option(None, help=choices_help(OPTIMIZERS)),
    lr=typer.Option(None, help="Base learning rate (eta)."),
    sets=typer.Option([], "--set", help="Any other RunConfig field, as key=value (repeatable)."),
)
_OPT_TYPES: dict[str, Any] = dict(
    config=Path | None,
    model=str | None,
    width=int | None,
    depth=int | None,
    rule=str | None,
    base_width=int | None,
    optimizer=str | None,
    lr=float | None,
    sets=list[str],
)


def run_options(
    *fields: str, defaults: dict[str, Any] | None = None, lazy: bool = False
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command the shared RunConfig options (``OPT``) and call it with ``cfg``, the
    RunConfig they describe (file, flags, then ``--set``). ``fields`` names more parameters of
    the command itself that are RunConfig fields (train's --steps, ...). ``defaults`` are the
    command's own RunConfig defaults, under everything the user gives (wsd's tiny models). A
    command that also wants to know which group options were given takes a ``given``
    parameter; with ``lazy`` its ``cfg`` is a function that builds the RunConfig when called
    (coord-check --hf reads --set as a transformers config instead)."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        hints = typing.get_type_hints(fn)
        own = [
            p.replace(
                kind=inspect.Parameter.KEYWORD_ONLY, annotation=hints.get(p.name, p.annotation)
            )
            for p in inspect.signature(fn).parameters.values()
            if p.name not in ("cfg", "given")
        ]
        wants_given = "given" in inspect.signature(fn).parameters

        def command(**kw: Any) -> Any:
            group = {name: kw.pop(name) for name in OPT}
            flags = {k: v for k, v in group.items() if k not in ("config", "sets")}
            flags.update({name: kw[name] for name in fields})
            build = functools.partial(
                config_from_cli, group["config"], flags, group["sets"], defaults
            )
            cfg = build if lazy else build()
            extra = {"given": group} if wants_given else {}
            return fn(cfg=cfg, **kw, **extra)

        group = [
            inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=OPT[n], annotation=t)
            for n, t in _OPT_TYPES.items()
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
    probe = path if folder else path.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK):
        raise ConfigError(field, str(path), f"a path under a writable folder ({probe} is not)")
    return path
