"""A sweep study as the planner's proxy: what was tuned, how, and the lr it found.

The study is read only through ``sizeup.sweep.Store`` and ``sizeup.sweep.transfer``: the lr is
the transfer analysis' optimal lr (a parabola in log2 lr around the best grid point) at the
widest width of one group of trials, which is the number `sizeup transfer` prints; shape,
batch, tokens and recipe come from that group's trials at that width. Returns plain fields
(no planner records), so this module needs nothing from the rest of ``sizeup.plan``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from sizeup.errors import ConfigError

FIELD = "from_study"


def study_proxy(path: str | Path, group: str | dict[str, Any] | None = None) -> dict[str, Any]:
    """Proxy fields (with a nested "recipe") from the study at ``path``.

    Refuses (ConfigError) a missing file, a study without finished trials, a non-GPT study,
    an ambiguous or unknown group, and an optimum at the edge of the lr grid (the best lr is
    then a bound, not a value).
    """
    from sizeup.sweep.store import Store
    from sizeup.sweep.transfer import analyze_transfer

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
    return _proxy_fields(cfg, point.opt_lr, point.value, f"{p.name} ({g.label})")


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
        if t.config.width == width
        and all(str(getattr(t.config, k)) == str(v) for k, v in group.items())
    ]
    return min(mine, key=lambda t: t.loss if math.isfinite(t.loss) else math.inf).config


def _proxy_fields(cfg: Any, lr: float, width: int, source: str) -> dict[str, Any]:
    """Proxy fields from a trial's RunConfig. The proxy's width is the trials' base width: the
    tuned lr is the global eta of a parametrization relative to that base, and so is the plan's
    table. The batch is the one eta applies at (base_batch_size when the trials transferred)."""
    from sizeup.train.build import sigma_for

    if cfg.model != "gpt":
        raise ConfigError(FIELD, cfg.model, "a study of the built-in GPT (model=gpt)")
    depth_scaled = cfg.base_depth is not None
    sigma = sigma_for(cfg)
    return dict(
        width=cfg.base_width,
        depth=cfg.base_depth if depth_scaled else cfg.depth,
        head_dim=cfg.head_dim,
        lr=float(lr),
        batch_tokens=(cfg.base_batch_size or cfg.batch_size) * cfg.seq_len,
        tokens=float(cfg.tokens_for(cfg.steps)),
        tuned_width=int(width),
        seq_len=cfg.seq_len,
        vocab_size=cfg.vocab_size,
        source=f"{source}: optimum at width {width}, depth {cfg.depth}",
        recipe=dict(
            rule=cfg.rule,
            optimizer=cfg.optimizer,
            scale_eps=cfg.scale_eps,
            sigma=sigma,
            beta1=cfg.beta1,
            beta2=cfg.beta2,
            eps=cfg.eps,
            weight_decay=cfg.weight_decay,
            momentum=cfg.momentum,
            depth_exponent=cfg.depth_exponent if depth_scaled else None,
            muon_lr=cfg.muon_lr,
        ),
    )
