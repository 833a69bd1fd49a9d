"""Figures of the stability monitors (sizeup.train.monitors.stability) over an lr sweep: the
largest attention logit and the output logits' log Z at the end of training, against the lr,
one line per variant (Wortsman et al. 2023, figs. of attention-logit growth and output-logit
divergence)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from sizeup.figures import pyplot


def final_monitors(trials: list[Any], field: str, value: Any) -> dict[tuple, dict[str, float]]:
    """{(qk_norm, z_loss, lr): {"attn_max", "log_z_mean"}} at the last measurement of each
    finished, not diverged trial with ``field == value``, averaged over seeds."""
    acc: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for t in trials:
        r = t.result
        if r is None or r.diverged or t.config.get(field) != value:
            continue
        key = (t.config.model.qk_norm, t.config.model.z_loss, t.config.optimizer.lr)
        attn = r.diagnostics.get("attn_logits") or []
        out = r.diagnostics.get("output_logits") or []
        if attn and attn[-1].get("max") is not None:
            acc[key]["attn_max"].append(float(attn[-1]["max"]))
        if out:
            acc[key]["log_z_mean"].append(float(out[-1]["log_z_mean"]))
    return {k: {m: float(np.mean(v)) for m, v in d.items()} for k, d in acc.items()}


def plot_monitors(trials: list[Any], s: Any) -> Any:
    """Two panels against the lr at the largest axis value: the largest attention logit and
    the mean log Z, one line per variant of the study ``s`` (a DemoSettings)."""
    plt = pyplot()
    data = final_monitors(trials, s.field, s.values[-1])
    fig, axes = plt.subplots(1, 2, figsize=(10.4, 4.0))
    for k, v in enumerate(s.variants):
        key = (v.fields.get("qk_norm"), v.fields.get("z_loss"))
        pts = sorted((lr, d) for (q, z, lr), d in data.items() if (q, z) == key)
        for ax, metric in zip(axes, ("attn_max", "log_z_mean"), strict=True):
            xs = [lr for lr, d in pts if metric in d]
            ys = [d[metric] for lr, d in pts if metric in d]
            ax.plot(xs, ys, "-o", ms=3.5, color=plt.get_cmap("tab10")(k), label=v.name)
    for ax, label in zip(
        axes, ("largest attention logit", "mean log Z of output logits"), strict=True
    ):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("lr")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    if any(d.get("attn_max", 0) > 0 for d in data.values()):
        axes[0].set_yscale("log")
    fig.suptitle(f"{s.field} = {s.values[-1]}, end of training", fontsize=10)
    fig.tight_layout()
    return fig
