"""How a record's field is declared, and how a value from a file, an axis or a flag gets its type.

Every setting of sizeup is a field of one frozen record (``sizeup.config``: ModelSpec,
ParamSpec, OptimSpec, ScheduleSpec, DataSpec, RunSpec, MonitorSpec). A field carries, in its
metadata, everything the rest of sizeup needs to know about it, so nothing restates it:

* ``help``: the command-line help (every option of every command is generated from it);
* ``flat``: its name in the flat view (``--set key=value``, sweep axes, stored trials), by default
  the field's own name; a section's main field takes the section's name (``model: gpt``);
* ``aliases``: older names still accepted (hidden command-line aliases, old config files);
* ``choices``: the allowed values when a registry holds them (optimizers, model families);
* ``cli``: False for a field that is no command-line option (set by code).

``Record`` reads every field strictly by its declared type (``parse``): numeric strings become
numbers (YAML 1.1 reads 3e-3 as a string), "yes"/"no" booleans, and anything else is refused with
a ConfigError naming the field, never guessed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import sys
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from sizeup import choices
from sizeup.errors import ConfigError, check_number_or_choice
from sizeup.schedules import parse_milestones, parse_ramp

R = TypeVar("R", bound="Record")


def spec(
    default: Any,
    help: str,
    *,
    flat: str | None = None,
    aliases: tuple[str, ...] = (),
    choices: Callable[[], tuple[str, ...]] | None = None,
    cli: bool = True,
    switch: str | None = None,
    bounds: Bounds | None = None,
) -> Any:
    """A record field with its help, flat name, old names and (registry) choices; ``switch``:
    a boolean's command-line spelling ("--same-batch/--fresh-batches"); ``bounds``: the range
    a number must lie in, and why (checked wherever the value comes from)."""
    meta = {
        "help": help,
        "flat": flat,
        "aliases": tuple(aliases),
        "choices": choices,
        "cli": cli,
        "switch": switch,
        "bounds": bounds,
    }
    return dataclasses.field(default=default, metadata=meta)


def _num(x: float) -> str:
    """A bound as a reader takes it in: 2**63-1 as such, big round numbers as 1e+06."""
    if x == 2**63 - 1:
        return "2**63-1"
    if isinstance(x, int) and x >= 2**16 and x & (x - 1) == 0:
        return f"2**{x.bit_length() - 1}"
    return f"{x:,}" if isinstance(x, int) else f"{x:g}"


@dataclasses.dataclass(frozen=True)
class Bounds:
    """The range a numeric field's value must lie in (``None``: unbounded on that side; open
    ends exclude the bound itself) and ``why``: the reason, told to whoever gives a value
    outside it."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    why: str = ""

    def holds(self, x: float) -> bool:
        """Whether ``x`` lies within the bounds."""
        above = self.lo is None or (x > self.lo if self.lo_open else x >= self.lo)
        below = self.hi is None or (x < self.hi if self.hi_open else x <= self.hi)
        return above and below

    def text(self, integer: bool = False) -> str:
        """'an integer from 0 to 2**63-1', 'a number < 0', ..."""
        what = "an integer" if integer else "a number"
        lo, hi = self.lo, self.hi
        if lo is not None and hi is not None and not self.lo_open and not self.hi_open:
            return f"{what} from {_num(lo)} to {_num(hi)}"
        parts = []
        if lo is not None:
            parts.append(f"{'>' if self.lo_open else '>='} {_num(lo)}")
        if hi is not None:
            parts.append(f"{'<' if self.hi_open else '<='} {_num(hi)}")
        return f"{what} " + " and ".join(parts)

    def check(self, name: str, x: float, integer: bool = False) -> None:
        """A ConfigError naming the field, the range and why, unless ``x`` is within it."""
        if not self.holds(x):
            why = f" ({self.why})" if self.why else ""
            raise ConfigError(name, x, self.text(integer) + why)


# Every integer field fits a signed 64-bit integer (torch's int64, SQLite's INTEGER, numpy):
# a larger one would overflow far from where it was given.
INT64 = Bounds(-(2**63) + 1, 2**63 - 1, why="a 64-bit integer")

# The largest size of one tensor dimension (width, d_ff, vocabulary, context, a check's
# widths): a 2**26 x 2**26 matrix alone has 2**52 entries (16 PiB in float32), more than any
# machine holds, while products of such sizes still fit 64 bits, so the memory check can count
# the model on the meta device and say how much it would need.
MAX_DIM = 2**26
DIM = Bounds(1, MAX_DIM, why="one tensor dimension; 2**26 x 2**26 is 16 PiB in float32")
# The deepest model: twice the deepest transformer trained (DeepNet, 1,000 layers); the memory
# check counts a model block by block on the meta device, which takes seconds per thousand.
MAX_DEPTH = 2048
DEPTH = Bounds(1, MAX_DEPTH, why="twice the deepest transformer trained, DeepNet's 1,000 layers")


@dataclasses.dataclass(frozen=True)
class FieldInfo:
    """One field as the flat view, the parser and the command line see it."""

    section: str  # the record's section name in RunConfig ("" for records outside it)
    name: str  # the field's name in its record
    flat: str  # its name in the flat view
    aliases: tuple[str, ...]
    kind: Any  # int | float | bool | str | "sigma" | "milestones" | "ramp" | a tuple of choices
    optional: bool
    default: Any
    help: str
    choices: Callable[[], tuple[str, ...]] | None
    cli: bool
    switch: str | None = None
    bounds: Bounds | None = None

    def allowed(self) -> tuple[str, ...] | None:
        """The allowed values of a choice field (from its Literal type or its registry)."""
        if self.choices is not None:
            return self.choices()
        return self.kind if isinstance(self.kind, tuple) else None


_KINDS = {
    "int": int,
    "float": float,
    "bool": bool,
    "str": str,
    "InitStd": "sigma",
    "Milestones": "milestones",
    "RampStages": "ramp",
    "Sizes": "sizes",
    "Names": "names",
}

# Increasing positive integers ("64,128,256": a check's widths), and fnmatch patterns
# ("blocks.*.attn.q,lm_head": modules), as record field types.
Sizes = tuple[int, ...]
Names = tuple[str, ...]


def _kind(annotation: Any) -> tuple[Any, bool]:
    """(kind, optional) of a field from its (string) annotation; a Literal choice type of
    sizeup.choices becomes the tuple of its values."""
    text = str(annotation)
    optional = "None" in text
    base = text.replace("| None", "").replace("None |", "").strip()
    if base in _KINDS:
        return _KINDS[base], optional
    literal = getattr(choices, base, None)
    if literal is None:  # a field its record reads itself (a law, a path): taken as given
        return "raw", optional
    return typing.get_args(literal), optional


class Record:
    """Base of the frozen records: fields parsed by type on construction, then ``check``ed.

    A subclass is a ``@dataclass(frozen=True)`` whose fields are declared with ``spec``;
    ``SECTION`` is its name in RunConfig and ``SHORTHAND`` the field a bare value sets there."""

    SECTION: ClassVar[str] = ""
    SHORTHAND: ClassVar[str | None] = None

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        # remember which fields the caller named: a record given whole to the planner counts
        # those as chosen, and a default value passed on purpose counts too (``given``)
        self = super().__new__(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        object.__setattr__(self, "_given", frozenset((*names[: len(args)], *kwargs)))
        return self

    def given(self) -> dict[str, Any]:
        """The fields the caller set (by name or position), with their values."""
        names = getattr(self, "_given", frozenset())
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name in names}

    def __post_init__(self) -> None:
        for info in self.field_info():
            value = parse(info, getattr(self, info.name))
            object.__setattr__(self, info.name, value)
        self.check()

    def check(self) -> None:
        """Checks between this record's own fields (a ConfigError names the first bad one)."""

    @classmethod
    def field_info(cls) -> tuple[FieldInfo, ...]:
        """Every field of the record, as the flat view and the parser see it."""
        return _field_info(cls)

    def replace(self: R, **changes: Any) -> R:
        """A copy with some fields changed (parsed and checked); what was given stays given."""
        out = dataclasses.replace(self, **changes)
        given = getattr(self, "_given", frozenset()) | frozenset(changes)
        object.__setattr__(out, "_given", given)
        return out

    def to_dict(self) -> dict[str, Any]:
        """Field name -> value (JSON-ready: tuples are written as lists)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls: type[R], d: Mapping[str, Any]) -> R:
        """Build from field names (flat names and old names accepted), naming any unknown key."""
        return cls(**section_fields(cls, d))


def section_fields(cls: type[Record], d: Mapping[str, Any]) -> dict[str, Any]:
    """``d`` with every key turned into the record's field name (its flat name and aliases are
    accepted; a key given twice under two names is refused)."""
    names = {}
    for info in cls.field_info():
        for n in (info.name, info.flat, *info.aliases):
            names[n] = info.name
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = str(k).strip().replace("-", "_")
        if key not in names:
            raise ConfigError(
                f"{cls.SECTION}.{k}" if cls.SECTION else str(k),
                v,
                f"a field of {cls.__name__}: " + ", ".join(i.name for i in cls.field_info()),
            )
        if names[key] in out:
            raise ConfigError(str(k), v, f"given once ({names[key]} is already set)")
        out[names[key]] = v
    return out


_INFO: dict[type, tuple[FieldInfo, ...]] = {}


def _field_info(cls: type) -> tuple[FieldInfo, ...]:
    if cls not in _INFO:
        out = []
        for f in dataclasses.fields(cls):
            kind, optional = _kind(f.type)
            meta = f.metadata
            out.append(
                FieldInfo(
                    section=cls.SECTION,
                    name=f.name,
                    flat=meta.get("flat") or f.name,
                    aliases=meta.get("aliases", ()),
                    kind=kind,
                    optional=optional,
                    default=f.default,
                    help=meta.get("help", ""),
                    choices=meta.get("choices"),
                    cli=meta.get("cli", True),
                    switch=meta.get("switch"),
                    bounds=meta.get("bounds"),
                )
            )
        _INFO[cls] = tuple(out)
    return _INFO[cls]


# --- values -----------------------------------------------------------------------------------
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")
_DEVICE = re.compile(r"(cpu|mps|meta|cuda(:\d+)?)")


def parse(info: FieldInfo, value: Any) -> Any:
    """``value`` read as the field wants it, or a ConfigError naming the field: the one place
    where a config value from a file, an axis or ``--set`` gets its type."""
    name, kind = info.flat, info.kind
    if info.optional and (
        value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null"))
    ):
        return None
    if kind is bool:
        return _parse_bool(name, value)
    if kind in (int, float):
        x = _parse_number(name, value, kind)
        bounds = info.bounds or (INT64 if kind is int else None)
        if bounds is not None:
            bounds.check(name, x, integer=kind is int)  # the number as read
        return x
    if kind in _SPECIAL:
        return _SPECIAL[kind](name, value)
    allowed = info.allowed()
    if allowed is not None:
        if value not in allowed:
            raise ConfigError(name, value, "one of " + ", ".join(repr(c) for c in allowed))
        return value
    if not isinstance(value, str):
        raise ConfigError(name, value, "a string")
    if name == "device" and not _DEVICE.fullmatch(value):
        raise ConfigError(name, value, "a torch device: 'cpu', 'cuda', 'cuda:N' or 'mps'")
    return value


def parse_sizes(name: str, value: Any) -> tuple[int, ...]:
    """At least two strictly increasing positive integers, from "64,128,256" or a sequence."""
    what = "at least two strictly increasing positive integers, e.g. 64,128,256,512"
    try:
        items = value.split(",") if isinstance(value, str) else list(value)
        sizes = tuple(_parse_number(name, v, int) for v in items if str(v).strip())
    except (TypeError, ConfigError):
        raise ConfigError(name, value, what) from None
    if len(sizes) < 2 or min(sizes) < 1 or any(b <= a for a, b in zip(sizes, sizes[1:])):
        raise ConfigError(name, value, what)
    if max(sizes) > MAX_DIM:
        raise ConfigError(name, value, f"sizes of at most {_num(MAX_DIM)} ({DIM.why})")
    return sizes


def parse_names(name: str, value: Any) -> tuple[str, ...]:
    """Non-empty names or fnmatch patterns, from "a,b" or a sequence of strings."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(v, str) for v in items):
        raise ConfigError(name, value, "comma-separated names or fnmatch patterns")
    names = tuple(v.strip() for v in items if v.strip())
    if not names:
        raise ConfigError(name, value, "at least one name or fnmatch pattern")
    return names


# The kinds a record reads with a parser of its own (by name, value).
_SPECIAL: dict[str, Callable[[str, Any], Any]] = {
    "raw": lambda name, value: value,  # a field its record's check reads itself
    "sigma": lambda name, value: check_number_or_choice(name, value, ("model", "fan_in")),
    "milestones": lambda name, value: parse_milestones(value),
    "ramp": lambda name, value: parse_ramp(value, name),
    "sizes": lambda name, value: parse_sizes(name, value),
    "names": lambda name, value: parse_names(name, value),
}


def _parse_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise ConfigError(name, value, "true or false (also yes/no, on/off, 1/0)")


def _parse_number(name: str, value: Any, kind: type) -> int | float:
    what = "an integer" if kind is int else "a finite number"
    x = value
    if isinstance(value, str):
        try:
            x = float(value.strip())
        except ValueError:
            raise ConfigError(name, value, what) from None
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        raise ConfigError(name, value, what)
    if kind is int:
        if x != int(x):
            raise ConfigError(name, value, what)
        return int(x)
    return float(x) if not isinstance(x, int) else x


def positive(record: Record, *names: str, integer: bool = False) -> None:
    """Every named field is a positive number (or None where optional)."""
    for info in record.field_info():
        if info.name not in names:
            continue
        v = getattr(record, info.name)
        if v is None:
            continue
        if (integer and not isinstance(v, int)) or not v > 0:
            raise ConfigError(
                info.flat, v, "a positive integer" if integer else "a positive number"
            )


def non_negative(record: Record, *names: str) -> None:
    """Every named field is a number >= 0."""
    for info in record.field_info():
        if info.name in names and getattr(record, info.name) < 0:
            raise ConfigError(info.flat, getattr(record, info.name), "a number >= 0")


def fraction(name: str, value: float, lo_open: bool = False, hi: float = 1.0) -> None:
    """value in [0, hi] ((0, hi] with lo_open), else a ConfigError naming the field."""
    ok = (0.0 < value if lo_open else 0.0 <= value) and value <= hi
    if not ok:
        lo = "(0" if lo_open else "[0"
        raise ConfigError(name, value, f"a fraction in {lo}, {hi:g}]")


# --- files ------------------------------------------------------------------------------------
def load_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML, TOML or JSON config or spec file into a dict (``read_document``), naming
    the file unless it holds a mapping at the top level."""
    data = read_document(path, "config")
    if not isinstance(data, dict):
        raise ConfigError("config", str(path), "a mapping of field: value at the top level")
    return data


def read_document(path: str | Path, field: str, suffixes: tuple[str, ...] | None = None) -> Any:
    """The one reader of sizeup's YAML, TOML and JSON files (configs, sweep specs, fit data,
    fit.json, base shapes), by the file's suffix (``suffixes``: those allowed, default all):
    a file that is missing, not UTF-8 text, not valid in its format or nested deeper than
    Python's parsers recurse gets a ConfigError naming ``field``, the file and the parser's
    first complaint, never a traceback."""
    p = Path(path)
    allowed = suffixes or tuple(_PARSERS)
    names = ", ".join(allowed[:-1]) + " or " + allowed[-1] if len(allowed) > 1 else allowed[0]
    if not p.is_file():
        raise ConfigError(field, str(p), f"an existing {names} file")
    suffix = p.suffix.lower()
    if suffix not in allowed or suffix not in _PARSERS:
        raise ConfigError(field, str(p), f"a file ending in {names}")
    kind, parse_text = _PARSERS[suffix]
    try:
        return parse_text(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(field, str(p), f"UTF-8 text ({e.reason} at byte {e.start})") from None
    except RecursionError:
        # json's and yaml's parsers recurse once per level: a 100,000-deep list exhausts
        # Python's stack long before it means anything to sizeup
        raise ConfigError(
            field,
            str(p),
            f"valid {kind} nested fewer than {sys.getrecursionlimit()} levels deep (Python's "
            "parsers stop there)",
        ) from None
    except ValueError as e:  # json, tomllib and yaml (via _yaml) all raise ValueErrors
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(field, str(p), f"valid {kind} ({first})") from None


def _yaml(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ValueError(f"{getattr(e, 'problem', None) or e}{where}") from None


def _toml(text: str) -> Any:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    return tomllib.loads(text)


_PARSERS = {
    ".yaml": ("YAML", _yaml),
    ".yml": ("YAML", _yaml),
    ".toml": ("TOML", _toml),
    ".json": ("JSON", json.loads),
}
