"""sizeup: how to scale neural networks.

Parametrize (SP, muP, spectral), verify (coordinate checks), tune small and transfer big
(sweeps), fit scaling laws and plan the target run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sizeup.errors import ConfigError, SizeupError

__version__ = "0.1.0"

__all__ = ["ConfigError", "SizeupError", "__version__", "parametrize"]

if TYPE_CHECKING:  # pragma: no cover
    from sizeup.parametrization import Parametrization


def parametrize(
    model: Any, base: Any = None, options: Any = None, **kwargs: Any
) -> Parametrization:
    """Apply a scaling rule to ``model`` given a smaller ``base``; see sizeup.parametrization.
    (Imported on first call, so ``import sizeup`` does not import torch.)"""
    from sizeup.parametrization import parametrize as _parametrize

    return _parametrize(model, base, options, **kwargs)
