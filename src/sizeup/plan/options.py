"""Flat plan options (``--base-lr 3e-3``, ``plan(base_lr=3e-3)``) onto the typed records.

The records in ``sizeup.plan.records`` are the one declaration of every input: a field's flat
name is its own name, or the ``cli`` name in its metadata (``Proxy.lr`` is ``base_lr``). The
command line builds its options from these fields (``option_specs``) and both it and
``plan()`` turn flat values into records here (``PlanInputs.build``), so nothing copies the
list of options by hand.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sizeup.errors import ConfigError
from sizeup.plan.records import (
    Checks,
    Hardware,
    Laws,
    Proxy,
    Recipe,
    ScheduleOptions,
    ShapeOptions,
    Target,
)

# Record slot -> record type, in the order the command line lists them.
RECORDS: dict[str, type] = {
    "target": Target,
    "shape": ShapeOptions,
    "proxy": Proxy,
    "recipe": Recipe,
    "laws": Laws,
    "schedule": ScheduleOptions,
    "hardware": Hardware,
    "checks": Checks,
}

# Recipe fields a study's trials do not fix: the readout form is an abc-reparametrization of
# the same training (Tensor Programs V, Table 3 vs Table 8), so a plan may pick either.
FREE_WITH_STUDY = ("readout_form",)


@dataclass(frozen=True)
class OptionSpec:
    """One flat option: its name, the record slot and field it fills, type, default, help."""

    name: str
    slot: str
    field: str
    type: Any
    default: Any
    help: str
    flag: str | None


def option_specs() -> Iterator[OptionSpec]:
    """Every flat option, generated from the records' fields."""
    for slot, cls in RECORDS.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            name = f.metadata.get("cli", f.name)
            if name is False:
                continue
            yield OptionSpec(
                name=name,
                slot=slot,
                field=f.name,
                type=hints[f.name],
                default=f.default,
                help=f.metadata.get("help", ""),
                flag=f.metadata.get("flag"),
            )


def split_options(options: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Flat options -> {slot: {field: value}}; None means "not given" and is dropped."""
    specs = {s.name: s for s in option_specs()}
    out: dict[str, dict[str, Any]] = {slot: {} for slot in RECORDS}
    for name, value in options.items():
        spec = specs.get(name)
        if spec is None:
            raise ConfigError(name, value, "a plan option: " + ", ".join(sorted(specs)))
        if value is not None:
            out[spec.slot][spec.field] = value
    return out


def _given(record: Any) -> dict[str, Any]:
    """The fields of a record that differ from their defaults (what its author chose)."""
    return {
        f.name: getattr(record, f.name)
        for f in dataclasses.fields(record)
        if f.metadata.get("cli", f.name) is not False and getattr(record, f.name) != f.default
    }


def resolve_recipe(proxy: Proxy | None, given: Mapping[str, Any]) -> Recipe:
    """The recipe of the plan: the study's when the proxy comes from one (a given field may
    fill what the study left unset, or pick the readout form, but not contradict it), else the
    given fields over Recipe's defaults."""
    study = proxy.recipe if proxy is not None else None
    if study is None:
        return Recipe(**given)
    for k, v in given.items():
        theirs = getattr(study, k)
        if theirs is not None and k not in FREE_WITH_STUDY and v != theirs:
            raise ConfigError(
                k,
                v,
                f"the study's {k}={theirs!r} (the proxy was tuned with it; leave the option "
                "out with --from-study)",
            )
    return dataclasses.replace(study, **given)


def _not_over_a_study(slot: str, record: Any, fields: Mapping[str, Any]) -> None:
    """A proxy read from a study is the study's: a flat proxy option would silently mix two
    proxies, so it is refused."""
    if slot == "proxy" and record.recipe is not None:
        specs = {s.field: s.name for s in option_specs() if s.slot == "proxy"}
        name = specs[next(iter(fields))]
        raise ConfigError(
            name,
            fields[next(iter(fields))],
            "left out with --from-study (the study gives the proxy)",
        )


@dataclass
class PlanInputs:
    """Everything a plan reads, as records."""

    target: Target
    shape: ShapeOptions
    proxy: Proxy | None
    recipe: Recipe
    laws: Laws
    schedule: ScheduleOptions
    hardware: Hardware
    checks: Checks

    @classmethod
    def build(cls, records: Mapping[str, Any], options: Mapping[str, Any]) -> PlanInputs:
        """Records given whole (``records``: slot -> record or None) with flat options laid
        over them (a flat option overrides the same field of a given record)."""
        flat = split_options(options)
        built: dict[str, Any] = {}
        for slot, rtype in RECORDS.items():
            rec, fields = records.get(slot), flat[slot]
            if slot == "recipe":
                continue  # resolved against the proxy below
            if rec is not None and fields:
                _not_over_a_study(slot, rec, fields)
                rec = dataclasses.replace(rec, **fields)
            elif rec is None and (fields or slot != "proxy"):
                rec = rtype(**fields)
            built[slot] = rec
        given = {**(_given(records["recipe"]) if records.get("recipe") else {}), **flat["recipe"]}
        built["recipe"] = resolve_recipe(built["proxy"], given)
        return cls(**built)
