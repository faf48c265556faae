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

from dataclasses import dataclass
from pathlib import Path

from ..features.learned import runtime
from ..features.learned.model import STRIDE
from ..features.onnx_local import export_checked


@dataclass(frozen=True)
class LocalExport:
    """The written file, its weights digest and the largest torch vs ONNX Runtime difference."""
    path: Path
    weights_sha256: str
    max_abs_diff: float


def export_local_onnx(model, out: str | Path) -> LocalExport:
    """Write ``model`` (a LocalFeatureNet) to ``out`` atomically; UserError when ONNX Runtime
    disagrees with torch by more than 1e-4 on a random 96x128 image."""
    import torch

    model = model.float().cpu().eval()
    digest, diff = export_checked(
        model, torch.zeros(1, 1, 96, 128), torch.rand(1, 1, 96, 128, generator=torch.Generator().manual_seed(0)),
        "DistilVPR learned local features (distilvpr train-local)",
        {"format": runtime.META_FORMAT, "format_version": runtime.FORMAT_VERSION,
         "desc_dim": str(model.desc_dim), "stride": str(STRIDE), "width": str(model.width)}, out)
    return LocalExport(Path(out), digest, diff)
