"""RunConfig: everything one training run needs, as one record per concern.

    model            ModelSpec     the family, width, depth and architecture
    parametrization  ParamSpec     the rule, its base, init and depth scaling (parametrize's options)
    optimizer        OptimSpec     the optimizer, its base lr and settings, batch and horizon transfer
    schedule         ScheduleSpec  steps, warmup and the lr schedule
    data             DataSpec      the data source, batch, micro-batch, ramp and validation
    run              RunSpec       seed, device, precision, threads, FSDP, compile
    monitor          MonitorSpec   what is logged besides the loss

**The flat view.** Every field also has a short name that is unique across the sections (its
field name, or the section's name for a section's main field: ``model`` is ``model.name``,
``optimizer`` is ``optimizer.name``, ``schedule`` and ``data`` likewise). ``--set key=value``,
sweep axes, config files, stored trials and ``RunResult.config`` use it; a dotted
``section.field`` is accepted wherever a flat name is, and so are a field's old names
(``init_std`` for ``sigma``). ``to_dict`` is the flat view; ``sections`` the nested one (what
`sizeup plan` writes as run.json). A trial's id hashes the fields that differ from their
defaults under the names sizeup 0.1 stored them by, so studies written before the sections
existed resume without rerunning a finished trial.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sizeup.config.data import DataSpec
from sizeup.config.fields import FieldInfo, Record, load_mapping, parse, section_fields
from sizeup.config.model import ModelSpec
from sizeup.config.optimizer import OptimSpec
from sizeup.config.parametrization import ParamSpec
from sizeup.config.run import MonitorSpec, RunSpec
from sizeup.config.schedule import ScheduleSpec
from sizeup.errors import ConfigError
from sizeup.schedules import BatchRamp
from sizeup.schedules import Schedule as LrSchedule

SECTIONS: dict[str, type[Record]] = {
    "model": ModelSpec,
    "parametrization": ParamSpec,
    "optimizer": OptimSpec,
    "schedule": ScheduleSpec,
    "data": DataSpec,
    "run": RunSpec,
    "monitor": MonitorSpec,
}


def _flat_fields() -> dict[str, FieldInfo]:
    """Flat name -> field, in section order; a flat name used twice is a bug caught here."""
    out: dict[str, FieldInfo] = {}
    for cls in SECTIONS.values():
        for info in cls.field_info():
            if info.flat in out:
                raise AssertionError(f"flat name {info.flat!r} is used by two sections")
            out[info.flat] = info
    return out


FIELDS: dict[str, FieldInfo] = _flat_fields()
# Every spelling a key may take: flat name, dotted section.field (and section.flat), old names.
_KEYS: dict[str, FieldInfo] = {}
for _info in FIELDS.values():
    for _key in (_info.flat, f"{_info.section}.{_info.name}", f"{_info.section}.{_info.flat}"):
        _KEYS[_key] = _info
    for _alias in _info.aliases:
        _KEYS.setdefault(_alias, _info)
        _KEYS[f"{_info.section}.{_alias}"] = _info


def field_for(key: str, value: Any = None) -> FieldInfo:
    """The field a key names (flat, dotted or old name; '-' read as '_'), else a ConfigError
    listing the flat names."""
    k = str(key).strip().replace("-", "_")
    if k not in _KEYS:
        raise ConfigError(str(key), value, "a RunConfig field: " + ", ".join(sorted(FIELDS)))
    return _KEYS[k]


def is_field(key: str) -> bool:
    """Whether ``key`` names a RunConfig field (flat, dotted or old name)."""
    return str(key).strip().replace("-", "_") in _KEYS


# The names sizeup 0.1 stored renamed fields under (trial ids hash with them).
_STORED_AS = {"sigma": "init_std"}


def _legacy_init(d: dict[str, Any]) -> dict[str, Any]:
    """Configs older than init_std had init_mode (auto | fixed | fan_in) beside a numeric
    init_std: auto was 0.02 for the GPT and fan_in for the MLP, which each model now declares
    ("model")."""
    if "init_mode" not in d:
        return d
    d = dict(d)
    mode, std = d.pop("init_mode"), d.get("init_std", 0.02)
    if mode == "fan_in" or (mode == "auto" and d.get("model", "gpt") == "mlp"):
        d["init_std"] = "fan_in" if mode == "fan_in" else "model"
    elif mode == "auto" and std == 0.02:
        d["init_std"] = "model"
    return d


def _section_value(cls: type[Record], value: Any) -> tuple[Record | None, dict[str, Any]]:
    """(a record given whole, or None; fields given) for one section argument: a record, a
    mapping of its fields, or a bare value for its main field (``model="mlp"``)."""
    if value is None:
        return None, {}
    if isinstance(value, cls):
        return value, {}
    if isinstance(value, Mapping):
        return None, section_fields(cls, value)
    if cls.SHORTHAND is None:
        raise ConfigError(cls.SECTION, value, f"a mapping of {cls.__name__} fields")
    return None, {cls.SHORTHAND: value}


def flatten(d: Mapping[str, Any]) -> dict[str, Any]:
    """A config mapping in the flat view: sections given as mappings (or by their main field,
    ``model: gpt``), flat, dotted and old names all become flat names; a field given twice is
    refused, naming both spellings."""
    out: dict[str, Any] = {}
    spelled: dict[str, str] = {}

    def put(key: str, info: FieldInfo, value: Any) -> None:
        if info.flat in out:
            raise ConfigError(key, value, f"given once ({spelled[info.flat]} sets it too)")
        try:  # read by type here, so a bad value is named as it was written
            out[info.flat], spelled[info.flat] = parse(info, value), key
        except ConfigError as e:
            if key == info.flat:
                raise
            raise ConfigError(key, e.value, f"{e.allowed} ({key} is now {info.flat})") from None

    for key, value in _legacy_init(dict(d)).items():
        cls = SECTIONS.get(key)
        if cls is not None and (isinstance(value, Mapping) or value is None):
            for k, v in section_fields(cls, value or {}).items():
                put(f"{key}.{k}", _KEYS[f"{key}.{k}"], v)
        else:
            put(str(key), field_for(key, value), value)
    return out


def build_sections(given: Mapping[str, Any], flat: Mapping[str, Any]) -> dict[str, Record]:
    """The seven records from section arguments (records, mappings or main-field values) and
    flat keys (flat, dotted or old names); a field set twice is refused. A bad value given
    under an old name is named as the user wrote it."""
    records: dict[str, Record | None] = {}
    fields: dict[str, dict[str, Any]] = {}
    typed: dict[str, str] = {}
    for name, cls in SECTIONS.items():
        records[name], fields[name] = _section_value(cls, given.get(name))
    for key, value in flat.items():
        info = field_for(key, value)
        slot = fields[info.section]
        if info.name in slot:
            raise ConfigError(str(key), value, f"given once ({info.flat} is already set)")
        slot[info.name], typed[info.flat] = value, str(key)
    out: dict[str, Record] = {}
    for name, cls in SECTIONS.items():
        rec, f = records[name], fields[name]
        try:
            out[name] = rec.replace(**f) if rec is not None and f else rec or cls(**f)
        except ConfigError as e:
            key = typed.get(e.field, e.field)
            if key == e.field or field_for(key).flat != e.field:
                raise
            raise ConfigError(key, e.value, f"{e.allowed} ({key} is now {e.field})") from None
    return out


@dataclass(frozen=True, init=False)
class RunConfig:
    """Everything one training run needs, in sections (module doc); every field can be a sweep
    axis by its flat name.

    ``RunConfig(width=256, lr=1e-3)`` sets fields by flat name; ``RunConfig(model=ModelSpec(...),
    optimizer="muon")`` gives a section whole, as a mapping, or by its main field."""

    model: ModelSpec
    parametrization: ParamSpec
    optimizer: OptimSpec
    schedule: ScheduleSpec
    data: DataSpec
    run: RunSpec
    monitor: MonitorSpec

    def __init__(
        self,
        model: Any = None,
        parametrization: Any = None,
        optimizer: Any = None,
        schedule: Any = None,
        data: Any = None,
        run: Any = None,
        monitor: Any = None,
        **flat: Any,
    ):
        given = dict(
            model=model,
            parametrization=parametrization,
            optimizer=optimizer,
            schedule=schedule,
            data=data,
            run=run,
            monitor=monitor,
        )
        for name, rec in build_sections(given, flat).items():
            object.__setattr__(self, name, rec)
        self.check()

    def __getattr__(self, name: str) -> Any:
        # Only reached for names that are not attributes: point an old flat access
        # (cfg.width) at its section (cfg.model.width).
        if not name.startswith("_") and is_field(name):
            info = field_for(name)
            raise AttributeError(
                f"RunConfig has no attribute {name!r}: it is {info.section}.{info.name} "
                f"(cfg.{info.section}.{info.name}); the flat name works in to_dict(), --set, "
                "files and sweep axes"
            )
        raise AttributeError(name)

    # --- checks between sections -----------------------------------------------------------
    def check(self) -> None:
        """Checks that read two sections: the base is no larger than the model and splits into
        heads, FSDP without the noise monitor, a micro-batch that divides every batch
        (``check_micro_batch``), and the schedule built once (so a bad combination is refused
        before any run starts)."""
        self._check_base()
        if self.run.fsdp and self.monitor.noise_every:
            raise ConfigError(
                "noise_every",
                self.monitor.noise_every,
                "0 with fsdp=True (the noise-scale monitor takes gradients with autograd.grad, "
                "outside FSDP2's gradient reduce-scatter)",
            )
        self.check_micro_batch(world_size=1)
        self.lr_schedule()

    def check_micro_batch(self, world_size: int) -> None:
        """micro_batch_size divides each rank's batch: batch_size / world_size and, with a
        batch ramp, every stage's batch / world_size (equal micro-batches make the mean of
        their mean losses the batch's mean, so accumulation gives the one-pass gradient).
        ``check`` asks for one process; ``sizeup.data.check_divisible`` for the run's own."""
        d = self.data
        micro = d.micro_batch_size
        if micro is None:
            return
        stages = [(f"batch_size={d.batch_size}", d.batch_size)]
        stages += [(f"the batch_ramp stage of {b}", b) for _, b in d.batch_ramp or ()]
        for what, batch in stages:
            if (batch // world_size) % micro:
                rank = (
                    "" if world_size == 1 else f" / world_size={world_size} = {batch // world_size}"
                )
                raise ConfigError(
                    "micro_batch_size",
                    micro,
                    f"a divisor of each rank's batch ({what}{rank} is not a multiple of it), or "
                    "None for one pass over the batch",
                )

    def _check_base(self) -> None:
        p, m = self.parametrization, self.model
        if p.base_width > m.width:
            raise ConfigError(
                "base_width",
                p.base_width,
                f"at most width={m.width} (the base model must not be larger)",
            )
        if p.base_depth is not None and p.base_depth > m.depth:
            raise ConfigError("base_depth", p.base_depth, f"at most depth={m.depth}")
        try:
            m.at(p.base_width, head_dim=p.base_head_dim)
        except ConfigError as e:
            raise ConfigError("base_width", p.base_width, e.allowed) from None

    # --- what the run follows ------------------------------------------------------------
    @property
    def tokens_per_sequence(self) -> int:
        """Tokens per sequence: seq_len for a token model, 1 for the MLP (whose "tokens" are
        examples)."""
        return self.model.tokens_per_example

    @property
    def tokens_per_step(self) -> int:
        """Tokens (GPT) or examples (MLP) per optimizer step at the full batch (a ramped run's
        steps before its last stage take fewer: ``tokens_for``)."""
        return self.data.batch_size * self.tokens_per_sequence

    @property
    def tokens(self) -> int:
        """Tokens (GPT) or examples (MLP) the whole run trains on at the full batch."""
        return self.schedule.steps * self.tokens_per_step

    def ramp(self) -> BatchRamp | None:
        """The batch ramp in tokens (schedules.BatchRamp), or None without batch_ramp."""
        if self.data.batch_ramp is None:
            return None
        return BatchRamp(self.data.batch_ramp).scaled(self.tokens_per_sequence)

    def tokens_for(self, steps: int) -> int:
        """Tokens (examples for the MLP) seen in the first ``steps`` optimizer steps, through
        the ramp when there is one."""
        ramp = self.ramp()
        if ramp is None:
            return steps * self.tokens_per_step
        return int(ramp.tokens_before(steps))

    def batch_window(self, step: int) -> tuple[int, int]:
        """(sequences seen before optimizer step ``step``, its batch in sequences): where the
        step's batch starts in the run's stream of sequences, and how many it takes (examples
        for the MLP). Without a ramp (step x batch_size, batch_size)."""
        ramp = self.ramp()
        if ramp is None:
            return step * self.data.batch_size, self.data.batch_size
        n = ramp.tokens_before(step)
        per = self.tokens_per_sequence
        return int(n) // per, ramp.batch_at(n) // per

    def lr_schedule(self) -> LrSchedule:
        """The run's lr multiplier per step (ScheduleSpec.lr_schedule at this run's batch)."""
        return self.schedule.lr_schedule(self.optimizer.lr, self.tokens_per_step, self.ramp())

    # --- the flat view and serialisation -------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The flat view: flat name -> value for every field (JSON-safe), section by section."""
        return {
            info.flat: getattr(getattr(self, info.section), info.name) for info in FIELDS.values()
        }

    def sections(self) -> dict[str, dict[str, Any]]:
        """The nested view: section -> its fields (what run.json files hold)."""
        return {name: getattr(self, name).to_dict() for name in SECTIONS}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunConfig:
        """Build from the flat view, the nested one, or a mix (dotted keys and old names
        accepted), naming any unknown field."""
        return cls(**flatten(d))

    @classmethod
    def from_file(cls, path: str | Path) -> RunConfig:
        """Load from a YAML, TOML or JSON file (flat or in sections)."""
        return cls.from_dict(load_mapping(path))

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Every field's flat name."""
        return tuple(FIELDS)

    def get(self, key: str) -> Any:
        """A field's value by flat, dotted or old name."""
        info = field_for(key)
        return getattr(getattr(self, info.section), info.name)

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with fields changed by flat name (``replace(width=256)``), or sections given
        whole (``replace(model=spec)``); checked again. Dotted names: ``replace(**{"model.width":
        256})``."""
        sections = {name: getattr(self, name) for name in SECTIONS}
        given = {k: v for k, v in changes.items() if k in SECTIONS}
        flat = {k: v for k, v in changes.items() if k not in SECTIONS}
        for name, value in given.items():
            rec, fields = _section_value(SECTIONS[name], value)
            sections[name] = rec if rec is not None else sections[name].replace(**fields)
        return RunConfig(**sections, **flat)

    def trial_id(self) -> str:
        """A stable 12-hex id from the config's content (same config, same id).

        Only fields that differ from their defaults enter the hash, under the names sizeup 0.1
        stored them by, so a later sizeup that adds a field (with a default) or moves one into
        a section keeps the ids of existing studies and resumes them.
        """
        changed = {
            _STORED_AS.get(info.flat, info.flat): value
            for info, value in zip(FIELDS.values(), self.to_dict().values())
            if value != info.default
        }
        blob = json.dumps(changed, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def flat_diff(a: RunConfig, b: RunConfig) -> dict[str, tuple[Any, Any]]:
    """Flat name -> (a's value, b's value) for every field where the two differ."""
    da, db = a.to_dict(), b.to_dict()
    return {k: (da[k], db[k]) for k in da if da[k] != db[k]}
