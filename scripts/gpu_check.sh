#!/usr/bin/env bash
# One prepared GPU check of the deployment path (issue 19); prints one table.
#
#   scripts/gpu_check.sh [--size 320x240] [--iters 20] [--out FILE]
#
# torch CUDA rows need only torch, torchvision, numpy, pillow, pyyaml; the
# TensorRT rows also need onnx, onnxruntime, tensorrt 10 and cuda-python.
# Whatever is missing is skipped with the reason.  Runs from a fresh checkout
# (no install needed; PYTHON picks the interpreter).  Writes $OUT/gpu_check.md
# when OUT is set.  Exit 1 only if a check that ran failed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1                         # random init: nothing to download
exec "$PY" scripts/gpu_check.py "$@"
