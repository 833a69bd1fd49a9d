"""The coordinate check's result: each module's curves over steps and sizes, its verdict, and
the check's table and JSON. Presentation reads these records; ``sizeup.diagnostics.plots``
draws them."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scipy.special import ndtr, stdtrit  # normal cdf, Student's t quantile

from sizeup.diagnostics.coord_check.constants import (
    CROSSTALK_SLOPE,
    FAIL,
    INCONCLUSIVE,
    MIN_SEEDS,
    PASS,
)
from sizeup.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from rich.table import Table


def noise_multiplier(noise_z: float, seeds: int) -> float:
    """How many standard errors of seed noise a slope may lie outside the band: Student's
    t_{seeds-1} quantile at the normal's coverage of ``noise_z`` (2 -> 97.7% one-sided), since
    the standard error comes from ``seeds`` per-seed slopes (Student 1908; the sweeps' intervals
    make the same correction, sizeup.sweep.estimate.t_interval). 13.97 with 2 seeds, 4.53 with
    3, 3.31 with 4, -> noise_z. NaN with one seed (no noise estimate); ``noise_z`` itself when
    the seed count is unknown (0: a result file from before it was recorded); 0 when noise_z
    is 0 (strict: the band alone decides)."""
    if noise_z == 0:
        return 0.0
    if seeds == 0:
        return noise_z
    if seeds < 2:
        return math.nan
    return float(stdtrit(seeds - 1, ndtr(noise_z)))


@dataclass
class ModuleCurve:
    """One module's sizes over steps and widths (averaged over seeds) and its verdict.

    Besides the total output out_t, the check records its update part delta_t = out_t - out_0
    on the same inputs. A module whose output vanishes with width at init (``vanishes``) is
    judged on that update, the part muP keeps Theta(1); every other module on its total.
    """

    name: str
    kind: str  # one of KINDS
    l1: list[list[float]]  # [t][i]: mean |x| at step t and size i
    rms: list[list[float]]  # [t][i]: sqrt(mean x^2)
    slopes: list[float]  # [t]: least-squares slope of log(stat) vs log(size)
    verdict: str = PASS  # PASS, FAIL or INCONCLUSIVE (too few seeds to tell): decide()
    zero_init: bool = False  # exactly 0 at t = 0 (a special case of vanishes)
    band: tuple[float, float] = (-0.1, 0.1)  # the judged slopes that pass
    stderr: list[float] = field(default_factory=list)  # [t]: standard error of the slope (seeds)
    noise_z: float = 2.0  # fail only when outside the band by more than the seed noise allows
    seeds: int = 0  # seeds behind the slopes and their stderr (0: unknown, an older file)
    vanishes: bool = False  # shrinks with width at init: judged on the update (module doc)
    delta_l1: list[list[float]] = field(default_factory=list)  # [t][i]: mean |out_t - out_0|
    delta_rms: list[list[float]] = field(default_factory=list)  # [t][i]: RMS of out_t - out_0
    delta_slopes: list[float] = field(default_factory=list)  # [t]: slope of the update's size
    delta_stderr: list[float] = field(default_factory=list)  # [t]: its standard error

    @property
    def passed(self) -> bool:
        """The verdict is PASS (an inconclusive module has not passed)."""
        return self.verdict == PASS

    @passed.setter
    def passed(self, ok: bool) -> None:
        # ``passed`` was the field before the verdict had three values: setting it still works
        self.verdict = PASS if ok else FAIL

    @property
    def multiplier(self) -> float:
        """Standard errors of seed noise allowed outside the band (noise_multiplier)."""
        return noise_multiplier(self.noise_z, self.seeds)

    @property
    def judged(self) -> str:
        """What the verdict looks at: "update" (out_t - out_0) or "total" (out_t)."""
        return "update" if self.vanishes else "total"

    def judged_slope(self, t: int) -> float:
        """The slope the verdict judges at step t."""
        return self.delta_slopes[t] if self.vanishes else self.slopes[t]

    def judged_sizes(self, stat: str, t: int) -> list[float]:
        """The sizes (one per width) whose slope is judged at step t."""
        return getattr(self, ("delta_" if self.vanishes else "") + stat)[t]

    def judged_stderr(self, t: int) -> float:
        """Standard error of the judged slope at step t (NaN when unknown)."""
        se = self.delta_stderr if self.vanishes else self.stderr
        return se[t] if t < len(se) else math.nan

    def excess(self, t: int) -> float:
        """How far the judged slope at step t lies outside the band (<= 0 inside; inf if not
        finite)."""
        s = self.judged_slope(t)
        if not math.isfinite(s):
            return math.inf
        return max(s - self.band[1], self.band[0] - s)

    def fails(self, t: int) -> bool:
        """Outside the band by more than the seed noise allows: by more than ``multiplier``
        standard errors; with one seed (no noise estimate, noise_z > 0) only a module that
        exploded or collapsed (an infinite slope) is shown to fail. A standard error that is
        not finite with several seeds (some seed's slope is) allows nothing, as noise_z = 0."""
        excess, c = self.excess(t), self.multiplier
        if math.isinf(excess) or c == 0:
            return excess > 0
        if math.isnan(c):
            return False
        se = self.judged_stderr(t)
        return excess > c * (se if math.isfinite(se) else 0.0)

    def decide(self, judge_from: int) -> str:
        """The module's verdict over its judged steps: FAIL when some step fails; else
        INCONCLUSIVE when some step lies outside the band (within the seed noise) and fewer
        than MIN_SEEDS seeds measured that noise, since so few cannot tell (constants.MIN_SEEDS);
        else PASS (outside the band within the noise of enough seeds: PASS, shown as noisy)."""
        judged = range(judge_from, len(self.slopes))
        if any(self.fails(t) for t in judged):
            return FAIL
        if self.too_few_seeds and any(self.excess(t) > 0 for t in judged):
            return INCONCLUSIVE
        return PASS

    @property
    def too_few_seeds(self) -> bool:
        """Fewer than MIN_SEEDS known seeds behind a noise allowance (noise_z > 0)."""
        return self.noise_z > 0 and 0 < self.seeds < MIN_SEEDS

    def noisy(self, judge_from: int) -> bool:
        """Passed, but some judged step lies outside the band (within the seed noise)."""
        judged = range(judge_from, len(self.slopes))
        return self.passed and any(self.excess(t) > 0 for t in judged)

    def worst_step(self, judge_from: int) -> int:
        """The judged step whose slope lies furthest outside (or least inside) the band."""
        judged = range(judge_from, len(self.slopes))
        return max(judged, key=self.excess)


@dataclass
class CoordCheckResult:
    """Everything a coordinate check measured, plus the verdict."""

    axis: str  # "width" or "depth"
    sizes: list[int]
    steps: int
    stat: str
    tolerance: float
    judge_from: int
    modules: list[ModuleCurve]
    loss: list[list[float]]  # [t][i] training loss, averaged over seeds
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        """FAIL when some module fails; else INCONCLUSIVE when some module lies outside its
        band and too few seeds measured its noise to tell (run more seeds); else PASS."""
        found = {m.verdict for m in self.modules}
        return FAIL if FAIL in found else INCONCLUSIVE if INCONCLUSIVE in found else PASS

    @property
    def passed(self) -> bool:
        """True when every judged module is flat at every judged step (verdict PASS)."""
        return self.verdict == PASS

    @property
    def seeds(self) -> int:
        """Seeds behind the slopes (0 when unknown: a file from before it was recorded)."""
        return max((m.seeds for m in self.modules), default=0)

    @property
    def advice(self) -> str:
        """What to do about an INCONCLUSIVE verdict, in words ("" otherwise)."""
        if self.verdict != INCONCLUSIVE:
            return ""
        names = ", ".join(m.name for m in self.inconclusive())
        return (
            f"inconclusive: run more seeds (--seeds {MIN_SEEDS} or more): {names} lie outside "
            f"the band, but {self.seeds} seed(s) cannot tell that from seed noise"
        )

    @property
    def worst(self) -> dict[str, Any]:
        """The module and step furthest outside its band (or, when all pass, closest to its edge)."""
        if not self.modules or self.judge_from > self.steps:
            return {}
        m = max(self.modules, key=lambda m: m.excess(m.worst_step(self.judge_from)))
        t = m.worst_step(self.judge_from)
        se = m.judged_stderr(t)
        return {
            "module": m.name,
            "kind": m.kind,
            "step": t,
            "judged": m.judged,
            "slope": _finite(m.judged_slope(t)),
            "band": list(m.band),
            "zero_init": m.zero_init,
            "vanishes": m.vanishes,
            "stderr": _finite(se),
            "sizes": [_finite(s) for s in m.judged_sizes(self.stat, t)],
            "passed": m.passed,
            "verdict": m.verdict,
        }

    def module(self, name: str) -> ModuleCurve:
        """The curve of one module, by name (ConfigError naming the known ones otherwise)."""
        for m in self.modules:
            if m.name == name:
                return m
        raise ConfigError("module", name, "one of " + ", ".join(m.name for m in self.modules))

    def failing(self) -> list[ModuleCurve]:
        """Modules that failed, worst first."""
        return self._worst_first(FAIL)

    def inconclusive(self) -> list[ModuleCurve]:
        """Modules too few seeds cannot judge (outside the band, within the noise), worst
        first."""
        return self._worst_first(INCONCLUSIVE)

    def _worst_first(self, verdict: str) -> list[ModuleCurve]:
        bad = [m for m in self.modules if m.verdict == verdict]
        return sorted(bad, key=lambda m: -m.excess(m.worst_step(self.judge_from)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: {"passed", "worst", "modules", ...}."""
        return {
            "passed": bool(self.passed),
            "verdict": self.verdict,
            "advice": self.advice,
            "seeds": self.seeds,
            "min_seeds": MIN_SEEDS,
            "worst": self.worst,
            "axis": self.axis,
            "sizes": list(self.sizes),
            "steps": self.steps,
            "stat": self.stat,
            "tolerance": self.tolerance,
            "judge_from": self.judge_from,
            "loss": _rows(self.loss),
            "settings": self.settings,
            "modules": [_curve_dict(m) for m in self.modules],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CoordCheckResult:
        """Rebuild from to_dict() output (None sizes come back as NaN)."""
        return cls(
            axis=d["axis"],
            sizes=d["sizes"],
            steps=d["steps"],
            stat=d["stat"],
            tolerance=d["tolerance"],
            judge_from=d["judge_from"],
            modules=[_curve_from_dict(m, d["tolerance"]) for m in d["modules"]],
            loss=[_floats(r) for r in d["loss"]],
            settings=d.get("settings", {}),
        )

    def save(self, out: str | Path) -> Path:
        """Write out/coord_check.json and return its path (the figure:
        sizeup.diagnostics.plots.plot_coord_check)."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        path = out / "coord_check.json"
        path.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False))
        return path

    def table(self, max_rows: int = 40) -> Table:
        """A rich table of ``table_cells``: one row per module, judged slope per step, verdict;
        failures first. Modules judged on their update (they vanish at init) are marked *."""
        from rich.table import Table
        from rich.text import Text

        title, columns, rows, caption = self.table_cells(max_rows)
        t = Table(title=title, caption=caption or None)
        for i, col in enumerate(columns):
            t.add_column(col, justify="right" if col.startswith("t=") else "left", no_wrap=i == 0)
        for row in rows:
            t.add_row(*(Text(c) if isinstance(c, str) else Text(c[0], style=c[1]) for c in row))
        return t

    def table_cells(
        self, max_rows: int | None = None
    ) -> tuple[str, list[str], list[list[str | tuple[str, str]]], str]:
        """(title, columns, rows, caption) of the verdict table; a cell is text or (text, rich
        style). Failures first; ``max_rows`` keeps the first ones (all are in the JSON)."""
        title = (
            f"coord check over {self.axis} {self.sizes}: "
            + {PASS: "PASSED", FAIL: "FAILED", INCONCLUSIVE: "INCONCLUSIVE"}[self.verdict]
            + f"  (|slope| <= {self.tolerance} from step {self.judge_from}; * vanishes at init: "
            + "its update out_t - out_0 is judged, and may shrink down to "
            + f"-{CROSSTALK_SLOPE + self.tolerance:g})"
        )
        columns = ["module", "kind", *(f"t={s}" for s in range(self.steps + 1)), "verdict"]
        ordered = self.failing() + self.inconclusive() + [m for m in self.modules if m.passed]
        shown = ordered if max_rows is None else ordered[:max_rows]
        rows: list[list[str | tuple[str, str]]] = [
            [
                m.name + ("*" if m.vanishes else ""),
                m.kind,
                *(self._cell(m, s) for s in range(self.steps + 1)),
                self._mark(m),
            ]
            for m in shown
        ]
        more = len(ordered) - len(shown)
        caption = f"... {more} more modules (all in coord_check.json)" if more > 0 else ""
        return title, columns, rows, caption

    def _cell(self, m: ModuleCurve, s: int) -> str | tuple[str, str]:
        """One table cell: the total's slope at t = 0 (init), the judged slope after."""
        slope = m.judged_slope(s) if s >= self.judge_from else m.slopes[s]
        txt = f"{slope:+.2f}" if math.isfinite(slope) else "inf"
        se = m.judged_stderr(s)
        if s < self.judge_from:
            return txt
        if math.isfinite(se) and se > 0:
            txt += f"±{se:.2f}"
        if m.excess(s) > 0:
            return (txt, "red") if m.fails(s) else (txt, "yellow")
        return txt

    def _mark(self, m: ModuleCurve) -> tuple[str, str]:
        if m.verdict == FAIL:
            return ("FAIL", "red")
        if m.verdict == INCONCLUSIVE:
            return ("inconclusive", "yellow")
        return ("noisy", "yellow") if m.noisy(self.judge_from) else ("ok", "green")


def _rows(rows: list[list[float]]) -> list[list[float | None]]:
    return [[_finite(v) for v in row] for row in rows]


def _floats(row: list) -> list[float]:
    return [math.nan if v is None else float(v) for v in row]


def _slopes(row: list) -> list[float]:
    return [math.inf if v is None else float(v) for v in row]


def _curve_dict(m: ModuleCurve) -> dict[str, Any]:
    """One module's JSON record (non-finite numbers as None)."""
    d = asdict(m)
    d["passed"] = m.passed  # the verdict as a bool, as files before the verdict field had
    d["judged"] = m.judged
    d["band"] = list(m.band)
    for key in ("slopes", "stderr", "delta_slopes", "delta_stderr"):
        d[key] = [_finite(s) for s in getattr(m, key)]
    for key in ("l1", "rms", "delta_l1", "delta_rms"):
        d[key] = _rows(getattr(m, key))
    return d


def _curve_from_dict(m: dict[str, Any], tolerance: float) -> ModuleCurve:
    """A ModuleCurve back from _curve_dict (fields older files lack get their defaults)."""
    return ModuleCurve(
        name=m["name"],
        kind=m["kind"],
        l1=[_floats(r) for r in m["l1"]],
        rms=[_floats(r) for r in m["rms"]],
        slopes=_slopes(m["slopes"]),
        verdict=m.get("verdict", PASS if m["passed"] else FAIL),
        zero_init=m.get("zero_init", False),
        band=tuple(m.get("band", (-tolerance, tolerance))),
        stderr=_floats(m.get("stderr", [])),
        noise_z=m.get("noise_z", 2.0),
        seeds=m.get("seeds", 0),
        vanishes=m.get("vanishes", m.get("zero_init", False)),
        # Files from before the update was recorded: a zero-init output is its own update.
        delta_l1=[_floats(r) for r in m.get("delta_l1", m["l1"])],
        delta_rms=[_floats(r) for r in m.get("delta_rms", m["rms"])],
        delta_slopes=_slopes(m.get("delta_slopes", m["slopes"])),
        delta_stderr=_floats(m.get("delta_stderr", m.get("stderr", []))),
    )


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None
