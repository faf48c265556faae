"""Deployment artefacts: ONNX export (with contract + fingerprint), TensorRT engines + cache.

Submodules import torch (export, fingerprint) or TensorRT (trt_build) only
when used; ``engine_cache`` and ``trt_ops`` are pure Python.
"""
