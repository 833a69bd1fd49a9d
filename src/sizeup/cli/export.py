"""`sizeup export`: a trained, parametrized model as a plain checkpoint (every forward multiplier
folded into the weights; sizeup.parametrization.export).

Two sources, each rebuilt with the parametrization it was trained with (the same options as at
training; nothing is re-initialised: ``parametrize(init=False)``):

* a transformers ``save_pretrained`` folder (``sizeup export DIR --base-width 64 --out PLAIN``):
  the base is the same config at the base width (the family's width fields, sizeup.models.hf);
  the result is a ``save_pretrained`` folder that ``from_pretrained`` reads with no sizeup;
* a run config and its weights (``sizeup export -c run.yaml --weights model.pt --out PLAIN``):
  sizeup's own model as `sizeup train` builds it; the result is ``model.pt`` (state_dict) and
  ``config.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from sizeup.choices import ATTN_SCALES, READOUT_FORMS, RULES, choices_help
from sizeup.cli.options import OPT, config_from_cli
from sizeup.errors import ConfigError


def register(app: typer.Typer) -> None:
    """Add `export` to the app."""
    app.command("export")(export_cmd)


def export_cmd(
    source: Path = typer.Argument(
        None, help="A transformers save_pretrained folder (or use -c with --weights)."
    ),
    out: Path = typer.Option(..., "--out", help="Folder for the plain checkpoint."),
    base_width: int = typer.Option(None, help="Width (hidden size) of the base the run used."),
    rule: str = typer.Option("mup", help=choices_help(RULES)),
    readout_form: str = typer.Option("table3", help=choices_help(READOUT_FORMS)),
    attn_scale: str = typer.Option(None, help=choices_help(ATTN_SCALES) + " (as trained)."),
    base_depth: int = typer.Option(None, help="Depth scaling: the base's number of blocks."),
    depth_exponent: float = typer.Option(0.5, help="Depth scaling exponent."),
    config: Path = OPT["config"],
    weights: Path = typer.Option(None, help="With -c: the model's state_dict (torch.save)."),
    sets: list[str] = OPT["sets"],
) -> None:
    """Fold the multipliers of a parametrized model into its weights and write a checkpoint
    the unmodified architecture loads, with the same outputs."""
    from sizeup.parametrization.export import save

    kw = dict(
        rule=rule,
        readout_form=readout_form,
        attn_scale=attn_scale,
        base_depth=base_depth,
        depth_exponent=depth_exponent,
    )
    if config is not None:
        p = _from_run(config, weights, sets)
    elif source is not None:
        p = _from_pretrained(source, base_width, kw)
    else:
        raise ConfigError("source", None, "a save_pretrained folder, or -c run.yaml --weights")
    folder = save(p.export(), out)
    typer.echo(f"wrote {folder}")


def _from_pretrained(source: Path, base_width: int | None, kw: dict[str, Any]) -> Any:
    """The folder's model, parametrized against its base as it was trained (no init)."""
    import torch

    from sizeup.models.hf import FAMILIES, config_at, require_transformers
    from sizeup.parametrization import parametrize

    tf = require_transformers()
    if not (source / "config.json").is_file():
        raise ConfigError("source", str(source), "a save_pretrained folder (with config.json)")
    model = tf.AutoModelForCausalLM.from_pretrained(source, local_files_only=True)
    arch = model.config.model_type
    if arch not in FAMILIES:
        raise ConfigError("source", arch, "a model of a known family: " + ", ".join(FAMILIES))
    if base_width is None:
        raise ConfigError("base_width", None, "the width (hidden size) of the run's base")
    base = tf.AutoModelForCausalLM.from_config(
        config_at(model.config, base_width, kw["base_depth"])
    )
    with torch.device("meta"):
        delta = tf.AutoModelForCausalLM.from_config(
            config_at(model.config, 2 * base_width, kw["base_depth"])
        )
    # init=False: the weights are the trained ones; sigma only fills the table's init column.
    return parametrize(model, base, delta=delta, init=False, sigma=1.0, **kw)


def _from_run(config: Path, weights: Path | None, sets: list[str]) -> Any:
    """The run's model, parametrized as `sizeup train` does (no init), with ``weights``."""
    import torch

    from sizeup.parametrization import parametrize
    from sizeup.train.build import build_models, sigma_for

    if weights is None or not weights.is_file():
        raise ConfigError("weights", str(weights), "the model's state_dict file (torch.save)")
    cfg = config_from_cli(config, {}, sets)
    model, base, delta = build_models(cfg)
    p = parametrize(
        model,
        base,
        delta=delta,
        rule=cfg.rule,
        sigma=sigma_for(cfg),
        base_depth=cfg.base_depth,
        depth=cfg.depth if cfg.base_depth else None,
        depth_exponent=cfg.depth_exponent,
        init=False,
    )
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return p
