"""torch backend: the checkpoint itself, on CPU or CUDA (fp16 and CUDA graphs on CUDA).

For development and GPU timing; deployment uses ONNX Runtime or TensorRT.
In fp16 the GeM pooling runs in fp32 (``pin_pooling_fp32``).
The fingerprint is computed from the fp32 weights before any cast, so it
equals the one stored in the exported ONNX file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..foundation.errors import UserError
from .embedder import Embedder


def pin_pooling_fp32(model: torch.nn.Module) -> int:
    """Run every GeM layer of a half-precision ``model`` in fp32; returns how many were pinned.

    The GeM form is already fp16-safe (models/pooling.py); pooling in fp32 costs
    nothing measurable and keeps the descriptor equal to the one TensorRT's
    fp16 engine computes (its pooling layers are pinned to fp32 as well).
    """
    from ..models.pooling import GeM

    n = 0
    for mod in model.modules():
        if isinstance(mod, GeM):
            mod.float()
            mod.register_forward_pre_hook(lambda _m, args: tuple(a.float() for a in args))
            n += 1
    return n


class TorchEmbedder(Embedder):
    """Embedder running the student checkpoint at ``path`` with torch.

    Options: ``device`` ("cpu", "cuda", "cuda:N"), ``fp16`` (None = on for
    CUDA, off for CPU; fp16 on CPU is refused), ``cuda_graphs`` (capture one
    graph per batch size; CUDA only), ``max_batch``.
    """
    backend = "torch"

    def __init__(self, path: str | Path, device: str = "cpu", fp16: bool | None = None,
                 cuda_graphs: bool = False, max_batch: int = 32) -> None:
        from ..models.student_io import load_student_checkpoint

        if Path(path).suffix in (".onnx", ".engine"):
            raise UserError(f"{path}: the torch backend runs a student checkpoint (.pt); use "
                            "backend='onnxruntime' or 'tensorrt' for this file")
        loaded = load_student_checkpoint(path)
        super().__init__(loaded.contract, loaded.fingerprint, max_batch)
        self.path = Path(path)
        try:
            self.device = torch.device(device)
        except RuntimeError as exc:
            raise UserError(f"device: {device!r} is not a torch device ({exc})") from None
        is_cuda = self.device.type == "cuda"
        if is_cuda and not torch.cuda.is_available():
            raise UserError(f"device: {device!r} requested but torch sees no CUDA GPU; use device='cpu'")
        self.fp16 = is_cuda if fp16 is None else bool(fp16)
        if self.fp16 and not is_cuda:
            raise UserError("fp16: only supported with a CUDA device (CPU half convs are slow/absent)")
        if cuda_graphs and not is_cuda:
            raise UserError("cuda_graphs: needs a CUDA device")
        self.cuda_graphs = bool(cuda_graphs)
        self.dtype = torch.float16 if self.fp16 else torch.float32
        self.model = loaded.model.to(self.device, self.dtype).eval()
        if self.fp16:
            pin_pooling_fp32(self.model)
        self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}

    @torch.inference_mode()
    def _forward(self, x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(x).to(self.device, self.dtype, non_blocking=True)
        if self.cuda_graphs:
            out = self._graph_run(t)
        else:
            out = self.model(t)
        return out.float().cpu().numpy()

    def _graph_run(self, t: torch.Tensor) -> torch.Tensor:
        b = t.shape[0]
        if b not in self._graphs:
            static_in = torch.zeros_like(t)
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):  # warm-up off the default stream, as capture requires
                for _ in range(3):
                    self.model(static_in)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self.model(static_in)
            self._graphs[b] = (graph, static_in, static_out)
        graph, static_in, static_out = self._graphs[b]
        static_in.copy_(t)
        graph.replay()
        return static_out.clone()

    def close(self) -> None:
        self._graphs.clear()
