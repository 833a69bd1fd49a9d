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
Step 0 is recorded but not judged: at init muP's output logits (and 1/d attention logits) shrink
like 1/sqrt(width) on purpose, and zero readout init makes the logits exactly 0.

Zero-initialised outputs (the attention logits and queries under zero query init, the logits
under zero readout init) are judged one-sided. Everything they hold is the sum of a few updates,
and each update mixes the inputs of the batch through their overlaps x_i . x_j: Theta(n) for
the same token, but O(sqrt(n)) for different ones rather than 0. Where a module also has a
Theta(1) init, that crosstalk is a small correction; where it is all there is, it is a relative
O(sqrt(tokens/n)) part that fades like width^-1/2, so these modules approach their flat limit
from above, with a slope between -1/2 and 0 at small widths (measured on the GPT with SGD up to
width 4096: the local slope of the queries between successive widths from 64 goes -0.58, -0.35,
-0.26, +0.11, -0.08, -0.06; docs/diagnostics.md).
They pass when the slope lies in [-(1/2 + tolerance), tolerance]: growth still fails, and so does
vanishing faster than crosstalk can explain (an update scaled 1/width too small gives slope -1).
"""

from __future__ import annotations

import fnmatch
import inspect
import json
import math
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

STATS = ("l1", "rms")
KINDS = ("hidden", "residual", "attn_logits", "logits")
OPTIMIZER_NAMES = ("adamw", "sgd", "muon")
LOGITS = "logits"  # pseudo-module: the model's final output
RESIDUAL = "residual"  # pseudo-module (depth mode): the last block's output

# How fast the crosstalk part of a zero-initialised output fades with width (see module doc).
CROSSTALK_SLOPE = 0.5

# Default learning rates per optimizer: big enough that one step moves every layer by Theta(1)
# (so a wrong rule shows after one step), small enough not to diverge at the base width.
DEFAULT_LR = {"adamw": 1e-2, "sgd": 0.5, "muon": 2e-2}
DEFAULT_WIDTHS = {"mlp": (64, 128, 256, 512), "gpt": (128, 256, 512, 1024)}


# --------------------------------------------------------------------------------------------
# Result records
# --------------------------------------------------------------------------------------------
@dataclass
class ModuleCurve:
    """One module's sizes over steps and widths (averaged over seeds) and its verdict."""

    name: str
    kind: str  # one of KINDS
    l1: list[list[float]]  # [t][i]: mean |x| at step t and size i
    rms: list[list[float]]  # [t][i]: sqrt(mean x^2)
    slopes: list[float]  # [t]: least-squares slope of log(stat) vs log(size)
    passed: bool = True
    zero_init: bool = False  # exactly 0 at t = 0: judged one-sided (see module doc)
    band: tuple[float, float] = (-0.1, 0.1)  # the slopes that pass
    stderr: list[float] = field(default_factory=list)  # [t]: standard error of the slope (seeds)
    noise_z: float = 2.0  # fail only when outside the band by more than noise_z * stderr

    def excess(self, t: int) -> float:
        """How far the slope at step t lies outside the band (<= 0 inside; inf if not finite)."""
        s = self.slopes[t]
        if not math.isfinite(s):
            return math.inf
        return max(s - self.band[1], self.band[0] - s)

    def fails(self, t: int) -> bool:
        """Outside the band by more than the seed noise allows."""
        se = self.stderr[t] if t < len(self.stderr) and math.isfinite(self.stderr[t]) else 0.0
        return self.excess(t) > self.noise_z * se

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
        sizes = getattr(m, self.stat)[t]
        return {
            "module": m.name,
            "kind": m.kind,
            "step": t,
            "slope": _finite(m.slopes[t]),
            "band": list(m.band),
            "zero_init": m.zero_init,
            "stderr": _finite(m.stderr[t]) if t < len(m.stderr) else None,
            "sizes": [_finite(s) for s in sizes],
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
        mods = []
        for m in self.modules:
            d = asdict(m)
            d["slopes"] = [_finite(s) for s in m.slopes]
            d["stderr"] = [_finite(s) for s in m.stderr]
            d["band"] = list(m.band)
            d["l1"] = [[_finite(v) for v in row] for row in m.l1]
            d["rms"] = [[_finite(v) for v in row] for row in m.rms]
            mods.append(d)
        return {
            "passed": bool(self.passed),
            "worst": self.worst,
            "axis": self.axis,
            "sizes": list(self.sizes),
            "steps": self.steps,
            "stat": self.stat,
            "tolerance": self.tolerance,
            "judge_from": self.judge_from,
            "loss": [[_finite(v) for v in row] for row in self.loss],
            "settings": self.settings,
            "modules": mods,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CoordCheckResult:
        """Rebuild from to_dict() output (None sizes come back as NaN)."""

        def fl(row: list) -> list[float]:
            return [math.nan if v is None else float(v) for v in row]

        mods = [
            ModuleCurve(
                name=m["name"],
                kind=m["kind"],
                l1=[fl(r) for r in m["l1"]],
                rms=[fl(r) for r in m["rms"]],
                slopes=[math.inf if s is None else s for s in m["slopes"]],
                passed=m["passed"],
                zero_init=m.get("zero_init", False),
                band=tuple(m.get("band", (-d["tolerance"], d["tolerance"]))),
                stderr=[math.nan if v is None else v for v in m.get("stderr", [])],
                noise_z=m.get("noise_z", 2.0),
            )
            for m in d["modules"]
        ]
        return cls(
            axis=d["axis"],
            sizes=d["sizes"],
            steps=d["steps"],
            stat=d["stat"],
            tolerance=d["tolerance"],
            judge_from=d["judge_from"],
            modules=mods,
            loss=[fl(r) for r in d["loss"]],
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
        """A rich table: one row per module, slope per step, verdict; failures first."""
        from rich.table import Table

        title = (
            f"coord check over {self.axis} {self.sizes}: "
            + ("[green]PASSED[/]" if self.passed else "[red]FAILED[/]")
            + f"  (|slope| <= {self.tolerance} from step {self.judge_from}; zero-init "
            + f"outputs (*) may shrink down to -{CROSSTALK_SLOPE + self.tolerance:g})"
        )
        t = Table(title=title)
        t.add_column("module")
        t.add_column("kind")
        for s in range(self.steps + 1):
            t.add_column(f"t={s}", justify="right")
        t.add_column("verdict")
        rows = self.failing() + [m for m in self.modules if m.passed]
        for m in rows[:max_rows]:
            cells = []
            for s, slope in enumerate(m.slopes):
                txt = f"{slope:+.2f}" if math.isfinite(slope) else "inf"
                se = m.stderr[s] if s < len(m.stderr) else math.nan
                if math.isfinite(se) and se > 0 and s >= self.judge_from:
                    txt += f"±{se:.2f}"
                if s >= self.judge_from and m.excess(s) > 0:
                    txt = f"[red]{txt}[/]" if m.fails(s) else f"[yellow]{txt}[/]"
                cells.append(txt)
            verdict = (
                "[red]FAIL[/]"
                if not m.passed
                else "[yellow]noisy[/]"
                if m.noisy(self.judge_from)
                else "[green]ok[/]"
            )
            t.add_row(m.name + ("*" if m.zero_init else ""), m.kind, *cells, verdict)
        if len(rows) > max_rows:
            t.caption = f"... {len(rows) - max_rows} more modules (all in coord_check.json)"
        return t


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


# --------------------------------------------------------------------------------------------
# Recording
# --------------------------------------------------------------------------------------------
def _is_norm(m: nn.Module) -> bool:
    # RMSNorm/LayerNorm of any origin (torch's or a model's own class) count as norms.
    return "norm" in type(m).__name__.lower()


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
    from torch import nn

    hints = getattr(model, "sizeup_hints", None) or {}
    blocks = list(hints.get("block", []))
    readouts = list(hints.get("readout", [])) + ["lm_head", "readout"]
    found: dict[str, str] = {}
    for name, m in model.named_modules():
        if not name:
            continue
        if name.split(".")[-1] == "logits":
            found[name] = "attn_logits"
        elif isinstance(m, (nn.Linear, nn.Embedding)) or _is_norm(m):
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
    """Forward hooks that store mean |x| and RMS of chosen module outputs while ``active``."""

    def __init__(self, model: nn.Module, names: Sequence[str], causal: Sequence[str] = ()):
        self.stats: dict[str, tuple[float, float]] = {}
        self.active = False
        # Causal attention scores: only the entries the model uses (key position <= query
        # position) are activations; the future ones are masked to -inf right after the hook.
        self.causal = set(causal)
        mods = dict(model.named_modules())
        self._handles = [mods[n].register_forward_hook(self._hook(n)) for n in names if n in mods]

    def _hook(self, name: str) -> Callable:
        def hook(_module: Any, _inp: Any, out: Any) -> None:
            if self.active:
                self.record(name, out, causal=name in self.causal)

        return hook

    def record(self, name: str, out: Any, causal: bool = False) -> None:
        """Store the stats of a tensor (or the first tensor of a tuple output); ``causal``: the
        tensor is (..., T, T) attention scores and only its lower triangle counts."""
        import torch

        if isinstance(out, (tuple, list)):
            out = next((o for o in out if isinstance(o, torch.Tensor)), None)
        if not isinstance(out, torch.Tensor):
            return
        with torch.no_grad():
            x = out.detach().float()
            if causal and x.dim() >= 2 and x.shape[-1] == x.shape[-2]:
                T = x.shape[-1]
                x = x[..., torch.ones(T, T, dtype=torch.bool, device=x.device).tril()]
            self.stats[name] = (x.abs().mean().item(), x.pow(2).mean().sqrt().item())

    def remove(self) -> None:
        """Detach every hook."""
        for h in self._handles:
            h.remove()
        self._handles = []


def forward_loss(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, loss) from a sizeup-style ``forward(x, targets)`` or a plain ``forward(x)``
    (then cross-entropy over the last dimension)."""
    import torch.nn.functional as F

    if "targets" in inspect.signature(model.forward).parameters:
        logits, loss = model(x, targets=y)
        return logits, loss
    out = model(x)
    logits = out[0] if isinstance(out, (tuple, list)) else out
    return logits, F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1))


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


def _check_judging(
    steps: int,
    seeds: int,
    stat: str,
    tolerance: float,
    judge_from: int,
    noise_z: float,
    device: str,
) -> None:
    """The arguments the width and depth checks share, each with a clear error."""
    check_positive("steps", steps, integer=True)
    check_positive("seeds", seeds, integer=True)
    check_positive("tolerance", tolerance)
    check_choice("stat", stat, STATS)
    if not 0 <= judge_from <= steps:
        raise ConfigError("judge_from", judge_from, f"a step between 0 and steps={steps}")
    if not (isinstance(noise_z, (int, float)) and noise_z >= 0):
        raise ConfigError(
            "noise_z", noise_z, "a number >= 0 (standard errors of seed noise allowed)"
        )
    _check_device(device)


def _check_device(device: str) -> None:
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ConfigError("device", device, "a torch device such as 'cpu' or 'cuda:0'") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", device, "'cpu' (no CUDA device is available here)")


def _run(
    factories: Callable[[int], tuple[nn.Module, Any]],
    sizes: list[int],
    steps: int,
    seeds: int,
    batches: Callable[[int], list],
    optimizer: str | Callable,
    lr: float,
    opt_kwargs: dict[str, Any],
    include: Sequence[str] | None,
    depth_mode: bool,
    progress: bool,
    first_seed: int = 0,
    causal_attn: bool = False,
    device: str = "cpu",
) -> tuple[dict[str, str], dict[str, np.ndarray], np.ndarray]:
    """Train every (seed, size) and return (kinds, stats[name] -> (2, T+1, S, seeds), loss)."""
    import torch

    kinds: dict[str, str] = {}
    stats: dict[str, np.ndarray] = {}
    loss = np.full((steps + 1, len(sizes), seeds), np.nan)
    with Progress("coord check", seeds * len(sizes), enabled=progress, transient=True) as prog:
        for k in range(seeds):
            seed = first_seed + k
            data = batches(seed)
            for i, size in enumerate(sizes):
                torch.manual_seed(seed)
                model, param = factories(size)
                model.to(device).train()  # parametrized (and initialised) on CPU, then moved
                names = coord_modules(model, None if depth_mode else include)
                if depth_mode:  # module names change with depth: keep the comparable ones
                    last = max(
                        (n for n, k in names.items() if k == "residual"),
                        key=lambda n: [int(p) if p.isdigit() else p for p in n.split(".")],
                        default=None,
                    )
                    if last is None:
                        raise ConfigError(
                            "model",
                            type(model).__name__,
                            "a model with residual blocks (sizeup_hints['block'])",
                        )
                    names = {last: "residual", LOGITS: "logits"}
                    rename = {last: RESIDUAL, LOGITS: LOGITS}
                else:
                    rename = {n: n for n in names}
                if hasattr(model, "record_attn_logits"):
                    model.record_attn_logits = True  # route scores through blocks.i.attn.logits
                causal = [n for n, k in names.items() if k == "attn_logits"] if causal_attn else []
                rec = CoordRecorder(model, [n for n in names if n != LOGITS], causal)
                opt = _make_optimizer(optimizer, model, param, lr, opt_kwargs)
                try:
                    for t in range(steps + 1):
                        x, y = data[t % len(data)]  # cycled: one batch repeats every step
                        x, y = x.to(device), y.to(device)
                        rec.stats.clear()
                        rec.active = True
                        with torch.set_grad_enabled(t < steps):  # last pass: measure only
                            logits, lval = forward_loss(model, x, y)
                        rec.active = False
                        rec.record(LOGITS, logits)
                        loss[t, i, k] = float(lval.detach())
                        for n, (l1, rms) in rec.stats.items():
                            key = rename[n]
                            if key not in stats:
                                if k or i:  # a module that the first model lacked
                                    raise ConfigError(
                                        "model", key, "the same modules at every size"
                                    )
                                stats[key] = np.full((2, steps + 1, len(sizes), seeds), np.nan)
                                kinds[key] = names[n]
                            stats[key][:, t, i, k] = (l1, rms)
                        if t < steps:
                            opt.zero_grad(set_to_none=True)
                            lval.backward()
                            opt.step()
                finally:
                    rec.remove()
                prog.advance(1)
    return kinds, stats, loss


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


def _verdict(
    axis: str,
    sizes: list[int],
    steps: int,
    stat: str,
    tolerance: float,
    judge_from: int,
    kinds: dict[str, str],
    stats: dict[str, np.ndarray],
    loss: np.ndarray,
    settings: dict[str, Any],
    noise_z: float = 2.0,
) -> CoordCheckResult:
    si = STATS.index(stat)
    modules = []
    for name, arr in stats.items():
        mean = np.nanmean(arr, axis=-1) if np.isfinite(arr).any() else arr.mean(axis=-1)
        slopes = [log_slope(sizes, mean[si, t]) for t in range(steps + 1)]
        # Exactly zero at init, at every size and seed: the module holds only what updates put
        # there, whose crosstalk part fades like width^-1/2 (module doc): it may shrink that fast.
        zero_init = bool(np.all(arr[:, 0] == 0.0))
        lower = -(CROSSTALK_SLOPE + tolerance) if zero_init and axis == "width" else -tolerance
        stderr = [_stderr(sizes, arr[si, t]) for t in range(steps + 1)]
        m = ModuleCurve(
            name=name,
            kind=kinds[name],
            l1=mean[0].tolist(),
            rms=mean[1].tolist(),
            slopes=slopes,
            zero_init=zero_init,
            band=(lower, tolerance),
            stderr=stderr,
            noise_z=noise_z,
        )
        m.passed = not any(m.fails(t) for t in range(judge_from, steps + 1))
        modules.append(m)
    return CoordCheckResult(
        axis=axis,
        sizes=sizes,
        steps=steps,
        stat=stat,
        tolerance=tolerance,
        judge_from=judge_from,
        modules=modules,
        loss=loss.mean(axis=-1).tolist(),
        settings=settings,
    )


def coord_check(
    model: str | Callable[[int], nn.Module] = "mlp",
    rule: str | None = "mup",
    optimizer: str | Callable[[nn.Module], Any] = "adamw",
    lr: float | None = None,
    widths: Sequence[int] | None = None,
    steps: int = 4,
    seeds: int = 3,
    *,
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
    first_seed: int = 0,
    causal_attn: bool | None = None,
    device: str = "cpu",
) -> CoordCheckResult:
    """Train ``model`` at each width for ``steps`` steps over ``seeds`` seeds and judge whether
    every recorded module's size is flat in width (|slope| <= tolerance from step ``judge_from``).

    ``model``: "mlp", "gpt" or a factory ``width -> nn.Module``. ``widths``: default 64..512
    (128..1024 for the GPT, whose 4 heads are only 16 wide at width 64). ``rule``: a sizeup rule applied
    with ``sizeup.parametrize`` against the base model at ``base_width`` (default: the smallest
    width), or None when the factory's models are already parametrized (then ``optimizer`` may
    be a callable ``model -> torch optimizer``). ``data``: ``seed -> list of (x, y)`` with at
    least steps+1 batches (default: built-in corpus for the GPT, a teacher task for the MLP).
    ``first_seed``: seeds are first_seed .. first_seed+seeds-1 (to check a verdict on other
    draws). ``causal_attn``: record attention logits on their causal part only (the entries the
    model uses); default True for the built-in GPT, False otherwise. ``noise_z``: a slope fails
    only when outside the band by more than noise_z standard errors (from the seeds; 0: strict).
    ``device``: where the models train ("cuda" for big models; they are built on the CPU first).
    """
    import torch

    if widths is None:
        widths = (
            DEFAULT_WIDTHS.get(model, DEFAULT_WIDTHS["mlp"])
            if isinstance(model, str)
            else DEFAULT_WIDTHS["mlp"]
        )
    widths = _check_sizes("widths", widths)
    _check_judging(steps, seeds, stat, tolerance, judge_from, noise_z, device)
    if not callable(optimizer):
        check_choice("optimizer", optimizer, OPTIMIZER_NAMES)
    if lr is None:
        lr = _default_lr(model, optimizer)
    check_positive("lr", lr)
    base_width = widths[0] if base_width is None else base_width
    check_positive("base_width", base_width, integer=True)
    if base_width > widths[0]:
        raise ConfigError("base_width", base_width, f"at most the smallest width {widths[0]}")
    if threads:
        torch.set_num_threads(threads)
    build, batches = _family(
        model, depth, n_head, seq_len, attn_scale, qk_norm, batch_size, steps, same_batch, data
    )

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

    if modules is not None:  # fail fast on an unknown module name, before any training
        coord_modules(build(widths[0]), modules)
    kinds, stats, loss = _run(
        factories,
        widths,
        steps,
        seeds,
        batches,
        optimizer,
        lr,
        dict(optimizer_kwargs or {}),
        modules,
        False,
        progress,
        first_seed,
        model == "gpt" if causal_attn is None else causal_attn,
        device,
    )
    settings = {
        "model": model if isinstance(model, str) else getattr(model, "__name__", "factory"),
        "rule": rule,
        "optimizer": optimizer if isinstance(optimizer, str) else "custom",
        "lr": lr,
        "seeds": seeds,
        "first_seed": first_seed,
        "base_width": base_width,
        "device": device,
        "depth": depth,
        "batch_size": batch_size,
        "parametrize": pkw,
    }
    if model == "gpt":
        settings.update(n_head=n_head, seq_len=seq_len, attn_scale=attn_scale, qk_norm=qk_norm)
    return _verdict(
        "width", widths, steps, stat, tolerance, judge_from, kinds, stats, loss, settings, noise_z
    )


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
    import torch

    depths = _check_sizes("depths", depths)
    _check_judging(steps, seeds, stat, tolerance, judge_from, noise_z, device)
    check_positive("width", width, integer=True)
    check_choice("optimizer", optimizer, OPTIMIZER_NAMES)
    if isinstance(model, str) and model != "gpt":
        raise ConfigError("model", model, "'gpt' (the MLP has no residual stream) or a factory")
    lr = _default_lr("gpt", optimizer) if lr is None else lr
    check_positive("lr", lr)
    base_depth = depths[0] if base_depth is None else base_depth
    check_positive("base_depth", base_depth, integer=True)
    # The width rule needs a base model of another width (a dimension equal to the base is
    # "finite"); half the width keeps every matrix's role what it is in a width sweep.
    base_width = max(n_head, width // 2) if base_width is None else base_width
    if threads:
        torch.set_num_threads(threads)
    build, batches = _family(
        model, depths[0], n_head, seq_len, attn_scale, False, batch_size, steps, same_batch, data
    )
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

    kinds, stats, loss = _run(
        factories,
        depths,
        steps,
        seeds,
        batches,
        optimizer,
        lr,
        dict(optimizer_kwargs or {}),
        None,
        True,
        progress,
        first_seed,
        False,
        device,
    )
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
    return _verdict(
        "depth", depths, steps, stat, tolerance, judge_from, kinds, stats, loss, settings, noise_z
    )
