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

from sizeup.config import ModelSpec, OptimSpec, ScheduleSpec, parse
from sizeup.errors import ConfigError
from sizeup.flops import peak_flops, spec_flops_per_token, training_time_s
from sizeup.optim.transfer import SQRT_RULE, transfer_batch, transfer_horizon
from sizeup.plan.records import (
    DEFAULT_VOCAB,
    PLAN_MODEL,
    BatchOptions,
    Checks,
    Hardware,
    Laws,
    Proxy,
    ShapeRule,
    Target,
    flops_per_token,
    params,
    rounded,
    shape_for,
)
from sizeup.registry import get_optimizer
from sizeup.schedules import DEEPSEEK_LLM_MILESTONES, loss_ramp, token_ramp

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


def law_point(model: ModelSpec, tokens: float, loss: float | None = None) -> Any:
    """The run as the laws read it (sizeup.laws.presets.LawPoint): total and non-embedding
    parameters, DeepSeek's M, tokens, width and, when known, a loss."""
    from sizeup.laws.presets import LawPoint

    return LawPoint(
        params=params(model),
        params_non_embedding=params(model, embeddings=False),
        flops_per_token_md=flops_per_token(model, "MD"),
        tokens=tokens,
        width=model.width,
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

    model: ModelSpec
    params: int
    params_non_embedding: int
    fixed: bool  # an explicit shape or params: compute must then agree with it
    target: float | None = None  # the size the family rule aimed at (None: an explicit shape)
    target_is: str = ""  # what that size is (params, N_opt(C), M_opt(C), ...)


def model_template(given: dict[str, Any], law: Any) -> ModelSpec:
    """The architecture the plan is for: the ModelSpec fields given over the planner's defaults
    (heads of 128, a 2048 context, the preset's vocabulary else 32k). Width and depth are the
    explicit shape when both are given, placeholders otherwise (the family rule picks them). A
    head count given sets the head size of the explicit shape (width / n_head), which the
    base then keeps."""
    fields = {**PLAN_MODEL, "vocab_size": getattr(law, "vocab_size", None) or DEFAULT_VOCAB}
    fields.update(given)
    n_head = fields.pop("n_head", None)
    if n_head is not None:
        # read as the record reads it (an integer within its bounds) before dividing by it
        n_head = parse(next(i for i in ModelSpec.field_info() if i.name == "n_head"), n_head)
        # heads at the target's width: its head size (the base keeps it, as train builds it)
        if "width" not in given:
            raise ConfigError("n_head", n_head, "given with an explicit shape (width and depth)")
        if given["width"] % n_head:
            raise ConfigError("width", given["width"], f"a multiple of n_head={n_head}")
        fields["head_dim"] = given["width"] // n_head
    # placeholders, valid for the heads given (the family rule replaces them)
    fields.setdefault("width", fields["head_dim"] * (fields.get("n_kv_head") or 1))
    fields.setdefault("depth", 1)
    return ModelSpec(**fields)


def size_stage(target: Target, given: dict[str, Any], rule: ShapeRule, law: Any) -> Stage[Size]:
    """An explicit shape (width and depth given), or the family shape closest to the target
    size (params, C / D, sqrt(C / 6r), or the law's compute-optimal size at C). The vocabulary
    is the user's, else the preset's, else the default; d_ff is rounded up to a multiple of
    ffn_multiple."""
    if ("width" in given) != ("depth" in given):
        raise ConfigError(
            "width/depth",
            (given.get("width"), given.get("depth")),
            "both given for an explicit shape (or neither)",
        )
    template = model_template(given, law)
    vocab = _vocab_note(given.get("vocab_size"), template.vocab_size, law)
    if "width" in given:
        model = rounded(template, rule)
        st = _explicit_size(model, target)
        st.explain[:0] = [vocab, _shape_note(model, template, rule)]
        return st
    size, what, convention, ex = _size_target(target, law)
    try:
        model = shape_for(size, template, rule, convention)
    except ConfigError as e:
        if e.field != "size":
            raise
        # name what the user gave, not the size the planner derived from it
        field = "params" if target.params is not None else "compute"
        value = target.params if target.params is not None else target.compute
        raise ConfigError(
            field, value, f"a target whose {what} ({e.value}) is {e.allowed}"
        ) from None
    N = params(model)
    got = N if convention == "6ND" else flops_per_token(model, "MD")
    ex += [
        vocab,
        _shape_note(model, template, rule),
        note(
            "params",
            N,
            f"family shape (width ~ {rule.aspect_ratio:g} depth, head_dim "
            f"{template.head_dim}, heads a multiple of {rule.head_multiple} or a power of two "
            f"below it) closest to the target {what}: {got / size - 1:+.1%} off it",
            target=size,
            depth=model.depth,
            width=model.width,
            n_head=model.heads,
        ),
    ]
    return Stage(
        Size(model, N, params(model, embeddings=False), target.params is not None, size, what),
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


def _shape_note(model: ModelSpec, template: ModelSpec, rule: ShapeRule) -> dict[str, Any]:
    """How d_ff was rounded."""
    if template.d_ff is not None:
        return note("d_ff", model.ffn_hidden, "given")
    return note(
        "d_ff",
        model.ffn_hidden,
        f"ceil(mlp_ratio x width / {rule.ffn_multiple}) x {rule.ffn_multiple}",
        mlp_ratio=template.mlp_ratio,
        width=model.width,
    )


def _explicit_size(model: ModelSpec, target: Target) -> Stage[Size]:
    N = params(model)
    if target.params is not None and abs(math.log(N / target.params)) > math.log(1.1):
        raise ConfigError(
            "params",
            target.params,
            f"within 10% of the explicit shape's {N:,} parameters (or leave params out)",
        )
    shown = {k: v for k, v in model.to_dict().items() if v is not None and k != "name"}
    ex = note("params", N, "sum of the GPT's tensors (sizeup.flops.gpt_params)", **shown)
    return Stage(Size(model, N, params(model, embeddings=False), True), [ex])


def _size_target(target: Target, law: Any) -> tuple[float, str, str, list[dict[str, Any]]]:
    """(size, what it is, the convention it is measured in, explain) for a family shape."""
    conv, C = law.compute, target.compute
    if target.params is not None:
        return float(target.params), "params", "6ND", []
    if C is None:
        raise ConfigError(
            "target", None, "one of compute, params, or an explicit shape (width and depth)"
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
    model, N, conv = size.model, size.params, law.compute
    per_token = flops_per_token(model, conv)
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
    exact_per_token = spec_flops_per_token(model)
    exact = exact_per_token * D
    ex.append(
        note(
            "flops_exact",
            exact,
            "every matmul of the GPT, causal attention, x3 for backward",
            per_token=exact_per_token,
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
    options: BatchOptions, laws: Laws, law: Any, budget: Budget, model: ModelSpec
) -> Stage[Batch]:
    """Given > user B(C) > the law's B(C) > user B(D) > the fallback B(C), rounded to whole
    sequences (a multiple of batch_multiple), and the steps ceil(D / B)."""
    raw, source, ex, warns = _raw_batch(options, laws, law, budget, model)
    m, seq = options.batch_multiple, model.seq_len
    B, seqs = round_batch(raw, seq, m)
    rounding = f"{raw / seq:.1f} sequences of {seq} rounded to {seqs}, a multiple of {m}"
    steps = int(math.ceil(budget.tokens / B))
    if budget.tokens < B:
        raise ConfigError("tokens", budget.tokens, f"at least one batch ({B:,} tokens)")
    ex += [
        note(
            "batch_tokens",
            B,
            "round(B / seq_len / m) * m * seq_len",
            B=raw,
            seq_len=seq,
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
    options: BatchOptions, laws: Laws, law: Any, budget: Budget, model: ModelSpec
) -> tuple[float, str, list[dict[str, Any]], list[str]]:
    C, D = budget.flops, budget.tokens
    if options.batch_tokens is not None:
        B = float(options.batch_tokens)
        return B, "given", [note("batch_raw", B, "given")], []
    if laws.batch_law is not None:
        c, e = laws.batch_law
        return (
            c * C**e,
            "user B(C)",
            [note("batch_raw", c * C**e, "B = c C^e (user)", c=c, e=e, C=C)],
            [],
        )
    own = _law_value(law, "batch", law_point(model, D))
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
    C_md = flops_per_token(model, "MD") * D
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


@dataclass(frozen=True)
class ProxyView:
    """The proxy as the stages read it: its width (the parametrization's base), batch in
    tokens, tokens, tuned lr (None: the laws give the lr) and what else it records."""

    width: int
    depth: int | None
    lr: float | None
    batch_tokens: int | None
    tokens: float | None
    record: Proxy
    batch_exponent: float | None = None  # measured by a batch study (None: the 1/2 rule)


def ratio_stage(
    proxy: ProxyView | None, model: ModelSpec, batch: Batch, budget: Budget, limit: float
) -> Stage[Ratios]:
    """n = width / base_width, b = B / B_base, d = D / D_base; a warning when the target is
    more than 10 x ``limit`` times wider than the widest model tuned."""
    if proxy is None:
        return Stage(Ratios())
    if model.width < proxy.width:
        raise ConfigError("base_width", proxy.width, f"at most the target width={model.width}")
    B, D = batch.tokens, budget.tokens
    r = Ratios(model.width / proxy.width, B / (proxy.batch_tokens or B), D / (proxy.tokens or D))
    ex = [
        note(
            "width_ratio",
            r.width,
            "n = width / base_width",
            width=model.width,
            base_width=proxy.width,
        ),
        note("batch_ratio", r.batch, "b = B / B_base", B=B, B_base=proxy.batch_tokens or B),
        note("data_ratio", r.data, "d = D / D_base", D=D, D_base=proxy.tokens or D),
    ]
    tuned = model.width / (proxy.record.tuned_width or proxy.width)
    warns = []
    if tuned > limit * 10:
        warns.append(
            f"width ratio {tuned:.3g} over the widest tuned model: transfer from a proxy this "
            "small is unverified; check with a coordinate check at an intermediate width."
        )
    return Stage(r, ex, warns + _depth_jump(proxy, model))


def _depth_jump(proxy: ProxyView, model: ModelSpec) -> list[str]:
    """A warning when the target's depth is not the depth the proxy was tuned at (known from a
    study) and the recipe has no depth scaling (no base_depth): the lr then transfers across
    width only, and the study says nothing of another depth (the optimal lr moves with depth
    without depth-muP's 1/L^alpha branch multipliers, Yang et al. 2023, Bordelon et al.
    2023). Flagged, not refused: a plan at another depth is a choice the user may make."""
    tuned = proxy.record.depth
    if tuned is None or proxy.depth is not None or model.depth == tuned:
        return []
    return [
        f"the target has {model.depth} layers and the proxy was tuned at depth {tuned}, "
        f"without depth scaling (no --base-depth): the lr transfers across width only, so "
        f"this {model.depth / tuned:.3g}x depth jump is unsupported by the proxy; add "
        f"--base-depth {tuned} (depth scaling of the residual branches) or tune at the "
        "target's depth"
    ]


# ----------------------------------------------------------------------------- peak lr


@dataclass
class LearningRate:
    """The peak lr, where it came from, and what the batch transfer moved.

    ``optimizer`` is the run's OptimSpec at the target: lr = the peak, and with a transfer the
    proxy's betas, eps, momentum and Muon lr moved by the square-root rule (clipped at 0 past
    its range), so `sizeup train` runs exactly what the plan's table shows."""

    peak: float
    source: str
    transferred: bool
    optimizer: OptimSpec
    moved: dict[str, Any] | None = None  # what the batch transfer moved: name -> [before, after]


def lr_stage(
    laws: Laws,
    law: Any,
    budget: Budget,
    model: ModelSpec,
    batch: Batch,
    given: tuple[ProxyView | None, float | None],
    optimizer: OptimSpec,
    ratios: Ratios,
) -> Stage[LearningRate]:
    """A user eta(N, D) law, else transfer from the proxy, else the lr given for the target,
    else the law's eta(C), else the fallback eta(C). ``given``: the proxy (None without one)
    and the lr given (the proxy's tuned lr, or without a proxy the target's own); the
    optimizer's own lr is a placeholder."""
    proxy, given_lr = given
    C = budget.flops
    law_lr = _law_lr(laws, law, C, law_point(model, budget.tokens))
    if laws.lr_nd_law is not None:
        c, a, b = laws.lr_nd_law
        N, D = params(model), budget.tokens
        lr = c * N**a * D**b
        ex = note("peak_lr", lr, "eta = c N^a D^b (user)", c=c, a=a, b=b, N=N, D=D)
        return Stage(_at(optimizer, lr, "user eta(N, D)"), [ex])
    if proxy is not None and proxy.lr is not None:
        return _transferred_lr(proxy, optimizer, batch, ratios, law_lr)
    if proxy is None and given_lr is not None:
        ex = note("peak_lr", given_lr, "given (the target's own lr: no proxy)")
        return Stage(_at(optimizer, given_lr, "given"), [ex])
    if law_lr is not None:
        lr, source, formula = law_lr
        return Stage(_at(optimizer, lr, source), [note("peak_lr", lr, formula, C=C)])
    return _fallback_lr(law, model, budget, optimizer)


def _at(optimizer: OptimSpec, lr: float, source: str) -> LearningRate:
    """The target's own lr (no transfer): the optimizer at it."""
    return LearningRate(lr, source, False, optimizer.replace(lr=lr, base_tokens=None))


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
    proxy: ProxyView,
    optimizer: OptimSpec,
    batch: Batch,
    ratios: Ratios,
    law_lr: tuple[float, str, str] | None,
) -> Stage[LearningRate]:
    """eta = eta_base b^1/2 d^alpha: the square-root batch rule (sizeup.optim.transfer_batch)
    and the horizon rule (sizeup.optim.transfer_horizon, data_exponent) on the proxy's global
    eta (the per-layer multipliers come from the parametrization)."""
    assert proxy.lr is not None
    alpha = optimizer.data_exponent
    # the horizon rule's one formula (train applies the same to a run's lr): (D / D_proxy)^alpha
    d_factor = transfer_horizon(1.0, ratios.data, 1.0, alpha)
    moved_opt, moved = optimizer.replace(lr=proxy.lr), None
    if proxy.batch_tokens is not None:
        moved_opt = batch_transfer(moved_opt, batch.tokens, proxy.batch_tokens)
        moved = moved_by_batch(optimizer.replace(lr=proxy.lr), moved_opt, batch.tokens, proxy)
    # a measured batch exponent e replaces the square-root rule's 1/2: lr x b^(e - 1/2) more
    b_factor = 1.0
    if proxy.batch_exponent is not None and proxy.batch_tokens is not None:
        b_factor = ratios.batch ** (proxy.batch_exponent - SQRT_RULE)
    lr = moved_opt.lr * d_factor * b_factor
    muon = moved_opt.muon_lr * d_factor * b_factor if moved_opt.muon_lr is not None else None
    target = moved_opt.replace(lr=lr, muon_lr=muon, base_tokens=None)
    e = SQRT_RULE if proxy.batch_exponent is None else proxy.batch_exponent
    ex = note(
        "peak_lr",
        lr,
        f"eta = eta_base * b^{'1/2' if proxy.batch_exponent is None else 'e (measured)'} * "
        "d^alpha_data (global eta; per-layer multipliers in the table)",
        eta_base=proxy.lr,
        b=ratios.batch,
        e=e,
        d=ratios.data,
        alpha_data=alpha,
        proxy=proxy.record.source,
    )
    warns = _clipped(optimizer, batch.tokens, proxy.batch_tokens)
    warns += _batch_extrapolation(optimizer, lr, batch.tokens, proxy, bool(warns))
    if law_lr is not None and max(lr / law_lr[0], law_lr[0] / lr) > 2:
        warns.append(
            f"the transferred peak lr {lr:.3g} differs from the law's {law_lr[0]:.3g} by more "
            "than 2x; check the proxy's tuning or the law's range."
        )
    return Stage(LearningRate(lr, "transfer from the proxy", True, target, moved), [ex], warns)


def _fallback_lr(
    law: Any, model: ModelSpec, budget: Budget, optimizer: OptimSpec
) -> Stage[LearningRate]:
    fb = _fallback_law()
    C_md = flops_per_token(model, "MD") * budget.tokens
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
    source = f"{FALLBACK_PRESET} eta(C) (fallback)"
    return Stage(_at(optimizer, lr, source), [ex], [warn])


def batch_transfer(optimizer: OptimSpec, batch: int, base_batch: int) -> OptimSpec:
    """``optimizer`` moved from base_batch to batch by the square-root rule
    (sizeup.optim.transfer_batch), moving what its registry entry says (lr, betas, eps,
    momentum; Muon's lr with the lr), betas and momentum clipped at 0 past the rule's range."""
    moves = get_optimizer(optimizer.name).batch_moves or ()
    o = optimizer
    lr, betas, eps = transfer_batch(o.lr, o.betas, o.eps, batch, base_batch, clip=True)
    changes: dict[str, Any] = {"lr": lr}
    if "betas" in moves:
        changes.update(beta1=betas[0], beta2=betas[1])
    if "eps" in moves:
        changes["eps"] = eps
    if "momentum" in moves and o.momentum > 0:
        changes["momentum"] = transfer_batch(1.0, (o.momentum,), 1.0, batch, base_batch, clip=True)[
            1
        ][0]
    if o.muon_lr is not None and get_optimizer(o.name).orthogonal:
        changes["muon_lr"] = o.muon_lr * lr / o.lr
    return o.replace(**changes)


def _clipped(optimizer: OptimSpec, batch: int, base_batch: int | None) -> list[str]:
    """A warning when the square-root rule pushes a beta or the momentum the optimizer reads
    below 0 (they are clipped there)."""
    if base_batch is None:
        return []
    kappa = batch / base_batch
    reads = get_optimizer(optimizer.name).reads
    shown = [
        n
        for n in ("beta1", "beta2", "momentum")
        if n in reads and 1 - kappa * (1 - getattr(optimizer, n)) < 0
    ]
    if not shown:
        return []
    return [
        f"the batch ratio b={kappa:.3g} pushes 1 - b(1 - beta) below 0 for "
        f"{', '.join(f'{n}={getattr(optimizer, n)}' for n in shown)}; those are clipped to 0 "
        "(the square-root rule only holds for moderate batch ratios; tune at a closer proxy "
        "batch)."
    ]


# Without a beta or momentum to clip, the square-root rule's range is taken as Adam's default
# beta1 0.9 gives it: 1 - b (1 - 0.9) >= 0, a batch ratio up to 10.
BATCH_RATIO_LIMIT = 10.0


def _batch_extrapolation(
    optimizer: OptimSpec, lr: float, batch: int, proxy: ProxyView, clipped: bool
) -> list[str]:
    """A warning naming the peak lr when the square-root rule moved it from a batch far from
    the target's: where the rule clipped a beta or the momentum (it is past its own range,
    ``_clipped``), or, for an optimizer with none, where b > BATCH_RATIO_LIMIT. Flagged, not
    refused: the rule's lr is still a guess a user may want, but not one the proxy supports."""
    if proxy.batch_tokens is None or proxy.lr is None:
        return []
    b = batch / proxy.batch_tokens
    if not clipped and b <= BATCH_RATIO_LIMIT:
        return []
    why = (
        "past the rule's range (it clipped the settings above)"
        if clipped
        else (f"past the ratio {BATCH_RATIO_LIMIT:g} the rule is used for")
    )
    return [
        f"the peak lr {lr:.3g} is the proxy's {proxy.lr:.3g} moved x{math.sqrt(b):.3g} by the "
        f"square-root rule over the batch ratio b = {b:.4g} ({proxy.batch_tokens:,} -> "
        f"{batch:,} tokens), {why}: an extrapolation, not a tuned lr; tune the proxy at a "
        "batch closer to the target's"
    ]


def moved_by_batch(
    before: OptimSpec, after: OptimSpec, batch: int, proxy: ProxyView
) -> dict[str, Any] | None:
    """What the batch transfer moved from the proxy's batch to the target's: the batches, and
    [given, transferred] for the lr and each setting the optimizer reads (None when the batches
    are equal: nothing moves)."""
    if batch == proxy.batch_tokens:
        return None
    out: dict[str, Any] = {"base_batch": proxy.batch_tokens, "batch": batch}
    reads = get_optimizer(before.name).reads
    for name in ("lr", "beta1", "beta2", "eps", "momentum"):
        if name == "lr" or name in reads:
            out[name] = [getattr(before, name), getattr(after, name)]
    return out


# ----------------------------------------------------------------------------- schedule


def schedule_name(given: dict[str, Any], optimizer: str) -> str:
    """The plan's schedule: the one asked for, else WSD; an optimizer with nothing to decay
    (schedule-free AdamW, Defazio et al. 2024: its registry entry says so) gets constant after
    warmup unless told otherwise."""
    if "name" in given:
        return given["name"]
    return "constant" if get_optimizer(optimizer).constant_schedule else "wsd"


def schedule_stage(
    given: dict[str, Any], options: BatchOptions, optimizer: str, steps: int
) -> Stage[ScheduleSpec]:
    """The run's ScheduleSpec: warmup (given, or warmup_frac of the steps), then the schedule:
    WSD (stable, a decay_frac cooldown) by default, or constant, cosine, multistep (DeepSeek
    LLM's milestones unless given) or power (its a and b given)."""
    wu = given.get("warmup")
    if wu is None:
        wu = max(1, int(round(options.warmup_frac * steps)))
    if not 0 <= wu < steps:
        raise ConfigError("warmup", given.get("warmup"), f"a number of steps in [0, {steps})")
    name = schedule_name(given, optimizer)
    fields = {**given, "name": name, "steps": steps, "warmup": wu}
    if name == "multistep" and fields.get("milestones") is None:
        fields["milestones"] = DEEPSEEK_LLM_MILESTONES
    spec = ScheduleSpec(**fields)
    ph = spec.phases()
    ex = [
        note(
            "warmup_steps",
            wu,
            "given" if "warmup" in given else "round(warmup_frac * steps)",
            warmup_frac=options.warmup_frac,
            steps=steps,
        ),
        note(
            "schedule",
            f"{name} {ph.warmup}/{ph.stable}/{ph.decay}",
            "warmup / stable / decay steps (sizeup.schedules.phases); WSD and power decay = "
            "round(decay_frac * steps)",
            decay_frac=spec.decay_frac,
            optimizer=optimizer,
        ),
    ]
    return Stage(spec, ex)


def schedule_dict(spec: ScheduleSpec, peak_lr: float) -> dict[str, Any]:
    """The schedule as plan.json and the summary show it: kind, its phases and what it reads."""
    ph = spec.phases()
    out: dict[str, Any] = {
        "kind": spec.name,
        "warmup_steps": ph.warmup,
        "stable_steps": ph.stable,
        "decay_steps": ph.decay,
        "cooldown": spec.cooldown,
        "decay_frac": spec.decay_frac,
        "peak_lr": peak_lr,
    }
    if spec.name == "multistep":
        out["milestones"] = [list(m) for m in spec.milestones or DEEPSEEK_LLM_MILESTONES]
    if spec.name == "power":
        out.update(power_a=spec.power_a, power_b=spec.power_b)
    return out


# ----------------------------------------------------------------------------- batch ramp


@dataclass
class Ramp:
    """The batch ramp-up: its stages and the steps the run takes through it."""

    ramp: Any  # sizeup.schedules.BatchRamp
    steps: int
    table: list[dict[str, float]]
    mode: str


def ramp_stage(
    options: BatchOptions, law: Any, batch: Batch, budget: Budget, model: ModelSpec
) -> Stage[Ramp | None]:
    """The batch doubling from ramp_start_batch up to the planned batch: evenly over
    ramp_tokens ("tokens"), or where the critical batch of the predicted loss reaches each
    doubling ("loss": the preset's loss law at n tokens, the critical-batch law at that loss).
    Batches are whole multiples of batch_multiple sequences."""
    if options.ramp is None:
        return Stage(None)
    unit = model.seq_len * options.batch_multiple
    start = max(unit, int(round(options.ramp_start_batch / unit)) * unit)
    D = budget.tokens
    if options.ramp == "tokens":
        ramp = token_ramp(start, batch.tokens, options.ramp_tokens)
        formula = "double from the start batch at evenly spaced tokens up to ramp_tokens"
    else:
        ramp, formula = (
            loss_ramp(start, batch.tokens, _critical_batch_of_tokens(law, model), D),
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
    return Stage(Ramp(ramp, steps, table, options.ramp), [ex])


def _critical_batch_of_tokens(law: Any, model: ModelSpec) -> Any:
    """n -> critical batch at the loss the preset predicts after n tokens (its loss law at this
    model's N; its own critical-batch law, else Kaplan et al.'s)."""
    if law.loss_law is None or law.compute != "6ND":
        raise ConfigError(
            "ramp",
            "loss",
            f"a preset with a loss law L(N, D) to predict the loss (preset {law.name!r} has "
            "none; try --preset chinchilla or --ramp tokens)",
        )
    N = params(model)

    def crit(n: float) -> float:
        L = float(law.loss_law.loss(N, n))
        own = law.value("critical_batch", law_point(model, n, L))
        return own if own is not None else kaplan_critical_batch(L)[0]

    return crit


# ----------------------------------------------------------------------------- loss, cost


@dataclass
class Loss:
    """The predicted loss: the law's value, the law's own bootstrap interval (where the law
    lies) and, from a fit that measured its noise, the prediction interval of a run's measured
    loss (where the run will land: sizeup.laws.intervals)."""

    value: float
    law_interval: tuple[float, float]
    prediction_interval: tuple[float, float] | None = None


def loss_stage(law: Any, N: int, D: float) -> Stage[Loss | None]:
    """L = E + A/N^alpha + B/D^beta with its bootstrap interval and, where the fit measured its
    noise, its prediction interval (6ND laws with a loss law)."""
    if law.loss_law is None or law.compute != "6ND":
        return Stage(None)
    loss, lo, hi = law.loss_interval(N, D)
    pred = law.prediction_interval(N, D)
    ex = [
        note("loss", loss, "L = E + A / N^alpha + B / D^beta", **law.loss_law.to_dict(), N=N, D=D)
    ]
    if pred is not None:
        noise = law.extra["noise"]
        ex.append(
            note(
                "loss_prediction_interval",
                list(pred),
                "90% of L_b(N, D) exp(sigma T) over the bootstrap laws L_b, T ~ Student t(dof) "
                "(the fit's measured log-loss noise; sizeup.laws.intervals)",
                sigma=noise["sigma_log_loss"],
                dof=noise["dof"],
            )
        )
    return Stage(Loss(loss, (lo, hi), pred), ex)


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
    extrapolation: list[dict[str, Any]] = field(default_factory=list)


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
    point = law_point(size.model, budget.tokens, loss)
    crit = _critical_batch_check(checks.critical_batch, law, budget.flops, point, batch.tokens)
    opt = _optimum_check(law, budget, size, checks.optimum_tolerance)
    given = (laws.fit_range, "the given --fit-range") if laws.fit_range else None
    rng = _range_check(law, given or _fit_range(law), budget.flops, checks.extrapolation_limit)
    beyond = extrapolation(law, given or _fit_range(law), budget, size)
    return Stage(
        Verdict(crit.value, opt.value, beyond),
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
    # An MD law's optimum is in FLOPs per token M: in parameters at this model's N / M.
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


def _range_check(
    law: Any, fit_range: tuple[tuple[float, ...], str] | None, C: float, limit: float
) -> Stage[None]:
    """One warning, with the factor, when C is more than ``limit`` x outside the compute the
    law was fitted on (``fit_range``: the range and where it comes from). Flagged, not
    refused: a plan past the data is what a scaling law is for, but how far past is the
    reader's to judge."""
    if fit_range is None:
        return Stage(None)
    (lo, hi), source = fit_range
    if lo / limit <= C <= limit * hi:
        return Stage(None)
    side, factor = ("above", C / hi) if C > hi else ("below", lo / C)
    return Stage(
        None,
        warnings=[
            f"C={C:.3g} FLOPs is {factor:.2g}x {side} the fitted range of {law.name} "
            f"({lo:.3g} to {hi:.3g} FLOPs; {source}): the plan extrapolates its laws by that factor."
        ],
    )


def extrapolation(
    law: Any, fit_range: tuple[tuple[float, ...], str] | None, budget: Budget, size: Size
) -> list[dict[str, Any]]:
    """Each of the plan's compute, parameters and tokens against the range the law was fitted
    on, where known (compute: ``fit_range``, as _range_check reads it; N and D: the law's
    ``fit_ranges``, a fit.json's points): the value, the range and its source, and ``factor``,
    how far outside it the value lies (1 inside; C / C_max above, C_min / C below)."""
    ranges: list[tuple[str, float, tuple[float, ...], str]] = []
    if fit_range is not None:
        ranges.append(("compute", budget.flops, fit_range[0], fit_range[1]))
    own = getattr(law, "fit_ranges", None) or {}
    for key, name, value in (("N", "params", size.params), ("D", "tokens", budget.tokens)):
        if key in own:
            ranges.append((name, float(value), own[key], "the fitted points"))
    out = []
    for name, value, (lo, hi), source in ranges:
        side, factor = "inside", 1.0
        if value > hi:
            side, factor = "above", value / hi
        elif value < lo:
            side, factor = "below", lo / value
        out.append(
            {
                "quantity": name,
                "value": value,
                "fitted": [lo, hi],
                "source": source,
                "side": side,
                "factor": factor,
            }
        )
    return out


def extrapolation_text(rows: list[dict[str, Any]]) -> str:
    """The extrapolation rows in words: 'compute 1e+22 is 1e+03x above the fitted 1e+18 to
    1e+19 (source); params ... inside ...'."""
    parts = []
    for r in rows:
        lo, hi = r["fitted"]
        where = (
            f"inside the fitted {lo:.3g} to {hi:.3g}"
            if r["side"] == "inside"
            else f"{r['factor']:.3g}x {r['side']} the fitted {lo:.3g} to {hi:.3g}"
        )
        parts.append(f"{r['quantity']} {r['value']:.3g} {where} ({r['source']})")
    return "; ".join(parts)


def _fit_range(law: Any) -> tuple[tuple[float, float], str] | None:
    """The compute range a law was fitted on and its source: the preset's (its paper), else
    its record's (fit.json: C_min/C_max, or fit_range)."""
    if getattr(law, "fit_range", None) is not None:
        return tuple(law.fit_range), law.fit_range_source or "its record"
    extra = getattr(law, "extra", None) or {}
    for lo_k, hi_k in (("C_min", "C_max"), ("compute_min", "compute_max")):
        if extra.get(lo_k) and extra.get(hi_k):
            return (float(extra[lo_k]), float(extra[hi_k])), "its fit.json"
    rng = extra.get("fit_range") or extra.get("compute_range")
    if isinstance(rng, (list, tuple)) and len(rng) == 2:
        return (float(rng[0]), float(rng[1])), "its fit.json"
    return None
