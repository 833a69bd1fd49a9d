"""Apply a scaling rule to any torch model: infer roles from a base model, rescale the model's
own init in place (sizeup.parametrization.init), install forward multipliers where a rule needs
them, and hand out optimizers whose param groups carry the per-tensor learning-rate and
weight-decay multipliers. parametrize runs in stages, one function each: options and hints, the
base, the tensors and their roles, the rules per tensor, module multipliers, init.

Metadata lives off the tensors, in a dict keyed by canonical parameter name (wrapper prefixes
such as ``module.`` from DDP and ``_orig_mod.`` from torch.compile stripped), stored on the model
as ``model._sizeup``; so it survives deepcopy, state_dict round trips and wrapping.
"""

from __future__ import annotations

import copy
import dataclasses
import fnmatch
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sizeup.choices import ATTN_SCALES, OPT_FAMILIES, ROLES
from sizeup.config.optimizer import OptimSpec
from sizeup.config.parametrization import ParamSpec
from sizeup.errors import ConfigError, ShapeError, check_choice
from sizeup.models.hf import hints as model_hints
from sizeup.optim import BuildContext, build_optimizer, optimizer_spec
from sizeup.parametrization import rules
from sizeup.parametrization.attention import AttnScale, apply_scales, plan_scales
from sizeup.parametrization.export import export as export_model
from sizeup.parametrization.hooks import ATTR, install, remove_hooks
from sizeup.parametrization.init import (
    KEEP,
    InitStep,
    SigmaResolver,
    apply_step,
    check_hint,
    plan_step,
)
from sizeup.parametrization.layout import fans as _fans
from sizeup.parametrization.layout import is_conv1d, is_expert_tensor
from sizeup.parametrization.rules import Scaling
from sizeup.parametrization.shapes import BaseRef, load_base
from sizeup.registry import get_optimizer, optimizer_family
from sizeup.schedules import make_schedule
from sizeup.wrapping import canonical_name, unwrap

_DIGITS = re.compile(r"\.\d+\.")


# --- the result object ------------------------------------------------------------------------
class Parametrization:
    """A model's per-tensor scalings under one rule; hands out optimizers and tables."""

    def __init__(
        self,
        model: nn.Module,
        scalings: dict[str, Scaling],
        rule: str,
        module_multipliers: dict[str, tuple[float, float]],
        options: dict[str, Any],
    ):
        self.model = model
        self.scalings = scalings
        self.rule = rule
        self.module_multipliers = module_multipliers  # module name -> (weight mult, branch mult)
        self.options = options
        self.lr_table: dict[str, dict[str, float]] = {}  # optimizer family -> name -> lr_mult
        self.attention: dict[str, AttnScale] = {}  # attention module -> its logit scale
        self.tied: dict[str, str] = {}  # tied readout module -> the parameter it shares
        self.hints: dict[str, Any] = {}  # the model's sizeup_hints as parametrize read them
        self.spec: ParamSpec = ParamSpec()  # the options record parametrize was given

    def __deepcopy__(self, memo: dict) -> Parametrization:
        # The model owns this object (model._sizeup); copying the model copies the records but
        # must point at the copied model, which deepcopy's memo provides.

        new = Parametrization.__new__(Parametrization)
        memo[id(self)] = new
        new.model = copy.deepcopy(self.model, memo)
        new.scalings = dict(self.scalings)
        new.rule = self.rule
        new.module_multipliers = dict(self.module_multipliers)
        new.options = copy.deepcopy(self.options, memo)
        new.lr_table = {k: dict(v) for k, v in self.lr_table.items()}
        new.attention = dict(self.attention)
        new.tied = dict(self.tied)
        new.hints = copy.deepcopy(self.hints, memo)
        new.spec = self.spec
        return new

    def install_hooks(self) -> None:
        """(Re)install the forward multipliers; only where one differs from 1, so a rule whose
        multipliers are all 1 adds nothing to the forward pass."""
        mods = {canonical_name(n): m for n, m in self.model.named_modules()}
        for mod in mods.values():
            remove_hooks(mod)
        for mname, (w, b) in self.module_multipliers.items():
            install(mods[mname], w, b)

    def abc_shift(self, name: str, theta: float) -> None:
        """Move a factor theta into the multiplier: multiplier x theta, weight (and its init) / theta,
        Adam lr / theta, SGD lr / theta^2, and (with scale_eps) Adam eps x theta, since the weight's
        gradient grows by theta. By the abc-symmetry training is unchanged; with a fixed eps
        (scale_eps=False) only as eps -> 0."""
        name = canonical_name(name)
        if name not in self.scalings or not name.endswith(".weight"):
            raise ConfigError(
                "name",
                name,
                "the name of a weight tensor of this model: "
                + ", ".join(n for n in self.scalings if n.endswith(".weight")),
            )
        if not theta > 0:
            raise ConfigError("theta", theta, "a positive number")
        mname = name[: -len(".weight")]
        mod = dict((canonical_name(n), m) for n, m in self.model.named_modules())[mname]
        if not isinstance(mod, (nn.Linear, nn.Embedding, nn.modules.conv._ConvNd)):
            raise ConfigError("name", name, "a weight of a Linear, Embedding or Conv module")
        s = self.scalings[name]
        std = None if s.init_std is None else s.init_std / theta
        self.scalings[name] = dataclasses.replace(
            s,
            multiplier=s.multiplier * theta,
            init_std=std,
            lr_mult=s.lr_mult / (theta**2 if self.family == "sgd" else theta),
            eps_mult=s.eps_mult * theta if self.options.get("scale_eps", True) else s.eps_mult,
        )
        for fam, col in self.lr_table.items():
            col[name] = col[name] / (theta**2 if fam == "sgd" else theta)
        w, b = self.module_multipliers.get(mname, (1.0, 1.0))
        self.module_multipliers[mname] = (w * theta, b)
        with torch.no_grad():
            dict(self.model.named_parameters())[self._param_key(name)].div_(theta)
        self.install_hooks()

    @property
    def family(self) -> str:
        """The rules-table column of the default optimizer (sizeup.registry)."""
        return optimizer_family(self.options["optimizer"])

    def _param_key(self, name: str) -> str:
        for n, _ in self.model.named_parameters():
            if canonical_name(n) == name:
                return n
        raise KeyError(name)

    def export(self, model: nn.Module | None = None) -> nn.Module:
        """A plain copy of the model (or of ``model``, e.g. the trained, wrapped one) with every
        forward multiplier folded into its weights: the unmodified architecture computes the
        same logits (sizeup.parametrization.export; ExportError where one cannot be folded).
        For a transformers model, ``save_pretrained`` the result."""
        return export_model(self, model)

    def scheduler(
        self,
        optimizer: torch.optim.Optimizer,
        schedule: str = "constant",
        steps: int = 1,
        warmup: int = 0,
        **kwargs: Any,
    ) -> torch.optim.lr_scheduler.LambdaLR:
        """An lr scheduler for an optimizer of this parametrization: LambdaLR over
        sizeup.schedules.make_schedule(schedule, steps, warmup, **kwargs). It scales every
        group's lr (each already eta x lr_mult) by the same factor, so the per-tensor ratios
        hold at every step; it plugs into transformers.Trainer(optimizers=(opt, sched))."""

        fn = make_schedule(schedule, steps, warmup=warmup, **kwargs)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)

    def table(self) -> list[Scaling]:
        """One Scaling row per tensor, in parameter order."""
        return list(self.scalings.values())

    def __getitem__(self, name: str) -> Scaling:
        return self.scalings[canonical_name(name)]

    def optimizer(
        self,
        name: str | OptimSpec = "adamw",
        lr: float = 1e-3,
        *,
        model: nn.Module | None = None,
        **settings: Any,
    ) -> torch.optim.Optimizer:
        """A torch optimizer whose param groups carry this parametrization's multipliers.

        ``name``: a registered optimizer (sizeup.registry) with ``lr`` and torch-style settings
        (weight_decay, betas, eps, momentum, nesterov, muon_scale, muon_lr, ns_dtype,
        base_batch_size; and batch_size, fused, foreach, warmup_steps for building), or a whole
        OptimSpec (a run's ``cfg.optimizer``; then ``settings`` are BuildContext's). ``model``
        may be a wrapped version (DDP, torch.compile) of the parametrized model.
        """
        if isinstance(name, OptimSpec):
            spec, context = name, BuildContext(**settings)
        else:
            spec, context = optimizer_spec(name, lr, **settings)
        target = model if model is not None else self.model
        return build_optimizer(target, self.scalings_for(spec.name), spec, context)

    def scalings_for(self, optimizer: str) -> dict[str, Scaling]:
        """The scalings with the lr column of ``optimizer`` (its rules-table family)."""
        fam = optimizer_family(optimizer)
        col = self.lr_table.get(fam)
        if col is None:
            return self.scalings
        return {n: dataclasses.replace(s, lr_mult=col[n]) for n, s in self.scalings.items()}

    def rows(self) -> list[dict[str, Any]]:
        """Table rows as plain dicts (JSON-safe)."""
        out = []
        for s in self.table():
            d = s.to_dict()
            d["multiplier"] = self.effective_multiplier(s.name)
            out.append(d)
        return out

    def effective_multiplier(self, param_name: str) -> float:
        """The forward multiplier the tensor actually sees (weight multiplier x branch multiplier)."""
        mod = param_name.rsplit(".", 1)[0]
        w, b = self.module_multipliers.get(mod, (1.0, 1.0))
        return self.scalings[param_name].multiplier * b if param_name.endswith("weight") else b

    def print_table(self, console: Any = None) -> None:
        """Pretty-print the per-tensor table with rich (the cells of ``table_cells``)."""
        from rich import box
        from rich.console import Console
        from rich.table import Table

        columns, rows, caption = self.table_cells()
        # Compact enough for an 80-column terminal: fans are in the shape (fan_out x fan_in for
        # Linear); the Markdown and JSON tables spell them out.
        t = Table(
            title=f"sizeup parametrization: rule={self.rule}",
            box=box.SIMPLE_HEAD,
            padding=(0, 0),
            caption=caption,
        )
        t.add_column(columns[0], min_width=20, max_width=24, overflow="fold")
        t.add_column(columns[1], no_wrap=True)
        t.add_column(columns[2], no_wrap=True)
        for col in columns[3:]:
            t.add_column(col, justify="right", no_wrap=True)
        for r in rows:
            t.add_row(*r)
        (console or Console()).print(t)

    def table_cells(self) -> tuple[list[str], list[list[str]], str]:
        """(columns, rows, caption) of the compact per-tensor table: what `print_table` and
        `sizeup parametrize` show. The Muon mark and its footnote appear only under Muon."""
        muon = get_optimizer(self.options["optimizer"]).orthogonal
        columns = ["tensor", "role", "shape", "sigma0", "init", "mult", "lr x", "wd x", "eps x"]
        rows = [
            [
                r["name"],
                r["role"] + ("*" if muon and r["muon"] else ""),
                "x".join(map(str, r["shape"])),
                _sigma_cell(r),
                "keep" if r["init_std"] is None else f"{r['init_std']:.3g}",
                f"{r['multiplier']:.3g}",
                f"{r['lr_mult']:.3g}",
                f"{r['wd_mult']:.3g}",
                f"{r['eps_mult']:.3g}",
            ]
            for r in self.rows()
        ]
        caption = (
            f"lr x / wd x / eps x: multipliers of the base lr, weight decay and Adam eps "
            f"({self.options['optimizer']}); "
            + ("* updated by Muon; " if muon else "")
            + "keep: module's init; sigma0: the base init std it scales from, h model hint, "
            "m measured, g given"
        )
        return columns, rows, caption

    def to_markdown(self) -> str:
        """The per-tensor table as a Markdown table."""
        cols = "name | role | shape | fan_in | fan_out | sigma_base | sigma_source | init_std"
        head = f"| {cols} | multiplier | lr_mult | wd_mult | eps_mult |"
        lines = [head, "|" + "---|" * 12]
        for r in self.rows():
            std = "keep" if r["init_std"] is None else f"{r['init_std']:.4g}"
            sb = "" if r["sigma_base"] is None else f"{r['sigma_base']:.4g}"
            lines.append(
                f"| {r['name']} | {r['role']} | {'x'.join(map(str, r['shape']))} | "
                f"{r['fan_in']} | {r['fan_out']} | {sb} | {r['sigma_source'] or ''} | {std} | "
                f"{r['multiplier']:.4g} | {r['lr_mult']:.4g} | {r['wd_mult']:.4g} | "
                f"{r['eps_mult']:.4g} |"
            )
        return "\n".join(lines)


def _sigma_cell(row: dict[str, Any]) -> str:
    """sigma_base with its source's initial (h model hint, m measured, g given), for print_table."""
    if row["sigma_base"] is None:
        return ""
    mark = {"model hint": "h", "measured": "m", "given": "g"}.get(row["sigma_source"], "")
    return f"{row['sigma_base']:.3g}{mark}"


def get_parametrization(model: nn.Module) -> Parametrization | None:
    """The Parametrization attached to a (possibly wrapped) model, or None."""
    return getattr(unwrap(model), ATTR, None)


# --- options ----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ModelHints:
    """What parametrize assumes about a model's structure beyond its shapes. Each None falls
    back to the model's own ``sizeup_hints`` (or its transformers family's, sizeup.models.hf):
    ``roles`` (fnmatch pattern over parameter or module names -> role), the module patterns of
    residual-branch outputs (``residual_out``, for depth scaling), queries (``query``, for
    zero_query), blocks (``block``) and MoE routers (``router``); ``attn_scale`` sets the logit
    scale of every attention module, anchored at the base's head dim (None: the model's own)."""

    roles: Mapping[str, str] | None = None
    residual_out: Sequence[str] | None = None
    query: Sequence[str] | None = None
    block: Sequence[str] | None = None
    router: Sequence[str] | None = None
    attn_scale: str | None = None

    def __post_init__(self) -> None:
        for pat, r in (self.roles or {}).items():
            if r not in ROLES:
                raise ConfigError(f"roles[{pat!r}]", r, "one of " + ", ".join(ROLES))
        if self.attn_scale is not None:
            check_choice("attn_scale", self.attn_scale, ATTN_SCALES)


_HINT_FIELDS = tuple(f.name for f in dataclasses.fields(ModelHints))
_SPEC_FIELDS = tuple(f.name for f in dataclasses.fields(ParamSpec))


@dataclasses.dataclass
class _Options:
    """parametrize's options resolved: the ParamSpec (its fields read through), the default
    optimizer, the model's depth, and the hints with the model's sizeup_hints filled in."""

    spec: ParamSpec
    optimizer: str
    depth: int | None
    residual_out: list[str]
    query: list[str]
    block: list[str]
    router: list[str]
    roles: dict[str, str]
    attn_scale: str | None
    init_hint: Any = None

    def __getattr__(self, name: str) -> Any:
        # rule, sigma, zero_readout, base_depth, depth_exponent, ...: the ParamSpec's fields
        if name == "spec":
            raise AttributeError(name)
        return getattr(self.spec, name)

    @property
    def family(self) -> str:
        """The rules-table column of the default optimizer."""
        return optimizer_family(self.optimizer)

    def public(self) -> dict[str, Any]:
        """The options the Parametrization records (the call's own arguments)."""
        spec = {k: v for k, v in self.spec.to_dict().items() if k != "base_width"}
        return {
            **spec,
            "depth": self.depth,
            "optimizer": self.optimizer,
            "attn_scale": self.attn_scale,
        }


def _split_settings(
    options: ParamSpec | None, hints: ModelHints | None, settings: Mapping[str, Any]
) -> tuple[ParamSpec, ModelHints]:
    """The ParamSpec and ModelHints: the records given, with keyword settings (either record's
    field names) laid over them; an unknown keyword is named."""
    for k, v in settings.items():
        if k not in _SPEC_FIELDS + _HINT_FIELDS:
            raise ConfigError(
                k, v, "a parametrize option: " + ", ".join(_SPEC_FIELDS + _HINT_FIELDS)
            )
    spec_kw = {k: v for k, v in settings.items() if k in _SPEC_FIELDS}
    hint_kw = {k: v for k, v in settings.items() if k in _HINT_FIELDS}
    spec = (options or ParamSpec()).replace(**spec_kw) if spec_kw or options else ParamSpec()
    hints = dataclasses.replace(hints or ModelHints(), **hint_kw)
    return spec, hints


def _resolve_options(
    inner: nn.Module, spec: ParamSpec, hints: ModelHints, optimizer: str, depth: int | None
) -> _Options:
    """The options with the model's sizeup_hints filled in: explicit hints win, then the
    model's, then defaults."""
    get_optimizer(optimizer)  # a ConfigError names the registered ones
    own = model_hints(inner)
    lists = {}
    for key, default in (
        ("residual_out", []),
        ("query", []),
        ("block", ["blocks.*"]),
        ("router", []),
    ):
        given = getattr(hints, key)
        lists[key] = list(given) if given is not None else own.get(key, default)
    return _Options(
        spec=spec,
        optimizer=optimizer,
        depth=depth,
        roles={**(own.get("roles") or {}), **(hints.roles or {})},
        attn_scale=hints.attn_scale,
        init_hint=check_hint(own.get("init_std")),
        **lists,
    )


def _resolve_depth(opts: _Options, names: list[str]) -> float:
    """Fill in the model's depth when depth scaling is on; return the branch multiplier."""
    if opts.base_depth is not None:
        if opts.depth is None:
            opts.depth = _infer_depth(names, opts.block)
        if opts.depth < 1:
            raise ConfigError(
                "depth", opts.depth, "a positive number of residual blocks (or pass depth=)"
            )
        if opts.base_depth > opts.depth:
            raise ConfigError(
                "base_depth", opts.base_depth, f"at most the model's depth ({opts.depth})"
            )
    branch, _ = rules.depth_factors(
        opts.depth or 0, opts.base_depth, opts.depth_exponent, opts.family
    )
    return branch


# --- the base --------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Reference:
    """The base (shapes, init stds), the optional delta, and which base tensor each model
    tensor is compared with."""

    base: BaseRef
    delta: BaseRef | None
    key: dict[str, str]


def _base_key(name: str, shapes: Mapping[str, Any]) -> str:
    """The base tensor a model tensor is compared with: itself, else the same tensor in the
    first base block that has it (a deeper model's extra blocks; an MoE whose first blocks are
    dense)."""
    m = _DIGITS.search(name)
    if name in shapes or m is None:
        return name
    for i in range(int(m.group()[1:-1]) + 1):
        cand = f"{name[: m.start()]}.{i}.{name[m.end() :]}"
        if cand in shapes:
            return cand
    return name


def _load_reference(base: Any, delta: Any, inner: nn.Module, names: list[str]) -> _Reference:
    """Load base and delta and match their tensors to the model's (ShapeError if they differ)."""
    base_ref = load_base(base, "base")
    if base_ref is None:  # the model is its own base
        base_ref = dataclasses.replace(load_base(inner, "base"), what="the model itself (no base)")
    delta_ref = load_base(delta, "delta")
    shapes = base_ref.shapes
    # A deeper model has blocks the base lacks: those map onto the base's block 0 (depth is
    # scaled by base_depth, not inferred from names).
    key = {n: _base_key(n, shapes) for n in names}
    missing = [n for n in names if key[n] not in shapes]
    extra = [n for n in shapes if n not in names]
    if missing or extra:
        raise ShapeError(
            "base: the base model does not have the same architecture as the model "
            f"(only in model: {missing[:5]}, only in base: {extra[:5]})"
        )
    if delta_ref is not None and set(delta_ref.shapes) != set(shapes):
        raise ShapeError("delta: the delta model does not have the same parameters as the base")
    return _Reference(base_ref, delta_ref, key)


# --- role inference --------------------------------------------------------------------------
def _owner_modules(model: nn.Module) -> dict[str, tuple[str, nn.Module]]:
    """Canonical parameter name -> (canonical owning module name, module)."""
    owners = {}
    for mname, mod in model.named_modules():
        for pname, _ in mod.named_parameters(recurse=False):
            full = f"{mname}.{pname}" if mname else pname
            owners[canonical_name(full)] = (canonical_name(mname), mod)
    return owners


def _match(name: str, patterns: Any) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in (patterns or ()))


def _infer_depth(names: list[str], block_patterns: list[str]) -> int:
    """The number of blocks: distinct name prefixes that match a block pattern ("blocks.*" has
    two segments, "model.layers.*" three)."""
    prefixes = set()
    for n in names:
        parts = n.split(".")
        for p in block_patterns:
            k = p.count(".") + 1
            if len(parts) > k and fnmatch.fnmatchcase(".".join(parts[:k]), p):
                prefixes.add(".".join(parts[:k]))
    return len(prefixes)


def _tied_readouts(inner: nn.Module, named: list[tuple[str, nn.Parameter]]) -> dict[str, str]:
    """Module name -> parameter name, for each Linear whose weight is another module's (an
    Embedding's): it reads out through the shared tensor."""
    param_ids = {id(p): n for n, p in named}
    tied = {}
    for mname, mod in inner.named_modules():
        w = getattr(mod, "weight", None)
        if isinstance(mod, nn.Linear) and isinstance(w, nn.Parameter):
            owner = param_ids.get(id(w))
            if owner is not None and canonical_name(f"{mname}.weight") != owner:
                tied[canonical_name(mname)] = owner
    return tied


@dataclasses.dataclass(frozen=True)
class _Tensor:
    """One model tensor and what it is compared with."""

    name: str
    p: torch.Tensor
    module_name: str
    module: nn.Module
    shape: tuple[int, ...]
    base_name: str
    base_shape: tuple[int, ...]
    delta_shape: tuple[int, ...] | None

    @property
    def fans(self) -> tuple[int, int, int, int]:
        """(fan_out, fan_in, fan_out dim, fan_in dim) at the model's shape."""
        return _fans(self.shape, self.module)

    @property
    def base_fan_in(self) -> int:
        """fan_in at the base's shape."""
        return _fans(self.base_shape, self.module)[1]

    @property
    def matrix(self) -> bool:
        """A matrix, or a stack of expert matrices (what Muon orthogonalises)."""
        return len(self.shape) == 2 or is_expert_tensor(self.shape, self.module)


def _tensors(
    named: list[tuple[str, nn.Parameter]], inner: nn.Module, ref: _Reference
) -> list[_Tensor]:
    """Pair each model tensor with its base (and delta) shape; ShapeError if they cannot match."""
    owners = _owner_modules(inner)
    out = []
    for name, p in named:
        shape, bname = tuple(p.shape), ref.key[name]
        bshape = tuple(ref.base.shapes[bname])
        if len(shape) != len(bshape):
            raise ShapeError(f"base: {name} has shape {list(shape)} but {list(bshape)} in the base")
        if any(b > s for b, s in zip(bshape, shape)):
            raise ShapeError(
                f"base: {name} is larger in the base {list(bshape)} than in the "
                f"model {list(shape)}; the base must be the smaller model"
            )
        dshape = None if ref.delta is None else tuple(ref.delta.shapes[bname])
        mname, mod = owners[name]
        if is_expert_tensor(shape, mod) and shape[0] != bshape[0]:
            raise ShapeError(
                f"base: {name} stacks {shape[0]} experts but {bshape[0]} in the base; the "
                "expert count is not a width (each expert scales as its own matrix), so the "
                "base must have as many experts as the model"
            )
        out.append(_Tensor(name, p, mname, mod, shape, bname, bshape, dshape))
    return out


def _role(t: _Tensor, overrides: Mapping[str, str], routers: list[str]) -> str:
    """input / hidden / readout / vector from which dims are width (differ from the base, or
    between base and delta when a delta is given); an MoE router's weight is a readout (over a
    fixed number of experts, whatever the base); an override pattern wins."""
    if len(t.shape) == 1:
        role = "vector"
    elif _match(t.module_name, routers):
        role = "readout"
    else:
        other = t.delta_shape if t.delta_shape is not None else t.shape
        inf = [o != b for o, b in zip(other, t.base_shape)]
        _, _, i_out, i_in = t.fans
        out_inf, in_inf = inf[i_out], (inf[i_in] if i_in >= 0 else False)
        role = "hidden" if out_inf and in_inf else "readout" if in_inf else "input"
    for pat, r in overrides.items():
        if fnmatch.fnmatchcase(t.name, pat) or fnmatch.fnmatchcase(t.module_name, pat):
            role = r
    return role


# --- the rules, per tensor -------------------------------------------------------------------
def _lr_column(opts: _Options, t: _Tensor, role: str, m_in: float, m_out: float) -> dict:
    """lr multiplier per optimizer family (rules.lr_mult, Table 8 shift, depth factor)."""
    is_muon = role == "hidden" and t.matrix
    lrs = {}
    for fam in OPT_FAMILIES:
        lr_f = rules.lr_mult(opts.rule, role, fam, m_in, m_out, is_muon)
        if opts.rule == "mup" and opts.readout_form == "table8":
            lr_f *= rules.table8_shift(role, m_in, fam)[1]
        if _match(t.name, opts.block):
            lr_f *= rules.depth_factors(opts.depth or 0, opts.base_depth, opts.depth_exponent, fam)[
                1
            ]
        lrs[fam] = lr_f
    return lrs


def _target_std(
    opts: _Options,
    sig: SigmaResolver,
    t: _Tensor,
    role: str,
    sigma_base: float | None,
    own: float | None,
    m_in: float,
) -> float | None:
    """The rule's init std for the tensor (None: keep the module's own init)."""
    fan_out, fan_in, _, _ = t.fans
    if sig.model_mode and rules.keeps_own_init(opts.rule):
        std = own
    else:
        if sigma_base is None and rules.uses_sigma(opts.rule):
            raise sig.missing(t.name)
        std = rules.init_std(
            opts.rule,
            role,
            sigma_base if sigma_base is not None else 0.0,  # unused by rules that ignore sigma
            m_in,
            fan_in,
            fan_out,
            sigma_sp=sig.sp_sigma(own, fan_in),
            one_hot=isinstance(t.module, nn.Embedding),
        )
    if opts.rule == "mup" and opts.readout_form == "table8" and std is not None:
        std *= rules.table8_shift(role, m_in, opts.family)[0]
    zero_q = opts.zero_query and _match(t.module_name, opts.query)
    # zero_readout is for the model's output; a router has its own switch: at zero every token
    # goes to the same experts (ties) until its first update.
    router = _match(t.module_name, opts.router)
    zero_r = role == "readout" and (opts.zero_router if router else opts.zero_readout)
    if std is not None and (zero_r or zero_q):
        std = 0.0
    return std


@dataclasses.dataclass(frozen=True)
class _Init:
    """A tensor's init: the rule's std, the sigma it scaled from and its source, the step."""

    std: float | None = None
    sigma_base: float | None = None
    source: str | None = None
    step: InitStep = KEEP


def _init_for(opts: _Options, sig: SigmaResolver, t: _Tensor, role: str, m_in: float) -> _Init:
    """Resolve sigma and the tensor's own std, and plan the step to the rule's std. Vectors
    keep their own init."""
    if role == "vector":
        return _Init()
    own = sig.own_std(t.name, t.module_name, t.p, t.fans[1])
    at_base = own if t.shape == t.base_shape else None
    sigma_base, source = sig.base_sigma(t.name, t.module_name, t.base_name, t.base_fan_in, at_base)
    std = _target_std(opts, sig, t, role, sigma_base, own, m_in)
    return _Init(std, sigma_base, source, plan_step(std, own))


def _scaling(
    opts: _Options, sig: SigmaResolver, t: _Tensor, branch_mult: float
) -> tuple[Scaling, dict[str, float], InitStep]:
    """The tensor's Scaling (default optimizer's lr column), its lr per family, its init step."""
    fan_out, fan_in, _, _ = t.fans
    bfan_out, bfan_in, _, _ = _fans(t.base_shape, t.module)
    m_out, m_in = fan_out / bfan_out, fan_in / bfan_in
    role = _role(t, opts.roles, opts.router)
    lrs = _lr_column(opts, t, role, m_in, m_out)
    mult = rules.multiplier(opts.rule, role, m_in, opts.readout_form)
    init = _init_for(opts, sig, t, role, m_in)
    eps_f = 1.0
    if opts.scale_eps:
        branch = branch_mult if _match(t.name, opts.block) else 1.0
        eps_f = rules.eps_mult(opts.rule, role, m_out, mult, branch)
    scaling = Scaling(
        name=t.name,
        role=role,
        shape=t.shape,
        fan_in=fan_in,
        fan_out=fan_out,
        m_in=m_in,
        m_out=m_out,
        init_std=init.std,
        multiplier=mult,
        lr_mult=lrs[opts.family],
        wd_mult=0.0 if role == "vector" else 1.0,
        muon=role == "hidden" and t.matrix,
        eps_mult=eps_f,
        sigma_base=init.sigma_base,
        sigma_source=init.source,
        one_hot=isinstance(t.module, nn.Embedding),
    )
    return scaling, lrs, init.step


# --- forward multipliers per module ----------------------------------------------------------
def _module_multipliers(
    inner: nn.Module,
    scalings: dict[str, Scaling],
    tied: dict[str, str],
    opts: _Options,
    branch_mult: float,
) -> dict[str, tuple[float, float]]:
    """Module name -> (weight multiplier, branch multiplier), only where one differs from 1."""
    mults: dict[str, tuple[float, float]] = {}
    for name, s in scalings.items():
        if name.endswith(".weight") and s.multiplier != 1.0:
            mults[name[: -len(".weight")]] = (s.multiplier, 1.0)
    for mname, owner in tied.items():
        # A tied readout cannot have its own init/lr, so it reads out in the Table 8 form:
        # multiplier 1/m where m is the width multiplier of the shared dimension.
        w = 1.0 / scalings[owner].m_out if opts.rule == "mup" else 1.0
        if w != 1.0:
            mults[mname] = (w, 1.0)
    if branch_mult != 1.0:
        _add_branch_multipliers(inner, mults, opts.residual_out, branch_mult)
    return mults


def _add_branch_multipliers(
    inner: nn.Module, mults: dict[str, tuple[float, float]], residual_out: list[str], branch: float
) -> None:
    """Multiply every residual-branch output module (residual_out patterns) by ``branch``."""
    names = [canonical_name(m) for m, _ in inner.named_modules()]
    matched = [m for m in names if _match(m, residual_out)]
    if not matched:
        raise ConfigError(
            "residual_out",
            residual_out,
            "patterns that match the residual-branch output modules (none matched)",
        )
    for mname in matched:
        w, _ = mults.get(mname, (1.0, 1.0))
        mults[mname] = (w, branch)


# --- parametrize -----------------------------------------------------------------------------
def parametrize(
    model: nn.Module,
    base: nn.Module | str | Path | Mapping | None = None,
    options: ParamSpec | None = None,
    *,
    delta: nn.Module | str | Path | Mapping | None = None,
    hints: ModelHints | None = None,
    optimizer: str = "adamw",
    depth: int | None = None,
    init: bool = True,
    **settings: Any,
) -> Parametrization:
    """Apply a rule to ``model`` in place, relative to the smaller ``base``, and return the
    Parametrization (table, optimizers).

    ``options``: a ParamSpec (sizeup.config; a run's ``cfg.parametrization``), or its fields as
    keywords (``rule="mup"``, ``sigma=0.02``, ...; over ``options`` when both are given):
    rule "sp", "mup" (Tensor Programs V, Table 3 form), "mup_simple" (SP init, hidden lr / m) or
    "spectral" (Yang-Simon-Bernstein 2023); sigma, the base init std: "model" (default) is what
    the base model's own init gives each tensor (its sizeup_hints["init_std"], else measured on
    the base: sizeup.parametrization.init), so at the base width nothing changes; a number, or
    "fan_in" for 1/sqrt(fan_in), sets it; zero_readout / zero_query / zero_router; base_depth
    enables residual-branch depth scaling (L/base_depth)^-depth_exponent; readout_form;
    scale_eps (Adam's eps follows each tensor's gradient scale, rules.eps_mult). ``hints``:
    ModelHints (or its fields as keywords: roles, residual_out, query, block, router,
    attn_scale), by default the model's own sizeup_hints.

    base: a smaller instance of the same architecture, a base-shapes file or dict; None means
    the model is its own base. delta: a second small instance that tells which dimensions are
    width when base alone cannot. The init is applied by rescaling each tensor the model made
    (its distribution's shape is kept); the model may be on the meta device (nothing is
    initialised, the table is computed). optimizer: which lr column the table shows (its
    registry family); p.optimizer() may ask for another. depth: the model's blocks for depth
    scaling (default: counted from the block patterns). Expert tensors (experts, out, in) scale
    expert by expert (sizeup.parametrization.layout).
    """
    inner = unwrap(model)
    spec, model_hints_ = _split_settings(options, hints, settings)
    opts = _resolve_options(inner, spec, model_hints_, optimizer, depth)
    named = [(canonical_name(n), p) for n, p in inner.named_parameters()]
    ref = _load_reference(base, delta, inner, [n for n, _ in named])
    branch_mult = _resolve_depth(opts, [n for n, _ in named])
    sig = SigmaResolver(opts.sigma, opts.init_hint, ref.base, get_parametrization(inner) is None)
    scalings, lr_table, steps = {}, {}, {}
    for t in _tensors(named, inner, ref):
        scalings[t.name], lrs, steps[t.name] = _scaling(opts, sig, t, branch_mult)
        for fam, lr_f in lrs.items():
            lr_table.setdefault(fam, {})[t.name] = lr_f
    tied = _tied_readouts(inner, named)
    mults = _module_multipliers(inner, scalings, tied, opts, branch_mult)
    attention = _attention_stage(inner, base, opts)
    if init:
        for name, p in named:
            apply_step(p, steps[name])
        if opts.zero_query:
            _zero_fused_queries(inner, model_hints(inner).get("fused_query", []))
    par = Parametrization(inner, scalings, opts.rule, mults, opts.public())
    par.spec = spec
    par.lr_table, par.attention, par.tied = lr_table, attention, tied
    par.hints = model_hints(inner)
    apply_scales(inner, attention)
    par.install_hooks()
    setattr(inner, ATTR, par)
    return par


@torch.no_grad()
def _zero_fused_queries(inner: nn.Module, patterns: list[str]) -> None:
    """zero_query on fused q/k/v projections (GPT-2's c_attn, hints["fused_query"]): zero the
    query third of the output (its columns in Conv1D's (in, out) weight, rows in a Linear's)."""
    for name, mod in inner.named_modules():
        w = getattr(mod, "weight", None)
        if not _match(canonical_name(name), patterns) or w is None or w.is_meta:
            continue
        b = getattr(mod, "bias", None)
        q = slice(0, w.shape[1] // 3) if is_conv1d(mod) else slice(0, w.shape[0] // 3)
        (w[:, q] if is_conv1d(mod) else w[q]).zero_()
        if b is not None:
            b[q].zero_()


def _attention_stage(inner: nn.Module, base: Any, opts: _Options) -> dict[str, AttnScale]:
    """Each attention module's logit scale under opts.attn_scale, relative to the base model
    (an earlier parametrize's records carry the architecture's own scales)."""
    prev = get_parametrization(inner)
    previous = prev.attention if prev is not None else {}
    if opts.attn_scale is not None and base is not None and not isinstance(base, nn.Module):
        raise ConfigError(
            "base",
            type(base).__name__,
            "a base model (nn.Module) with attn_scale=, whose head dims anchor the scale",
        )
    return plan_scales(inner, unwrap(base) if base is not None else None, opts.attn_scale, previous)
