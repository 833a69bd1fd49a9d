"""CheckSpec: what a coordinate check sweeps, how long, and how it judges.

The model, its parametrization, optimizer and data are not here: they are the RunConfig the
check is given (or a user's width -> model factory), the same record `sizeup train` trains.
"""

from __future__ import annotations

from dataclasses import dataclass

from sizeup.choices import CoordStat
from sizeup.config.fields import Names, Record, Sizes, positive, spec
from sizeup.errors import ConfigError

# Seeds a check needs before a slope outside the band but within its seed noise may pass (as
# "noisy"). The standard error of a slope comes from the spread of the per-seed slopes, so with
# k seeds it has k - 1 degrees of freedom and the noise allowance is Student's t_{k-1} quantile
# times it (diagnostics.coord_check.result.noise_multiplier): 14.0 standard errors with 2 seeds, 4.5 with 3, 3.3 with 4,
# against 2.0 for a known spread. The sweeps need only 2 seeds for an interval
# (sizeup.sweep.estimate.t_interval), because there a wide interval makes a check fail safe: no
# claim passes that the interval does not exclude. Here a wide allowance fails open: a module
# passes unless shown outside the band, and with 2 seeds (one degree of freedom) nearly any
# slope would pass that way. So with fewer than MIN_SEEDS seeds a slope outside the band within
# its allowance is INCONCLUSIVE ("run more seeds") instead of a pass, while one outside even the
# t allowance still FAILs. 3 is the CheckSpec default: the smallest count whose t allowance
# (4.5 standard errors) still separates real failures (SP: +0.5 to +2.8, standard errors of
# 0.01-0.08) from a flat module, as docs/diagnostics.md measures.
MIN_SEEDS = 3


@dataclass(frozen=True)
class CheckSpec(Record):
    """The check's own settings: the sizes it sweeps (widths, or depths for the depth axis),
    its steps and seeds, and the judge's band and noise allowance."""

    widths: Sizes | None = spec(
        None,
        "Increasing widths (default: the model family's, e.g. GPT 128,256,512,1024).",
    )
    depths: Sizes | None = spec(
        None, "Depth mode: increasing depths (e.g. 2,4,8,16,32) at the config's width."
    )
    steps: int = spec(4, "Training steps; t = 0..steps are recorded.")
    seeds: int = spec(
        MIN_SEEDS,
        f"Seeds averaged per size (the run's seed onwards); fewer than {MIN_SEEDS} give no "
        "verdict on a module outside the band within its seed noise (inconclusive).",
    )
    same_batch: bool = spec(
        True,
        "Repeat the first batch every step, or train on batch t at step t as `train` does.",
        switch="--same-batch/--fresh-batches",
    )
    stat: CoordStat = spec("l1", "Size of an output: l1 (mean |x|) or rms.")
    tolerance: float = spec(0.1, "Pass when |slope| <= tolerance.")
    judge_from: int = spec(1, "The first step judged (0 is the init).")
    noise_z: float = spec(
        2.0,
        "Fail only when outside the band by more than this many standard errors of the seed "
        "noise, at the same coverage under Student's t for the seeds' degrees of freedom "
        "(0: strict).",
    )
    modules: Names | None = spec(None, "Only these modules (fnmatch patterns).")

    def check(self) -> None:
        """Positive steps and seeds, one axis, a judged step within the steps."""
        positive(self, "steps", "seeds", integer=True)
        positive(self, "tolerance")
        if self.widths is not None and self.depths is not None:
            raise ConfigError("depths", self.depths, "left out with widths (one axis at a time)")
        if not 0 <= self.judge_from <= self.steps:
            raise ConfigError(
                "judge_from", self.judge_from, f"a step between 0 and steps={self.steps}"
            )
        if not self.noise_z >= 0:
            raise ConfigError(
                "noise_z", self.noise_z, "a number >= 0 (standard errors of seed noise allowed)"
            )

    @property
    def axis(self) -> str:
        """What the sizes are: "depth" when depths are given, else "width"."""
        return "depth" if self.depths is not None else "width"

    def sizes(self, default: tuple[int, ...]) -> list[int]:
        """The swept sizes: the given widths or depths, else ``default``."""
        given = self.depths if self.depths is not None else self.widths
        return list(given if given is not None else default)
