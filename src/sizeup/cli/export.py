"""`sizeup export`: a trained, parametrized model as a plain checkpoint (every forward multiplier
folded into the weights; sizeup.parametrization.export).

Two sources, each rebuilt with the parametrization it was trained with (the same options as at
training; nothing is re-initialised: ``parametrize(init=False)``):

* a transformers ``save_pretrained`` folder (``sizeup export DIR --base-width 64 --out PLAIN``):
  the base is the same config at the base width (the family's width fields, sizeup.models.hf);
  the result is a ``save_pretrained`` folder that ``from_pretrained`` reads with no sizeup;
* a run config and its weights (``sizeup export -c run.yaml --weights model.pt --out PLAIN``):
  sizeup's own model as `sizeup train` builds it; the result is ``model.pt`` (state_dict) and
  ``config.json``. The weights are a state_dict file (``torch.save(model.state_dict())``) or a
  checkpoint of the run (``sizeup train --out DIR --checkpoint-every N`` writes
  ``DIR/checkpoints/step_*.pt``): its .pt file, its sidecar or the folder (the newest), also
  spelled ``--checkpoint``. A checkpoint is read and verified by sizeup.train.checkpoint and must
  have been written by the ``-c`` config (the fields that differ are named).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import typer

from sizeup.choices import ATTN_SCALES, choices_help
from sizeup.cli.options import (
    CONFIG_OPTION,
    SET_OPTION,
    config_from_cli,
    field_parameters,
    take_fields,
)
from sizeup.config import ParamSpec, RunConfig
from sizeup.errors import CheckpointError, ConfigError

# Where an exportable file comes from: said by every error about one.
CHECKPOINT = (
    "a sizeup checkpoint (`sizeup train --out DIR --checkpoint-every N` writes "
    "DIR/checkpoints/step_*.pt)"
)
EXPORTABLE = f"{CHECKPOINT} or a state_dict file (torch.save(model.state_dict()))"

# Every ParamSpec field is an option: how the run was parametrized (a transformers folder has no
# config of sizeup's; with -c they override the config's).
PARAM_FIELDS = ParamSpec.field_info()


def register(app: typer.Typer) -> None:
    """Add `export` to the app."""
    app.command("export")(export_cmd)


def export_cmd(
    source: Path | None = None,
    out: Path | None = None,
    attn_scale: str | None = None,
    config: Path | None = None,
    weights: Path | None = None,
    checkpoint: Path | None = None,
    sets: list[str] | None = None,
    **param: Any,
) -> None:
    """Fold the multipliers of a parametrized model into its weights and write a checkpoint
    the unmodified architecture loads, with the same outputs."""
    from sizeup.parametrization.export import save

    given = take_fields(param, PARAM_FIELDS)
    if out is None:
        raise ConfigError("out", None, "a folder for the plain checkpoint (--out)")
    if config is not None:
        cfg = config_from_cli(config, given, sets or [])
        p = _from_run(cfg, _weights_flag(weights, checkpoint))
    elif source is not None:
        p = _from_pretrained(source, given, attn_scale)
    else:
        raise ConfigError(
            "source",
            None,
            "a save_pretrained folder, or -c run.yaml with --weights or --checkpoint",
        )
    folder = save(p.export(), out)
    typer.echo(f"wrote {folder}")


export_cmd.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [
        inspect.Parameter(
            "source",
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            default=typer.Argument(
                None, help="A transformers save_pretrained folder (or use -c with --weights)."
            ),
            annotation=Path | None,
        ),
        *(
            inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d, annotation=t)
            for n, t, d in (
                (
                    "out",
                    Path | None,
                    typer.Option(None, "--out", help="Folder for the plain checkpoint."),
                ),
                (
                    "attn_scale",
                    str | None,
                    typer.Option(
                        None,
                        help=choices_help(ATTN_SCALES)
                        + " set on the attention modules, as trained (a transformers folder).",
                    ),
                ),
                ("config", Path | None, CONFIG_OPTION),
                (
                    "weights",
                    Path | None,
                    typer.Option(
                        None,
                        help="With -c: the model's weights: a state_dict file "
                        "(torch.save(model.state_dict())) or a sizeup checkpoint (as "
                        "--checkpoint).",
                    ),
                ),
                (
                    "checkpoint",
                    Path | None,
                    typer.Option(
                        None,
                        "--checkpoint",
                        help="With -c: a checkpoint of the run (`sizeup train --out DIR "
                        "--checkpoint-every N`): DIR/checkpoints/step_*.pt, its .json sidecar, "
                        "or the folder (the newest).",
                    ),
                ),
                ("sets", list[str], SET_OPTION),
            )
        ),
        *field_parameters(PARAM_FIELDS),
    ]
)
export_cmd.__annotations__ = {}


def _from_pretrained(source: Path, given: dict[str, Any], attn_scale: str | None) -> Any:
    """The folder's model, parametrized against its base as it was trained (no init)."""
    import torch

    from sizeup.models.hf import FAMILIES, config_at, require_transformers
    from sizeup.parametrization import parametrize

    tf = require_transformers()
    if not (source / "config.json").is_file():
        raise ConfigError("source", str(source), "a save_pretrained folder (with config.json)")
    if "base_width" not in given:
        raise ConfigError("base_width", None, "the width (hidden size) of the run's base")
    spec = ParamSpec.from_dict(given)
    model = tf.AutoModelForCausalLM.from_pretrained(source, local_files_only=True)
    arch = model.config.model_type
    if arch not in FAMILIES:
        raise ConfigError("source", arch, "a model of a known family: " + ", ".join(FAMILIES))
    base = tf.AutoModelForCausalLM.from_config(
        config_at(model.config, spec.base_width, spec.base_depth)
    )
    with torch.device("meta"):
        delta = tf.AutoModelForCausalLM.from_config(
            config_at(model.config, 2 * spec.base_width, spec.base_depth)
        )
    # init=False: the weights are the trained ones; sigma only fills the table's init column.
    spec = spec.replace(sigma=1.0)
    return parametrize(model, base, spec, delta=delta, init=False, attn_scale=attn_scale)


def _weights_flag(weights: Path | None, checkpoint: Path | None) -> tuple[str, Path]:
    """(the flag's field, its path): --weights or --checkpoint, exactly one of them."""
    if weights is not None and checkpoint is not None:
        raise ConfigError(
            "checkpoint", str(checkpoint), "either --checkpoint or --weights, not both"
        )
    if checkpoint is not None:
        field, path = "checkpoint", checkpoint
    elif weights is not None:
        field, path = "weights", weights
    else:
        raise ConfigError("weights", None, EXPORTABLE)
    if not path.exists():
        allowed = CHECKPOINT if field == "checkpoint" else EXPORTABLE
        raise ConfigError(field, str(path), f"{allowed}; nothing is there")
    return field, path


def _from_run(cfg: RunConfig, weights: tuple[str, Path]) -> Any:
    """The run's model, parametrized as `sizeup train` does (sizeup.train.build, no init), with
    the weights of ``weights`` (the flag's field and path: a checkpoint or a state_dict file)."""
    from sizeup.train.build import build_models, parametrize_run

    field, path = weights
    model, base, delta = build_models(cfg)
    if field == "checkpoint" or _is_checkpoint(path):
        state = _checkpoint_weights(field, path, cfg, model)
    else:
        state = _state_dict(field, path)
    p = parametrize_run(cfg, model, base, delta, init=False)
    _load_into(model, state, field, path)
    return p


def _is_checkpoint(path: Path) -> bool:
    """A checkpoint's folder, its sidecar, or a .pt file with its sidecar beside it (a file
    whose write finished: sizeup.train.checkpoint)."""
    return path.is_dir() or path.suffix == ".json" or path.with_suffix(".json").is_file()


def _checkpoint_weights(field: str, path: Path, cfg: RunConfig, model: Any) -> dict[str, Any]:
    """The model state of the checkpoint at ``path``, read and verified by the checkpoint
    module (weights_only, size and SHA-256, format), written by ``cfg``, and its contents checked
    by the same check a resume makes (sizeup.train.checkpoint.check, with ``model``)."""
    from sizeup.train import checkpoint as ckpt

    allowed = CHECKPOINT if field == "checkpoint" else EXPORTABLE
    try:
        pt, state = ckpt.load(path)
    except CheckpointError as e:
        raise ConfigError(field, str(path), f"{allowed}; {e}") from None
    diff = ckpt.config_diff(state["config"], cfg)
    if diff:
        raise ConfigError(
            field,
            str(path),
            f"a checkpoint of the run -c describes: {pt} was written by another run config "
            f"({'; '.join(diff)}); export with the config that trained it (-c, --set FIELD=VALUE)",
        )
    try:
        ckpt.check(pt, state, model)
    except CheckpointError as e:
        raise ConfigError(field, str(path), f"{allowed}; {e}") from None
    return state["model"]


def _state_dict(field: str, path: Path) -> dict[str, Any]:
    """A state_dict file (torch.load with weights_only=True: no pickled code runs)."""
    import torch

    from sizeup.train.checkpoint import FORMAT, stem

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - torch raises several kinds for a file it cannot read
        raise ConfigError(field, str(path), f"{EXPORTABLE}; torch.load cannot read it") from None
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        name = stem(obj.get("step", 0))
        raise ConfigError(
            field,
            str(path),
            f"a checkpoint with its sidecar: this is the .pt file of one without it ({name}.json); "
            f"pass the folder that holds {name}.pt and {name}.json together",
        )
    if not obj or not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise ConfigError(field, str(path), f"{EXPORTABLE}; this file holds neither")
    return obj


def _load_into(model: Any, state: dict[str, Any], field: str, path: Path) -> None:
    """Load ``state`` into the model -c describes; keys, shapes or dtypes that do not match are
    named (sizeup.train.checkpoint.model_problem: the check a resume makes)."""
    from sizeup.train.checkpoint import model_problem

    problem = model_problem(state, model)
    if problem:
        raise ConfigError(field, str(path), f"a state_dict of the model -c describes ({problem})")
    model.load_state_dict(state)
