"""Coordinate checks that give a verdict.

Train the same architecture at several widths (or depths) for a few steps, record the typical
size of every module's output, and fit the least-squares slope of log(size) against log(width).
Under a correct parametrization every activation stays Theta(1) as width grows, so the slope is
~0; under a broken one some output grows (slope ~0.5 or ~1 after one Adam step). Instead of asking
people to squint at a plot, we judge each module: |slope| <= tolerance (0.1) from step 1 on, and
name the worst offender.

The slope is fitted to the seed-averaged sizes; its standard error comes from the spread of the
per-seed slopes (each seed is a full replicate of the width sweep). A module fails only when its
slope lies outside the band by more than ``noise_z`` (2) standard errors; one that is outside,
but within that noise, passes and is shown as "noisy": more seeds settle it. A few seeds of a
GPT at widths 128..1024 give standard errors of 0.01-0.08, so real failures (SP: +0.5 to +2.8;
1/sqrt(d) attention: +0.35 and up) stand far outside; with one seed the band alone decides.

Step t = 0 is the forward pass at initialisation; step t >= 1 is the forward pass after t updates.
Step 0 is recorded but not judged.

What is checked: ``coord_check(config=cfg)`` (`sizeup coord-check -c run.yaml`) builds the run
`sizeup train` would train from cfg at each width (``sizeup.train.build``, the same base width)
and trains it by the same step (``sizeup.train.step``) at the config's peak lr; without a config,
a model family (the built-in MLP and fixed-heads GPT, or a factory).

Outputs that vanish at init are judged on their update. Besides each output out_t the check
records its update delta_t = out_t - out_0 on the same inputs. Under muP some outputs shrink
with width at init on purpose: the logits with a random readout (sigma/m: a sum of n terms of
size 1/n, so n^-1/2), 1/d attention scores over a growing head, and zero-initialised ones are
exactly 0. What muP keeps Theta(1) there is the update; the total only approaches it as the init
part fades, so at small widths its slope is pulled toward -1/2. A module vanishes at init when
it is exactly 0 there (every size and seed), or when its slope at t = 0 is nearer -1/2 than 0
beyond the seed noise (slope_0 + noise_z * stderr < -1/4); such a module is judged on its
update instead of its total.

Updates are judged one-sided. Each update mixes the inputs of the batch through their overlaps
x_i . x_j: Theta(n) for the same token, but O(sqrt(n)) for different ones rather than 0. Where
a module also has a Theta(1) init, that crosstalk is a small correction; where the update is
what is judged, it is a relative O(sqrt(tokens/n)) part that fades like width^-1/2, so the
update approaches its flat limit from above, with a slope between -1/2 and 0 at small widths
(measured on the GPT with SGD up to width 4096: the local slope of the zero-initialised queries
between successive widths from 64 goes -0.58, -0.35, -0.26, +0.11, -0.08, -0.06;
docs/diagnostics.md). They pass when the slope lies in [-(1/2 + tolerance), tolerance]: growth
still fails, and so does vanishing faster than crosstalk can explain (an update scaled 1/width
too small gives slope -1).
"""

from __future__ import annotations

import fnmatch
import json
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sizeup.errors import ConfigError, check_choice, check_positive
from sizeup.progress import Progress

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from rich.table import Table
    from torch import nn

    from sizeup.config import RunConfig
    from sizeup.train.step import Trainer

STATS = ("l1", "rms")
KINDS = ("hidden", "residual", "attn_logits", "logits")
OPTIMIZER_NAMES = ("adamw", "sgd", "muon")
LOGITS = "logits"  # pseudo-module: the model's final output
RESIDUAL = "residual"  # pseudo-module (depth mode): the last block's output

# How fast the crosstalk part of a zero-initialised output fades with width (see module doc).
CROSSTALK_SLOPE = 0.5
# How fast an output that vanishes at init shrinks with width: a sum of n random terms of size
# 1/n (muP's readout, 1/d attention scores over a growing head), n^-1/2 by the central limit.
VANISH_SLOPE = 0.5

# Default learning rates per optimizer: big enough that one step moves every layer by Theta(1)
# (so a wrong rule shows after one step), small enough not to diverge at the base width.
DEFAULT_LR = {"adamw": 1e-2, "sgd": 0.5, "muon": 2e-2}
DEFAULT_WIDTHS = {"mlp": (64, 128, 256, 512), "gpt": (128, 256, 512, 1024)}


# --------------------------------------------------------------------------------------------
# Result records
# --------------------------------------------------------------------------------------------
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
    passed: bool = True
    zero_init: bool = False  # exactly 0 at t = 0 (a special case of vanishes)
    band: tuple[float, float] = (-0.1, 0.1)  # the judged slopes that pass
    stderr: list[float] = field(default_factory=list)  # [t]: standard error of the slope (seeds)
    noise_z: float = 2.0  # fail only when outside the band by more than noise_z * stderr
    vanishes: bool = False  # shrinks with width at init: judged on the update (module doc)
    delta_l1: list[list[float]] = field(default_factory=list)  # [t][i]: mean |out_t - out_0|
    delta_rms: list[list[float]] = field(default_factory=list)  # [t][i]: RMS of out_t - out_0
    delta_slopes: list[float] = field(default_factory=list)  # [t]: slope of the update's size
    delta_stderr: list[float] = field(default_factory=list)  # [t]: its standard error

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
        """Outside the band by more than the seed noise allows."""
        se = self.judged_stderr(t)
        return self.excess(t) > self.noise_z * (se if math.isfinite(se) else 0.0)

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
    def passed(self) -> bool:
        """True when every judged module is flat at every judged step."""
        return all(m.passed for m in self.modules)

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
        }

    def module(self, name: str) -> ModuleCurve:
        """The curve of one module, by name (ConfigError naming the known ones otherwise)."""
        for m in self.modules:
            if m.name == name:
                return m
        raise ConfigError("module", name, "one of " + ", ".join(m.name for m in self.modules))

    def failing(self) -> list[ModuleCurve]:
        """Modules that failed, worst first."""
        bad = [m for m in self.modules if not m.passed]
        return sorted(bad, key=lambda m: -m.excess(m.worst_step(self.judge_from)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: {"passed", "worst", "modules", ...}."""
        return {
            "passed": bool(self.passed),
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
            + ("PASSED" if self.passed else "FAILED")
            + f"  (|slope| <= {self.tolerance} from step {self.judge_from}; * vanishes at init: "
            + "its update out_t - out_0 is judged, and may shrink down to "
            + f"-{CROSSTALK_SLOPE + self.tolerance:g})"
        )
        columns = ["module", "kind", *(f"t={s}" for s in range(self.steps + 1)), "verdict"]
        ordered = self.failing() + [m for m in self.modules if m.passed]
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
        if not m.passed:
            return ("FAIL", "red")
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
        passed=m["passed"],
        zero_init=m.get("zero_init", False),
        band=tuple(m.get("band", (-tolerance, tolerance))),
        stderr=_floats(m.get("stderr", [])),
        noise_z=m.get("noise_z", 2.0),
        vanishes=m.get("vanishes", m.get("zero_init", False)),
        # Files from before the update was recorded: a zero-init output is its own update.
        delta_l1=[_floats(r) for r in m.get("delta_l1", m["l1"])],
        delta_rms=[_floats(r) for r in m.get("delta_rms", m["rms"])],
        delta_slopes=_slopes(m.get("delta_slopes", m["slopes"])),
        delta_stderr=_floats(m.get("delta_stderr", m.get("stderr", []))),
    )


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


# --------------------------------------------------------------------------------------------
# Recording
# --------------------------------------------------------------------------------------------
def _is_norm(m: nn.Module) -> bool:
    # RMSNorm/LayerNorm of any origin (torch's or a model's own class) count as norms.
    return "norm" in type(m).__name__.lower()


def _is_layer(name: str, m: nn.Module, hints: dict[str, Any]) -> bool:
    """A module whose output a check records: Linear, Embedding, norms, transformers' Conv1D,
    MoE experts (3-D weights) and routers (hints["router"]; their first output, the logits)."""
    from torch import nn

    from sizeup.parametrization.layout import is_conv1d

    if isinstance(m, (nn.Linear, nn.Embedding)) or _is_norm(m) or is_conv1d(m):
        return True
    if any(fnmatch.fnmatchcase(name, p) for p in hints.get("router", [])):
        return True
    return any(p.ndim == 3 for p in m.parameters(recurse=False))


def _match_segment(name: str, pattern: str) -> bool:
    # fnmatch's * also matches dots; a block pattern "blocks.*" must match "blocks.3" only,
    # not its sub-modules "blocks.3.mlp" (a branch, not the residual stream).
    return fnmatch.fnmatchcase(name, pattern) and name.count(".") == pattern.count(".")


def coord_modules(model: nn.Module, include: Sequence[str] | None = None) -> dict[str, str]:
    """Map module name -> kind for every module a coordinate check records.

    Default: every Linear, Embedding and norm, the attention-logits Identities (``*.logits``),
    and each block (``model.sizeup_hints["block"]`` patterns), plus the pseudo-module "logits"
    (the model output). ``include`` (fnmatch patterns) narrows that set; a pattern that matches
    nothing raises ConfigError naming the modules there are.
    """
    from sizeup.models.hf import hints as model_hints

    hints = model_hints(model)
    blocks = list(hints.get("block", []))
    readouts = list(hints.get("readout", [])) + ["lm_head", "readout"]
    found: dict[str, str] = {}
    for name, m in model.named_modules():
        if not name:
            continue
        if name.split(".")[-1] == "logits":
            found[name] = "attn_logits"
        elif _is_layer(name, m, hints):
            found[name] = (
                "logits" if any(fnmatch.fnmatchcase(name, p) for p in readouts) else "hidden"
            )
        elif any(_match_segment(name, p) for p in blocks):
            found[name] = "residual"
    found[LOGITS] = "logits"
    if include is None:
        return found
    chosen: dict[str, str] = {}
    for pat in include:
        hits = [n for n in found if fnmatch.fnmatchcase(n, pat)]
        if not hits:
            raise ConfigError(
                "modules",
                pat,
                "names (or fnmatch patterns) of recorded modules: " + ", ".join(found),
            )
        chosen.update({n: found[n] for n in hits})
    return chosen


class CoordRecorder:
    """Forward hooks that store, while ``active``, mean |x| and RMS of chosen module outputs, and
    of their update x - x_ref against reference outputs (``ref``, captured on a pass started
    with ``keep_ref``: the forward pass at init on the same inputs). ``LOGITS`` among the names
    hooks the model itself (its output, or the first tensor of it)."""

    def __init__(self, model: nn.Module, names: Sequence[str], causal: Sequence[str] = ()):
        self.stats: dict[str, tuple[float, float]] = {}
        self.delta: dict[str, tuple[float, float]] = {}
        self.ref: dict[str, torch.Tensor] = {}
        self.active = False
        self.keep_ref = False
        # Causal attention scores: only the entries the model uses (key position <= query
        # position) are activations; the future ones are masked to -inf right after the hook.
        self.causal = set(causal)
        mods = dict(model.named_modules())
        self._handles = [mods[n].register_forward_hook(self._hook(n)) for n in names if n in mods]
        if LOGITS in names:
            self._handles.append(model.register_forward_hook(self._hook(LOGITS)))

    def _hook(self, name: str) -> Callable:
        def hook(_module: Any, _inp: Any, out: Any) -> None:
            if self.active:
                self.record(name, out, causal=name in self.causal)

        return hook

    def start(self, keep_ref: bool = False) -> None:
        """Record the next forward pass; ``keep_ref``: its outputs become the reference."""
        self.stats.clear()
        self.delta.clear()
        if keep_ref:
            self.ref = {}
        self.keep_ref = keep_ref
        self.active = True

    def record(self, name: str, out: Any, causal: bool = False) -> None:
        """Store the stats of a tensor (or the first tensor of a tuple output); ``causal``: the
        tensor is (..., T, T) attention scores and only its lower triangle counts."""
        import torch

        if isinstance(getattr(out, "logits", None), torch.Tensor):  # a transformers ModelOutput
            from sizeup.train.step import output_logits

            out = output_logits(out)
        if isinstance(out, (tuple, list)):
            out = next((o for o in out if isinstance(o, torch.Tensor)), None)
        if not isinstance(out, torch.Tensor):
            return
        with torch.no_grad():
            x = out.detach().float()
            if causal and x.dim() >= 2 and x.shape[-1] == x.shape[-2]:
                T = x.shape[-1]
                x = x[..., torch.ones(T, T, dtype=torch.bool, device=x.device).tril()]
            self.stats[name] = _sizes(x)
            if self.keep_ref:
                self.ref[name] = x.clone()  # a copy: a later in-place op may reuse `out`
            ref = self.ref.get(name)
            ok = ref is not None and ref.shape == x.shape
            self.delta[name] = _sizes(x - ref) if ok else (math.nan, math.nan)

    def remove(self) -> None:
        """Detach every hook."""
        for h in self._handles:
            h.remove()
        self._handles = []


def _sizes(x: torch.Tensor) -> tuple[float, float]:
    """(mean |x|, RMS of x)."""
    return x.abs().mean().item(), x.pow(2).mean().sqrt().item()


def log_slope(sizes: Sequence[float], values: Sequence[float]) -> float:
    """Least-squares slope of log(value) against log(size); inf when a value is not positive
    or not finite (an exploded or collapsed module), 0 when all values are exactly 0."""
    v = np.asarray(values, dtype=float)
    if np.all(v == 0.0):
        return 0.0  # e.g. zero-initialised readout at t=0: flat (and judged nowhere anyway)
    if not np.all(np.isfinite(v)) or np.any(v <= 0):
        return math.inf
    return float(np.polyfit(np.log(np.asarray(sizes, dtype=float)), np.log(v), 1)[0])


# --------------------------------------------------------------------------------------------
# Built-in model families and their data
# --------------------------------------------------------------------------------------------
MLP_IN, MLP_OUT = 32, 10


def _gpt_factory(
    n_head: int, depth: int, seq_len: int, attn_scale: str, qk_norm: bool, vocab_size: int = 256
) -> Callable[..., nn.Module]:
    from sizeup.models import GPT, GPTConfig

    # A fixed number of heads, so head_dim grows with width: that is muP's infinite-width limit
    # and the only way 1/d vs 1/sqrt(d) attention scaling can show up in a width sweep.
    def build(width: int, depth: int = depth) -> nn.Module:
        if width % n_head:
            raise ConfigError("widths", width, f"multiples of n_head={n_head}")
        return GPT(
            GPTConfig(
                d_model=width,
                n_layer=depth,
                n_head=n_head,
                vocab_size=vocab_size,
                seq_len=seq_len,
                attn_scale=attn_scale,
                qk_norm=qk_norm,
            )
        )

    return build


def _mlp_factory(depth: int) -> Callable[..., nn.Module]:
    from sizeup.models import MLP

    def build(width: int, depth: int = depth) -> nn.Module:
        return MLP(MLP_IN, width, depth, MLP_OUT)

    return build


def gpt_batches(
    n: int, batch_size: int, seq_len: int, seed: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """n next-byte batches from the built-in corpus (random bytes if it is unavailable)."""
    import torch

    rng = np.random.default_rng(seed)
    try:
        from sizeup.data import builtin_corpus

        corpus = np.frombuffer(builtin_corpus(), dtype=np.uint8)
    except (ImportError, AttributeError):  # the data module is optional for a coord check
        corpus = rng.integers(0, 256, size=1 << 16).astype(np.uint8)
    out = []
    for _ in range(n):
        starts = rng.integers(0, len(corpus) - seq_len - 1, size=batch_size)
        chunk = np.stack([corpus[s : s + seq_len + 1] for s in starts]).astype(np.int64)
        t = torch.from_numpy(chunk)
        out.append((t[:, :-1].contiguous(), t[:, 1:].contiguous()))
    return out


def mlp_batches(n: int, batch_size: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """n batches of Gaussian inputs labelled by a fixed random linear teacher."""
    import torch

    teacher = torch.randn(MLP_IN, MLP_OUT, generator=torch.Generator().manual_seed(1234))
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        x = torch.randn(batch_size, MLP_IN, generator=g)
        out.append((x, (x @ teacher).argmax(-1)))
    return out


# --------------------------------------------------------------------------------------------
# The check
# --------------------------------------------------------------------------------------------
def _default_lr(model: Any, optimizer: Any) -> float:
    # SGD at 0.5 moves the GPT's attention too far in one step at width 128 (the sizes then
    # jump between widths); 0.1 still moves every layer by Theta(1).
    if model == "gpt" and optimizer == "sgd":
        return 0.1
    return DEFAULT_LR.get(optimizer, 1e-2) if isinstance(optimizer, str) else 1e-2


def _check_sizes(field_name: str, sizes: Sequence[int]) -> list[int]:
    sizes = list(sizes)
    if len(sizes) < 2:
        raise ConfigError(field_name, sizes, "at least two sizes, so a slope can be fitted")
    for s in sizes:
        check_positive(field_name, s, integer=True)
    if any(b <= a for a, b in zip(sizes, sizes[1:])):
        raise ConfigError(field_name, sizes, "strictly increasing sizes, e.g. 64,128,256,512")
    return sizes


def _make_optimizer(
    optimizer: str | Callable, model: nn.Module, param: Any, lr: float, opt_kwargs: dict[str, Any]
) -> torch.optim.Optimizer:
    if callable(optimizer):
        return optimizer(model)
    if param is not None:
        return param.optimizer(optimizer, lr, **opt_kwargs)
    # No parametrization: plain torch optimizers with one global lr.
    import torch

    if optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr)
    if optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    raise ConfigError("optimizer", optimizer, "'adamw' or 'sgd' when rule=None (or a callable)")


@dataclass
class _Plan:
    """The check's own settings, whatever model it checks: what to record and how to judge."""

    axis: str  # "width" or "depth"
    sizes: list[int]
    steps: int
    seeds: int
    first_seed: int = 0
    stat: str = "l1"
    tolerance: float = 0.1
    judge_from: int = 1
    noise_z: float = 2.0
    include: Sequence[str] | None = None  # fnmatch patterns of modules to record
    causal_attn: bool = False
    progress: bool = False

    def validate(self, device: str) -> None:
        """Each setting with a clear error (the width and depth checks share them)."""
        check_positive("steps", self.steps, integer=True)
        check_positive("seeds", self.seeds, integer=True)
        check_positive("tolerance", self.tolerance)
        check_choice("stat", self.stat, STATS)
        if not 0 <= self.judge_from <= self.steps:
            raise ConfigError(
                "judge_from", self.judge_from, f"a step between 0 and steps={self.steps}"
            )
        z = self.noise_z
        if not (isinstance(z, (int, float)) and z >= 0):
            raise ConfigError("noise_z", z, "a number >= 0 (standard errors of seed noise allowed)")
        _check_device(device)


def _check_device(device: str) -> None:
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ConfigError("device", device, "a torch device such as 'cpu' or 'cuda:0'") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", device, "'cpu' (no CUDA device is available here)")


@dataclass
class _Subject:
    """One model under check: its Trainer (the one training step of sizeup.train.step) and the
    batch it trains on at step t. ``vary``: the batches differ between steps, so the update
    out_t - out_0 is measured against a frozen copy of the model at init on each step's batch."""

    trainer: Trainer
    batch: Callable[[int], tuple[torch.Tensor, torch.Tensor]]
    vary: bool = False


@dataclass
class _Records:
    """What the check recorded: stats[name] (4, T+1, S, seeds) = mean |out|, RMS(out),
    mean |out - out_0|, RMS(out - out_0); loss (T+1, S, seeds)."""

    kinds: dict[str, str]
    stats: dict[str, np.ndarray]
    loss: np.ndarray

    @classmethod
    def empty(cls, plan: _Plan) -> _Records:
        return cls({}, {}, np.full((plan.steps + 1, len(plan.sizes), plan.seeds), np.nan))

    def store(self, rec: CoordRecorder, names: dict[str, str], rename: dict[str, str], at: tuple):
        """The recorder's stats of one forward pass, at (t, size index, seed index)."""
        t, i, k = at
        for n, (l1, rms) in rec.stats.items():
            key = rename[n]
            if key not in self.stats:
                if k or i:  # a module that the first model lacked
                    raise ConfigError("model", key, "the same modules at every size")
                self.stats[key] = np.full((4, *self.loss.shape), np.nan)
                self.kinds[key] = names[n]
            self.stats[key][:, t, i, k] = (l1, rms, *rec.delta.get(n, (math.nan, math.nan)))


def _names(model: nn.Module, plan: _Plan) -> tuple[dict[str, str], dict[str, str]]:
    """(module -> kind to record, module -> the name it is stored under)."""
    names = coord_modules(model, None if plan.axis == "depth" else plan.include)
    if plan.axis == "width":
        return names, {n: n for n in names}
    # Depth mode: module names change with depth; keep the comparable ones.
    last = max(
        (n for n, k in names.items() if k == "residual"),
        key=lambda n: [int(p) if p.isdigit() else p for p in n.split(".")],
        default=None,
    )
    if last is None:
        raise ConfigError(
            "model", type(model).__name__, "a model with residual blocks (sizeup_hints['block'])"
        )
    return {last: "residual", LOGITS: "logits"}, {last: RESIDUAL, LOGITS: LOGITS}


def _run(make: Callable[[int, int], _Subject], plan: _Plan) -> _Records:
    """Train every (seed, size) subject ``make(size, seed)`` and record each forward pass."""
    recs = _Records.empty(plan)
    total = plan.seeds * len(plan.sizes)
    with Progress("coord check", total, enabled=plan.progress, transient=True) as prog:
        for k in range(plan.seeds):
            for i, size in enumerate(plan.sizes):
                _record(make(size, plan.first_seed + k), plan, recs, (i, k))
                prog.advance(1)
    return recs


def _record(subject: _Subject, plan: _Plan, recs: _Records, at: tuple[int, int]) -> None:
    """Train one subject for plan.steps steps, recording the forward pass of every step (t =
    0..steps-1, each the step's own forward) and one more after the last update (t = steps)."""
    model = subject.trainer.model
    names, rename = _names(model, plan)
    attn = [n for n, k in names.items() if k == "attn_logits"]
    if attn and hasattr(model, "record_attn_logits"):
        model.record_attn_logits = True  # route scores through blocks.i.attn.logits
    causal = attn if plan.causal_attn else []
    init = _InitCopy(model, list(names), causal) if subject.vary else None
    rec = CoordRecorder(model, list(names), causal)
    try:
        for t in range(plan.steps + 1):
            x, y = subject.batch(t)
            if init is not None:
                rec.ref = init.outputs(x, y, subject.trainer.device)
            rec.start(keep_ref=init is None and t == 0)
            if t < plan.steps:
                recs.loss[(t, *at)] = subject.trainer.train_step(x, y)
            else:  # the last pass only measures
                recs.loss[(t, *at)] = subject.trainer.loss_on(x, y)
            rec.active = False
            recs.store(rec, names, rename, (t, *at))
    finally:
        rec.remove()
        if init is not None:
            init.rec.remove()


class _InitCopy:
    """A frozen copy of a model at init whose outputs on each step's batch are the reference of
    the update out_t - out_0 when the batches vary between steps."""

    def __init__(self, model: nn.Module, names: list[str], causal: list[str]):
        import copy

        self.model = copy.deepcopy(model)
        self.rec = CoordRecorder(self.model, names, causal)

    def outputs(self, x: torch.Tensor, y: torch.Tensor, device: str) -> dict[str, torch.Tensor]:
        import torch

        from sizeup.train.step import forward_loss

        self.rec.start(keep_ref=True)
        with torch.no_grad():
            forward_loss(self.model, x.to(device), y.to(device))
        self.rec.active = False
        return self.rec.ref


def _stderr(sizes: list[int], per_seed: np.ndarray) -> float:
    """Standard error of the slope from per-seed sizes (S, seeds): std of the per-seed slopes
    / sqrt(seeds); nan with one seed or a non-finite per-seed slope."""
    k = per_seed.shape[-1]
    if k < 2:
        return math.nan
    slopes = [log_slope(sizes, per_seed[:, j]) for j in range(k)]
    if not all(math.isfinite(x) for x in slopes):
        return math.nan
    return float(np.std(slopes, ddof=1) / math.sqrt(k))


def _seed_mean(arr: np.ndarray) -> np.ndarray:
    """Mean over seeds (the last axis), ignoring NaNs where some seed has a finite value."""
    if not np.isfinite(arr).any():
        return arr.mean(axis=-1)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN cells stay NaN
        return np.nanmean(arr, axis=-1)


def _shrinks_at_init(slope: float, stderr: float, plan: _Plan) -> bool:
    """The size at init shrinks with width like an output that vanishes: its slope is closer to
    -VANISH_SLOPE than to 0 (the two rates theory allows at init), beyond the seed noise."""
    se = stderr if math.isfinite(stderr) else 0.0
    return math.isfinite(slope) and slope + plan.noise_z * se < -VANISH_SLOPE / 2


def _judge(name: str, kind: str, arr: np.ndarray, plan: _Plan) -> ModuleCurve:
    """One module's curve and verdict from its recorded stats (4, T+1, S, seeds)."""
    si = STATS.index(plan.stat)
    ts = range(plan.steps + 1)
    total, delta = _seed_mean(arr[:2]), _seed_mean(arr[2:])
    slopes = [log_slope(plan.sizes, total[si, t]) for t in ts]
    stderr = [_stderr(plan.sizes, arr[si, t]) for t in ts]
    # Exactly zero at init (every size and seed), or shrinking with width at init: the module
    # holds (mostly) what updates put there, and muP keeps that update Theta(1); its crosstalk
    # part fades like width^-1/2 (module doc), so it may shrink that fast at small widths.
    zero_init = bool(np.all(arr[:2, 0] == 0.0))
    vanishes = plan.axis == "width" and (zero_init or _shrinks_at_init(slopes[0], stderr[0], plan))
    lower = -(CROSSTALK_SLOPE + plan.tolerance) if vanishes else -plan.tolerance
    m = ModuleCurve(
        name=name,
        kind=kind,
        l1=total[0].tolist(),
        rms=total[1].tolist(),
        slopes=slopes,
        zero_init=zero_init,
        band=(lower, plan.tolerance),
        stderr=stderr,
        noise_z=plan.noise_z,
        vanishes=vanishes,
        delta_l1=delta[0].tolist(),
        delta_rms=delta[1].tolist(),
        delta_slopes=[log_slope(plan.sizes, delta[si, t]) for t in ts],
        delta_stderr=[_stderr(plan.sizes, arr[2 + si, t]) for t in ts],
    )
    m.passed = not any(m.fails(t) for t in range(plan.judge_from, plan.steps + 1))
    return m


def _verdict(plan: _Plan, recs: _Records, settings: dict[str, Any]) -> CoordCheckResult:
    modules = [_judge(n, recs.kinds[n], arr, plan) for n, arr in recs.stats.items()]
    return CoordCheckResult(
        axis=plan.axis,
        sizes=plan.sizes,
        steps=plan.steps,
        stat=plan.stat,
        tolerance=plan.tolerance,
        judge_from=plan.judge_from,
        modules=modules,
        loss=recs.loss.mean(axis=-1).tolist(),
        settings=settings,
    )


# --------------------------------------------------------------------------------------------
# Width check: of a RunConfig (what `sizeup train` trains) or of a model family
# --------------------------------------------------------------------------------------------
def coord_check(
    model: str | Callable[[int], nn.Module] = "mlp",
    rule: str | None = "mup",
    optimizer: str | Callable[[nn.Module], Any] = "adamw",
    lr: float | None = None,
    widths: Sequence[int] | None = None,
    steps: int = 4,
    seeds: int = 3,
    *,
    config: RunConfig | None = None,
    base_width: int | None = None,
    depth: int = 2,
    n_head: int = 4,
    seq_len: int = 32,
    batch_size: int | None = None,
    same_batch: bool = True,
    attn_scale: str = "1/d",
    qk_norm: bool = False,
    data: Callable[[int], list] | None = None,
    modules: Sequence[str] | None = None,
    stat: str = "l1",
    tolerance: float = 0.1,
    judge_from: int = 1,
    noise_z: float = 2.0,
    parametrize_kwargs: dict[str, Any] | None = None,
    optimizer_kwargs: dict[str, Any] | None = None,
    threads: int | None = 1,
    progress: bool = False,
    first_seed: int | None = None,
    causal_attn: bool | None = None,
    device: str = "cpu",
) -> CoordCheckResult:
    """Train a model at each width for ``steps`` steps over ``seeds`` seeds and judge whether
    every recorded module's size is flat in width (|slope| <= tolerance from step ``judge_from``).

    ``config``: a RunConfig: check exactly what `sizeup train` would train from it (model, init,
    parametrization against cfg.base_width, optimizer, clipping, batch, data, seq_len), built
    with ``sizeup.train.build(cfg.replace(width=w))`` at each width and trained by the same step,
    at the config's peak lr (constant over the check's few steps). The model-family arguments
    below (model .. qk_norm, data, parametrize/optimizer kwargs, threads, device) then do not
    apply: the config says them. Seeds: cfg.seed onwards unless ``first_seed``.

    Without ``config``, a model family: ``model`` "mlp", "gpt" (fixed heads, so head_dim grows
    with width: the family for the 1/d vs 1/sqrt(d) attention study) or a factory
    ``width -> nn.Module``. ``widths``: default 64..512 (128..1024 for the GPT). ``rule``: a sizeup rule
    applied with ``sizeup.parametrize`` against the base model at ``base_width`` (default: the
    smallest width), or None when the factory's models are already parametrized (then
    ``optimizer`` may be a callable ``model -> torch optimizer``). ``data``: ``seed -> list of
    (x, y)`` with at least steps+1 batches (default: built-in corpus for the GPT, a teacher
    task for the MLP). ``causal_attn``: record attention logits on their causal part only;
    default True for the GPTs. ``device``: where the models train.

    Either way: ``same_batch`` repeats one batch every step (the default; else batch t at step
    t). ``first_seed``: seeds are first_seed .. first_seed+seeds-1 (to check a verdict on other
    draws). ``noise_z``: a slope fails only when outside the band by more than noise_z standard
    errors (from the seeds; 0: strict). A module whose output shrinks with width at init is
    judged on its update out_t - out_0 (module doc).
    """
    plan = _Plan(
        axis="width",
        sizes=_check_sizes("widths", _default_widths(model, config) if widths is None else widths),
        steps=steps,
        seeds=seeds,
        first_seed=_first_seed(first_seed, config),
        stat=stat,
        tolerance=tolerance,
        judge_from=judge_from,
        noise_z=noise_z,
        include=modules,
        progress=progress,
    )
    if config is not None:
        return _config_check(config, plan, same_batch)
    plan.validate(device)
    if threads:
        import torch

        torch.set_num_threads(threads)
    build, batches = _family(
        model, depth, n_head, seq_len, attn_scale, qk_norm, batch_size, steps, same_batch, data
    )
    plan.causal_attn = model == "gpt" if causal_attn is None else causal_attn
    if not callable(optimizer):
        check_choice("optimizer", optimizer, OPTIMIZER_NAMES)
    lr = _default_lr(model, optimizer) if lr is None else lr
    check_positive("lr", lr)
    base_width = _base_width(plan.sizes, base_width)
    pkw = _family_init(model, parametrize_kwargs)
    if modules is not None:  # fail fast on an unknown module name, before any training
        coord_modules(build(plan.sizes[0]), modules)
    factories = _width_factories(build, rule, base_width, pkw)
    make = _family_subjects(factories, batches, optimizer, lr, optimizer_kwargs, device)
    settings = {
        "model": model if isinstance(model, str) else getattr(model, "__name__", "factory"),
        "rule": rule,
        "optimizer": optimizer if isinstance(optimizer, str) else "custom",
        "lr": lr,
        "seeds": seeds,
        "first_seed": plan.first_seed,
        "base_width": base_width,
        "device": device,
        "depth": depth,
        "batch_size": batch_size,
        "same_batch": same_batch,
        "parametrize": pkw,
    }
    if model == "gpt":
        settings.update(n_head=n_head, seq_len=seq_len, attn_scale=attn_scale, qk_norm=qk_norm)
    return _verdict(plan, _run(make, plan), settings)


def _default_widths(model: Any, config: RunConfig | None) -> tuple[int, ...]:
    """64..512 for MLPs and factories, 128..1024 for GPTs (at width 64 their heads are few, or
    narrow, and the first steps mostly noise)."""
    name = config.model if config is not None else model
    return DEFAULT_WIDTHS["gpt"] if name == "gpt" else DEFAULT_WIDTHS["mlp"]


def _first_seed(first_seed: int | None, config: RunConfig | None) -> int:
    """The first seed: given, else the config's seed (so one width of the check is the run),
    else 0."""
    if first_seed is not None:
        return first_seed
    return config.seed if config is not None else 0


def _base_width(sizes: list[int], base_width: int | None) -> int:
    base = sizes[0] if base_width is None else base_width
    check_positive("base_width", base, integer=True)
    if base > sizes[0]:
        raise ConfigError("base_width", base, f"at most the smallest width {sizes[0]}")
    return base


def _config_check(cfg: RunConfig, plan: _Plan, same_batch: bool) -> CoordCheckResult:
    """The width check of exactly what `sizeup train` trains from ``cfg``."""
    cfg.validate()
    plan.validate(cfg.device)
    if cfg.base_width > plan.sizes[0]:
        raise ConfigError(
            "widths", plan.sizes, f"widths of at least base_width={cfg.base_width} (the config's)"
        )
    plan.causal_attn = cfg.model == "gpt"
    if plan.include is not None:  # fail fast on an unknown module name, before any training
        coord_modules(_meta_model(cfg.replace(width=plan.sizes[0])), plan.include)
    settings = {
        "model": cfg.model,
        "rule": cfg.rule,
        "optimizer": cfg.optimizer,
        "lr": cfg.lr,
        "seeds": plan.seeds,
        "first_seed": plan.first_seed,
        "base_width": cfg.base_width,
        "device": cfg.device,
        "same_batch": same_batch,
        "config": cfg.to_dict(),
    }
    return _verdict(plan, _run(_config_subjects(cfg, same_batch), plan), settings)


def _meta_model(cfg: RunConfig) -> nn.Module:
    """cfg's model with shapes only (names, no memory): to check module patterns early."""
    import torch

    from sizeup.models import build_model

    with torch.device("meta"):
        return build_model(cfg)


def width_config(cfg: RunConfig, width: int, seed: int) -> RunConfig:
    """The RunConfig the coordinate check trains at one width and seed: ``cfg`` at that width
    (same base width, so every width is parametrized against one base), at the peak lr
    (constant schedule, no warmup) over the check's few steps."""
    return cfg.replace(width=width, seed=seed, schedule="constant", warmup=0)


def _config_subjects(cfg: RunConfig, same_batch: bool) -> Callable[[int, int], _Subject]:
    """(width, seed) -> the run `sizeup train` would start from width_config(cfg, width, seed),
    its batches the config's data stream (batch 0 repeated, or batch t at step t)."""
    from sizeup.train.build import build
    from sizeup.train.step import Trainer

    def make(width: int, seed: int) -> _Subject:
        c = width_config(cfg, width, seed)
        built = build(c)
        data = built.data
        batch = (lambda t: data.batch_at(0)) if same_batch else data.batch_at
        return _Subject(Trainer.from_built(c, built), batch, vary=not same_batch)

    return make


def _family_init(model: Any, parametrize_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """parametrize() keywords of the built-in families (the caller's win)."""
    pkw = dict(parametrize_kwargs or {})
    # Zero readout and query init (Tensor Programs V, sec. 6 / D.4): the random init part of the
    # logits and attention scores shrinks like 1/sqrt(width) and would mask the first steps at
    # small widths; zeroing it leaves only the learned, width-stable part to judge.
    pkw.setdefault("zero_readout", True)
    pkw.setdefault("zero_query", True)
    if model in ("mlp", "gpt"):
        # Base init 1/sqrt(fan_in) (LeCun-like; muP holds for any base sigma). MLP: with sigma
        # 0.02 its activations are ~0.01 and a few updates are too small next to init to reveal
        # a wrong rule. GPT: sigma 0.02 is 4x below 1/sqrt(128), so after two Adam steps the keys,
        # values and MLP outputs are mostly update, and carry the update's finite-width crosstalk
        # (module doc): with fan_in init only the zero-initialised queries are update-only.
        pkw.setdefault("sigma", "fan_in")
    return pkw


def _width_factories(
    build: Callable[..., nn.Module], rule: str | None, base_width: int, pkw: dict[str, Any]
) -> Callable[[int], tuple[nn.Module, Any]]:
    """width -> (model, parametrization or None)."""

    def factories(width: int) -> tuple[nn.Module, Any]:
        m = build(width)
        if rule is None:
            return m, None
        from sizeup.parametrization import parametrize

        # delta (twice the base width) tells parametrize which dimensions are width even for the
        # model AT the base width, whose shapes all equal the base's (else every matrix there
        # would count as "input" and, e.g., Muon would skip its hidden matrices).
        return m, parametrize(
            m, base=build(base_width), delta=build(2 * base_width), rule=rule, **pkw
        )

    return factories


def _family_subjects(
    factories: Callable[[int], tuple[nn.Module, Any]],
    batches: Callable[[int], list],
    optimizer: str | Callable,
    lr: float,
    optimizer_kwargs: dict[str, Any] | None,
    device: str,
) -> Callable[[int, int], _Subject]:
    """(size, seed) -> a family model (seeded, parametrized on the CPU, then moved), its
    optimizer, and the seed's batches cycled over the steps."""
    import functools

    import torch

    from sizeup.train.step import Trainer

    data_for = functools.lru_cache(maxsize=1)(batches)  # one seed's batches serve every size

    def make(size: int, seed: int) -> _Subject:
        data = data_for(seed)
        torch.manual_seed(seed)
        model, param = factories(size)
        model.to(device).train()
        opt = _make_optimizer(optimizer, model, param, lr, dict(optimizer_kwargs or {}))
        batch = lambda t: data[t % len(data)]  # noqa: E731  (cycled: one batch repeats)
        return _Subject(Trainer(model, opt, device=device), batch, vary=len(data) > 1)

    return make


def _family(
    model: str | Callable,
    depth: int,
    n_head: int,
    seq_len: int,
    attn_scale: str,
    qk_norm: bool,
    batch_size: int | None,
    steps: int,
    same_batch: bool,
    data: Callable[[int], list] | None,
) -> tuple[Callable[..., nn.Module], Callable[[int], list]]:
    """(factory, seed -> batches) for a named family or a user factory."""
    check_positive("depth", depth, integer=True)
    if batch_size is not None:
        check_positive("batch_size", batch_size, integer=True)
    # One batch repeated every step (as microsoft/mup's coord check does): the cleanest signal,
    # since every update then moves the activations of the very inputs we measure.
    n_batches = 1 if same_batch else steps + 1
    if isinstance(model, str):
        check_choice("model", model, ("mlp", "gpt"))
        if model == "gpt":
            check_choice("attn_scale", attn_scale, ("1/d", "1/sqrt(d)"))
            check_positive("n_head", n_head, integer=True)
            build = _gpt_factory(n_head, depth, seq_len, attn_scale, qk_norm)
            default = lambda seed: gpt_batches(n_batches, batch_size or 8, seq_len, seed)  # noqa: E731
        else:
            build = _mlp_factory(depth)
            default = lambda seed: mlp_batches(n_batches, batch_size or 64, seed)  # noqa: E731
        return build, data or default
    if not callable(model):
        raise ConfigError("model", model, "'mlp', 'gpt' or a callable width -> nn.Module")
    if data is None:
        raise ConfigError(
            "data", None, "a callable seed -> list of (x, y) batches with a custom model"
        )
    return model, data


# --------------------------------------------------------------------------------------------
# Depth check (the built-in GPT family)
# --------------------------------------------------------------------------------------------
def depth_check(
    model: str | Callable[..., nn.Module] = "gpt",
    rule: str = "mup",
    optimizer: str = "adamw",
    lr: float | None = None,
    depths: Sequence[int] = (2, 4, 8, 16, 32),
    steps: int = 4,
    seeds: int = 3,
    *,
    depth_scaling: bool = True,
    base_depth: int | None = None,
    depth_exponent: float = 0.5,
    width: int = 64,
    base_width: int | None = None,
    n_head: int = 4,
    seq_len: int = 32,
    batch_size: int | None = None,
    same_batch: bool = True,
    attn_scale: str = "1/d",
    data: Callable[[int], list] | None = None,
    stat: str = "l1",
    tolerance: float = 0.1,
    judge_from: int = 1,
    noise_z: float = 2.0,
    parametrize_kwargs: dict[str, Any] | None = None,
    optimizer_kwargs: dict[str, Any] | None = None,
    threads: int | None = 1,
    progress: bool = False,
    first_seed: int = 0,
    device: str = "cpu",
) -> CoordCheckResult:
    """Depth mode: the residual stream (last block output) and logits across ``depths`` at a
    fixed width, with residual branches scaled by (L/base_depth)^-depth_exponent when
    ``depth_scaling`` (via parametrize(base_depth=...)), or unscaled otherwise.

    ``model``: "gpt" or a factory ``(width, depth) -> nn.Module`` (then ``data`` is required).
    """
    plan = _Plan(
        axis="depth",
        sizes=_check_sizes("depths", depths),
        steps=steps,
        seeds=seeds,
        first_seed=first_seed,
        stat=stat,
        tolerance=tolerance,
        judge_from=judge_from,
        noise_z=noise_z,
        progress=progress,
    )
    plan.validate(device)
    check_positive("width", width, integer=True)
    check_choice("optimizer", optimizer, OPTIMIZER_NAMES)
    if isinstance(model, str) and model != "gpt":
        raise ConfigError("model", model, "'gpt' (the MLP has no residual stream) or a factory")
    lr = _default_lr("gpt", optimizer) if lr is None else lr
    check_positive("lr", lr)
    base_depth = plan.sizes[0] if base_depth is None else base_depth
    check_positive("base_depth", base_depth, integer=True)
    # The width rule needs a base model of another width (a dimension equal to the base is
    # "finite"); half the width keeps every matrix's role what it is in a width sweep.
    base_width = max(n_head, width // 2) if base_width is None else base_width
    if threads:
        import torch

        torch.set_num_threads(threads)
    build, batches = _family(
        model,
        plan.sizes[0],
        n_head,
        seq_len,
        attn_scale,
        False,
        batch_size,
        steps,
        same_batch,
        data,
    )
    pkw = _depth_init(model, parametrize_kwargs, depth_scaling, base_depth, depth_exponent)
    factories = _depth_factories(build, rule, width, base_width, pkw)
    make = _family_subjects(factories, batches, optimizer, lr, optimizer_kwargs, device)
    settings = {
        "model": model if isinstance(model, str) else "factory",
        "rule": rule,
        "optimizer": optimizer,
        "lr": lr,
        "seeds": seeds,
        "width": width,
        "device": device,
        "base_width": base_width,
        "depth_scaling": depth_scaling,
        "base_depth": base_depth if depth_scaling else None,
        "depth_exponent": depth_exponent,
        "parametrize": pkw,
    }
    return _verdict(plan, _run(make, plan), settings)


def _depth_init(
    model: Any,
    parametrize_kwargs: dict[str, Any] | None,
    depth_scaling: bool,
    base_depth: int,
    depth_exponent: float,
) -> dict[str, Any]:
    pkw = dict(parametrize_kwargs or {})
    pkw.setdefault("zero_readout", True)
    pkw.setdefault("zero_query", True)
    if model == "gpt":
        # As in the width check: with sigma 0.02 the residual stream is mostly update after two
        # steps and Depth-muP's stream drifted to slope -0.12 (t = 3) and -0.19 (t = 4) over
        # depths 2..32; with fan_in init it stays within 0.08 at every step (docs/diagnostics.md).
        pkw.setdefault("sigma", "fan_in")
    if depth_scaling:
        pkw.update(base_depth=base_depth, depth_exponent=depth_exponent)
    return pkw


def _depth_factories(
    build: Callable[..., nn.Module], rule: str, width: int, base_width: int, pkw: dict[str, Any]
) -> Callable[[int], tuple[nn.Module, Any]]:
    """depth -> (model at ``width``, its parametrization)."""

    def factories(depth: int) -> tuple[nn.Module, Any]:
        from sizeup.parametrization import parametrize

        m = build(width, depth=depth)
        return m, parametrize(
            m,
            base=build(base_width, depth=depth),
            delta=build(2 * base_width, depth=depth),
            rule=rule,
            **pkw,
        )

    return factories
