"""Where a run's metrics go: a JSONL file, TensorBoard or Weights & Biases.

`sizeup train --log KIND:TARGET` (repeatable) and ``run(cfg, loggers=[...])``. Each logger gets
``log(step, metrics)`` with flat names:

    train/loss             the step's loss (mean over ranks), every log_every steps
    train/tokens           with it, the tokens seen after the step (through the batch ramp)
    val/loss               at every evaluation, logged at the step count it was taken after:
                           the initial one (step 0), every eval_every steps, the final one
                           (RunResult's initial_val_loss, val_steps and val_loss)
    lr/<i>.<role>          the lr param group i used at the step (role: input, hidden, ...)
    perf/tokens_per_s      over the steps since the last log (all ranks together)
    perf/mfu               model FLOPs utilisation against the devices' peak, where known
    spectral/<module>/...  the spectral monitor (spectral_every)
    noise_scale/...        the gradient-noise-scale monitor (noise_every)

Only rank 0 logs. TensorBoard and W&B are optional extras (``pip install "sizeup[logging]"``);
W&B honours its own environment (``WANDB_MODE=offline`` writes a local run folder that
``wandb sync`` uploads later). A resumed run logs on from its checkpoint step: the JSONL file
drops the lines at or past it, TensorBoard purges the events at or past it (``purge_step``), and
the run logs again the validation loss it took at that step, so each is logged once. The run
flushes the loggers at each checkpoint, so a killed run's log holds everything before it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Protocol

from sizeup.choices import LOG_KINDS
from sizeup.config import RunConfig, json_safe
from sizeup.errors import ConfigError


class MetricsLogger(Protocol):
    """A sink for one run's metrics. A logger that buffers may also have ``flush()``, which the
    run calls after each checkpoint (so a killed run's log reaches its newest checkpoint)."""

    def log(self, step: int, metrics: dict[str, float]) -> None: ...

    def close(self) -> None: ...


def _finite(metrics: dict[str, Any]) -> dict[str, float]:
    """Numbers only (TensorBoard and W&B plot scalars); NaN and None are left out."""
    out = {}
    for k, v in metrics.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out[k] = float(v)
    return out


class JsonlLogger:
    """One JSON object per line: {"step": s, name: value, ...} (strict JSON, NaN as null)."""

    def __init__(self, path: str | Path, start_step: int = 0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = []
        if start_step > 0 and self.path.is_file():  # a resumed run: keep the lines before it
            for line in self.path.read_text().splitlines():
                try:
                    if json.loads(line)["step"] < start_step:
                        kept.append(line)
                except (ValueError, KeyError, TypeError):
                    continue
        self._f = open(self.path, "w")  # noqa: SIM115 - open for the run, closed by close()
        for line in kept:
            self._f.write(line + "\n")
        self._f.flush()

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """Append one line and flush (a killed run keeps every line it logged)."""
        self._f.write(json.dumps(json_safe({"step": step, **metrics}), allow_nan=False) + "\n")
        self._f.flush()

    def close(self) -> None:
        """Close the file."""
        self._f.close()


class TensorBoardLogger:
    """Scalars in a TensorBoard event file under ``log_dir`` (torch.utils.tensorboard)."""

    def __init__(self, log_dir: str | Path, start_step: int = 0):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError(
                "log", f"tensorboard:{log_dir}", _extra("tensorboard", "tensorboard")
            ) from None
        self.log_dir = Path(log_dir)
        self._w = SummaryWriter(str(log_dir), purge_step=start_step or None)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """One scalar per metric at ``step``."""
        for k, v in _finite(metrics).items():
            self._w.add_scalar(k, v, global_step=step)

    def flush(self) -> None:
        """Write the buffered events to disk (the run calls it at each checkpoint)."""
        self._w.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self._w.close()


class WandbLogger:
    """A Weights & Biases run in ``project`` (its mode, online or offline, from W&B's own
    environment, e.g. WANDB_MODE=offline); the RunConfig is the run's config."""

    def __init__(
        self,
        project: str,
        config: RunConfig | None = None,
        name: str | None = None,
        group: str | None = None,
        directory: str | Path | None = None,
    ):
        try:
            import wandb
        except ImportError:
            raise ConfigError("log", f"wandb:{project}", _extra("wandb", "wandb")) from None
        if directory is not None:
            Path(directory).mkdir(parents=True, exist_ok=True)
        self._run = wandb.init(
            project=project,
            name=name,
            group=group,
            dir=None if directory is None else str(directory),
            config=None if config is None else config.to_dict(),
            reinit="create_new",
        )

    @property
    def dir(self) -> Path:
        """The local run folder (offline: what `wandb sync` uploads)."""
        return Path(self._run.dir).parent

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """Log the numbers at ``step`` (W&B's steps only increase)."""
        self._run.log(_finite(metrics), step=step)

    def close(self) -> None:
        """Finish the run and stop W&B's service process, which writes the run's files: only
        then is an offline run folder complete (finish() alone returned, under load, before
        the transaction log held anything past its header)."""
        import wandb

        self._run.finish()
        wandb.teardown()


def _extra(what: str, package: str) -> str:
    return f'available once {package} is installed (pip install "sizeup[logging]") for {what}'


def parse_log(spec: str) -> tuple[str, str]:
    """ "kind:target" -> (kind, target), or a ConfigError naming the flag."""
    kind, sep, target = str(spec).partition(":")
    if not sep or kind not in LOG_KINDS or not target:
        raise ConfigError(
            "log",
            spec,
            "KIND:TARGET with KIND one of " + ", ".join(LOG_KINDS) + " (jsonl:FILE, "
            "tensorboard:DIR, wandb:PROJECT)",
        )
    return kind, target


def make_logger(
    spec: str,
    config: RunConfig | None = None,
    *,
    start_step: int = 0,
    name: str | None = None,
    group: str | None = None,
    directory: str | Path | None = None,
) -> MetricsLogger:
    """A logger from "jsonl:FILE", "tensorboard:DIR" or "wandb:PROJECT" (W&B files go under
    ``directory`` when given)."""
    kind, target = parse_log(spec)
    if kind == "jsonl":
        return JsonlLogger(target, start_step)
    if kind == "tensorboard":
        return TensorBoardLogger(target, start_step)
    return WandbLogger(target, config, name=name, group=group, directory=directory)


def trial_log(spec: str, trial_id: str) -> str:
    """A sweep trial's own destination: jsonl:DIR -> DIR/<id>.jsonl, tensorboard:DIR ->
    DIR/<id>; W&B keeps the project (the trial id names the run)."""
    kind, target = parse_log(spec)
    if kind == "jsonl":
        return f"jsonl:{Path(target) / (trial_id + '.jsonl')}"
    if kind == "tensorboard":
        return f"tensorboard:{Path(target) / trial_id}"
    return spec
