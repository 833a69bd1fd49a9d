"""Apply a scaling rule to any torch model: infer roles from a base model, initialise in place,
install forward multipliers where a rule needs them, and hand out optimizers whose param groups
carry the per-tensor learning-rate and weight-decay multipliers.

Metadata lives off the tensors, in a dict keyed by canonical parameter name (wrapper prefixes
such as ``module.`` from DDP and ``_orig_mod.`` from torch.compile stripped), stored on the model
as ``model._sizeup``; so it survives deepcopy, state_dict round trips and wrapping.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sizeup.choices import OPT_FAMILIES, OPTIMIZERS, READOUT_FORMS, ROLES, RULES, optimizer_family
from sizeup.errors import ConfigError, ShapeError, check_choice
from sizeup.optim import build_optimizer
from sizeup.parametrization import rules
from sizeup.parametrization.rules import Scaling
from sizeup.wrapping import canonical_name, unwrap

ATTR = "_sizeup"  # where the Parametrization lives on the model
_DIGITS = re.compile(r"\.\d+\.")


# --- base shapes ----------------------------------------------------------------------------
def base_shapes(model: nn.Module) -> dict[str, list[int]]:
    """Canonical parameter name -> shape, for saving a base model without keeping it around."""
    return {canonical_name(n): list(p.shape) for n, p in model.named_parameters()}


def save_base_shapes(model: nn.Module, path: str | Path) -> None:
    """Write a model's parameter shapes to a JSON base-shapes file."""
    Path(path).write_text(json.dumps(base_shapes(model), indent=1))


def _load_shapes(obj: Any, field: str) -> dict[str, list[int]] | None:
    if obj is None:
        return None
    if isinstance(obj, nn.Module):
        return base_shapes(obj)
    if isinstance(obj, (str, Path)):
        p = Path(obj)
        if not p.exists():
            raise ConfigError(field, str(p), "a model or an existing base-shapes JSON file")
        try:
            data = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(field, str(p), f"a JSON base-shapes file ({e})") from e
        return {k: list(v) for k, v in data.items()}
    if isinstance(obj, Mapping):
        return {k: list(v) for k, v in obj.items()}
    raise ConfigError(field, type(obj).__name__, "an nn.Module, a base-shapes file path or a dict")


# --- forward multipliers ----------------------------------------------------------------------
class _ScaleInput:
    """Forward pre-hook: multiply the first input (a weight multiplier for a bias-free Linear)."""

    def __init__(self, factor: float):
        self.factor = factor

    def __call__(self, module: nn.Module, args: tuple) -> tuple:
        return (args[0] * self.factor, *args[1:])


class _ScaleOutput:
    """Forward hook: multiply the output (embeddings, residual branches)."""

    def __init__(self, factor: float):
        self.factor = factor

    def __call__(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        return output * self.factor


def _remove_sizeup_hooks(module: nn.Module) -> None:
    for hooks in (module._forward_pre_hooks, module._forward_hooks):
        for k in [k for k, h in hooks.items() if isinstance(h, (_ScaleInput, _ScaleOutput))]:
            del hooks[k]


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

    def __deepcopy__(self, memo: dict) -> Parametrization:
        # The model owns this object (model._sizeup); copying the model copies the records but
        # must point at the copied model, which deepcopy's memo provides.
        import copy

        new = Parametrization.__new__(Parametrization)
        memo[id(self)] = new
        new.model = copy.deepcopy(self.model, memo)
        new.scalings = dict(self.scalings)
        new.rule = self.rule
        new.module_multipliers = dict(self.module_multipliers)
        new.options = copy.deepcopy(self.options, memo)
        new.lr_table = {k: dict(v) for k, v in self.lr_table.items()}
        return new

    def install_hooks(self) -> None:
        """(Re)install the forward multipliers; only where one differs from 1, so a rule whose
        multipliers are all 1 adds nothing to the forward pass."""
        mods = {canonical_name(n): m for n, m in self.model.named_modules()}
        for mod in mods.values():
            _remove_sizeup_hooks(mod)
        for mname, (w, b) in self.module_multipliers.items():
            mod = mods[mname]
            has_bias = getattr(mod, "bias", None) is not None
            if isinstance(mod, nn.Embedding):
                if w * b != 1.0:
                    mod.register_forward_hook(_ScaleOutput(w * b))
            elif not has_bias:
                if w * b != 1.0:
                    mod.register_forward_pre_hook(_ScaleInput(w * b))
            else:
                if w != 1.0:  # scaling the input scales the weight but not the bias
                    mod.register_forward_pre_hook(_ScaleInput(w))
                if b != 1.0:
                    mod.register_forward_hook(_ScaleOutput(b))

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
            lr_mult=s.lr_mult / (theta**2 if self.options["optimizer"] == "sgd" else theta),
            eps_mult=s.eps_mult * theta if self.options.get("scale_eps", True) else s.eps_mult,
        )
        for fam, col in self.lr_table.items():
            col[name] = col[name] / (theta**2 if fam == "sgd" else theta)
        w, b = self.module_multipliers.get(mname, (1.0, 1.0))
        self.module_multipliers[mname] = (w * theta, b)
        with torch.no_grad():
            dict(self.model.named_parameters())[self._param_key(name)].div_(theta)
        self.install_hooks()

    def _param_key(self, name: str) -> str:
        for n, _ in self.model.named_parameters():
            if canonical_name(n) == name:
                return n
        raise KeyError(name)

    def table(self) -> list[Scaling]:
        """One Scaling row per tensor, in parameter order."""
        return list(self.scalings.values())

    def __getitem__(self, name: str) -> Scaling:
        return self.scalings[canonical_name(name)]

    def optimizer(
        self,
        name: str = "adamw",
        lr: float = 1e-3,
        *,
        model: nn.Module | None = None,
        **kwargs: Any,
    ) -> torch.optim.Optimizer:
        """A torch optimizer whose param groups carry this parametrization's multipliers.

        ``model`` may be a wrapped version (DDP, torch.compile) of the parametrized model.
        Extra kwargs: weight_decay, betas, eps, momentum, nesterov, muon_scale, batch_size,
        base_batch_size (see sizeup.optim.build_optimizer).
        """
        return build_optimizer(
            model if model is not None else self.model, self.scalings_for(name), name, lr, **kwargs
        )

    def scalings_for(self, optimizer: str) -> dict[str, Scaling]:
        """The scalings with the lr column of ``optimizer`` (adamw, sgd or muon)."""
        check_choice("optimizer", optimizer, OPTIMIZERS)
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
        """Pretty-print the per-tensor table with rich."""
        from rich import box
        from rich.console import Console
        from rich.table import Table

        # Compact enough for an 80-column terminal: fans are in the shape (fan_out x fan_in for
        # Linear); the Markdown and JSON tables spell them out.
        t = Table(
            title=f"sizeup parametrization: rule={self.rule}",
            box=box.SIMPLE_HEAD,
            padding=(0, 0),
            caption=f"lr x / wd x / eps x: multipliers of the base lr, weight decay and "
            f"Adam eps ({self.options['optimizer']}); * updated by Muon; keep: "
            f"module's init",
        )
        t.add_column("tensor", min_width=22, max_width=24, overflow="fold")
        t.add_column("role", no_wrap=True)
        t.add_column("shape", no_wrap=True)
        for col in ("init", "mult", "lr x", "wd x", "eps x"):
            t.add_column(col, justify="right", no_wrap=True)
        for r in self.rows():
            std = "keep" if r["init_std"] is None else f"{r['init_std']:.3g}"
            t.add_row(
                r["name"],
                r["role"] + ("*" if r["muon"] else ""),
                "x".join(map(str, r["shape"])),
                std,
                f"{r['multiplier']:.3g}",
                f"{r['lr_mult']:.3g}",
                f"{r['wd_mult']:.3g}",
                f"{r['eps_mult']:.3g}",
            )
        (console or Console()).print(t)

    def to_markdown(self) -> str:
        """The per-tensor table as a Markdown table."""
        head = "| name | role | shape | fan_in | fan_out | init_std | multiplier | lr_mult | wd_mult | eps_mult |"
        lines = [head, "|" + "---|" * 10]
        for r in self.rows():
            std = "keep" if r["init_std"] is None else f"{r['init_std']:.4g}"
            lines.append(
                f"| {r['name']} | {r['role']} | {'x'.join(map(str, r['shape']))} | "
                f"{r['fan_in']} | {r['fan_out']} | {std} | {r['multiplier']:.4g} | "
                f"{r['lr_mult']:.4g} | {r['wd_mult']:.4g} | {r['eps_mult']:.4g} |"
            )
        return "\n".join(lines)


def get_parametrization(model: nn.Module) -> Parametrization | None:
    """The Parametrization attached to a (possibly wrapped) model, or None."""
    return getattr(unwrap(model), ATTR, None)


# --- role inference --------------------------------------------------------------------------
def _owner_modules(model: nn.Module) -> dict[str, tuple[str, nn.Module]]:
    """Parameter name -> (owning module name, module)."""
    owners = {}
    for mname, mod in model.named_modules():
        for pname, _ in mod.named_parameters(recurse=False):
            full = f"{mname}.{pname}" if mname else pname
            owners[full] = (mname, mod)
    return owners


def _fans(shape: tuple[int, ...], module: nn.Module) -> tuple[int, int, int, int]:
    """(fan_out, fan_in, dim index of fan_out, dim index of fan_in); -1 when not a dim."""
    if len(shape) == 1:
        return shape[0], 1, 0, -1
    if isinstance(module, nn.Embedding):  # weight is (num_embeddings, embedding_dim)
        return shape[1], shape[0], 1, 0
    return shape[0], math.prod(shape[1:]), 0, 1


def _match(name: str, patterns: Any) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in (patterns or ()))


def _infer_depth(names: list[str], block_patterns: list[str]) -> int:
    prefixes = {".".join(n.split(".")[:2]) for n in names if _match(n, block_patterns)}
    return len(prefixes)


def parametrize(
    model: nn.Module,
    base: nn.Module | str | Path | Mapping | None = None,
    *,
    rule: str = "mup",
    delta: nn.Module | str | Path | Mapping | None = None,
    roles: Mapping[str, str] | None = None,
    sigma: float | str = 0.02,
    zero_readout: bool = False,
    zero_query: bool = False,
    base_depth: int | None = None,
    depth: int | None = None,
    depth_exponent: float = 0.5,
    readout_form: str = "table3",
    optimizer: str = "adamw",
    residual_out: list[str] | None = None,
    query: list[str] | None = None,
    block: list[str] | None = None,
    init: bool = True,
    scale_eps: bool = True,
) -> Parametrization:
    """Apply ``rule`` to ``model`` in place, relative to the smaller ``base``, and return the
    Parametrization (table, optimizers).

    rule: "sp", "mup" (Tensor Programs V, Table 3 form), "mup_simple" (SP init, hidden lr / m),
    "spectral" (Yang-Simon-Bernstein 2023). base: a smaller instance of the same architecture,
    a base-shapes file or dict; None means the model is its own base. delta: a second small
    instance that tells which dimensions are width when base alone cannot. roles: fnmatch
    pattern (parameter or module name) -> role override. sigma: the base init std (a number, or
    "fan_in" for 1/sqrt(fan_in)). base_depth: enables residual-branch depth scaling
    (L/base_depth)^-depth_exponent. optimizer: which lr column (adamw/sgd/muon) the table shows;
    p.optimizer() may ask for another, so this only sets the default. scale_eps: Adam's eps
    follows each tensor's gradient scale (rules.eps_mult; False keeps one eps, as microsoft/mup).
    """
    check_choice("rule", rule, RULES)
    check_choice("readout_form", readout_form, READOUT_FORMS)
    check_choice("optimizer", optimizer, OPTIMIZERS)
    if not isinstance(sigma, (int, float)) and sigma != "fan_in":
        raise ConfigError("sigma", sigma, "a positive number or 'fan_in'")
    if isinstance(sigma, (int, float)) and not sigma > 0:
        raise ConfigError("sigma", sigma, "a positive number or 'fan_in'")
    if depth_exponent <= 0:
        raise ConfigError("depth_exponent", depth_exponent, "a positive number (0.5 or 1.0)")
    for pat, r in (roles or {}).items():
        if r not in ROLES:
            raise ConfigError(f"roles[{pat!r}]", r, "one of " + ", ".join(ROLES))

    inner = unwrap(model)
    hints = dict(getattr(inner, "sizeup_hints", {}) or {})
    residual_out = residual_out if residual_out is not None else hints.get("residual_out", [])
    query = query if query is not None else hints.get("query", [])
    block = block if block is not None else hints.get("block", ["blocks.*"])
    role_over = dict(hints.get("roles", {}) or {})
    role_over.update(roles or {})

    named = [(canonical_name(n), p) for n, p in inner.named_parameters()]
    names = [n for n, _ in named]
    base_sh = _load_shapes(base, "base") or {n: list(p.shape) for n, p in named}
    delta_sh = _load_shapes(delta, "delta")
    # A deeper model has blocks the base lacks: those map onto the base's block 0 (depth is
    # scaled by base_depth, not inferred from names).
    base_key = {n: n if n in base_sh else _DIGITS.sub(".0.", n, count=1) for n in names}
    missing = [n for n in names if base_key[n] not in base_sh]
    extra = [n for n in base_sh if n not in names]
    if missing or extra:
        raise ShapeError(
            "base: the base model does not have the same architecture as the model "
            f"(only in model: {missing[:5]}, only in base: {extra[:5]})"
        )
    if delta_sh is not None and set(delta_sh) != set(base_sh):
        raise ShapeError("delta: the delta model does not have the same parameters as the base")

    owners = _owner_modules(inner)
    owners = {canonical_name(k): v for k, v in owners.items()}
    family = optimizer_family(optimizer)

    if base_depth is not None:
        if depth is None:
            depth = _infer_depth(names, block)
        if depth < 1:
            raise ConfigError(
                "depth", depth, "a positive number of residual blocks (or pass depth=)"
            )
        if base_depth > depth:
            raise ConfigError("base_depth", base_depth, f"at most the model's depth ({depth})")
    branch_mult, _ = rules.depth_factors(depth or 0, base_depth, depth_exponent, family)

    # Tied weights: a Linear whose weight is an Embedding's weight reads out through it.
    param_ids: dict[int, str] = {id(p): n for n, p in named}
    tied_readouts: dict[str, str] = {}  # module name -> param name
    for mname, mod in inner.named_modules():
        w = getattr(mod, "weight", None)
        if isinstance(mod, nn.Linear) and isinstance(w, nn.Parameter):
            owner = param_ids.get(id(w))
            if owner is not None and canonical_name(f"{mname}.weight") != owner:
                tied_readouts[canonical_name(mname)] = owner

    scalings: dict[str, Scaling] = {}
    lr_table: dict[str, dict[str, float]] = {}
    for name, p in named:
        shape = tuple(p.shape)
        bshape = tuple(base_sh[base_key[name]])
        mname, mod = owners[name]
        mname = canonical_name(mname)
        if len(shape) != len(bshape):
            raise ShapeError(f"base: {name} has shape {list(shape)} but {list(bshape)} in the base")
        if any(b > s for b, s in zip(bshape, shape)):
            raise ShapeError(
                f"base: {name} is larger in the base {list(bshape)} than in the "
                f"model {list(shape)}; the base must be the smaller model"
            )
        if delta_sh is not None:
            inf = [d != b for d, b in zip(delta_sh[base_key[name]], bshape)]
        else:
            inf = [s != b for s, b in zip(shape, bshape)]
        fan_out, fan_in, i_out, i_in = _fans(shape, mod)
        bfan_out, bfan_in, _, _ = _fans(bshape, mod)
        m_out, m_in = fan_out / bfan_out, fan_in / bfan_in
        if len(shape) == 1:
            role = "vector"
        else:
            out_inf, in_inf = inf[i_out], (inf[i_in] if i_in >= 0 else False)
            role = "hidden" if out_inf and in_inf else "readout" if in_inf else "input"
        for pat, r in role_over.items():
            if fnmatch.fnmatchcase(name, pat) or fnmatch.fnmatchcase(mname, pat):
                role = r
        is_muon = role == "hidden" and len(shape) == 2

        if sigma == "fan_in":
            s_base = 1.0 / math.sqrt(bfan_in)
            s_sp = 1.0 / math.sqrt(fan_in)
        else:
            s_base = s_sp = float(sigma)
        std = rules.init_std(
            rule,
            role,
            s_base,
            m_in,
            fan_in,
            fan_out,
            sigma_sp=s_sp,
            one_hot=isinstance(mod, nn.Embedding),
        )
        mult = rules.multiplier(rule, role, m_in, readout_form)
        lrs = {}
        for fam in OPT_FAMILIES:
            lr_f = rules.lr_mult(rule, role, fam, m_in, m_out, is_muon)
            if rule == "mup" and readout_form == "table8":
                lr_f *= rules.table8_shift(role, m_in, fam)[1]
            if _match(name, block):
                lr_f *= rules.depth_factors(depth or 0, base_depth, depth_exponent, fam)[1]
            lrs[fam] = lr_f
            lr_table.setdefault(fam, {})[name] = lr_f
        lr = lrs[family]
        if rule == "mup" and readout_form == "table8" and std is not None:
            std *= rules.table8_shift(role, m_in, family)[0]
        if role == "readout" and zero_readout:
            std = 0.0
        if _match(mname, query) and zero_query:
            std = 0.0
        wd = 0.0 if role == "vector" else 1.0
        eps_f = 1.0
        if scale_eps:
            eps_f = rules.eps_mult(
                rule, role, m_out, mult, branch_mult if _match(name, block) else 1.0
            )
        scalings[name] = Scaling(
            name=name,
            role=role,
            shape=shape,
            fan_in=fan_in,
            fan_out=fan_out,
            m_in=m_in,
            m_out=m_out,
            init_std=std,
            multiplier=mult,
            lr_mult=lr,
            wd_mult=wd,
            muon=is_muon,
            eps_mult=eps_f,
        )

    # Forward multipliers per module: (weight multiplier, branch multiplier).
    module_mults: dict[str, tuple[float, float]] = {}
    for name, s in scalings.items():
        if name.endswith(".weight") and s.multiplier != 1.0:
            module_mults[name[: -len(".weight")]] = (s.multiplier, 1.0)
    for mname, owner in tied_readouts.items():
        s = scalings[owner]
        # A tied readout cannot have its own init/lr, so it reads out in the Table 8 form:
        # multiplier 1/m where m is the width multiplier of the shared dimension.
        w = 1.0 / s.m_out if rule == "mup" else 1.0
        if w != 1.0:
            module_mults[mname] = (w, 1.0)
    if branch_mult != 1.0:
        for mname, _ in inner.named_modules():
            if _match(canonical_name(mname), residual_out):
                w, _ = module_mults.get(canonical_name(mname), (1.0, 1.0))
                module_mults[canonical_name(mname)] = (w, branch_mult)
        if not any(_match(canonical_name(m), residual_out) for m, _ in inner.named_modules()):
            raise ConfigError(
                "residual_out",
                residual_out,
                "patterns that match the residual-branch output modules (none matched)",
            )

    # Initialise in place.
    if init:
        with torch.no_grad():
            for name, p in named:
                std = scalings[name].init_std
                if std is None:
                    continue
                if std == 0.0:
                    p.zero_()
                else:
                    p.normal_(0.0, std)

    options = dict(
        rule=rule,
        sigma=sigma,
        zero_readout=zero_readout,
        zero_query=zero_query,
        base_depth=base_depth,
        depth=depth,
        depth_exponent=depth_exponent,
        readout_form=readout_form,
        optimizer=optimizer,
        scale_eps=scale_eps,
    )
    par = Parametrization(inner, scalings, rule, module_mults, options)
    par.lr_table = lr_table
    par.install_hooks()
    setattr(inner, ATTR, par)
    return par
