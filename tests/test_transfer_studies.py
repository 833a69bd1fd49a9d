"""Each `sizeup demo` study, on a reduced grid that still checks its direction (slow: real
training, about 1-2 minutes each on 2 cores).

Every reduced grid is a subset of its `--quick` study (same base config, same trial ids), so
its direction was checked on the three seed sets of docs/transfer.md from those studies' own
trials before it was written here (docs/transfer.md, "CI"). One torch thread per run makes each
study bit-reproducible on one machine; the assertions keep a margin for another machine's
floating point.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from sizeup.demo import run_demo, settings_for
from sizeup.sweep.estimate import Estimate

pytestmark = pytest.mark.slow


def _reduced(axis: str, values: list, lr_exps: list, keys: list[str], seeds: list[int]):
    """The quick study of ``axis`` restricted to some values, lrs, variants and seeds."""
    s = settings_for(axis, quick=True)
    keep = [s.values.index(v) for v in values]
    return replace(
        s,
        values=list(values),
        lr_exps=list(lr_exps),
        variants=[v for v in s.variants if v.key in keys],
        seeds=list(seeds),
        moves_with={k: [vals[i] for i in keep] for k, vals in s.moves_with.items()},
    )


def _run(tmp_path, settings) -> dict:
    return run_demo(tmp_path, settings=settings, workers=2, progress=False)


def _e(summary: dict, key: str, name: str) -> Estimate:
    return Estimate.from_dict(summary[key][name])


def test_width_sp_drifts_more_than_mup(tmp_path):
    """Widths 32 and 128, lr 2^-11..2^-7, seeds 0-2 (60 runs): SP's optimum falls, muP's stays.
    On the quick studies' own trials (docs/transfer.md) the paired interval of how much more SP
    drifts was [0.81, 2.03] (seeds 0-2), [1.05, 2.28] (3-5), CI_C (6-8)."""
    s = _reduced("width", [32, 128], [-11, -10, -9, -8, -7], ["sp", "mup"], [0, 1, 2])
    out = _run(tmp_path, s)
    more = _e(out, "mup", "drift_less_than_off")
    assert more.lo > 0.3, more
    assert _e(out, "sp", "drift_octaves").value > 1.0 > _e(out, "mup", "drift_octaves").value
