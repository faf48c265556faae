"""ONNX Runtime backend (the CPU default; CUDA/TensorRT execution providers when present).

Imports no torch.  The model's metadata supplies the contract and fingerprint
once its weights digest matches the file (model_meta.read_model_info); a file
without it, a corrupt one, or one whose graph outputs another size than the
metadata or NaN is refused at load with the path in the message.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..foundation.errors import UserError
from .embedder import Embedder
from .model_meta import check_model_file, read_model_info

# Preference order when the caller does not choose; CPU is always last.
_DEFAULT_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def session_options(intra_op_threads: int = 0):
    """Tuned ``SessionOptions``: all graph optimisations, sequential execution,
    ``intra_op_threads`` (0 = ONNX Runtime's choice, one per physical core)."""
    import onnxruntime as ort

    if intra_op_threads < 0:
        raise UserError(f"intra_op_threads: must be >= 0, got {intra_op_threads}")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = intra_op_threads
    so.inter_op_num_threads = 1  # one small conv net: no parallel branches to run
    return so


def choose_providers(requested: Sequence[str] | None = None) -> list[Any]:
    """Providers to use: ``requested`` (each must be available) or the available defaults.

    The TensorRT execution provider gets its engine + timing caches turned on
    (under ``export.engines.default_cache_dir()/ort-trt``): without them it
    rebuilds its engines on every start, the failure this project avoids.
    """
    import onnxruntime as ort

    available = ort.get_available_providers()
    if requested:
        missing = [p for p in requested if p not in available]
        if missing:
            raise UserError(f"providers: {missing} not available in this onnxruntime build; "
                            f"available: {available}")
        names = list(requested)
    else:
        names = [p for p in _DEFAULT_PROVIDERS if p in available]
    out: list[Any] = []
    for name in names:
        if name == "TensorrtExecutionProvider":
            from .tensorrt.engines import default_cache_dir
            cache = str(default_cache_dir() / "ort-trt")
            out.append((name, {"trt_engine_cache_enable": True, "trt_engine_cache_path": cache,
                               "trt_timing_cache_enable": True, "trt_timing_cache_path": cache}))
        else:
            out.append(name)
    return out


def open_session(path: str | Path, intra_op_threads: int = 0, providers: Sequence[str] | None = None):
    """An ``InferenceSession`` on ``path``; a corrupt/truncated file raises UserError naming it."""
    import onnxruntime as ort

    path = check_model_file(path)
    try:
        return ort.InferenceSession(str(path), sess_options=session_options(intra_op_threads),
                                    providers=choose_providers(providers))
    except (ort.capi.onnxruntime_pybind11_state.Fail,
            ort.capi.onnxruntime_pybind11_state.InvalidProtobuf,
            ort.capi.onnxruntime_pybind11_state.InvalidGraph,
            ort.capi.onnxruntime_pybind11_state.NoSuchFile) as exc:
        raise UserError(f"{path}: ONNX Runtime cannot load it (corrupt or truncated file?): "
                        f"{str(exc).splitlines()[0][:300]}") from None


class OrtEmbedder(Embedder):
    """Embedder on an ONNX Runtime session.

    Options: ``intra_op_threads`` (0 = default), ``providers`` (list of
    execution provider names; default: TensorRT/CUDA when available, else
    CPU), ``max_batch``.
    """
    backend = "onnxruntime"

    def __init__(self, path: str | Path, intra_op_threads: int = 0,
                 providers: Sequence[str] | None = None, max_batch: int = 32) -> None:
        self.path = Path(path)
        if self.path.suffix in (".pt", ".pth", ".ckpt"):
            raise UserError(f"{path}: looks like a torch checkpoint; use backend='torch', or export it "
                            "first with 'distilvpr export --checkpoint CKPT --out MODEL.onnx'")
        # The metadata is read from the file and its weights digest recomputed (model_meta),
        # not taken from the session: copied metadata on other weights is refused here.
        info = read_model_info(path)
        self.session = open_session(path, intra_op_threads, providers)
        super().__init__(info.contract, info.fingerprint, max_batch)
        self.precision = info.precision
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise UserError(f"{path}: expected one input and one output, got "
                            f"{[i.name for i in inputs]} -> {[o.name for o in outputs]}")
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        shape = inputs[0].shape
        if list(shape[1:]) != [3, self.contract.height, self.contract.width]:
            raise UserError(f"{path}: input shape {shape} disagrees with the metadata input_size "
                            f"{list(self.contract.input_size)} [W, H]")
        self.providers = self.session.get_providers()
        self._probe(path)

    def _probe(self, path: str | Path) -> None:
        """One forward pass of a blank image: the output must be float [1, descriptor_dim]
        and finite, or every query would fail later (a graph whose output size differs
        from its metadata, weights that make NaN)."""
        want = self.contract.descriptor_dim
        static = self.session.get_outputs()[0].shape
        if isinstance(static[-1], int) and static[-1] != want:
            raise UserError(f"{path}: the graph outputs {static[-1]} values per image but the "
                            f"metadata says descriptor_dim {want}; re-export the model")
        x = np.zeros((1, 3, self.contract.height, self.contract.width), np.float32)
        out = np.asarray(self._forward(x))
        if out.shape != (1, want):
            raise UserError(f"{path}: the graph outputs shape {list(out.shape)} for one image, the "
                            f"metadata says [1, {want}]; re-export the model")
        if not np.isfinite(out).all():
            raise UserError(f"{path}: the model outputs NaN or inf for a blank image; its weights "
                            "are broken, re-export it from a good checkpoint")

    def _forward(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: x})[0]

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]  # ORT frees on release
