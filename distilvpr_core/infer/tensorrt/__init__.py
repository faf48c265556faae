"""TensorRT: engine build, engine cache and key, INT8 calibration, CUDA memory and the runtime backend.

TensorRT and cuda-python are imported only when an engine is built or run.
"""
