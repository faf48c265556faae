"""ONNX export of the learned local-feature network, with its contract in the metadata.

Input ``image`` float32 [1, 1, H, W] (normalised grey in [0, 1],
features/learned/preprocess.py; H and W dynamic, multiples of 4); outputs
``descriptors`` float32 [1, D, H/4, W/4] (unit norm per cell) and ``score``
float32 [1, 1, H/4, W/4].  metadata_props: ``format`` =
``distilvpr_local_features``, ``format_version``, ``desc_dim``, ``stride``,
``width`` and ``weights_sha256`` (infer/model_meta.weights_digest: the graph
and weights without the metadata), which the runtime checks at load.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..features.learned import runtime
from ..features.learned.model import STRIDE
from ..foundation.atomic import write_bytes_atomic
from ..foundation.errors import UserError

OPSET = 17


@dataclass(frozen=True)
class LocalExport:
    """The written file, its weights digest and the largest torch vs ONNX Runtime difference."""
    path: Path
    weights_sha256: str
    max_abs_diff: float


def export_local_onnx(model, out: str | Path) -> LocalExport:
    """Write ``model`` (a LocalFeatureNet) to ``out`` atomically; UserError when ONNX Runtime
    disagrees with torch by more than 1e-4 on a random 96x128 image."""
    import onnx
    import onnxruntime as ort
    import torch
    from ..infer.model_meta import weights_digest

    model = model.float().cpu().eval()
    buf = io.BytesIO()
    dummy = torch.zeros(1, 1, 96, 128)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (dummy,), buf, input_names=[runtime.INPUT_NAME],
                          output_names=[runtime.DESC_NAME, runtime.SCORE_NAME],
                          dynamic_axes={runtime.INPUT_NAME: {2: "height", 3: "width"},
                                        runtime.DESC_NAME: {2: "h", 3: "w"}, runtime.SCORE_NAME: {2: "h", 3: "w"}},
                          opset_version=OPSET, do_constant_folding=True, dynamo=False)
    proto = onnx.load_from_string(buf.getvalue())
    proto.doc_string = "DistilVPR learned local features (distilvpr train-local)"
    del proto.metadata_props[:]
    digest = weights_digest(proto)
    for key, value in {"format": runtime.META_FORMAT, "format_version": runtime.FORMAT_VERSION,
                       "desc_dim": str(model.desc_dim), "stride": str(STRIDE), "width": str(model.width),
                       "weights_sha256": digest}.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto, full_check=True)
    data = proto.SerializeToString()
    x = torch.rand(1, 1, 96, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = [t.numpy() for t in model(x)]
    got = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(
        [runtime.DESC_NAME, runtime.SCORE_NAME], {runtime.INPUT_NAME: x.numpy()})
    diff = float(max(np.abs(r - g).max() for r, g in zip(ref, got)))
    if diff > 1e-4:
        raise UserError(f"{out}: ONNX Runtime output differs from torch by {diff:.3g}; export is broken")
    write_bytes_atomic(out, data)
    return LocalExport(Path(out), digest, diff)
