"""Spectral monitors: the golden rules of feature learning, measured during training.

Yang, Simon & Bernstein 2023 ("A spectral condition for feature learning") ask, for every hidden
weight W of shape (fan_out, fan_in):

    ||W||_2  ~ sqrt(fan_out / fan_in)      and      ||dW||_2 ~ sqrt(fan_out / fan_in),

so we log both norms divided by sqrt(fan_out/fan_in): under a correct parametrization these stay
O(1) and do not drift with width. We also log the alignment ||W x|| / (||W||_2 ||x||) on a fixed
probe batch (and the same for dW): near 1 means the inputs live in W's top singular directions,
which is what lets a spectrally small update move activations by Theta(1).

Norms come from power iteration warm-started from the previous call's singular vector, so a
measurement costs a few matrix-vector products per tensor; it runs every ``every`` steps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from sizeup.errors import ConfigError, check_positive
from sizeup.wrapping import full_tensor, select_names


def spectral_norm(
    w: torch.Tensor, iters: int = 30, v: torch.Tensor | None = None, seed: int = 0
) -> tuple[float, torch.Tensor]:
    """Largest singular value of a matrix by power iteration; returns (sigma, right vector) so
    the next call can warm-start from it. The estimate never exceeds the true value."""

    check_positive("iters", iters, integer=True)
    w = w.detach().float()
    w = w.reshape(w.shape[0], -1)
    r = torch.randn(w.shape[1], generator=torch.Generator().manual_seed(seed)).to(w.device)
    if v is None or v.shape[0] != w.shape[1]:
        v = r
    else:
        # Warm start mixed with a random vector: when training rotates the top direction, a
        # pure warm start can sit almost orthogonal to the new one and converge slowly.
        v = v.to(w.device, torch.float32)
        v = v / v.norm().clamp_min(1e-30) + r / r.norm()
    v = v / v.norm().clamp_min(1e-30)
    sigma = torch.zeros(())
    for i in range(iters):
        u = w @ v
        un = u.norm()
        if un == 0 and i == 0:  # a warm start can sit in the null space: restart at random
            v = torch.randn(w.shape[1], generator=torch.Generator().manual_seed(seed + 1))
            v = v.to(w.device) / v.norm()
            u = w @ v
            un = u.norm()
        if un == 0:  # the zero matrix
            return 0.0, v
        v = w.T @ (u / un)
        sigma = v.norm()
        v = v / sigma
    return float(sigma), v


class SpectralMonitor:
    """Trainer callback logging ||W||_2, ||dW||_2 (one step) and alignment for chosen weights.

    ``on_step(step, model, loss)`` is called after every optimizer step; it measures when
    ``step % every == 0`` and returns a flat dict ``{"<module>/w": .., "<module>/dw": ..,
    "<module>/align": .., "<module>/dalign": ..}`` (None otherwise). The weights are snapshotted
    one step before each measurement, so dw is the update of that single step. ``history`` keeps
    every measurement; ``summary()`` is what goes into RunResult.diagnostics.
    """

    def __init__(
        self,
        model: nn.Module,
        every: int = 10,
        probe: Any = None,
        names: Sequence[str] | None = None,
        iters: int = 20,
        first_iters: int = 50,
        parametrization: Any = None,
    ):

        check_positive("every", every, integer=True)
        check_positive("iters", iters, integer=True)
        check_positive("first_iters", first_iters, integer=True)
        self.every, self.iters, self.first_iters = every, iters, first_iters
        self.probe = probe[0] if isinstance(probe, (tuple, list)) else probe
        linears = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}
        if names is None:
            chosen = list(linears)
        else:
            chosen = select_names(list(linears), names, "names", "Linear modules")
        if not chosen:
            raise ConfigError("model", type(model).__name__, "a model with nn.Linear weights")
        self.names = chosen
        scalings = getattr(parametrization, "scalings", None) or {}
        self.mult = {
            n: float(getattr(scalings.get(f"{n}.weight"), "multiplier", 1.0)) for n in chosen
        }
        self._v: dict[str, torch.Tensor] = {}
        self._dv: dict[str, torch.Tensor] = {}
        self._snap: dict[str, torch.Tensor] = {}
        self._snap_step: int | None = None
        self.history: list[dict[str, Any]] = []
        self._take_snapshot(model, -1)  # weights before step 0: dw at step 0 is the first update

    def _weights(self, model: nn.Module) -> dict[str, torch.Tensor]:

        mods = dict(model.named_modules())
        # full_tensor: FSDP2 shards each weight over the ranks (a collective; all ranks measure)
        return {n: full_tensor(mods[n].weight.detach()) for n in self.names}

    def _take_snapshot(self, model: nn.Module, step: int) -> None:
        self._snap = {n: w.clone() for n, w in self._weights(model).items()}
        self._snap_step = step

    def _probe_inputs(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Inputs each monitored Linear sees on the probe batch (flattened to (-1, fan_in))."""

        if self.probe is None:
            return {}
        mods = dict(model.named_modules())
        seen: dict[str, torch.Tensor] = {}

        def grab(name: str) -> Any:
            def hook(_m: Any, inp: tuple, _out: Any) -> None:
                seen[name] = inp[0].detach().reshape(-1, inp[0].shape[-1]).float()

            return hook

        handles = [mods[n].register_forward_hook(grab(n)) for n in self.names]
        try:
            with torch.no_grad():
                model(self.probe)
        finally:
            for h in handles:
                h.remove()
        return seen

    def measure(self, step: int, model: nn.Module) -> dict[str, Any]:
        """Measure now, whatever the step (on_step calls this every ``every`` steps)."""
        out: dict[str, Any] = {"step": step}
        xs = self._probe_inputs(model)
        have_dw = self._snap_step == step - 1
        for name, w in self._weights(model).items():
            w = w.float().reshape(w.shape[0], -1)
            fan_out, fan_in = w.shape
            scale = math.sqrt(fan_out / fan_in)
            mult = abs(self.mult.get(name, 1.0))
            iters = self.iters if name in self._v else self.first_iters
            s, self._v[name] = spectral_norm(w, iters, self._v.get(name))
            out[f"{name}/w"] = mult * s / scale
            dw = None
            if have_dw:
                dw = w - self._snap[name].float().reshape(w.shape)
                iters = self.iters if name in self._dv else self.first_iters
                ds, self._dv[name] = spectral_norm(dw, iters, self._dv.get(name))
                out[f"{name}/dw"] = mult * ds / scale
            x = xs.get(name)
            if x is not None and x.shape[-1] == fan_in:
                xn = x.norm()
                out[f"{name}/align"] = float((x @ w.T).norm() / (s * xn)) if s * xn > 0 else None
                if dw is not None:
                    out[f"{name}/dalign"] = (
                        float((x @ dw.T).norm() / (ds * xn)) if ds * xn > 0 else None
                    )
        self.history.append(out)
        return out

    def on_step(
        self, step: int, model: nn.Module, loss: float | None = None
    ) -> dict[str, Any] | None:
        """Trainer callback: measure every ``every`` steps, snapshot the step before."""
        result = self.measure(step, model) if step % self.every == 0 else None
        if (step + 1) % self.every == 0:
            self._take_snapshot(model, step)
        return result

    def summary(self) -> dict[str, Any]:
        """{"spectral": history} for RunResult.diagnostics."""
        return {"spectral": list(self.history)}
