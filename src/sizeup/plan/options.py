"""The plan's options: its own records' fields and the fields it shares with a run, by one name.

A plan reads the target, the shape rule, the proxy's batch, the laws, the batch choices, the
hardware and the checks (``sizeup.plan.records``), and the same ModelSpec, ParamSpec, OptimSpec
and ScheduleSpec fields `sizeup train` takes (``--width``, ``--rule``, ``--lr``, ``--schedule``;
those a plan decides itself, such as the steps, are left out). The command line and ``plan()``
turn flat values into ``PlanInputs`` here, so nothing copies the list of options by hand.

A shared field is *given* or not: what the user leaves open the planner decides (a width from
the laws, an lr from the proxy's transfer), so those sections are kept as the fields given,
validated by their record's own parser, and become records once the plan has decided the rest
(``Plan.run``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sizeup.config import (
    DataSpec,
    FieldInfo,
    ModelSpec,
    OptimSpec,
    ParamSpec,
    Record,
    ScheduleSpec,
    parse,
)
from sizeup.errors import ConfigError
from sizeup.plan.records import (
    BatchOptions,
    Checks,
    Hardware,
    Laws,
    Proxy,
    ShapeRule,
    Target,
)

# The plan's own records (slot -> record type), in the order the command line lists them.
OWN: dict[str, type[Record]] = {
    "target": Target,
    "shape_rule": ShapeRule,
    "proxy": Proxy,
    "laws": Laws,
    "batch": BatchOptions,
    "hardware": Hardware,
    "checks": Checks,
}
# The run's records a plan takes fields of (slot -> (type, fields the plan decides itself)).
SHARED: dict[str, tuple[type[Record], tuple[str, ...]]] = {
    "model": (ModelSpec, ("name",)),
    "parametrization": (ParamSpec, ()),
    "optimizer": (OptimSpec, ("base_batch_size",)),
    "schedule": (ScheduleSpec, ("steps",)),
    "data": (DataSpec, ("source", "batch_size", "batch_ramp", "val_frac", "eval_every")),
}
# ParamSpec / OptimSpec fields a study's trials do not fix: the readout form is an
# abc-reparametrization of the same training (Tensor Programs V, Table 3 vs Table 8), so a
# plan may pick either; the horizon exponent is the plan's choice of how the study's lr moves
# to the target's length.
FREE_WITH_STUDY = ("readout_form", "data_exponent")
# What makes a proxy: its width (or a study). These proxy settings need one.
PROXY_FIELDS = ("base_depth", "base_head_dim", "base_tokens", "base_batch_tokens")


def option_fields() -> list[FieldInfo]:
    """Every plan option, as the fields that declare it (own records first)."""
    out = [i for cls in OWN.values() for i in cls.field_info() if i.cli]
    for cls, decided in SHARED.values():
        out += [i for i in cls.field_info() if i.cli and i.name not in decided]
    return out


def _slots() -> dict[str, tuple[str, FieldInfo]]:
    """Every spelling of an option (flat name, old names) -> (slot, field); a name used twice
    is a bug caught here."""
    out: dict[str, tuple[str, FieldInfo]] = {}
    slots = [(slot, cls.field_info()) for slot, cls in OWN.items()]
    slots += [(slot, fields_of(slot)) for slot in SHARED]
    for slot, infos in slots:
        for i in (i for i in infos if i.cli):
            for n in (i.flat, *i.aliases):
                if n in out:
                    raise AssertionError(f"plan option {n!r} is declared twice")
                out[n] = (slot, i)
    return out


def split_options(options: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Flat options -> {slot: {field name: value}} (None means "not given" and is dropped);
    each value is read by its field's type here, so a bad one is named before any planning."""
    out: dict[str, dict[str, Any]] = {slot: {} for slot in (*OWN, *SHARED)}
    for name, value in options.items():
        if value is None:
            continue
        hit = _SLOTS.get(str(name).replace("-", "_"))
        if hit is None:
            raise ConfigError(name, value, "a plan option: " + ", ".join(sorted(_SLOTS)))
        slot, info = hit
        if info.name in out[slot]:
            raise ConfigError(name, value, f"given once ({info.flat} is already set)")
        out[slot][info.name] = parse(info, value)
    return out


def given_fields(record: Record | None) -> dict[str, Any]:
    """The fields its author set of a record given whole (``Record.given``: named when it was
    built, even at their defaults; a field left out is the planner's to decide)."""
    return {} if record is None else record.given()


@dataclass(frozen=True)
class Study:
    """A sweep study read as the proxy (sizeup.plan.study): the Proxy record and the
    ParamSpec and OptimSpec fields its trials fixed, and what the study supports only in part
    (warnings the plan prints and records)."""

    proxy: Proxy
    parametrization: dict[str, Any]
    optimizer: dict[str, Any]
    warnings: tuple[str, ...] = ()
    # transfer exponents measured by steps / batch studies (sizeup.sweep.exponents), which
    # replace the rules' defaults: the horizon one sets data_exponent, the batch one the lr's
    # batch exponent
    exponents: tuple[Any, ...] = ()


@dataclass(frozen=True)
class PlanInputs:
    """Everything a plan reads: its own records, and the fields of the shared ones given."""

    target: Target
    shape_rule: ShapeRule
    proxy: Proxy | None  # None: no proxy (neither a base width nor a study)
    laws: Laws
    batch: BatchOptions
    hardware: Hardware
    checks: Checks
    model: dict[str, Any]
    parametrization: dict[str, Any]
    optimizer: dict[str, Any]
    schedule: dict[str, Any]
    data: dict[str, Any]
    measured: tuple[Any, ...] = ()  # the study's measured exponents (Study.exponents)

    @classmethod
    def build(
        cls,
        records: Mapping[str, Any],
        options: Mapping[str, Any],
        study: Study | None = None,
    ) -> PlanInputs:
        """Records given whole (slot -> record or None) with flat options laid over them (a
        flat option overrides the same field of a given record); a study's proxy and recipe
        under both (a given recipe field may fill what the study left unset, or pick the
        readout form, but not contradict it)."""
        flat = split_options(options)
        own = {slot: _own(slot, records.get(slot), flat[slot]) for slot in OWN}
        shared = {slot: {**given_fields(records.get(slot)), **flat[slot]} for slot in SHARED}
        if study is not None:
            _not_over_a_study(flat["proxy"])
            _not_over_a_measurement(study, shared["optimizer"])
            for slot in ("parametrization", "optimizer"):
                shared[slot] = _under_the_study(getattr(study, slot), shared[slot])
            own["proxy"] = study.proxy
        elif "base_width" in shared["parametrization"]:
            own["proxy"] = own["proxy"] or Proxy()
        else:
            _no_proxy(shared, own["proxy"])
            own["proxy"] = None
        return cls(**own, **shared, measured=study.exponents if study is not None else ())


def _own(slot: str, record: Record | None, fields: dict[str, Any]) -> Record | None:
    """A plan record: the one given with the flat fields over it, else one from the fields
    (the proxy only when something of it was given)."""
    rtype = OWN[slot]
    if record is not None:
        return record.replace(**fields) if fields else record
    if slot == "proxy" and not fields:
        return None
    return rtype(**fields)


def _no_proxy(shared: dict[str, dict[str, Any]], proxy: Proxy | None) -> None:
    """Proxy settings need a proxy: its width (--base-width) or a study."""
    given = {**shared["parametrization"], **shared["optimizer"]}
    if proxy is not None and proxy.batch_tokens is not None:
        given["base_batch_tokens"] = proxy.batch_tokens
    for name in PROXY_FIELDS:
        if name in given:
            raise ConfigError(
                "base_width",
                None,
                f"given whenever a proxy setting ({name}) is (or take the proxy from a study)",
            )


def _not_over_a_study(fields: dict[str, Any]) -> None:
    """A proxy read from a study is the study's: a flat proxy option would mix two proxies."""
    if fields:
        name, value = next(iter(fields.items()))
        flat = next(i.flat for i in Proxy.field_info() if i.name == name)
        raise ConfigError(flat, value, "left out with --from-study (the study gives the proxy)")


def _not_over_a_measurement(study: Study, optimizer: dict[str, Any]) -> None:
    """A measured horizon exponent is the study's: a given data_exponent would contradict it."""
    if "data_exponent" in optimizer and any(m.name == "horizon" for m in study.exponents):
        raise ConfigError(
            "data_exponent",
            optimizer["data_exponent"],
            "left out with a steps study (--horizon-study measures it)",
        )


def _under_the_study(study: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """The study's fields with the given ones over them, where they do not contradict it."""
    for k, v in given.items():
        theirs = study.get(k)
        if theirs is not None and k not in FREE_WITH_STUDY and v != theirs:
            raise ConfigError(
                k,
                v,
                f"the study's {k}={theirs!r} (the proxy was tuned with it; leave the option "
                "out with --from-study)",
            )
    return {**study, **given}


def fields_of(slot: str) -> Iterable[FieldInfo]:
    """The option fields of one slot (a plan record, or a shared one less what is decided)."""
    if slot in OWN:
        return OWN[slot].field_info()
    cls, decided = SHARED[slot]
    return [i for i in cls.field_info() if i.name not in decided]


_SLOTS = _slots()
