"""Published scaling laws as ready-made presets, and loading a `sizeup fit` result as one.

A LawPreset bundles what a planner needs from one paper: a loss law L(N, D), compute-optimal
allocation laws, and hyperparameter laws for the peak learning rate, the batch size and the
critical batch size. Laws in compute C are PowerLaws in the preset's convention ("6ND": C = 6 N D
with N total parameters; "MD": C = M D with M DeepSeek LLM's non-embedding FLOPs per token).
Laws in other variables (``hp``) read named variables: N (the parameter count the paper used,
``Setup.n_definition``), D (tokens), C, L (a loss) and d (width). ``provides`` says which of lr,
batch, critical_batch and loss a preset gives; ``setup`` says what it was fitted on, so a
comparison can print where that differs from the run being planned.

Every constant below carries its source; a paper whose constants could not be read from a
primary source is not here (docs/laws.md lists them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sizeup.choices import (
    BATCH_UNITS,
    COMPUTE_CONVENTIONS,
    LAW_KINDS,
    N_DEFINITIONS,
    PRESET_NAMES,
    BatchUnit,
    LawKind,
    NDefinition,
)
from sizeup.config import read_document
from sizeup.errors import ConfigError, DataError, check_choice
from sizeup.laws.chinchilla import ChinchillaLaw
from sizeup.laws.forms import LogLaw, PowerLaw
from sizeup.laws.hp import FreeFormLaw
from sizeup.laws.intervals import noise_draws, percentile_interval
from sizeup.schedules import DEEPSEEK_LLM_MILESTONES

HPLaw = FreeFormLaw | LogLaw  # a law in named variables (N, D, C, L, d)
# The seed of the noise draws a preset's prediction interval pairs with its bootstrap samples
# (fit.json keeps the noise's scale, not the draws): the same plan prints the same interval.
PREDICTION_SEED = 0


@dataclass(frozen=True)
class Setup:
    """What a law was fitted on: the schedule its runs used, what its N counts, the unit of its
    batch, the data, the model family and the optimizer. ``lr_schedule`` draws the schedule
    the law's lr belongs to (``sizeup.schedules.Schedule`` keyword arguments, fractions of the
    run, and ``warmup_steps`` when the paper fixed the warmup in steps)."""

    schedule: str
    n_definition: NDefinition
    batch_unit: BatchUnit
    data: str
    model_family: str
    optimizer: str = "AdamW"
    lr_schedule: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_choice("n_definition", self.n_definition, N_DEFINITIONS)
        check_choice("batch_unit", self.batch_unit, BATCH_UNITS)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return {
            "schedule": self.schedule,
            "n_definition": self.n_definition,
            "batch_unit": self.batch_unit,
            "data": self.data,
            "model_family": self.model_family,
            "optimizer": self.optimizer,
            "lr_schedule": dict(self.lr_schedule),
        }


@dataclass(frozen=True)
class LawPoint:
    """A run as the laws read it: its parameter counts, DeepSeek's M, tokens, width and (when
    known) a loss. ``variables`` turns it into a preset's own variables."""

    params: float  # total parameters
    params_non_embedding: float
    flops_per_token_md: float  # M = 72 n_layer d^2 + 12 n_layer d l_seq (DeepSeek LLM)
    tokens: float
    width: float | None = None
    loss: float | None = None


@dataclass
class LawPreset:
    """A named set of laws: loss L(N, D), allocation N_opt(C)/D_opt(C), lr(C) and batch(C),
    laws in other variables (``hp``: "lr", "batch", "critical_batch"), and the fitting setup."""

    name: str
    source: str
    loss_law: ChinchillaLaw | None = None
    lr_law: PowerLaw | None = None  # peak learning rate as a function of C
    batch_law: PowerLaw | None = None  # batch size in tokens as a function of C
    compute: str = "6ND"
    n_opt_law: PowerLaw | None = None  # model size at C: N (6ND) or M FLOPs/token (MD)
    d_opt_law: PowerLaw | None = None  # tokens at C
    samples: np.ndarray | None = None  # bootstrap (E, A, B, alpha, beta) rows, for intervals
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    hp: dict[str, HPLaw] = field(default_factory=dict)  # laws in N, D, C, L, d
    setup: Setup | None = None
    # The vocabulary of the paper's models: a plan built on this preset uses it unless the user
    # gives one (None: the paper does not state one sizeup could read from a primary source).
    vocab_size: int | None = None
    # The compute (FLOPs, in the preset's convention) its laws were fitted on, and where the
    # paper says so (None: the paper states no range sizeup could read from a primary source);
    # a plan far outside it says how far it extrapolates (sizeup.plan.stages).
    fit_range: tuple[float, float] | None = None
    fit_range_source: str = ""
    # The fitted points' parameters N and tokens D, [min, max] each, when known (a `sizeup fit`
    # fit.json's "fit_ranges"; a paper's when it states them): how far a plan extrapolates.
    fit_ranges: dict[str, tuple[float, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_choice("compute", self.compute, COMPUTE_CONVENTIONS)
        for kind in self.hp:
            check_choice("hp", kind, ("lr", "batch", "critical_batch"))

    @property
    def provides(self) -> tuple[LawKind, ...]:
        """Which of lr, batch, critical_batch and loss this preset gives, in that order."""
        have = {
            "lr": self.lr_law is not None or "lr" in self.hp,
            "batch": self.batch_law is not None or "batch" in self.hp,
            "critical_batch": "critical_batch" in self.hp,
            "loss": self.loss_law is not None,
        }
        return tuple(k for k in LAW_KINDS if have[k])

    def optimal(self, C: float) -> tuple[float, float]:
        """Compute-optimal (size, tokens) at C from the allocation laws, else from the loss law."""
        if self.n_opt_law is not None and self.d_opt_law is not None:
            return float(self.n_opt_law(C)), float(self.d_opt_law(C))
        if self.loss_law is not None:
            n, d = self.loss_law.optimal(C)
            return float(n), float(d)
        raise ConfigError("preset", self.name, "a preset with a loss law or allocation laws")

    def lr(self, C: float) -> float:
        """Peak learning rate at compute C from the lr law."""
        if self.lr_law is None:
            raise ConfigError(
                "preset", self.name, "a preset with a learning-rate law (e.g. 'deepseek-v1')"
            )
        return float(self.lr_law(C))

    def batch_tokens(self, C: float) -> float:
        """Batch size in tokens at compute C from the batch law."""
        if self.batch_law is None:
            raise ConfigError(
                "preset", self.name, "a preset with a batch-size law (e.g. 'deepseek-v1')"
            )
        return float(self.batch_law(C))

    def variables(self, point: LawPoint) -> dict[str, float]:
        """The point in this preset's own variables: N as its paper counted it (total,
        non-embedding, or M FLOPs per token), D, C in its compute convention, d, and L."""
        n_def = self.setup.n_definition if self.setup is not None else "total"
        N = {
            "total": point.params,
            "non-embedding": point.params_non_embedding,
            "flops-per-token": point.flops_per_token_md,
        }[n_def]
        per_token = 6.0 * point.params if self.compute == "6ND" else point.flops_per_token_md
        out = {"N": float(N), "D": float(point.tokens), "C": per_token * point.tokens}
        if point.width is not None:
            out["d"] = float(point.width)
        if point.loss is not None:
            out["L"] = float(point.loss)
        return out

    def law_for(self, kind: LawKind) -> PowerLaw | HPLaw | None:
        """The law behind ``kind`` ("lr", "batch", "critical_batch"): a law in named variables
        when the preset has one, else its law in C, else None."""
        check_choice("kind", kind, ("lr", "batch", "critical_batch"))
        if kind in self.hp:
            return self.hp[kind]
        return {"lr": self.lr_law, "batch": self.batch_law}.get(kind)

    def needs(self, kind: LawKind) -> tuple[str, ...]:
        """The variables the law behind ``kind`` reads (("C",) for a law in C)."""
        law = self.law_for(kind)
        if law is None:
            return ()
        return law.variables if not isinstance(law, PowerLaw) else ("C",)

    def value(self, kind: LawKind, point: LawPoint) -> float | None:
        """The law behind ``kind`` at ``point``; None when the preset has no such law or the
        point lacks a variable it reads (a loss, a width). A law evaluated outside its
        validity (Kaplan's lr past the N where it reaches 0) raises ConfigError."""
        law = self.law_for(kind)
        if law is None:
            return None
        x = self.variables(point)
        if isinstance(law, PowerLaw):
            return float(law(x["C"]))
        if any(v not in x for v in law.variables):
            return None
        return float(law(**{v: x[v] for v in law.variables}))

    def formula(self, kind: LawKind) -> str:
        """The law behind ``kind`` spelled out ("" when there is none)."""
        law = self.law_for(kind)
        if law is None:
            return ""
        if isinstance(law, PowerLaw):
            return f"{law.coef:g} C^{law.exponent:g}"
        return law.formula()

    def loss_interval(self, N: float, D: float, level: float = 0.9) -> tuple[float, float, float]:
        """(point, low, high) predicted loss; low = high = point when there are no samples."""
        if self.loss_law is None:
            raise ConfigError("preset", self.name, "a preset with a loss law")
        point = float(self.loss_law.loss(N, D))
        if self.samples is None or len(self.samples) < 2:
            return point, point, point
        E, A, B, al, be = self._valid_samples().T
        with np.errstate(over="ignore"):  # a wild resample's law: inf, kept at the tail
            losses = E + A / N**al + B / D**be
        q = (1 - level) / 2
        return point, float(np.quantile(losses, q)), float(np.quantile(losses, 1 - q))

    def _valid_samples(self) -> np.ndarray:
        """The bootstrap rows that are laws: finite, A, B, alpha, beta > 0 (a resample can
        degenerate or fail to converge; Approach3Fit._valid drops the same)."""
        s = self.samples
        ok = np.isfinite(s).all(axis=1) & (s[:, 1:] > 0).all(axis=1)
        return s[ok]

    def prediction_interval(
        self, N: float, D: float, level: float = 0.9
    ) -> tuple[float, float] | None:
        """(low, high) of the ``level`` prediction interval of a run's *measured* loss at
        (N, D): each bootstrap law's loss times exp(sigma T), T ~ Student t(dof) with the fit's
        measured log-loss noise (fit.json "noise"; sizeup.laws.intervals, as
        Approach3Fit.prediction_interval). None without bootstrap samples or a noise scale
        (a published preset: its paper gives no residual scale)."""
        noise = self.extra.get("noise") or {}
        sigma, dof = noise.get("sigma_log_loss"), noise.get("dof")
        if self.loss_law is None or self.samples is None or len(self.samples) < 2:
            return None
        if not sigma or not dof or not sigma > 0:
            return None
        E, A, B, al, be = self._valid_samples().T
        with np.errstate(over="ignore"):  # a wild resample's law: inf, kept at the tail
            losses = E + A / N**al + B / D**be
        draws = noise_draws(
            float(sigma), int(dof), losses.size, np.random.default_rng(PREDICTION_SEED)
        )
        lo, hi = percentile_interval(losses * np.exp(draws), level)
        return float(lo), float(hi)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (samples left out)."""

        def law(x: Any) -> Any:
            return None if x is None else x.to_dict()

        return {
            "name": self.name,
            "source": self.source,
            "compute": self.compute,
            "provides": list(self.provides),
            "loss_law": law(self.loss_law),
            "lr_law": law(self.lr_law),
            "batch_law": law(self.batch_law),
            "n_opt_law": law(self.n_opt_law),
            "d_opt_law": law(self.d_opt_law),
            "hp": {k: {**v.to_dict(), "formula": v.formula()} for k, v in self.hp.items()},
            "setup": law(self.setup),
            "vocab_size": self.vocab_size,
            "fit_range": None if self.fit_range is None else list(self.fit_range),
            "fit_range_source": self.fit_range_source,
            "fit_ranges": {k: list(v) for k, v in self.fit_ranges.items()},
            "notes": self.notes,
        }


# ----------------------------------------------------------------------------- the presets

# Hoffmann et al. 2022 (and Gopher, Rae et al. 2021, section 3) tokenise with SentencePiece and
# a 32,000-token vocabulary; Besiroglu et al. refit the same runs.
CHINCHILLA_VOCAB = 32_000
# DeepSeek LLM (Bi et al. 2024), section 2.1: byte-level BPE, 100,015 tokens, a vocabulary of
# 102,400 in training.
DEEPSEEK_VOCAB = 102_400
# Kaplan et al. 2020, section 2.1: GPT-2's byte-pair encoding, n_vocab = 50257.
KAPLAN_VOCAB = 50_257
# MiniCPM-2.4B (Hu et al. 2024, Table of model configurations; openbmb/MiniCPM-2B config.json):
# a vocabulary of 122,753.
MINICPM_VOCAB = 122_753

# Hoffmann et al. 2022, section 3.2 (approach 2, Figure 3): nine isoFLOP budgets "ranging from
# 6 x 10^18 to 3 x 10^21 FLOPs"; approach 3 refits those runs with approach 1's (section 3.3).
# Besiroglu et al. 2024 refit the same points (read off Hoffmann et al.'s Figure 4).
CHINCHILLA_FIT_RANGE = (6e18, 3e21)
CHINCHILLA_FIT_SOURCE = "Hoffmann et al. 2022, section 3.2: isoFLOP budgets 6e18 to 3e21 FLOPs"
# DeepSeek LLM (Bi et al. 2024), section 3.2: the isoFLOP profiles' compute budgets, 1e17 to
# 3e20 FLOPs (C = M D), on which eq. (4)'s allocation was fitted.
DEEPSEEK_FIT_RANGE = (1e17, 3e20)
DEEPSEEK_FIT_SOURCE = "Bi et al. 2024 (DeepSeek LLM), section 3.2: budgets 1e17 to 3e20 FLOPs"

# The architecture of Hoffmann et al.'s and Besiroglu et al.'s points (Gopher-family Transformers).
_CHINCHILLA_SETUP = Setup(
    # Hoffmann et al. 2022, appendix B: cosine decaying the lr 10x, its cycle matched to the
    # run length.
    schedule="cosine, decayed 10x over a cycle matched to the run length",
    n_definition="total",
    batch_unit="tokens",
    data="MassiveText (Gopher's corpus)",
    model_family="Gopher-style Transformers (RMSNorm, relative positions)",
    optimizer="AdamW",
    lr_schedule={"kind": "cosine", "min_ratio": 0.1},
)


def _chinchilla() -> LawPreset:
    # Hoffmann et al. 2022, approach 3 (section 3.3, eq. 2 and Table A3)
    return LawPreset(
        name="chinchilla",
        source="Hoffmann et al. 2022, Training Compute-Optimal LLMs, approach 3",
        loss_law=ChinchillaLaw(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28),
        notes="Approach-3 fit as published; C = 6ND.",
        setup=_CHINCHILLA_SETUP,
        vocab_size=CHINCHILLA_VOCAB,
        fit_range=CHINCHILLA_FIT_RANGE,
        fit_range_source=CHINCHILLA_FIT_SOURCE,
    )


def _epoch() -> LawPreset:
    # Besiroglu, Erdil, Barnett, You 2024, "Chinchilla Scaling: A replication attempt", eq. (2)
    return LawPreset(
        name="epoch",
        source="Besiroglu et al. 2024, Chinchilla Scaling: A replication attempt",
        loss_law=ChinchillaLaw(E=1.82, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658),
        notes="Refit of Hoffmann et al.'s Figure 4 data; C = 6ND.",
        setup=_CHINCHILLA_SETUP,
        vocab_size=CHINCHILLA_VOCAB,
        fit_range=CHINCHILLA_FIT_RANGE,
        fit_range_source=CHINCHILLA_FIT_SOURCE + " (the points Besiroglu et al. refit)",
    )


def _deepseek() -> LawPreset:
    # DeepSeek LLM (Bi et al. 2024): eq. (1) hyperparameters, eq. (4) allocation, C = M D
    return LawPreset(
        name="deepseek-v1",
        source="DeepSeek-AI (Bi et al.) 2024, DeepSeek LLM: Scaling Open-Source LMs with Longtermism",
        lr_law=PowerLaw(0.3118, -0.1250),
        batch_law=PowerLaw(0.2920, 0.3271),
        compute="MD",
        n_opt_law=PowerLaw(0.1715, 0.5243),  # M_opt in non-embedding FLOPs per token
        d_opt_law=PowerLaw(5.8316, 0.4757),
        notes="C = M D with M = 72 n_layer d^2 + 12 n_layer d l_seq; batch in tokens.",
        setup=Setup(
            # DeepSeek LLM section 2.3: 2000 warmup steps, then the lr steps to 31.6% of its
            # maximum after 80% of the training tokens and to 10% after 90%.
            schedule="multi-step: 2000 warmup steps, 31.6% of max after 80% of tokens, 10% after 90%",
            n_definition="flops-per-token",
            batch_unit="tokens",
            data="DeepSeek's bilingual (Chinese/English) pretraining corpus",
            model_family="LLaMA-style (pre-norm RMSNorm, SwiGLU, RoPE)",
            optimizer="AdamW (beta1 0.9, beta2 0.95, weight decay 0.1)",
            lr_schedule={
                "kind": "multistep",
                "milestones": DEEPSEEK_LLM_MILESTONES,
                "warmup_steps": 2000,
            },
        ),
        vocab_size=DEEPSEEK_VOCAB,
        fit_range=DEEPSEEK_FIT_RANGE,
        fit_range_source=DEEPSEEK_FIT_SOURCE,
    )


def _steplaw() -> LawPreset:
    # Li et al. 2025, "Predictable Scale: Part I, Step Law" (arXiv:2503.04715), the Step Law:
    # eta(N, D) = 1.79 N^-0.713 D^0.307 and B(D) = 0.58 D^0.571 tokens, N non-embedding.
    return LawPreset(
        name="steplaw",
        source="Li et al. (StepFun) 2025, Predictable Scale: Part I, Step Law",
        hp={
            "lr": FreeFormLaw(1.79, {"N": -0.713, "D": 0.307}),
            "batch": FreeFormLaw(0.58, {"D": 0.571}),
        },
        notes="eta(N, D) and B(D) in tokens; N = non-embedding parameters.",
        setup=Setup(
            # Li et al. 2025: warmup, then decay to a fixed final lr of 1e-5 (not a fraction of
            # the peak); sizeup draws the decay as a cosine to 1e-5.
            schedule="warmup, then decay to a fixed final lr of 1e-5",
            n_definition="non-embedding",
            batch_unit="tokens",
            data="StepFun pretraining mixes (English-dominant, Chinese-English, code)",
            model_family="dense and MoE Transformers (RMSNorm, SwiGLU, ALiBi)",
            optimizer="AdamW",
            lr_schedule={"kind": "cosine", "min_lr": 1e-5},
        ),
    )


# Kaplan et al. 2020, eq. (5.3) and section 5.1: B_crit(L) = B* / L^(1/alpha_B), B* ~ 2e8 tokens,
# alpha_B ~ 0.21 (L in nats on WebText2); Figure 10 draws it as 2.1e8 L^-4.8.
KAPLAN_B_STAR = 2e8
KAPLAN_ALPHA_B = 0.21
# Kaplan et al. 2020, eq. (D.1): LR(N) ~ 0.003239 - 0.0001395 log(N), N non-embedding parameters.
KAPLAN_LR_INTERCEPT = 0.003239
KAPLAN_LR_SLOPE = -0.0001395


def _kaplan() -> LawPreset:
    return LawPreset(
        name="kaplan",
        source="Kaplan et al. 2020, Scaling Laws for Neural Language Models",
        hp={
            "lr": LogLaw(KAPLAN_LR_INTERCEPT, KAPLAN_LR_SLOPE, "N"),
            "critical_batch": FreeFormLaw(KAPLAN_B_STAR, {"L": -1.0 / KAPLAN_ALPHA_B}),
        },
        notes="lr(N) for N non-embedding (reaches 0 near N = 1.2e10); B_crit(L) in tokens, "
        "L in nats on WebText2.",
        setup=Setup(
            # Kaplan et al. 2020, section 2.3: 3000-step linear warmup, cosine decay to zero.
            schedule="3000-step linear warmup, then cosine decay to zero",
            n_definition="non-embedding",
            batch_unit="tokens",
            data="WebText2 (GPT-2 BPE)",
            model_family="GPT-2-style decoder-only Transformers",
            optimizer="Adam",
            lr_schedule={"kind": "cosine", "warmup_steps": 3000},
        ),
        vocab_size=KAPLAN_VOCAB,
    )


# MiniCPM's muP constants, as its released configs state them (e.g. openbmb/MiniCPM-2B
# config.json: scale_emb 12, scale_depth 1.4, dim_model_base 256, initializer_range 0.1), with
# the base lr 0.01 of its model wind-tunnel experiments (Hu et al. 2024, section 3.3).
MINICPM_MUP = {
    "scale_emb": 12.0,
    "scale_depth": 1.4,
    "dim_model_base": 256,
    "init_std": 0.1,
    "base_lr": 0.01,
}
# Hu et al. 2024, section 3.2 (optimal batch size): bs = 1.21e9 / L^6.24 tokens, L the C4 loss.
MINICPM_BS_COEF = 1.21e9
MINICPM_BS_EXPONENT = -6.24


def _minicpm() -> LawPreset:
    base = MINICPM_MUP["base_lr"] * MINICPM_MUP["dim_model_base"]
    return LawPreset(
        name="minicpm",
        source="Hu et al. 2024, MiniCPM: Unveiling the Potential of Small Language Models",
        hp={
            # muP: hidden matrices get base_lr / (d / dim_model_base) = 2.56 / d
            "lr": FreeFormLaw(base, {"d": -1.0}),
            "batch": FreeFormLaw(MINICPM_BS_COEF, {"L": MINICPM_BS_EXPONENT}),
        },
        notes="lr is the muP hidden-matrix lr 0.01 x 256 / d (embeddings and vectors keep "
        "0.01); batch from the C4 loss L.",
        extra={"mup": dict(MINICPM_MUP)},
        setup=Setup(
            # Hu et al. 2024, section 4: WSD, the decay over about 10% of the tokens, exponential.
            schedule="WSD: stable, then an exponential decay over about 10% of the tokens",
            n_definition="non-embedding",
            batch_unit="tokens",
            data="MiniCPM's mix (CommonCrawl Chinese, Dolma, C4, Pile, code); L is C4 loss",
            model_family="LLaMA-style deep-and-thin, muP (scale_emb 12, scale_depth 1.4)",
            optimizer="AdamW",
            lr_schedule={"kind": "wsd", "decay_frac": 0.1, "cooldown": "exponential"},
        ),
        vocab_size=MINICPM_VOCAB,
    )


_PRESETS = {
    "chinchilla": _chinchilla,
    "epoch": _epoch,
    "deepseek-v1": _deepseek,
    "steplaw": _steplaw,
    "kaplan": _kaplan,
    "minicpm": _minicpm,
}


def get_preset(name: str) -> LawPreset:
    """A published law by name (sizeup.choices.PRESET_NAMES)."""
    check_choice("preset", name, PRESET_NAMES)
    return _PRESETS[name]()


def _law(d: Any) -> PowerLaw | None:
    if not isinstance(d, dict):
        return None
    return PowerLaw(float(d["coef"]), float(d["exponent"]))


def load_fit(path: str | Path) -> LawPreset:
    """Turn a `sizeup fit ... --out DIR` result (DIR or DIR/fit.json) into a LawPreset."""
    p = Path(path)
    if p.is_dir():
        p = p / "fit.json"
    if not p.exists():
        raise DataError(
            f"fit={str(p)!r} is not allowed: an existing fit.json written by `sizeup fit`"
        )
    d = read_document(p, "fit", (".json",))
    if not isinstance(d, dict):
        raise DataError(
            f"fit={str(p)!r} is not allowed: a fit.json object written by `sizeup fit` "
            f"(this one holds a {type(d).__name__})"
        )
    loss_law = None
    if all(k in d and d[k] is not None for k in ("E", "A", "B", "alpha", "beta")):
        loss_law = ChinchillaLaw(d["E"], d["A"], d["B"], d["alpha"], d["beta"])
    samples = np.asarray(d["samples"], dtype=float) if d.get("samples") else None
    ranges = _fit_ranges(d.get("fit_ranges"))
    c_range = ranges.pop("C", None)
    preset = LawPreset(
        name=d.get("name", p.parent.name or "fit"),
        source=f"sizeup fit ({d.get('kind', 'chinchilla')}, approach {d.get('approach', '-')}) from {p}",
        loss_law=loss_law,
        lr_law=_law(d.get("lr_law")),
        batch_law=_law(d.get("batch_law")),
        compute=d.get("compute", "6ND"),
        n_opt_law=_law(d.get("n_opt")),
        d_opt_law=_law(d.get("d_opt")),
        samples=samples,
        extra={k: v for k, v in d.items() if k not in ("samples",)},
        vocab_size=int(d["vocab_size"]) if d.get("vocab_size") else None,
        fit_range=c_range,
        fit_range_source="the fitted points (fit.json fit_ranges)" if c_range else "",
        fit_ranges=ranges,
    )
    return preset


def _fit_ranges(d: Any) -> dict[str, tuple[float, float]]:
    """fit.json's "fit_ranges" ({"N": [min, max], "D": ..., "C": ...}) as tuples; a malformed
    entry is left out (the plan then says nothing of that range)."""
    if not isinstance(d, dict):
        return {}
    out = {}
    for k in ("N", "D", "C"):
        v = d.get(k)
        if isinstance(v, (list, tuple)) and len(v) == 2 and 0 < float(v[0]) <= float(v[1]):
            out[k] = (float(v[0]), float(v[1]))
    return out
