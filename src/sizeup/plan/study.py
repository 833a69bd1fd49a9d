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
from sizeup.sweep.store import Store
from sizeup.sweep.transfer import analyze_transfer

FIELD = "from_study"


def read_study(path: str | Path, group: str | dict[str, Any] | None = None) -> Study:
    """The study at ``path`` as the plan's proxy.

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
    g = pick_group(report.groups, group)
    point = g.points[-1]  # the widest width
    if point.at_edge or not math.isfinite(point.opt_lr):
        raise ConfigError(
            FIELD,
            str(p),
            f"an lr grid that brackets the optimum at width {point.value} ({g.label}): its best "
            f"lr {point.best_grid_lr:.3g} is at the edge of the grid {min(point.lrs):.3g}.."
            f"{max(point.lrs):.3g}, a bound rather than a value; extend the grid past it",
        )
    cfg = _representative(done, g.group, point.value)
    return _study(cfg, point.opt_lr, point.value, f"{p.name} ({g.label})")


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
    mine = [
        t
        for t in trials
        if t.config.model.width == width
        and all(str(t.config.get(k)) == str(v) for k, v in group.items())
    ]
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
