#!/usr/bin/env bash
# One-command setup for a fresh machine: CPU PyTorch first (so pip never pulls a multi-GB
# CUDA build by accident), then sizeup with its dev and ray extras, editable.
# For a CUDA build, install torch yourself first (e.g. `pip install torch`) and this script
# leaves it alone.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" 2>/dev/null; then
  # A CPU wheel on local disk (find-links) wins; otherwise PyTorch's CPU wheel index.
  "$PY" -m pip install --no-index "torch==2.13.0" 2>/dev/null \
    || "$PY" -m pip install torch --index-url "${SIZEUP_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"
fi
"$PY" -m pip install -e ".[dev,ray]"
# microsoft/mup (test-only, for the equivalence tests) declares torchvision, which would drag in a
# CUDA torch; it never imports it, so install it without its dependencies.
"$PY" -m pip install --no-deps "mup==1.0.0"
