"""What every figure shares: pyplot on the Agg backend and readable log-axis tick labels.

sizeup's figures are files (PNGs, or PNGs inlined in a report), so pyplot runs on Agg and
never needs a display. Tick labels on log axes read as numbers people write: ``0.5``, ``2``,
``300`` near 1, ``1e18`` / ``3e18`` for compute and token counts (matplotlib's default,
``10^18`` with minor ticks labelled ``2x10^18`` where the range is short, crowds a small panel).
"""

from __future__ import annotations

import math
from typing import Any

# Plain numbers between these; "1e18"-style beyond them.
_PLAIN = (1e-3, 1e4)


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (files only: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def tick_text(v: float) -> str:
    """'0.5', '2', '300' between 1e-3 and 1e4; '1e18', '3e-05' -> '3e-5' beyond."""
    if v == 0 or not math.isfinite(v):
        return f"{v:g}"
    if _PLAIN[0] <= abs(v) < _PLAIN[1]:
        return f"{v:g}"
    mant, exp = f"{v:.0e}".split("e")
    return f"{mant}e{int(exp)}"


def log_ticks(axis: Any) -> None:
    """Readable labels on a base-10 log ``axis`` (``ax.xaxis`` / ``ax.yaxis``), set after the
    data are drawn: decades over a long range, 1-2-5 per decade over one or so, evenly spaced
    plain numbers over a short one (a loss between 2.0 and 2.6 gets 2.1, 2.2, ...); minor
    ticks unlabelled."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    lo, hi = sorted(axis.get_view_interval())
    decades = math.log10(hi / lo) if lo > 0 and hi > 0 else math.inf
    if decades < 0.5:
        axis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]))
    else:
        subs = (1.0, 2.0, 5.0) if decades < 1.5 else (1.0,)
        axis.set_major_locator(LogLocator(base=10, subs=subs, numticks=8))
    axis.set_major_formatter(FuncFormatter(lambda v, _: tick_text(v)))
    axis.set_minor_formatter(NullFormatter())


def readable_ticks(fig: Any) -> None:
    """``log_ticks`` on every base-10 log axis of ``fig`` (colour bars included; base-2 axes,
    such as lr or width, keep their 2^k labels). Call it last, once the limits are final."""
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            if axis.get_scale() == "log" and getattr(axis.get_transform(), "base", 10) == 10:
                log_ticks(axis)
