"""The planner's stages. Each takes records and earlier stages' values and returns a ``Stage``:
its value, the derivation of every number it made (``explain`` entries: name, value, formula,
inputs) and any warnings. ``sizeup.plan.planner.plan`` runs them in order; the per-layer table
stage lives in ``sizeup.plan.table``.

Order: size (shape, N) -> budget (tokens D, compute C) -> batch (B, steps) -> batch ramp ->
ratios against the proxy -> peak lr -> schedule -> per-layer table -> loss -> time and cost ->
checks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sizeup.errors import ConfigError
from sizeup.optim.transfer import transfer_batch, transfer_horizon
from sizeup.plan.records import (
    Checks,
    Hardware,
    Laws,
    Proxy,
    Recipe,
    ScheduleOptions,
    Shape,
    ShapeOptions,
    Target,
    shape_for,
)

T = TypeVar("T")

FALLBACK_PRESET = "deepseek-v1"  # eta(C), B(C) used when nothing else gives them


@dataclass
class Stage(Generic[T]):
    """A stage's value, its derivation (explain entries) and its warnings."""

    value: T
    explain: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def note(name: str, value: Any, formula: str, **inputs: Any) -> dict[str, Any]:
    """One explain entry: how a number was derived."""
    return {"name": name, "value": value, "formula": formula, "inputs": inputs}


def compute_formula(convention: str) -> str:
    """The compute convention of a law, spelled out."""
    if convention == "6ND":
        return "C = 6 N D (N = total parameters; an MoE: those a token uses, its active ones)"
    return "C = M D (M = 72 n_layer d^2 + 12 n_layer d l_seq, DeepSeek LLM)"


def _fallback_law() -> Any:
    from sizeup.laws.presets import get_preset

    return get_preset(FALLBACK_PRESET)


def law_point(shape: Shape, tokens: float, loss: float | None = None) -> Any:
    """The run as the laws read it (sizeup.laws.presets.LawPoint): total and non-embedding
    parameters, DeepSeek's M, tokens, width and, when known, a loss."""
    from sizeup.laws.presets import LawPoint

    return LawPoint(
        params=shape.params(),
        params_non_embedding=shape.params(embeddings=False),
        flops_per_token_md=shape.flops_per_token("MD"),
        tokens=tokens,
        width=shape.d_model,
        loss=loss,
    )


def _law_value(law: Any, kind: str, point: Any) -> tuple[float, str] | None:
    """(value, formula) of the preset's law for ``kind`` at ``point``, or None when it has none
    or the point lacks a variable it reads (a loss, before the loss is predicted)."""
    value = law.value(kind, point)
    if value is None:
        return None
    return value, f"{kind} = {law.formula(kind)} ({law.name})"


# ----------------------------------------------------------------------------- size


@dataclass
class Size:
    """The model: its shape, parameter counts, and whether the user fixed its size."""

    shape: Shape
    params: int
    params_non_embedding: int
    fixed: bool  # an explicit shape or params: compute must then agree with it
    target: float | None = None  # the size the family rule aimed at (None: an explicit shape)
    target_is: str = ""  # what that size is (params, N_opt(C), M_opt(C), ...)


def size_stage(target: Target, options: ShapeOptions, law: Any) -> Stage[Size]:
    """An explicit shape, or the family shape closest to the target size (params, C / D,
    sqrt(C / 6r), or the law's compute-optimal size at C). The vocabulary is the user's, else
    the preset's, else the default; d_ff is rounded up to a multiple of ffn_multiple."""
    given = options.vocab_size
    options = options.with_vocab(getattr(law, "vocab_size", None))
    vocab = _vocab_note(given, options.vocab_size or 0, law)
    explicit = options.explicit()
    if explicit is not None:
        st = _explicit_size(explicit, target)
        st.explain[:0] = [vocab, _shape_note(explicit)]
        return st
    size, what, convention, ex = _size_target(target, law)
    shape = shape_for(
        size,
        convention=convention,
        aspect_ratio=options.aspect_ratio,
        head_dim=options.head_dim,
        n_kv_head=options.n_kv_head,
        head_multiple=options.head_multiple,
        **options.family(),
    )
    N = shape.params()
    got = N if convention == "6ND" else shape.flops_per_token("MD")
    ex += [
        vocab,
        _shape_note(shape),
        note(
            "params",
            N,
            f"family shape (d_model ~ {options.aspect_ratio:g} n_layer, head_dim "
            f"{options.head_dim}, heads a multiple of {options.head_multiple} or a power of two "
            f"below it) closest to the target {what}: {got / size - 1:+.1%} off it",
            target=size,
            n_layer=shape.n_layer,
            d_model=shape.d_model,
            n_head=shape.n_head,
        ),
    ]
    return Stage(
        Size(shape, N, shape.params(embeddings=False), target.params is not None, size, what),
        ex,
    )


def _vocab_note(given: int | None, vocab: int, law: Any) -> dict[str, Any]:
    """Where the vocabulary came from: the user, the preset's paper, or the default."""
    theirs = getattr(law, "vocab_size", None)
    if given is not None:
        source = "given" + (
            f" (preset {law.name} used {theirs:,})" if theirs not in (None, given) else ""
        )
    elif theirs is not None:
        source = f"preset {law.name}'s vocabulary"
    else:
        source = f"the default (preset {law.name} states no vocabulary)"
    return note("vocab_size", vocab, source)


def _shape_note(shape: Shape) -> dict[str, Any]:
    """How d_ff and d_model were rounded."""
    return note(
        "d_ff",
        shape.d_ff,
        f"ceil(mlp_ratio x d_model / {shape.ffn_multiple}) x {shape.ffn_multiple}",
        mlp_ratio=shape.mlp_ratio,
        d_model=shape.d_model,
    )


def _explicit_size(shape: Shape, target: Target) -> Stage[Size]:
    N = shape.params()
    if target.params is not None and abs(math.log(N / target.params)) > math.log(1.1):
        raise ConfigError(
            "params",
            target.params,
            f"within 10% of the explicit shape's {N:,} parameters (or leave params out)",
        )
    ex = note(
        "params",
        N,
        "sum of the GPT's tensors (sizeup.laws.flops.gpt_params)",
        **{k: v for k, v in shape.to_dict().items() if v is not None},
    )
    return Stage(Size(shape, N, shape.params(embeddings=False), True), [ex])


def _size_target(target: Target, law: Any) -> tuple[float, str, str, list[dict[str, Any]]]:
    """(size, what it is, the convention it is measured in, explain) for a family shape."""
    conv, C = law.compute, target.compute
    if target.params is not None:
        return float(target.params), "params", "6ND", []
    if C is None:
        raise ConfigError(
            "target", None, "one of compute, params, or an explicit shape (n_layer and d_model)"
        )
    if target.tokens is not None:
        return C / target.tokens / (6.0 if conv == "6ND" else 1.0), "C / D", conv, []
    r = target.tokens_per_param
    if r is not None and conv != "6ND":
        raise ConfigError(
            "tokens_per_param",
            r,
            f"only with a 6ND law (preset {law.name!r} counts C = M D); give tokens or params",
        )
    if r is not None:
        return math.sqrt(C / (6.0 * r)), "sqrt(C / (6 r))", conv, []
    size, _ = law.optimal(C)
    what = "N_opt(C)" if conv == "6ND" else "M_opt(C)"
    return (
        size,
        what,
        conv,
        [note("size_opt", size, f"compute-optimal {what} from {law.name}", C=C)],
    )


# ----------------------------------------------------------------------------- budget


@dataclass
class Budget:
    """Tokens and compute of the run."""

    tokens: float
    flops: float
    flops_per_token: float  # 6N or M, the law's convention
    tokens_per_param: float
    flops_exact: float
    formula: str


def budget_stage(target: Target, size: Size, law: Any, checks: Checks) -> Stage[Budget]:
    """Tokens (given, C / per-token FLOPs, r N, or compute-optimal for the size), the compute
    they cost under the law's convention, and the exact GPT count."""
    shape, N, conv = size.shape, size.params, law.compute
    per_token = shape.flops_per_token(conv)
    D, ex = _tokens(target, N, per_token, law)
    C = per_token * D
    formula = compute_formula(conv)
    ex += _check_compute(target, C, size, D, formula)
    r = D / N
    ex += [
        note("flops", C, formula, per_token_flops=per_token, D=D),
        note("tokens_per_param", r, "D / N", D=D, N=N),
    ]
    _check_tokens_per_param(r, C, N, D, conv, checks.min_tokens_per_param)
    exact = shape.exact_flops_per_token() * D
    ex.append(
        note(
            "flops_exact",
            exact,
            "every matmul of the GPT, causal attention, x3 for backward",
            per_token=shape.exact_flops_per_token(),
            D=D,
        )
    )
    return Stage(Budget(D, C, per_token, r, exact, formula), ex)


def _tokens(
    target: Target, N: int, per_token: float, law: Any
) -> tuple[float, list[dict[str, Any]]]:
    if target.tokens is not None:
        return float(target.tokens), [note("tokens", float(target.tokens), "given")]
    if target.compute is not None:
        # Spend the budget exactly; a tokens_per_param target only chose the shape.
        D = target.compute / per_token
        formula = "D = C / (6N)" if law.compute == "6ND" else "D = C / M"
        return D, [note("tokens", D, formula, C=target.compute, per_token_flops=per_token)]
    if target.tokens_per_param is not None:
        D = target.tokens_per_param * N
        return D, [note("tokens", D, "D = r N", r=target.tokens_per_param, N=N)]
    # Only the size is fixed: train it compute-optimally, at the C where size_opt(C) = size.
    size = N if law.compute == "6ND" else per_token
    lo, hi = 1e6, 1e40  # bisection in log C; size_opt(C) increases with C
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if law.optimal(mid)[0] < size else (lo, mid)
    D = law.optimal(math.sqrt(lo * hi))[1]
    formula = (
        f"compute-optimal D_opt(C) at the C where the {law.name} size_opt(C) equals this model"
    )
    return D, [note("tokens", D, formula, size=size)]


def _check_compute(
    target: Target, C: float, size: Size, D: float, formula: str
) -> list[dict[str, Any]]:
    """compute, size and tokens must agree within 1% (a family shape only comes close)."""
    if target.compute is None or abs(math.log(C / target.compute)) <= math.log(1.01):
        return []
    if not size.fixed:
        return [
            note(
                "compute_rounding",
                C / target.compute,
                "C(shape, D) / C_target: the nearest family shape",
            )
        ]
    raise ConfigError(
        "compute",
        target.compute,
        f"consistent with the rest of the target: {formula} gives {C:.4g} for "
        f"params={size.params:,} and tokens={D:.4g} (give two of compute, params or shape, tokens)",
    )


def _check_tokens_per_param(r: float, C: float, N: int, D: float, conv: str, least: float) -> None:
    if r >= least:
        return
    n_max = math.sqrt(C / (6.0 * least)) if conv == "6ND" else None
    allowed = (
        f"at most {n_max:.4g} parameters for compute={C:.4g} (at least {least:g} token per parameter)"
        if n_max
        else f"at least {least:g} token per parameter"
    )
    raise ConfigError(
        "params",
        N,
        f"{allowed}; this target leaves {D:.4g} tokens ({r:.3g} per parameter): the model is "
        "larger than the budget allows",
    )


# ----------------------------------------------------------------------------- batch


@dataclass
class Batch:
    """The batch in tokens (whole sequences), where it came from, and the steps it makes."""

    tokens: int
    sequences: int
    rounding: str
    steps: int


def batch_stage(
    schedule: ScheduleOptions, laws: Laws, law: Any, budget: Budget, shape: Shape
) -> Stage[Batch]:
    """Given > user B(C) > the law's B(C) > user B(D) > the fallback B(C), rounded to whole
    sequences (a multiple of batch_multiple), and the steps ceil(D / B)."""
    raw, source, ex, warns = _raw_batch(schedule, laws, law, budget, shape)
    m = schedule.batch_multiple
    B, seqs = round_batch(raw, shape.seq_len, m)
    rounding = f"{raw / shape.seq_len:.1f} sequences of {shape.seq_len} rounded to {seqs}, a multiple of {m}"
    steps = int(math.ceil(budget.tokens / B))
    if budget.tokens < B:
        raise ConfigError("tokens", budget.tokens, f"at least one batch ({B:,} tokens)")
    ex += [
        note(
            "batch_tokens",
            B,
            "round(B / seq_len / m) * m * seq_len",
            B=raw,
            seq_len=shape.seq_len,
            m=m,
        ),
        note("steps", steps, "ceil(D / B)", D=budget.tokens, B=B),
    ]
    return Stage(Batch(B, seqs, f"{source}: {raw:,.0f} tokens = {rounding}", steps), ex, warns)


def round_batch(raw: float, seq_len: int, multiple: int) -> tuple[int, int]:
    """(tokens, sequences): ``raw`` tokens as whole sequences, a multiple of ``multiple``."""
    seqs = max(multiple, int(round(raw / seq_len / multiple)) * multiple)
    return seqs * seq_len, seqs


def _raw_batch(
    schedule: ScheduleOptions, laws: Laws, law: Any, budget: Budget, shape: Shape
) -> tuple[float, str, list[dict[str, Any]], list[str]]:
    C, D = budget.flops, budget.tokens
    if schedule.batch_tokens is not None:
        B = float(schedule.batch_tokens)
        return B, "given", [note("batch_raw", B, "given")], []
    if laws.batch_law is not None:
        c, e = laws.batch_law
        return (
            c * C**e,
            "user B(C)",
            [note("batch_raw", c * C**e, "B = c C^e (user)", c=c, e=e, C=C)],
            [],
        )
    own = _law_value(law, "batch", law_point(shape, D))
    if own is not None:
        B, formula = own
        return (
            B,
            f"{law.name} B({','.join(law.needs('batch'))})",
            [note("batch_raw", B, formula, C=C, D=D)],
            [],
        )
    if laws.batch_d_law is not None:
        c, e = laws.batch_d_law
        return (
            c * D**e,
            "user B(D)",
            [note("batch_raw", c * D**e, "B = c D^e (user)", c=c, e=e, D=D)],
            [],
        )
    # No batch law: a published B(C) beats reusing the proxy's (far too small) batch.
    fb = _fallback_law()
    C_md = shape.flops_per_token("MD") * D
    B = fb.batch_tokens(C_md)
    formula = (
        f"B = {fb.batch_law.coef:g} C^{fb.batch_law.exponent:g} with C = M D (DeepSeek LLM; no "
        "batch law in the preset)"
    )
    warn = (
        f"preset {law.name!r} has no batch-size law; the batch comes from {FALLBACK_PRESET}'s "
        "B(C). Pass batch_tokens or a batch law to choose."
    )
    return B, f"{FALLBACK_PRESET} B(C) (fallback)", [note("batch_raw", B, formula, C=C_md)], [warn]


# ----------------------------------------------------------------------------- ratios


@dataclass
class Ratios:
    """The target against the proxy: width n, batch b and data d ratios (1 without a proxy)."""

    width: float = 1.0
    batch: float = 1.0
    data: float = 1.0


def ratio_stage(
    proxy: Proxy | None, shape: Shape, batch: Batch, budget: Budget, limit: float
) -> Stage[Ratios]:
    """n = d_model / base_width, b = B / B_base, d = D / D_base; a warning when the target is
    more than 10 x ``limit`` times wider than the widest model tuned."""
    if proxy is None:
        return Stage(Ratios())
    if shape.d_model < proxy.width:
        raise ConfigError("base_width", proxy.width, f"at most the target d_model={shape.d_model}")
    B, D = batch.tokens, budget.tokens
    r = Ratios(shape.d_model / proxy.width, B / (proxy.batch_tokens or B), D / (proxy.tokens or D))
    ex = [
        note(
            "width_ratio",
            r.width,
            "n = d_model / base_width",
            d_model=shape.d_model,
            base_width=proxy.width,
        ),
        note("batch_ratio", r.batch, "b = B / B_base", B=B, B_base=proxy.batch_tokens or B),
        note("data_ratio", r.data, "d = D / D_base", D=D, D_base=proxy.tokens or D),
    ]
    tuned = shape.d_model / (proxy.tuned_width or proxy.width)
    warns = []
    if tuned > limit * 10:
        warns.append(
            f"width ratio {tuned:.3g} over the widest tuned model: transfer from a proxy this "
            "small is unverified; check with a coordinate check at an intermediate width."
        )
    return Stage(r, ex, warns)


# ----------------------------------------------------------------------------- peak lr


@dataclass
class LearningRate:
    """The peak lr and what the optimizer is handed to reach it.

    ``eta`` is the lr given to ``Parametrization.optimizer``: with a transfer, the proxy's eta x
    d^alpha_data, and the optimizer applies the batch transfer b^1/2 itself; otherwise the peak.
    """

    peak: float
    source: str
    transferred: bool
    eta: float
    muon_lr: float | None = None
    moved: dict[str, Any] | None = None  # what the batch transfer moved: name -> [before, after]


def lr_stage(
    laws: Laws,
    law: Any,
    budget: Budget,
    shape: Shape,
    batch: Batch,
    proxy: Proxy | None,
    recipe: Recipe,
    ratios: Ratios,
) -> Stage[LearningRate]:
    """A user eta(N, D) law, else transfer from the proxy, else the law's eta(C), else the
    fallback eta(C)."""
    C = budget.flops
    law_lr = _law_lr(laws, law, C, law_point(shape, budget.tokens))
    if laws.lr_nd_law is not None:
        c, a, b = laws.lr_nd_law
        N, D = shape.params(), budget.tokens
        lr = c * N**a * D**b
        ex = note("peak_lr", lr, "eta = c N^a D^b (user)", c=c, a=a, b=b, N=N, D=D)
        return Stage(LearningRate(lr, "user eta(N, D)", False, lr), [ex])
    if proxy is not None and proxy.lr is not None:
        return _transferred_lr(proxy, recipe, batch, ratios, laws.data_exponent, law_lr)
    if law_lr is not None:
        lr, source, formula = law_lr
        return Stage(LearningRate(lr, source, False, lr), [note("peak_lr", lr, formula, C=C)])
    return _fallback_lr(law, shape, budget)


def _law_lr(laws: Laws, law: Any, C: float, point: Any) -> tuple[float, str, str] | None:
    """(eta, source, formula) of the user's eta(C), else the preset's (in C, or in the
    variables its paper used, e.g. N and D), else None."""
    if laws.lr_law is not None:
        c, e = laws.lr_law
        return c * C**e, "user eta(C)", f"eta = {c:g} C^{e:g}"
    own = _law_value(law, "lr", point)
    if own is None:
        return None
    lr, formula = own
    return lr, f"{law.name} eta({','.join(law.needs('lr'))})", formula.replace("lr =", "eta =")


def _transferred_lr(
    proxy: Proxy,
    recipe: Recipe,
    batch: Batch,
    ratios: Ratios,
    alpha: float,
    law_lr: tuple[float, str, str] | None,
) -> Stage[LearningRate]:
    """eta = eta_base b^1/2 d^alpha: the square-root batch rule (sizeup.optim.transfer_batch)
    and the data exponent on the proxy's global eta (the per-layer multipliers come from the
    parametrization)."""
    assert proxy.lr is not None
    # the horizon rule's one formula (train applies the same to a run's lr): (D / D_proxy)^alpha
    d_factor = transfer_horizon(1.0, ratios.data, 1.0, alpha)
    batched, moved = proxy.lr, None
    if proxy.batch_tokens is not None:
        batched = batch_transfer(recipe, proxy.lr, batch.tokens, proxy.batch_tokens)[0]
        moved = moved_by_batch(recipe, proxy.lr, batch.tokens, proxy.batch_tokens)
    lr = batched * d_factor
    muon = recipe.muon_lr * d_factor if recipe.muon_lr is not None else None
    ex = note(
        "peak_lr",
        lr,
        "eta = eta_base * b^1/2 * d^alpha_data (global eta; per-layer multipliers in the table)",
        eta_base=proxy.lr,
        b=ratios.batch,
        d=ratios.data,
        alpha_data=alpha,
        proxy=proxy.source,
    )
    warns = []
    if law_lr is not None and max(lr / law_lr[0], law_lr[0] / lr) > 2:
        warns.append(
            f"the transferred peak lr {lr:.3g} differs from the law's {law_lr[0]:.3g} by more "
            "than 2x; check the proxy's tuning or the law's range."
        )
    return Stage(
        LearningRate(lr, "transfer from the proxy", True, proxy.lr * d_factor, muon, moved),
        [ex],
        warns,
    )


def _fallback_lr(law: Any, shape: Shape, budget: Budget) -> Stage[LearningRate]:
    fb = _fallback_law()
    C_md = shape.flops_per_token("MD") * budget.tokens
    lr = fb.lr(C_md)
    ex = note(
        "peak_lr",
        lr,
        f"eta = {fb.lr_law.coef:g} C^{fb.lr_law.exponent:g} with C = M D (DeepSeek LLM; no lr "
        "law in the preset and no proxy lr)",
        C=C_md,
    )
    warn = (
        f"preset {law.name!r} has no learning-rate law and no proxy lr was given; the peak lr "
        f"comes from {FALLBACK_PRESET}'s eta(C). Pass a proxy (base lr, width, batch, tokens) "
        "to transfer your own tuning."
    )
    return Stage(LearningRate(lr, f"{FALLBACK_PRESET} eta(C) (fallback)", False, lr), [ex], [warn])


def batch_transfer(
    recipe: Recipe, lr: float, batch: int, base_batch: int
) -> tuple[float, tuple[float, float], float, float]:
    """(lr, betas, eps, momentum) moved from base_batch to batch by the square-root rule,
    betas and momentum clipped at 0 past the rule's range (sizeup.optim.transfer_batch)."""
    t_lr, betas, eps = transfer_batch(lr, recipe.betas, recipe.eps, batch, base_batch, clip=True)
    _, (mom,), _ = transfer_batch(1.0, (recipe.momentum,), 1.0, batch, base_batch, clip=True)
    return t_lr, (betas[0], betas[1]), eps, mom


def moved_by_batch(recipe: Recipe, lr: float, batch: int, base_batch: int) -> dict[str, Any] | None:
    """What the batch transfer moves from the proxy's batch to the target's: the batches, and
    [given, transferred] for the lr and each setting the optimizer reads (None when the batches
    are equal: nothing moves)."""
    if batch == base_batch:
        return None
    t_lr, betas, eps, mom = batch_transfer(recipe, lr, batch, base_batch)
    out: dict[str, Any] = {"base_batch": base_batch, "batch": batch, "lr": [lr, t_lr]}
    if recipe.optimizer != "sgd":
        out.update(beta1=[recipe.beta1, betas[0]], beta2=[recipe.beta2, betas[1]])
        out["eps"] = [recipe.eps, eps]
    if recipe.optimizer in ("sgd", "muon"):
        out["momentum"] = [recipe.momentum, mom]
    return out


# ----------------------------------------------------------------------------- schedule


DEFAULT_MILESTONES_PRESET = "deepseek-v1"  # multistep without milestones: DeepSeek LLM's


def schedule_kind(options: ScheduleOptions, recipe: Recipe) -> str:
    """The plan's schedule: the one asked for, else WSD; schedule-free AdamW has no schedule to
    decay (Defazio et al. 2024), so it gets constant after warmup unless told otherwise."""
    if options.schedule is not None:
        return options.schedule
    return "constant" if recipe.optimizer == "adamw_schedulefree" else "wsd"


def _phases(kind: str, steps: int, wu: int, options: ScheduleOptions) -> tuple[int, int]:
    """(stable, decay) steps after warmup for a schedule kind."""
    if kind == "constant":
        return steps - wu, 0
    if kind == "cosine":
        return 0, steps - wu
    decay = int(round(options.decay_frac * steps))
    return max(0, steps - wu - decay), decay


def _kind_args(kind: str, options: ScheduleOptions) -> dict[str, Any]:
    """What a multistep or power schedule reads besides the common fields."""
    if kind == "multistep":
        from sizeup.laws.presets import get_preset

        ms = options.milestones
        if ms is None:
            ms = get_preset(DEFAULT_MILESTONES_PRESET).setup.lr_schedule["milestones"]
        return {"milestones": [list(m) for m in ms]}
    if kind == "power":
        if options.power_a is None or options.power_b is None:
            raise ConfigError(
                "power_a/power_b",
                (options.power_a, options.power_b),
                "both given with --schedule power (lr = min(peak, a n^b), n tokens seen; "
                "Shen et al. 2024 fit a and b on their runs)",
            )
        return {"power_a": options.power_a, "power_b": options.power_b}
    return {}


def build_schedule(sched: dict[str, Any], steps: int, batch_tokens: int, ramp: Any = None) -> Any:
    """The plan's schedule as a sizeup.schedules.Schedule (the lr multiplier per step), counting
    tokens through the batch ramp when there is one."""
    from sizeup.schedules import Schedule

    kind = sched["kind"]
    kw: dict[str, Any] = {}
    if kind == "multistep":
        kw["milestones"] = tuple(tuple(m) for m in sched["milestones"])
    if kind == "power":
        kw.update(power_a=sched["power_a"], power_b=sched["power_b"], peak_lr=sched["peak_lr"])
    if kind in ("multistep", "power"):
        kw.update(batch_tokens=batch_tokens, ramp=ramp)
    return Schedule(
        kind,
        steps,
        warmup=sched["warmup_steps"],
        decay_frac=sched["decay_frac"],
        cooldown=sched["cooldown"],
        min_ratio=sched.get("min_ratio", 0.0),
        **kw,
    )


def schedule_stage(
    options: ScheduleOptions, recipe: Recipe, steps: int, peak_lr: float
) -> Stage[dict[str, Any]]:
    """Warmup (given, or warmup_frac of the steps), then the schedule: WSD (stable, a
    decay_frac cooldown) by default, or constant, cosine, multistep or power."""
    wu = options.warmup
    if wu is None:
        wu = max(1, int(round(options.warmup_frac * steps)))
    if not 0 <= wu < steps:
        raise ConfigError("warmup", options.warmup, f"a number of steps in [0, {steps})")
    kind = schedule_kind(options, recipe)
    stable, decay = _phases(kind, steps, wu, options)
    sched = {
        "kind": kind,
        "warmup_steps": wu,
        "stable_steps": stable,
        "decay_steps": decay,
        "cooldown": options.cooldown,
        "decay_frac": options.decay_frac,
        "peak_lr": peak_lr,
        **_kind_args(kind, options),
    }
    ex = [
        note(
            "warmup_steps",
            wu,
            "given" if options.warmup is not None else "round(warmup_frac * steps)",
            warmup_frac=options.warmup_frac,
            steps=steps,
        ),
        note(
            "schedule",
            f"{kind} {wu}/{stable}/{decay}",
            "warmup / stable / decay steps; WSD and power decay = round(decay_frac * steps)",
            decay_frac=options.decay_frac,
            optimizer=recipe.optimizer,
        ),
    ]
    return Stage(sched, ex)


# ----------------------------------------------------------------------------- batch ramp


@dataclass
class Ramp:
    """The batch ramp-up: its stages and the steps the run takes through it."""

    ramp: Any  # sizeup.schedules.BatchRamp
    steps: int
    table: list[dict[str, float]]
    mode: str


def ramp_stage(
    options: ScheduleOptions, law: Any, batch: Batch, budget: Budget, shape: Shape
) -> Stage[Ramp | None]:
    """The batch doubling from ramp_start_batch up to the planned batch: evenly over
    ramp_tokens ("tokens"), or where the critical batch of the predicted loss reaches each
    doubling ("loss": the preset's loss law at n tokens, the critical-batch law at that loss).
    Batches are whole multiples of batch_multiple sequences."""
    if options.batch_ramp is None:
        return Stage(None)
    from sizeup.schedules import loss_ramp, token_ramp

    unit = shape.seq_len * options.batch_multiple
    start = max(unit, int(round(options.ramp_start_batch / unit)) * unit)
    D = budget.tokens
    if options.batch_ramp == "tokens":
        ramp = token_ramp(start, batch.tokens, options.ramp_tokens)
        formula = "double from the start batch at evenly spaced tokens up to ramp_tokens"
    else:
        ramp, formula = (
            loss_ramp(start, batch.tokens, _critical_batch_of_tokens(law, shape), D),
            ("double where B_crit(L(N, n)) first reaches the doubled batch (bisection in n)"),
        )
    steps = ramp.steps_for(D)
    table = ramp.table(D)
    ex = note(
        "batch_ramp",
        " -> ".join(f"{r['batch_tokens']:,.0f}" for r in table),
        formula,
        start=start,
        final=batch.tokens,
        ramp_tokens=options.ramp_tokens or "-",
        steps=steps,
    )
    return Stage(Ramp(ramp, steps, table, options.batch_ramp), [ex])


def _critical_batch_of_tokens(law: Any, shape: Shape) -> Any:
    """n -> critical batch at the loss the preset predicts after n tokens (its loss law at this
    model's N; its own critical-batch law, else Kaplan et al.'s)."""
    if law.loss_law is None or law.compute != "6ND":
        raise ConfigError(
            "batch_ramp",
            "loss",
            f"a preset with a loss law L(N, D) to predict the loss (preset {law.name!r} has "
            "none; try --preset chinchilla or --batch-ramp tokens)",
        )
    N = shape.params()

    def crit(n: float) -> float:
        L = float(law.loss_law.loss(N, n))
        own = law.value("critical_batch", law_point(shape, n, L))
        return own if own is not None else kaplan_critical_batch(L)[0]

    return crit


# ----------------------------------------------------------------------------- loss, cost


def loss_stage(law: Any, N: int, D: float) -> Stage[tuple[float, tuple[float, float]] | None]:
    """L = E + A/N^alpha + B/D^beta with its bootstrap interval (6ND laws with a loss law)."""
    if law.loss_law is None or law.compute != "6ND":
        return Stage(None)
    loss, lo, hi = law.loss_interval(N, D)
    ex = note("loss", loss, "L = E + A / N^alpha + B / D^beta", **law.loss_law.to_dict(), N=N, D=D)
    return Stage((loss, (lo, hi)), [ex])


@dataclass
class Cost:
    """Wall time, GPU-hours and cost on the given hardware."""

    time_s: float
    gpu_hours: float
    cost: float | None
    hardware: dict[str, Any]


def cost_stage(hw: Hardware, flops_exact: float) -> Stage[Cost | None]:
    """time = flops_exact / (n_gpus * peak * mfu); cost = GPU-hours x price."""
    if hw.gpu is None:
        return Stage(None)
    from sizeup.laws.flops import peak_flops, training_time_s

    peak = peak_flops(hw.gpu)
    t = training_time_s(flops_exact, hw.gpu, hw.mfu, hw.n_gpus)
    hours = t / 3600 * hw.n_gpus
    cost = hours * hw.gpu_price if hw.gpu_price is not None else None
    ex = [
        note(
            "time_s",
            t,
            "flops_exact / (n_gpus * peak * mfu)",
            flops_exact=flops_exact,
            n_gpus=hw.n_gpus,
            peak=peak,
            mfu=hw.mfu,
        )
    ]
    if cost is not None:
        ex.append(
            note("cost", cost, "gpu_hours * gpu_price", gpu_hours=hours, gpu_price=hw.gpu_price)
        )
    hardware = {
        "gpu": str(hw.gpu),
        "n_gpus": hw.n_gpus,
        "mfu": hw.mfu,
        "peak_flops": peak,
        "gpu_price": hw.gpu_price,
    }
    return Stage(Cost(t, hours, cost, hardware), ex)


# ----------------------------------------------------------------------------- checks

CRITICAL_BATCH_PRESET = "kaplan"  # B_crit(L) when the law has none of its own


@dataclass
class Verdict:
    """What the checks computed besides their warnings."""

    critical_batch: float | None
    optimum: dict[str, Any] | None


def checks_stage(
    checks: Checks,
    laws: Laws,
    law: Any,
    budget: Budget,
    size: Size,
    batch: Batch,
    loss: float | None,
) -> Stage[Verdict]:
    """Batch above the critical batch, tokens per parameter far from the law's optimum, and
    compute far outside the law's fitted range."""
    point = law_point(size.shape, budget.tokens, loss)
    crit = _critical_batch_check(checks.critical_batch, law, budget.flops, point, batch.tokens)
    opt = _optimum_check(law, budget, size, checks.optimum_tolerance)
    rng = _range_check(laws.fit_range or _fit_range(law), budget.flops, checks.extrapolation_limit)
    return Stage(
        Verdict(crit.value, opt.value),
        crit.explain + opt.explain,
        crit.warnings + opt.warnings + rng.warnings,
    )


def _critical_batch_check(
    given: float | None, law: Any, C: float, point: Any, B: int
) -> Stage[float | None]:
    b_crit, source = critical_batch(given, law, C, point.loss, point)
    if b_crit is None:
        return Stage(None)
    loss = point.loss if point.loss is not None else "-"
    ex = note("critical_batch", b_crit, source, C=C, loss=loss)
    warns = []
    if B > b_crit:
        warns.append(
            f"the batch {B:,} tokens exceeds the critical batch {b_crit:,.0f} ({source}): past "
            "it, more tokens per step buy little loss per token (wasted compute)."
        )
    return Stage(b_crit, [ex], warns)


def critical_batch(
    given: float | None, law: Any, C: float, loss: float | None, point: Any = None
) -> tuple[float | None, str]:
    """Critical batch in tokens: given > the fit's own law (fit.json "critical_batch", a number
    or {coef, exponent} in C) > the preset's own critical-batch law at ``point`` > Kaplan et
    al.'s B_crit(L) (the "kaplan" preset) at the predicted loss > unknown."""
    if given is not None:
        return float(given), "given"
    cb = (getattr(law, "extra", None) or {}).get("critical_batch")
    if isinstance(cb, (int, float)) and cb > 0:
        return float(cb), f"{law.name} fit"
    if isinstance(cb, dict) and "coef" in cb and "exponent" in cb:
        return float(cb["coef"]) * C ** float(cb["exponent"]), f"{law.name} fit B_crit(C)"
    own = (
        _law_value(law, "critical_batch", point)
        if point is not None and hasattr(law, "hp")
        else None
    )
    if own is not None:
        return own[0], own[1] + " at this run"
    if loss is not None:
        return kaplan_critical_batch(loss)
    return None, "unknown"


def kaplan_critical_batch(loss: float) -> tuple[float, str]:
    """Kaplan et al. 2020's B_crit(L) (sizeup.laws.presets, "kaplan") at ``loss``."""
    from sizeup.laws.presets import get_preset

    law = get_preset(CRITICAL_BATCH_PRESET).hp["critical_batch"]
    return (
        float(law(L=loss)),
        f"Kaplan et al. 2020 B_crit(L) = {law.formula()} at the predicted loss; rough outside "
        "WebText2",
    )


def _optimum_check(law: Any, budget: Budget, size: Size, tolerance: float) -> Stage[dict | None]:
    """The law's compute-optimal size and tokens at C, and a warning when the plan's tokens per
    parameter (D/M for MD laws) are more than ``tolerance`` x from its ratio."""
    C, conv = budget.flops, law.compute
    try:
        size_opt, d_opt = law.optimal(C)
    except ConfigError:
        return Stage(None)
    optimum = {
        "size": size_opt,
        "tokens": d_opt,
        "compute": C,
        "size_is": "N, total parameters" if conv == "6ND" else "M, FLOPs per token",
    }
    # An MD law's optimum is in FLOPs per token M: in parameters at this shape's N / M.
    params_opt = size_opt if conv == "6ND" else size_opt * size.params / budget.flops_per_token
    r_opt, r_now = d_opt / params_opt, budget.tokens / size.params
    optimum.update(params=params_opt, tokens_per_param=r_opt)
    formula = "D_opt(C) / N_opt(C)" if conv == "6ND" else "D_opt(C) / (M_opt(C) x N / M)"
    ex = note("optimum_tokens_per_param", r_opt, f"{formula} ({law.name})", C=C)
    warns = []
    if max(r_now / r_opt, r_opt / r_now) > tolerance:
        warns.append(
            f"{r_now:.3g} tokens per parameter is far (>{tolerance:g}x) from the law's "
            f"compute-optimal {r_opt:.3g} at C={C:.3g}; fine when inference cost matters, but "
            "not the loss-optimal use of this budget."
        )
    return Stage(optimum, [ex], warns)


def _range_check(fit_range: tuple[float, ...] | None, C: float, limit: float) -> Stage[None]:
    if fit_range is None:
        return Stage(None)
    lo, hi = fit_range
    if lo / limit <= C <= limit * hi:
        return Stage(None)
    return Stage(
        None,
        warnings=[
            f"C={C:.3g} is more than {limit:g}x outside the law's fitted range [{lo:.3g}, "
            f"{hi:.3g}] FLOPs: the plan extrapolates."
        ],
    )


def _fit_range(law: Any) -> tuple[float, float] | None:
    """The compute range a law was fitted on, when its record says (fit.json: C_min/C_max)."""
    extra = getattr(law, "extra", None) or {}
    for lo_k, hi_k in (("C_min", "C_max"), ("compute_min", "compute_max")):
        if extra.get(lo_k) and extra.get(hi_k):
            return float(extra[lo_k]), float(extra[hi_k])
    rng = extra.get("fit_range") or extra.get("compute_range")
    if isinstance(rng, (list, tuple)) and len(rng) == 2:
        return float(rng[0]), float(rng[1])
    return None
