"""The rules table: one place that says, for every role, how init, multiplier, learning rate and
weight decay scale with width (and depth). Everything else in sizeup reads it from here.

Notation (docs/architecture.md): a weight has shape (fan_out, fan_in); m_in = fan_in / base_fan_in and
m_out = fan_out / base_fan_out are the width multipliers. ``sigma`` is the base model's init std
for that tensor: by default the std the base model's own initialisation gives it (declared by the
model, e.g. 0.02 for sizeup's GPT, or measured on the base), so a model that is well initialised
at the base width stays so at every width; or a given number, or 1/sqrt(base fan_in).
parametrize applies the init column by rescaling the model's own tensor, so the shape of its
distribution (uniform, orthogonal, ...) is kept.

muP for Adam, Tensor Programs V (Yang et al. 2022), Table 3 form:

    role     init std        multiplier   Adam lr     SGD lr              Adam eps
    input    sigma           1            eta         eta * m_out         eps / m_out
    hidden   sigma/sqrt(m_in) 1           eta / m_in  eta * m_out / m_in  eps / m_out
    readout  sigma / m_in    1            eta / m_in  eta / m_in          eps
    vector   (unchanged)     1            eta         eta * m             eps / m

An optimizer of the "lmo" family (Scion, AGD) takes eta for every tensor: its update is a
norm ball's extreme point whose per-role scale (sqrt(fan_out/fan_in) for hidden matrices, ...)
already carries the width, so the rule changes only the init and the multipliers.

Scion (Pethick et al. 2025, "Training Deep Learning Models with Norm-Constrained LMOs",
sizeup.optim.scion) is that family's first member: hidden matrices step along sqrt(fan_out /
fan_in) U V^T (the RMS -> RMS operator norm's ball), an embedding table along ColNorm (each
token's weights at RMS 1: 1 -> RMS for one-hot inputs), the readout along sign / fan_in (a
max-norm ball, so ||dW h||_inf stays O(1) at every width), gains along d / RMS(d). Every step
then moves each layer's output by lr x rho, independent of width, which is why one eta (and
one radius per role) transfers: the paper tunes them on a small proxy, as muP tunes its
multipliers. Under "lmo" the rules differ only in the init and multipliers (``sp``: the model's
own init; ``mup``/``spectral``: theirs); the lr column is 1 under every rule. Depth: with
residual branches x 1/L (``depth_exponent=1``, the branch scaling Scion's depth transfer is
claimed with) ``depth_factors`` keeps the block lr, one lr at every depth as the paper uses;
with 1/2 the block lr moves as Adam's, by the same argument (a fixed-norm step per block).

(The eps column is on by default, ``scale_eps=True``; microsoft/mup keeps one eps.)

Lion, Adafactor, SOAP, Shampoo (sizeup.optim.library, sizeup.optim.shampoo) read the Adam
column under sp, mup and spectral alike. What is taken from a paper and what is derived here:

- Lion (Chen et al. 2023): its update is sign(.), entries +-1 as Adam's sign-like update, so
  Tensor Programs V's Adam derivation applies as it stands. No eps.
- Adafactor (Shazeer & Stern 2018) with an external lr (relative_step=False) and
  scale_parameter=False is Adam with a factored second moment: V_ij = R_i C_j / sum(R) has the
  scale of G^2 (R_i ~ n E[G^2], C_j ~ m E[G^2]), so the update's entries are Theta(1) and its
  clipping (RMS <= d) is width-free: Adam column (derived). scale_parameter=True multiplies
  each step by max(1e-3, RMS(W)); under muP RMS(W) already carries the init (sigma/sqrt(m_in)
  for hidden, sigma/m_in for the readout), so the lr multipliers would become 1/sqrt(m_in)
  for hidden, 1 for the readout, input and vectors (derived), and a zero-initialised readout
  would be pinned to the 1e-3 floor, which does not scale: sizeup does not offer it.
  relative_step=True replaces the group's lr by min(1e-2, 1/sqrt(t)), so no rule could act:
  sizeup always builds it with the group's lr.
- SOAP (Vyas et al. 2024) is Adam in the eigenbasis (Q_L, Q_R) of Shampoo's preconditioners:
  the update is Q_L (M' / sqrt(V')) Q_R^T, and an orthogonal rotation keeps the Frobenius norm,
  so with Theta(1) rotated entries the update has Adam's size, ||dW||_F ~ eta sqrt(fan_in
  fan_out) (derived; Qiu et al. 2025, "Hyperparameter Transfer Enables Consistent Gains of
  Matrix-Preconditioned Optimizers Across Scales", find muP's lr scaling transfers for SOAP
  and Shampoo). G -> cG leaves Q alone and scales M' and V'^1/2 by c, so eps follows the
  gradient exactly as Adam's does (the eps column).
- Shampoo (Gupta et al. 2018), e_L = e_R = 1/4: ungrafted, one step is L^-1/4 G R^-1/4 = U V^T
  for G = U S V^T, an orthogonalised update with spectral norm 1 whatever the width, which
  would read Muon's column (Ishikawa & Karakida 2024, "On the Parameterization of Second-Order
  Optimization Effective Towards the Infinite Width", ICLR, derive that ungrafted Shampoo's
  muP lr depends on width and that its damping must scale with the gradient; their table's
  exponents are not reproduced here). sizeup's Shampoo grafts each matrix's step
  onto Adam's Frobenius norm (Agarwal et al. 2020) and damps relative to the largest
  eigenvalue, so the direction is scale-free and the size is Adam's: the Adam column and
  Adam's eps (derived).
Measured: the coordinate check (sizeup.diagnostics) passes for all four under mup on the MLP
(widths 64 to 512, 3 seeds; 4 steps for Lion and Adafactor, 8 for SOAP and Shampoo) and fails
under sp (SOAP's sp fails at 8 steps, not yet at 4: its first step only gathers statistics);
tests/test_optim_library.py runs the mup check at widths 64 to 256.

SP and mup_simple initialise every tensor as the model's author did, at every width
(``keeps_own_init``): SP is the model as written.

The Table 8 form (readout multiplier 1/m_in, init sigma, Adam lr eta) is the same model by the
abc-symmetry with theta = 1/m_in; ``readout_form="table8"`` selects it (microsoft/mup's MuReadout
uses it: constant-variance init, forward x / width_mult).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from sizeup.choices import OPT_FAMILIES, ROLES, RULES
from sizeup.registry import optimizer_family

__all__ = [
    "OPT_FAMILIES",
    "ROLES",
    "RULES",
    "Scaling",
    "depth_factors",
    "eps_mult",
    "init_std",
    "keeps_own_init",
    "lr_mult",
    "multiplier",
    "optimizer_family",
    "table8_shift",
    "uses_sigma",
]


@dataclass(frozen=True)
class Scaling:
    """What a rule says for one tensor. ``init_std`` None means: leave the module's own init
    (biases at 0, norm gains at 1); 0.0 means zero init. ``sigma_base`` is the base init std
    the rule scaled from and ``sigma_source`` where it came from ("model hint", "measured",
    "given"; None for vectors, which keep their own init)."""

    name: str
    role: str
    shape: tuple[int, ...]
    fan_in: int
    fan_out: int
    m_in: float
    m_out: float
    init_std: float | None
    multiplier: float
    lr_mult: float
    wd_mult: float
    muon: bool = False  # updated by Muon (hidden matrices) rather than AdamW
    eps_mult: float = 1.0  # Adam's eps for this tensor is eps * eps_mult (see eps_mult())
    sigma_base: float | None = None
    sigma_source: str | None = None
    # Scion: an embedding table (one-hot inputs, stored (fan_in, fan_out)); its LMO is ColNorm
    one_hot: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for tables and JSON."""
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d


def init_std(
    rule: str,
    role: str,
    sigma: float,
    m_in: float,
    fan_in: int,
    fan_out: int,
    sigma_sp: float | None = None,
    one_hot: bool = False,
) -> float | None:
    """Init std for one tensor under ``rule`` (None: keep the module's own init).

    ``sigma`` is the base model's std for this tensor; ``sigma_sp`` is what SP uses at this
    width (the model's own std, the same fixed value, or 1/sqrt(fan_in) in "fan_in" mode;
    defaults to sigma).
    ``one_hot``: the tensor is an embedding table, whose inputs are one-hot vectors of norm 1
    rather than dense vectors of norm sqrt(fan_in); the spectral rule then counts fan_in as 1.
    """
    if role == "vector":
        return None
    if rule in ("sp", "mup_simple"):
        return sigma if sigma_sp is None else sigma_sp
    if rule == "mup":
        return {"input": sigma, "hidden": sigma / math.sqrt(m_in), "readout": sigma / m_in}[role]
    if rule == "spectral":
        # Yang, Simon & Bernstein 2023, "A spectral condition for feature learning", eq. (init):
        # sigma = fan_in^-1/2 * min(1, sqrt(fan_out / fan_in)) gives ||W||_2 ~ sqrt(fan_out/fan_in).
        if one_hot:  # h = W e_i is a column of W: unit-size coordinates need std 1
            fan_in = 1
        return (1.0 / math.sqrt(fan_in)) * min(1.0, math.sqrt(fan_out / fan_in))
    raise KeyError(rule)


def keeps_own_init(rule: str) -> bool:
    """Whether ``rule`` leaves every tensor at the model's own init, at every width (SP is the
    model as its author wrote it; mup_simple only changes the hidden lr). Applies when sigma is
    the model's own ("model"); a given sigma or "fan_in" is still SP's std at each width."""
    return rule in ("sp", "mup_simple")


def uses_sigma(rule: str) -> bool:
    """Whether ``rule``'s init reads the base std sigma (the spectral init is absolute)."""
    return rule != "spectral"


def lr_mult(rule: str, role: str, family: str, m_in: float, m_out: float, muon: bool) -> float:
    """Per-tensor learning-rate multiplier relative to the base model's lr eta."""
    if family == "lmo":
        # The update is the extreme point of a norm ball chosen per role, scaled so that its
        # effect on a layer's output is width-independent (Pethick et al. 2025, "Training Deep
        # Learning Models with Norm-Constrained LMOs", Table 2; Bernstein et al. 2023, AGD,
        # sqrt(fan_out / fan_in) per layer): the optimizer carries the width, eta is shared.
        return 1.0
    if family == "muon" and muon:
        # Muon's orthogonalised update already has unit spectral norm; the optimizer's scale
        # mode (spectral sqrt(fan_out/fan_in), ...) makes it width-correct, so eta is shared.
        return 1.0
    fam = "adam" if family == "muon" else family  # Muon's AdamW side follows the Adam column
    if rule == "sp":
        return 1.0
    if rule == "mup_simple":
        return 1.0 / m_in if role == "hidden" else 1.0
    if rule == "mup":
        if fam == "adam":
            return {"input": 1.0, "hidden": 1.0 / m_in, "readout": 1.0 / m_in, "vector": 1.0}[role]
        return {"input": m_out, "hidden": m_out / m_in, "readout": 1.0 / m_in, "vector": m_out}[
            role
        ]
    if rule == "spectral":
        # ||dW||_2 ~ sqrt(fan_out/fan_in): Adam's dense sign-like update has ||dW|| ~ eta *
        # sqrt(fan_in fan_out), so eta ~ 1/fan_in; SGD's rank-one update needs eta ~ fan_out/fan_in.
        if role == "vector":
            return 1.0 if fam == "adam" else m_out
        return 1.0 / m_in if fam == "adam" else m_out / m_in
    raise KeyError(rule)


def eps_mult(
    rule: str, role: str, m_out: float, multiplier: float = 1.0, branch: float = 1.0
) -> float:
    """Adam eps multiplier for one tensor: eps follows the scale of the tensor's gradient.

    Adam's update is g / (sqrt(v) + eps). Under muP (and the spectral rule) the gradient of the
    residual stream has Theta(1/n) coordinates, so a weight whose output dimension is width gets
    gradients ~ 1/m_out (times its forward multiplier and, inside a scaled residual branch, the
    branch multiplier). A fixed eps then swamps the update as width grows and Adam quietly turns
    into a slower SGD (Everett et al. 2024, "Scaling exponents across parameterizations and
    optimizers", ICML 2024: eps must be scaled with width or the update underflows; CompleteP,
    Dey et al. 2025, scales eps with depth the same way). Scaling eps with the gradient keeps
    g/(sqrt(v)+eps) exactly width-invariant, and makes the abc-symmetry exact for any eps.
    SP and mup_simple keep one eps.
    """
    if rule not in ("mup", "spectral"):
        return 1.0
    return multiplier * branch / m_out


def multiplier(rule: str, role: str, m_in: float, readout_form: str = "table3") -> float:
    """Forward multiplier for one tensor (1 everywhere in the Table 3 form)."""
    if rule == "mup" and role == "readout" and readout_form == "table8":
        return 1.0 / m_in
    return 1.0


def table8_shift(role: str, m_in: float, family: str) -> tuple[float, float]:
    """(init factor, lr factor) that turn the Table 3 readout into the Table 8 one (abc-symmetry
    with theta = m_in: multiplier x 1/theta, init x theta, Adam lr x theta, SGD lr x theta^2)."""
    if role != "readout":
        return 1.0, 1.0
    return m_in, (m_in if family in ("adam", "muon", "lmo") else m_in**2)


def depth_factors(
    depth: int, base_depth: int | None, exponent: float, family: str
) -> tuple[float, float]:
    """(branch multiplier, block lr factor) for residual depth scaling.

    Branch multiplier (L/L0)^-alpha on each residual branch output. With Adam the block weights'
    lr scales as (L/L0)^(alpha-1): alpha = 1/2 is Depth-muP (Yang et al. 2023, Tensor Programs VI),
    alpha = 1 keeps lr constant (CompleteP, Dey et al. 2025). SGD keeps lr constant.
    """
    if base_depth is None or depth == base_depth:
        return 1.0, 1.0
    r = depth / base_depth
    lr = r ** (exponent - 1.0) if family in ("adam", "muon", "lmo") else 1.0
    return r ** (-exponent), lr
