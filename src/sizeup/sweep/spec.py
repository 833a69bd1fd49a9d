"""A sweep spec: a base RunConfig plus axes, expanded into trials with stable ids.

File format (YAML, TOML or JSON):

    name: width-lr
    base: {model: gpt, steps: 100, seq_len: 64}
    axes:
      width: [32, 64, 128, 256]          # a list: crossed with every other axis (grid)
      lr: {log2: [-12, -6]}              # powers of two, one per octave (step: 0.5 for half octaves)
      zip:                               # fields that move together (same length), as one axis
        rule: [sp, mup]
        attn_scale: ["1/sqrt(d)", "1/d"]
    seeds: 3                             # every point with seeds 0, 1, 2 (or a list: [0, 7, 9])

Seeds are first-class: ``seeds`` crosses every point with a seed axis, and the transfer analysis
pools them (sizeup.sweep.transfer: the optimum from every seed, intervals over seeds).

Every trial is validated (by building its RunConfig) before anything runs, so a bad file fails
fast with a ConfigError naming the field.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sizeup.config import RunConfig, field_for, load_mapping
from sizeup.errors import ConfigError

FIELDS = RunConfig.field_names()  # the flat view's names (sizeup.config)
_AXIS_GENERATORS = ("values", "log2", "linspace", "range")


def _check_field(name: str, value: Any) -> None:
    field_for(name, value)  # a flat, dotted or old name, else a ConfigError listing them


def _flat(name: str) -> str:
    """An axis' name in the flat view (``model.width`` and ``width`` are one axis)."""
    return field_for(name).flat


MAX_AXIS = 10_000  # values one axis may expand to (a typo such as log2: [-10, 10000] stops here)
MAX_TRIALS = 100_000  # trials one spec may expand to


def expand_axis(name: str, spec: Any) -> list[Any]:
    """Turn one axis spec (a list, a scalar or a generator dict) into its list of values."""
    _check_field(name, spec)
    if isinstance(spec, dict):
        values = _generate(name, spec)
    elif isinstance(spec, (list, tuple)):
        values = list(spec)
    else:  # a single value is an axis of one
        values = [spec]
    if not values:
        raise ConfigError(f"axes.{name}", spec, "a non-empty list of values")
    if len(values) > MAX_AXIS:
        raise ConfigError(f"axes.{name}", spec, f"at most {MAX_AXIS:,} values on one axis")
    return values


def _generate(name: str, spec: dict[str, Any]) -> list[Any]:
    """The values of a generator axis: values, log2, linspace or range."""
    unknown = set(spec) - set(_AXIS_GENERATORS) - {"step", "num"}
    kinds = set(spec) & set(_AXIS_GENERATORS)
    if unknown or len(kinds) != 1:
        raise ConfigError(
            f"axes.{name}",
            spec,
            "a list, or a dict with exactly one of: "
            + ", ".join(_AXIS_GENERATORS)
            + " (log2: [lo, hi] with optional step; linspace: [lo, hi] with num;"
            " range: [lo, hi] with optional step)",
        )
    kind = kinds.pop()
    if kind == "values":
        if not isinstance(spec["values"], (list, tuple)):
            raise ConfigError(f"axes.{name}.values", spec["values"], "a list of values")
        return list(spec["values"])
    lo, hi = _pair(name, spec[kind])
    if kind == "log2":
        return _log2(name, lo, hi, _positive(f"axes.{name}.step", spec.get("step", 1)))
    if kind == "linspace":
        return [
            float(v) for v in np.linspace(lo, hi, _count(f"axes.{name}.num", spec.get("num", 5)))
        ]
    step = _count(f"axes.{name}.step", spec.get("step", 1))
    if (hi - lo) / step + 1 > MAX_AXIS:
        raise ConfigError(f"axes.{name}", spec, f"at most {MAX_AXIS:,} values on one axis")
    return list(range(int(lo), int(hi) + 1, step))


def _log2(name: str, lo: float, hi: float, step: float) -> list[float]:
    if lo < -1000 or hi > 1000:  # 2**1024 is no float
        raise ConfigError(f"axes.{name}.log2", [lo, hi], "exponents between -1000 and 1000")
    if (hi - lo) / step + 1 > MAX_AXIS:
        raise ConfigError(f"axes.{name}.log2", [lo, hi], f"at most {MAX_AXIS:,} values")
    # round so 2**-10 stays exactly 2**-10 whatever the float accumulation
    return [float(2.0 ** round(float(e), 10)) for e in np.arange(lo, hi + step / 2, step)]


def _number(field: str, v: Any) -> float:
    """A finite number (numeric strings too: YAML 1.1 reads 3e-3 as a string)."""
    try:
        x = float(v) if not isinstance(v, bool) else math.nan
    except (TypeError, ValueError):
        x = math.nan
    if not math.isfinite(x):
        raise ConfigError(field, v, "a finite number")
    return x


def _positive(field: str, v: Any) -> float:
    x = _number(field, v)
    if x <= 0:
        raise ConfigError(field, v, "a positive number")
    return x


def _count(field: str, v: Any) -> int:
    x = _number(field, v)
    if x != int(x) or not 1 <= x <= MAX_AXIS:
        raise ConfigError(field, v, f"a whole number between 1 and {MAX_AXIS:,}")
    return int(x)


def _pair(name: str, v: Any) -> tuple[float, float]:
    if not isinstance(v, (list, tuple)) or len(v) != 2:
        raise ConfigError(f"axes.{name}", v, "a pair [lo, hi]")
    lo, hi = _number(f"axes.{name}", v[0]), _number(f"axes.{name}", v[1])
    if hi < lo:
        raise ConfigError(f"axes.{name}", v, "a pair [lo, hi] with lo <= hi")
    return lo, hi


@dataclass
class SweepSpec:
    """Base config fields, grid axes (crossed) and zipped groups (moved together)."""

    base: dict[str, Any] = field(default_factory=dict)
    axes: dict[str, Any] = field(default_factory=dict)
    zips: list[dict[str, Any]] = field(default_factory=list)
    name: str = "sweep"
    seeds: int | list[int] | None = None  # sugar for axes.seed: a count (0..n-1) or a list

    def __post_init__(self) -> None:
        for key, value in (("base", self.base), ("axes", self.axes)):
            if value is not None and not isinstance(value, dict):
                raise ConfigError(key, value, "a mapping of RunConfig field: value(s)")
        self.base = dict(self.base or {})
        axes = dict(self.axes or {})
        # `zip` inside axes is a group of fields that vary together; `grid` is just more axes
        zips = axes.pop("zip", None)
        if zips is not None:
            self.zips = list(self.zips) + (zips if isinstance(zips, list) else [zips])
        grid = axes.pop("grid", None)
        if grid is not None:
            if not isinstance(grid, dict):
                raise ConfigError("axes.grid", grid, "a mapping of field: values")
            axes.update(grid)
        for k, v in axes.items():
            _check_field(k, v)
        self.axes = {_flat(k): v for k, v in axes.items()}
        self.zips = [
            {_flat(k): v for k, v in g.items()} if isinstance(g, dict) else g for g in self.zips
        ]
        self._add_seeds()
        self.validate()

    def _add_seeds(self) -> None:
        """``seeds: n`` (seeds 0..n-1) or ``seeds: [..]`` becomes the seed axis."""
        if self.seeds is None:
            return
        n = self.seeds
        if "seed" in self.axes:
            raise ConfigError("seeds", n, "left out when axes has a seed axis (one or the other)")
        ok_count = isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= MAX_AXIS
        ok_list = (
            isinstance(n, (list, tuple))
            and len(n) > 0
            and all(isinstance(v, int) and not isinstance(v, bool) for v in n)
            and len(set(n)) == len(n)
        )
        if not (ok_count or ok_list):
            raise ConfigError(
                "seeds", n, f"a count between 1 and {MAX_AXIS:,} or a list of distinct integers"
            )
        self.axes["seed"] = list(range(n)) if ok_count else list(n)
        self.seeds = None  # now an axis: to_dict writes it there

    # --- building ------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SweepSpec:
        """Build from a mapping with keys base, axes, optional zip, seeds and name."""
        if not isinstance(d, dict):
            raise ConfigError("spec", d, "a mapping with keys base, axes, zip, seeds, name")
        allowed = {"base", "axes", "zip", "name", "seeds"}
        for k in d:
            if k not in allowed:
                raise ConfigError(k, d[k], "a sweep file key: " + ", ".join(sorted(allowed)))
        zips = d.get("zip") or []
        return cls(
            base=d.get("base") or {},
            axes=d.get("axes") or {},
            zips=zips if isinstance(zips, list) else [zips],
            name=str(d.get("name", "sweep")),
            seeds=d.get("seeds"),
        )

    @classmethod
    def from_file(cls, path: str | Path) -> SweepSpec:
        """Load a YAML/TOML/JSON sweep file (validated)."""
        d = load_mapping(path)
        d.setdefault("name", Path(path).stem)
        return cls.from_dict(d)

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping that from_dict() reads back."""
        return {"name": self.name, "base": self.base, "axes": self.axes, "zip": self.zips}

    # --- validation and expansion --------------------------------------------------------
    def validate(self) -> None:
        """Raise ConfigError for an unknown field, an empty axis or any invalid trial."""
        if not isinstance(self.base, dict):
            raise ConfigError("base", self.base, "a mapping of RunConfig field: value")
        RunConfig.from_dict(self.base)  # names an unknown field (flat, dotted or a section)
        for k, v in self.axes.items():
            expand_axis(k, v)
        for i, group in enumerate(self.zips):
            self._zip_values(i, group)
        n = math.prod(len(expand_axis(k, v)) for k, v in self.axes.items())
        if n > MAX_TRIALS:
            raise ConfigError("axes", f"{n:,} trials", f"at most {MAX_TRIALS:,} trials in one spec")
        # building every trial runs RunConfig.validate on each: non-positive lr, bad rule, ...
        self.trials()

    def _zip_values(self, i: int, group: Any) -> dict[str, list[Any]]:
        if not isinstance(group, dict) or not group:
            raise ConfigError(f"zip[{i}]", group, "a non-empty mapping of field: [values]")
        vals = {k: expand_axis(k, v) for k, v in group.items()}
        lengths = {k: len(v) for k, v in vals.items()}
        if len(set(lengths.values())) != 1:
            raise ConfigError(f"zip[{i}]", lengths, "lists of equal length (they move together)")
        return vals

    def points(self) -> list[dict[str, Any]]:
        """The axis assignments of every trial, in a stable order (axes order, then zips)."""
        dims: list[list[dict[str, Any]]] = []
        for k, v in self.axes.items():
            dims.append([{k: x} for x in expand_axis(k, v)])
        for i, group in enumerate(self.zips):
            vals = self._zip_values(i, group)
            n = len(next(iter(vals.values())))
            dims.append([{k: vals[k][j] for k in vals} for j in range(n)])
        out = []
        for combo in itertools.product(*dims):
            point: dict[str, Any] = {}
            for part in combo:
                point.update(part)
            out.append(point)
        return out

    def trials(self) -> list[RunConfig]:
        """Every distinct trial's RunConfig (duplicates by trial id dropped, order kept)."""
        seen: set[str] = set()
        configs = []
        for point in self.points():
            d = {**self.base, **point}
            try:
                cfg = RunConfig.from_dict(self.base).replace(**point)
            except ConfigError as e:
                point_s = ", ".join(f"{k}={v!r}" for k, v in point.items())
                raise ConfigError(
                    e.field, e.value, f"{e.allowed} (in the trial {point_s or 'base'})"
                ) from None
            except TypeError as e:  # a wrong type that the dataclass could not even take
                raise ConfigError("base", d, f"RunConfig fields with valid types ({e})") from None
            tid = cfg.trial_id()
            if tid not in seen:
                seen.add(tid)
                configs.append(cfg)
        return configs

    def __len__(self) -> int:
        return len(self.trials())


def load_spec(path_or_dict: str | Path | dict[str, Any] | SweepSpec) -> SweepSpec:
    """A SweepSpec from a file path, a mapping or an existing spec."""
    if isinstance(path_or_dict, SweepSpec):
        return path_or_dict
    if isinstance(path_or_dict, dict):
        return SweepSpec.from_dict(path_or_dict)
    return SweepSpec.from_file(path_or_dict)


def lr_grid(lo_exp: float, hi_exp: float, step: float = 1.0) -> list[float]:
    """Learning rates 2**lo_exp ... 2**hi_exp, `step` octaves apart."""
    if not math.isfinite(lo_exp) or not math.isfinite(hi_exp) or hi_exp < lo_exp:
        raise ConfigError("lr_grid", (lo_exp, hi_exp), "finite exponents with lo <= hi")
    return expand_axis("lr", {"log2": [lo_exp, hi_exp], "step": step})
