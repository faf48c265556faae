"""ONNX export shared by the local-feature networks (``learned``, ``patch``).

Both map one image to a dense descriptor map and a score map: input ``image`` float32
[1, C, H, W] (H and W dynamic), outputs ``descriptors`` float32 [1, D, h, w] and ``score``
float32 [1, 1, h, w] (a network may add outputs of the same grid, e.g. the patch kind's
``offsets`` float32 [1, 2, h, w]).  :func:`export_checked` writes such a network with its contract in the
ONNX metadata plus ``weights_sha256`` (infer/model_meta.weights_digest: graph and weights
without the metadata, checked by the runtimes at load), after checking ONNX Runtime against
torch, so a file that would extract other features than the network is never written.
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np

from ..foundation.atomic import write_bytes_atomic
from ..foundation.errors import UserError

INPUT_NAME, DESC_NAME, SCORE_NAME = "image", "descriptors", "score"
OPSET = 17
#: Largest torch vs ONNX Runtime difference accepted, relative to the output's magnitude (>= 1).
MAX_DIFF = 1e-4


def export_checked(net, dummy, probe, doc: str, meta: dict[str, str], out: str | Path,
                   extra_outputs: tuple[str, ...] = ()) -> tuple[str, float]:
    """Export ``net`` (torch module, image -> (descriptors, score, *extra_outputs), each
    [1, c, h, w]; an extra output may have a grid of its own) traced on ``dummy``, with
    ``doc`` and ``meta`` (plus ``weights_sha256``) in the file; compare ONNX Runtime with torch
    on ``probe`` (a tensor shaped like the runtime's input) and write ``out`` atomically.
    Returns (weights digest, max relative difference); UserError when they disagree."""
    import onnx
    import onnxruntime as ort
    import torch
    from ..infer.model_meta import weights_digest

    names = [DESC_NAME, SCORE_NAME, *extra_outputs]
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (dummy,), buf, input_names=[INPUT_NAME], output_names=names,
                          dynamic_axes={INPUT_NAME: {2: "height", 3: "width"},
                                        DESC_NAME: {2: "h", 3: "w"}, SCORE_NAME: {2: "h", 3: "w"},
                                        # An extra output may have its own grid (a finer map).
                                        **{n: {2: f"h_{n}", 3: f"w_{n}"} for n in extra_outputs}},
                          opset_version=OPSET, do_constant_folding=True, dynamo=False)
    proto = onnx.load_from_string(buf.getvalue())
    proto.doc_string = doc
    del proto.metadata_props[:]
    digest = weights_digest(proto)
    for key, value in {**meta, "weights_sha256": digest}.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto, full_check=True)
    data = proto.SerializeToString()
    with torch.no_grad():
        ref = [t.numpy() for t in net(probe)]
    got = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(
        names, {INPUT_NAME: probe.numpy()})
    diff = float(max(np.abs(r - g).max() / max(1.0, float(np.abs(r).max())) for r, g in zip(ref, got)))
    if diff > MAX_DIFF:
        raise UserError(f"{out}: ONNX Runtime output differs from torch by {diff:.3g}; export is broken")
    write_bytes_atomic(out, data)
    return digest, diff
