"""Command-line pieces every command shares: the RunConfig option group, `--set key=value`
parsing and comma-separated integer lists. A command that builds a run declares its options
from ``OPT`` so `train`, `parametrize`, `coord-check` and `wsd` spell them alike."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import typer

from sizeup.choices import MODELS, RULES, RUN_OPTIMIZERS, choices_help
from sizeup.config import RunConfig, load_mapping
from sizeup.errors import ConfigError


def config_from_cli(config: Path | None, overrides: dict[str, Any], sets: list[str]) -> RunConfig:
    """Merge a config file, explicit flags and `--set key=value` pairs into a RunConfig."""
    d: dict[str, Any] = load_mapping(config) if config is not None else {}
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
    optimizer=typer.Option(None, help=choices_help(RUN_OPTIMIZERS)),
    lr=typer.Option(None, help="Base learning rate (eta)."),
    sets=typer.Option([], "--set", help="Any other RunConfig field, as key=value (repeatable)."),
)


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
