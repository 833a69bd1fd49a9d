"""A sweep study as the planner's proxy: what was tuned, how, and the lr it found.

The study is read only through ``sizeup.sweep.Store`` and ``sizeup.sweep.transfer``: the lr is
the transfer analysis' optimal lr (a parabola in log2 lr around the best grid point) at the
widest width of one group of trials, which is the number `sizeup transfer` prints; shape,
batch, tokens and recipe come from that group's trials at that width: the Proxy record and the
ParamSpec and OptimSpec fields the trials fixed (sizeup.plan.options.Study).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from sizeup.config import RunConfig
from sizeup.errors import ConfigError
from sizeup.plan.options import Study
from sizeup.plan.records import Proxy
from sizeup.registry import get_model
from sizeup.sweep.exponents import study_exponent
from sizeup.sweep.store import FINISHED, Store
from sizeup.sweep.transfer import MIN_LRS, analyze_transfer

FIELD = "from_study"
# How far (in octaves) the finished lrs next to the best grid point may be. The optimum is the
# vertex of a parabola through the best point and its neighbours: with a neighbour g octaves
# away it can sit anywhere in those g octaves, so a gap bounds how well the lr is known. Up to
# GAP_FLAG a grid is ordinary (the demo's grids are 1 octave apart); up to GAP_REFUSE it is
# coarse but still brackets the optimum (a decade grid, 1e-4, 1e-3, 1e-2, is 3.3 octaves):
# said; beyond, the vertex is an extrapolation across the gap, not a measurement: refused.
GAP_FLAG = 2.0
GAP_REFUSE = 4.0


def read_study(
    path: str | Path,
    group: str | dict[str, Any] | None = None,
    horizon_study: str | Path | None = None,
    batch_study: str | Path | None = None,
) -> Study:
    """The study at ``path`` as the plan's proxy; with ``horizon_study`` (a steps study) and
    ``batch_study`` (a batch study), the transfer exponents they measured replace the rules'
    defaults (sizeup.sweep.exponents: stored with each study).

    Refuses (ConfigError) a missing file, a study without finished trials, a non-GPT study,
    an ambiguous or unknown group, and an optimum at the edge of the lr grid (the best lr is
    then a bound, not a value).
    """
    p = Path(path)
    if not p.exists():
        raise ConfigError(FIELD, str(p), "an existing study file written by `sizeup sweep`")
    with Store(p, readonly=True) as st:
        done = st.trials("done")
        if not done:
            raise ConfigError(FIELD, str(p), f"a study with finished trials (it has {st.counts()})")
        report = analyze_transfer(st, axis="width")
        everything = st.trials()
    g = pick_group(report.groups, group)
    point = g.points[-1]  # the widest width
    mine = _of_group(everything, g.group, point.value)
    _check_widest(str(p), g.label, point, mine)
    warns = [_unfinished(report.counts)] if _unfinished(report.counts) else []
    warns += _check_gap(str(p), g.label, point, mine)
    cfg = _representative(done, g.group, point.value)
    study = _study(cfg, point.opt_lr, point.value, f"{p.name} ({g.label})")
    exponents = tuple(
        study_exponent(s, axis)
        for s, axis in ((horizon_study, "steps"), (batch_study, "batch_size"))
        if s is not None
    )
    optim = dict(study.optimizer)
    for m in exponents:
        if m.name == "horizon":
            optim["data_exponent"] = m.value
    return Study(study.proxy, study.parametrization, optim, tuple(warns), exponents)


def _of_group(trials: list[Any], group: dict[str, Any], width: Any) -> list[Any]:
    """The trials of one group at one width (any status)."""
    return [
        t
        for t in trials
        if t.config.model.width == width
        and all(str(t.config.get(k)) == str(v) for k, v in group.items())
    ]


def _statuses(trials: list[Any]) -> str:
    """'queued 7, failed 1': how many trials have each status."""
    n: dict[str, int] = {}
    for t in trials:
        n[t.status] = n.get(t.status, 0) + 1
    return ", ".join(f"{k} {v}" for k, v in sorted(n.items()))


def _check_widest(path: str, label: str, point: Any, trials: list[Any]) -> None:
    """Refuse a widest width without an optimum: no finished trial, fewer than MIN_LRS
    finished lrs, or its best lr at the edge of the grid. Refused, not flagged: the study's
    number is then not a value at all (NaN, or a bound), and the plan's lr would be made up."""
    width = point.value
    lrs = {t.config.optimizer.lr for t in trials if t.status in FINISHED}
    if not lrs:
        raise ConfigError(
            FIELD,
            path,
            f"a study whose widest width has finished trials: width {width} has no finished "
            f"trial ({label}: {_statuses(trials)}); finish them (`sizeup sweep SPEC --store "
            f"{Path(path).name}`) or choose a study without that width",
        )
    if len(lrs) < MIN_LRS:
        raise ConfigError(
            FIELD,
            path,
            f"an optimum at the widest width: width {width} has {len(lrs)} finished lrs, at "
            f"least {MIN_LRS} are needed ({label}: {_statuses(trials)}); finish its trials",
        )
    if point.at_edge or not math.isfinite(point.opt_lr):
        raise ConfigError(
            FIELD,
            path,
            f"an lr grid that brackets the optimum at width {width} ({label}): its best "
            f"lr {point.best_grid_lr:.3g} is at the edge of the grid {min(point.lrs):.3g}.."
            f"{max(point.lrs):.3g}, a bound rather than a value; extend the grid past it",
        )


def _unfinished(counts: dict[str, int]) -> str:
    """A warning when some of the study's trials are not finished (queued, running, failed):
    flagged, not refused, since the optimum (checked on its own) comes from finished trials
    alone; the plan says that it does."""
    rest = {k: v for k, v in counts.items() if k not in FINISHED and v}
    if not rest:
        return ""
    total, left = sum(counts.values()), sum(rest.values())
    what = ", ".join(f"{k} {v}" for k, v in rest.items())
    return (
        f"{left} of {total} trials of the study are unfinished ({what}): the plan uses only "
        f"the {total - left} finished ones; finish the sweep and plan again to use them all"
    )


def _check_gap(path: str, label: str, point: Any, trials: list[Any]) -> list[str]:
    """The finished lrs either side of the best grid point must lie within GAP_REFUSE octaves
    (refused beyond: where in the gap the optimum lies is unknown) and are said beyond
    GAP_FLAG. A diverged lr counts: it bounds the optimum from above."""
    x = sorted({math.log2(t.config.optimizer.lr) for t in trials if t.status in FINISHED})
    best = math.log2(point.best_grid_lr)
    lower = max((v for v in x if v < best), default=None)
    upper = min((v for v in x if v > best), default=None)
    sides = [(best - lower, lower) if lower is not None else None]
    sides += [(upper - best, upper) if upper is not None else None]
    gap, far = max((s for s in sides if s is not None), default=(0.0, best))
    if gap <= GAP_FLAG:
        return []
    where = (
        f"the optimum at width {point.value} ({label}) lies next to a gap of {gap:.3g} octaves "
        f"in the finished lrs, between its best grid lr 2^{best:.3g} and 2^{far:.3g}"
    )
    if gap > GAP_REFUSE:
        raise ConfigError(
            FIELD,
            path,
            f"an lr grid with finished lrs within {GAP_REFUSE:g} octaves either side of the "
            f"optimum: {where}, so where in it the optimum lies is unknown (this study would "
            f"have planned from lr {point.opt_lr:.4g}); add lrs between 2^{best:.3g} and "
            f"2^{far:.3g}",
        )
    return [
        f"{where}: the tuned lr {point.opt_lr:.4g} is known only to within that gap; a finer "
        "grid there would pin it down"
    ]


def parse_group(text: str | dict[str, Any] | None) -> dict[str, str] | None:
    """'rule=mup,optimizer=adamw' -> {'rule': 'mup', 'optimizer': 'adamw'} (a dict passes)."""
    if text is None or isinstance(text, dict):
        return None if text is None else {k: str(v) for k, v in text.items()}
    out = {}
    for item in text.split(","):
        k, sep, v = item.partition("=")
        if not sep or not k.strip():
            raise ConfigError("from_study_group", text, "key=value pairs such as rule=mup")
        out[k.strip()] = v.strip()
    return out


def pick_group(groups: list[Any], group: str | dict[str, Any] | None) -> Any:
    """The asked-for group; else the only one; else the muP one (rule=mup)."""
    match = parse_group(group)
    if match is None and len(groups) == 1:
        return groups[0]
    match = match if match is not None else {"rule": "mup"}
    found = [g for g in groups if all(str(g.group.get(k)) == v for k, v in match.items())]
    if len(found) != 1:
        names = "; ".join(g.label for g in groups)
        what = "matches none" if not found else f"matches {len(found)} groups"
        raise ConfigError(
            "from_study_group",
            ",".join(f"{k}={v}" for k, v in match.items()),
            f"one group of the study ({what}); its groups: {names}",
        )
    return found[0]


def _representative(trials: list[Any], group: dict[str, Any], width: Any) -> Any:
    """The config of the group's best finished trial at the widest width."""
    mine = _of_group(trials, group, width)
    return min(mine, key=lambda t: t.loss if math.isfinite(t.loss) else math.inf).config


def _study(cfg: RunConfig, lr: float, width: int, source: str) -> Study:
    """The proxy from a trial's RunConfig. Its width is the trials' base width: the tuned lr is
    the global eta of a parametrization relative to that base, and so is the plan's table. The
    batch is the one eta applies at (base_batch_size when the trials transferred); its tokens
    the trial's. The trials' ParamSpec (less nothing: a plan takes the base with it) and the
    OptimSpec settings they were tuned with are the plan's recipe."""
    if get_model(cfg.model.name).data != "tokens" or cfg.model.name != "gpt":
        raise ConfigError(FIELD, cfg.model.name, "a study of the built-in GPT (model=gpt)")
    o, m = cfg.optimizer, cfg.model
    proxy = Proxy(
        batch_tokens=(o.base_batch_size or cfg.data.batch_size) * m.seq_len,
        tuned_width=int(width),
        depth=m.depth,
        seq_len=m.seq_len,
        vocab_size=m.vocab_size,
        source=f"{source}: optimum at width {width}, depth {m.depth}",
    )
    param = cfg.parametrization.to_dict()
    if param["base_head_dim"] is None:
        param["base_head_dim"] = m.head_dim  # the trials' heads, whatever the target's
    optim = {
        k: v
        for k, v in o.to_dict().items()
        if k not in ("base_batch_size", "grad_clip", "ns_dtype") and v is not None
    }
    optim.update(lr=float(lr), base_tokens=int(cfg.tokens_for(cfg.schedule.steps)))
    return Study(proxy, param, optim)
