#!/usr/bin/env bash
# One prepared GPU check of the deployment path (issue 19); prints one table.
#
#   scripts/gpu_check.sh [--size 320x240] [--iters 20] [--out FILE] [--require-tensorrt]
#
# torch CUDA rows need only torch, torchvision, numpy, pillow, pyyaml; the
# TensorRT rows also need onnx, onnxruntime, tensorrt 10 and cuda-python.
# Whatever is missing is skipped with the reason; when no TensorRT row ran the
# output ends with a line "SKIPPED: no TensorRT row ran (why)".  Runs from a
# fresh checkout (no install needed; PYTHON picks the interpreter).  Writes
# $OUT/gpu_check.md when OUT is set.  Exit 1 if a check that ran failed; exit 3
# with --require-tensorrt when no TensorRT row ran; else 0.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1                         # random init: nothing to download
exec "$PY" scripts/gpu_check.py "$@"
