"""Stability monitors: the two small-scale proxies of large-scale instabilities of Wortsman et
al. 2023 ("Small-scale proxies for large-scale Transformer training instabilities"), as Trainer
callbacks (like the spectral monitor).

- **Attention-logit growth**: without QK-layernorm the attention logits
  q.k/sqrt(d) grow during training at high lr until the softmax saturates (attention entropy
  collapses to one-hot) and the loss diverges. ``AttentionLogitMonitor`` logs, on a fixed probe
  batch, the largest |logit| of each block, the largest over blocks and the smallest mean
  attention entropy (nats).
- **Output-logit divergence**: without weight decay or z-loss the output logits
  drift to large negative values (log Z = logsumexp of the logits runs away from 0) and the loss
  stops improving. ``OutputLogitMonitor`` logs the largest |logit|, the mean logit and the mean
  and largest |log Z| on the probe batch.

Both measure under ``torch.no_grad`` on a batch that is not trained on, every ``every`` steps,
and draw no random numbers, so a monitored run trains exactly as an unmonitored one.
"""

from __future__ import annotations

import fnmatch
from typing import Any

import torch
from torch import nn

from sizeup.errors import ConfigError, check_positive

ATTN_LOGITS = "*attn.logits"  # sizeup's GPT: blocks.{i}.attn.logits sees the scores


def _outputs(model: nn.Module, probe: torch.Tensor) -> torch.Tensor:
    """The model's logits on the probe (a forward(x) or forward(x, targets) model)."""
    out = model(probe)
    return out[0] if isinstance(out, (tuple, list)) else out


class AttentionLogitMonitor:
    """Trainer callback: the largest attention logit per block, and attention entropy.

    Needs hook points that see the attention scores before the softmax: modules named like
    ``pattern`` (sizeup's GPT has ``blocks.{i}.attn.logits``, used when the model's
    ``record_attn_logits`` switch is on; the monitor turns it on for its own forward only).
    """

    name = "attn_logits"

    def __init__(self, model: nn.Module, every: int, probe: Any, pattern: str = ATTN_LOGITS):
        check_positive("every", every, integer=True)
        if probe is None:
            raise ConfigError("probe", None, "a batch of inputs to measure the logits on")
        self.every = every
        self.probe = probe[0] if isinstance(probe, (tuple, list)) else probe
        self.modules = [n for n, _ in model.named_modules() if fnmatch.fnmatchcase(n, pattern)]
        if not self.modules:
            raise ConfigError(
                "model",
                type(model).__name__,
                f"a model with attention-score hook points named {pattern!r} "
                "(sizeup's GPT: blocks.{i}.attn.logits)",
            )
        self.history: list[dict[str, Any]] = []

    def measure(self, step: int, model: nn.Module) -> dict[str, Any]:
        """Measure now: {"<block>/max": .., "max": .., "min_entropy": ..}."""

        scores: dict[str, torch.Tensor] = {}
        mods = dict(model.named_modules())

        def grab(name: str) -> Any:
            def hook(_m: Any, _inp: Any, out: torch.Tensor) -> None:
                scores[name] = out.detach().float()

            return hook

        handles = [mods[n].register_forward_hook(grab(n)) for n in self.modules]
        switch = hasattr(model, "record_attn_logits")
        before = bool(getattr(model, "record_attn_logits", False))
        try:
            if switch:
                model.record_attn_logits = True
            with torch.no_grad():
                model(self.probe)
        finally:
            if switch:
                model.record_attn_logits = before
            for h in handles:
                h.remove()
        return self._summarise(step, scores)

    def _summarise(self, step: int, scores: dict[str, torch.Tensor]) -> dict[str, Any]:

        out: dict[str, Any] = {"step": step}
        entropies = []
        for name, s in scores.items():
            t = s.shape[-1]
            future = torch.ones(t, t, dtype=torch.bool, device=s.device).triu(1)
            out[f"{name}/max"] = float(s.masked_fill(future, 0.0).abs().max())
            p = s.masked_fill(future, float("-inf")).softmax(dim=-1)
            ent = -(p * p.clamp_min(1e-30).log()).sum(dim=-1).mean()
            out[f"{name}/entropy"] = float(ent)
            entropies.append(float(ent))
        maxima = [v for k, v in out.items() if k.endswith("/max")]
        out["max"] = max(maxima) if maxima else None
        out["min_entropy"] = min(entropies) if entropies else None
        self.history.append(out)
        return out

    def on_step(self, step: int, model: nn.Module, loss: float | None = None) -> dict | None:
        """Trainer callback: measure every ``every`` steps."""
        return self.measure(step, model) if step % self.every == 0 else None


class OutputLogitMonitor:
    """Trainer callback: the output logits on a probe batch (largest |logit|, mean logit,
    mean and largest |log Z|)."""

    name = "output_logits"

    def __init__(self, every: int, probe: Any):
        check_positive("every", every, integer=True)
        if probe is None:
            raise ConfigError("probe", None, "a batch of inputs to measure the logits on")
        self.every = every
        self.probe = probe[0] if isinstance(probe, (tuple, list)) else probe
        self.history: list[dict[str, Any]] = []

    def measure(self, step: int, model: nn.Module) -> dict[str, Any]:
        """Measure now: {"max_abs", "mean", "log_z_mean", "log_z_abs_max"}."""

        with torch.no_grad():
            logits = _outputs(model, self.probe).float()
        log_z = logits.logsumexp(dim=-1)
        out = {
            "step": step,
            "max_abs": float(logits.abs().max()),
            "mean": float(logits.mean()),
            "log_z_mean": float(log_z.mean()),
            "log_z_abs_max": float(log_z.abs().max()),
        }
        self.history.append(out)
        return out

    def on_step(self, step: int, model: nn.Module, loss: float | None = None) -> dict | None:
        """Trainer callback: measure every ``every`` steps."""
        return self.measure(step, model) if step % self.every == 0 else None
