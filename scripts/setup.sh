#!/usr/bin/env bash
# One-command setup for a fresh machine: CPU PyTorch first (so pip never pulls a multi-GB CUDA
# build by accident), then sizeup with its dev, ray, schedulefree (schedule-free AdamW),
# logging (TensorBoard, Weights & Biases), hf (Hugging Face transformers) and optimizers
# (pytorch-optimizer: Lion, Adafactor, SOAP) extras, editable,
# so every extra's tests run.
# For a CUDA build, install torch yourself first (e.g. `pip install torch`): an installed torch
# is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" 2>/dev/null; then
  probe=$(mktemp -d)
  # A CPU wheel that pip can find locally (its find-links) wins; torch's own dependencies then
  # come from the usual index. Otherwise PyTorch's CPU wheel index, which also serves them.
  if "$PY" -m pip download -q --no-deps --no-index -d "$probe" "torch==2.13.0" >/dev/null 2>&1 \
      && ls "$probe"/torch-*+cpu* >/dev/null 2>&1; then
    "$PY" -m pip install "torch==2.13.0"
  else
    "$PY" -m pip install torch --index-url "${SIZEUP_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"
  fi
  rm -rf "$probe"
fi
# The installed torch is a constraint: no extra may swap it for another build.
constraint=$(mktemp)
"$PY" -c "import torch; print('torch==' + torch.__version__)" > "$constraint"
"$PY" -m pip install -e ".[dev,ray,schedulefree,logging,hf,optimizers]" -c "$constraint"
# torchtitan integration (issue 25): the torchtitan extra on its own, since torchtitan 0.3.0 pins
# datasets<4.8, whose metadata pins huggingface-hub<2, which transformers>=5 refuses; then give
# transformers its hub back (datasets 4.7 imports and loads with it; pip names the conflict).
"$PY" -m pip install -e ".[torchtitan]" -c "$constraint"
"$PY" -m pip install "huggingface_hub>=2.4,<3" -c "$constraint"
rm -f "$constraint"
# microsoft/mup (test-only, for the equivalence tests) declares torchvision, which would drag in
# a CUDA torch; it never imports it, so install it without its dependencies.
"$PY" -m pip install --no-deps "mup==1.0.0"
"$PY" -c "import torch; print('torch', torch.__version__, '(CUDA build)' if torch.version.cuda else '(CPU build)')"
