"""Export a student's trunk as the dense patch model of the ``"patch"`` local features.

The network (torch, :class:`PatchNet`): the student's input normalisation and
backbone (its stride-16 layer-3 map, C = 256 channels for ResNet18), then per
cell: mean over a ``pool`` x ``pool`` window of cells (stride 1, as
Patch-NetVLAD's patch sizes; 1 = the cell itself), L2-normalised, centred and
projected on the first 128 principal components (PCA), L2-normalised again.
Why PCA: 300 cells x 256 float values would not fit the 64 KB per keyframe
the map allows; 128 components at one byte each take what RootSIFT takes.  The
PCA is fitted on the cells of calibration images (training-town frames, never
a drive that measures the choice) and baked into the graph as a 1x1
convolution, so the runtime needs nothing but the file.  Where in its cell each
patch's keypoint lies: either from a fine response in the cell's window
(subcell.py: soft-argmax of the Harris response of the trunk's normalised
input, or of the layer-1 / layer-2 activation norm; output ``offsets``), or,
coarse-to-fine (coarse_to_fine.py, sources ``match8`` / ``match4``), from the
layer-3 map at stride 8 or 4 (the trunk run a trous; output ``fine``) in which
the query looks for each matched keyframe cell.

ONNX: input ``image`` float32 [1, 3, H, W] (the student's normalisation, H and
W dynamic; the runtime feeds ``input_height`` x ``input_width``); outputs
``descriptors`` float32 [1, 128, h, w] (unit norm per cell), ``score``
float32 [1, 1, h, w] (norm of the pooled cell before normalisation) and
``offsets`` float32 [1, 2, h, w] (the keypoint's (dx, dy) from the cell centre,
input pixels; zeros with ``subcell_source`` "off") or, for the coarse-to-fine
sources, ``fine`` float32 [1, 128, Hf, Wf] (the cells' descriptors at stride
8 or 4; every (16 / stride)-th sample is a cell's descriptor).
metadata_props: ``format`` = ``distilvpr_patch_features``, ``format_version``,
``desc_dim``, ``stride``, ``input_width``, ``input_height``, ``pool``,
``subcell_source`` ("off": cell centres, or a subcell.SOURCES name),
``subcell_stride``, ``subcell_radius`` (fine pixels), ``subcell_beta``,
``preprocess`` (the student's contract JSON), ``student_fingerprint``,
``pca_vectors`` (how many cells the PCA saw), ``pca_explained`` (share of the
variance the 128 components keep) and ``weights_sha256`` (infer/model_meta.py
``weights_digest``: graph and weights without the metadata), checked at load.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ...foundation.errors import UserError
from ..onnx_local import export_checked
from . import runtime
from .coarse_to_fine import MATCH_STRIDES, dilated_trunk
from .subcell import SOURCES, SubCell, activation_norm, harris

STRIDE = 16
#: Pooling windows offered (odd: a centred window keeps the cell grid and centres).
POOLS = (1, 3, 5)


@dataclass(frozen=True)
class SubCellConfig:
    """Sub-cell keypoints: ``source`` "off" (cell centres), a response that places the keypoint
    (subcell.py, a SOURCES name) or coarse-to-fine matching (coarse_to_fine.py, "match8" /
    "match4"); ``radius`` the window half-width in fine pixels, ``beta`` the soft-argmax
    sharpness (coarse-to-fine: 0 = arg-max + parabola).  Default: match4, radius 4, beta 30,
    chosen on the validation drives (docs/local_features.md, "Sub-cell keypoints")."""
    source: str = "match4"
    radius: int = 4
    beta: float = 30.0

    def check(self) -> None:
        if self.source != "off" and self.source not in SOURCES and self.source not in MATCH_STRIDES:
            raise UserError(f"patch export: sub-cell source {self.source!r} must be 'off' (cell centres) or "
                            f"one of {sorted(SOURCES) + sorted(MATCH_STRIDES)}")
        if self.on and not 1 <= self.radius <= 2 * STRIDE // self.stride:
            raise UserError(f"patch export: sub-cell radius {self.radius} must be 1.."
                            f"{2 * STRIDE // self.stride} fine pixels of {self.source!r} (two cells at most)")
        if not 0.0 <= self.beta <= 1000.0:
            raise UserError(f"patch export: sub-cell beta {self.beta} must be in [0, 1000]")

    @property
    def on(self) -> bool:
        return self.source != "off"

    @property
    def coarse_to_fine(self) -> bool:
        """Whether the query refines its matches on a fine layer-3 map (coarse_to_fine.py)."""
        return self.source in MATCH_STRIDES

    @property
    def output(self) -> str:
        """Name of the network's third output."""
        return runtime.FINE_NAME if self.coarse_to_fine else runtime.OFFSETS_NAME

    @property
    def stride(self) -> int:
        """Fine stride in input pixels (the cell's, 16, when off)."""
        if self.coarse_to_fine:
            return MATCH_STRIDES[self.source]
        return SOURCES[self.source][1] if self.on else STRIDE


class PatchNet(nn.Module):
    """input float32 [B, 3, H, W] (student-normalised RGB) -> (descriptors float32 [B, D, h, w]
    unit norm, score float32 [B, 1, h, w], offsets float32 [B, 2, h, w] input pixels); see
    the module doc.  ``backbone``: the ResNet trunk (models/backbones.py, a Sequential
    conv1 bn1 relu maxpool layer1 layer2 layer3) when ``subcell.source`` is a layer."""

    def __init__(self, input_norm: nn.Module, backbone: nn.Module, pool: int,
                 mean: np.ndarray | None = None, components: np.ndarray | None = None,
                 subcell: SubCellConfig = SubCellConfig(source="off")) -> None:
        super().__init__()
        if pool not in POOLS:
            raise UserError(f"patch export: pool {pool} must be one of {list(POOLS)} cells")
        subcell.check()
        self.fine_index = SOURCES[subcell.source][0] if subcell.source in SOURCES else -1
        needs_resnet = self.fine_index >= 0 or subcell.coarse_to_fine
        if needs_resnet and not (isinstance(backbone, nn.Sequential) and len(backbone) == 7):
            raise UserError(f"patch export: sub-cell source {subcell.source!r} needs a ResNet student; "
                            "use --subcell-source image")
        if subcell.coarse_to_fine and pool != 1:
            raise UserError(f"patch export: --subcell-source {subcell.source} needs --pool 1 (the fine map "
                            "is of single cells)")
        self.source, self.pool, self.input_norm = subcell.source, int(pool), input_norm
        # Coarse-to-fine: the same weights run a trous; the cells are every k-th fine sample.
        self.k = STRIDE // subcell.stride if subcell.coarse_to_fine else 1
        self.backbone = dilated_trunk(backbone, subcell.stride) if subcell.coarse_to_fine else backbone
        self.subcell = (SubCell(subcell.stride, subcell.radius, subcell.beta)
                        if subcell.on and not subcell.coarse_to_fine else None)
        self.proj = None
        if components is not None:
            w = torch.from_numpy(np.asarray(components, np.float32))            # [D, C]
            self.proj = nn.Conv2d(w.shape[1], w.shape[0], 1)
            with torch.no_grad():
                self.proj.weight.copy_(w[:, :, None, None])
                self.proj.bias.copy_(-(w @ torch.from_numpy(np.asarray(mean, np.float32))))

    def trunk(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(layer-3 map float32 [B, C, h, w]; the sub-cell response float32 [B, 1, Hf, Wf], or the
        fine layer-3 map float32 [B, C, Hf, Wf] (coarse-to-fine), or None when off)."""
        f = self.input_norm(x)
        response = harris(f) if self.source == "image" else None
        for i, m in enumerate(self.backbone):
            f = m(f)
            if i == self.fine_index:
                response = activation_norm(f)
        if self.k > 1:
            return f[:, :, ::self.k, ::self.k], f
        return f, response

    def cells(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(pooled cells L2-normalised float32 [B, C, h, w], their norms float32 [B, 1, h, w])."""
        return self._pooled(self.trunk(x)[0])

    def _pooled(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.pool > 1:
            f = F.avg_pool2d(f, self.pool, stride=1, padding=self.pool // 2, count_include_pad=False)
        norm = torch.sqrt((f * f).sum(dim=1, keepdim=True))
        return f / norm.clamp_min(1e-12), norm

    def _project(self, f: torch.Tensor) -> torch.Tensor:
        d = self.proj(f)
        return d / torch.sqrt((d * d).sum(dim=1, keepdim=True)).clamp_min(1e-12)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        coarse, fine = self.trunk(x)
        f, score = self._pooled(coarse)
        if self.k > 1:   # coarse-to-fine: the fine layer-3 map, projected like the cells
            return self._project(f), score, self._project(self._pooled(fine)[0])
        # Cell centres (off): zero offsets of the grid's shape, so the file's outputs are the same.
        offsets = self.subcell(fine) if self.subcell is not None else torch.cat([score * 0.0, score * 0.0], 1)
        return self._project(f), score, offsets


def fit_pca(cells: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(mean float32 [C], components float32 [dim, C], share of variance kept) of cell
    vectors float32 [N, C]; UserError when there are fewer channels or cells than ``dim``."""
    x = np.asarray(cells, np.float64)
    n, c = x.shape
    if c < dim:
        raise UserError(f"patch export: the backbone gives {c} channels, fewer than the {dim} "
                        "descriptor dimensions the map stores; use a ResNet student")
    if n < 2 * dim:
        raise UserError(f"patch export: {n} calibration cells for a {dim}-d PCA; give more "
                        f"calibration images (at least {2 * dim} cells)")
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    var = s ** 2
    return mean.astype(np.float32), vt[:dim].astype(np.float32), float(var[:dim].sum() / var.sum())


@dataclass(frozen=True)
class PatchExport:
    """The written file, its weights digest, the PCA's vectors and kept variance, and the
    largest torch vs ONNX Runtime difference."""
    path: Path
    weights_sha256: str
    pca_vectors: int
    pca_explained: float
    max_abs_diff: float


def export_patch_onnx(student, out: str | Path, input_size: tuple[int, int], pool: int,
                      calib_images: Iterable[np.ndarray],
                      subcell: SubCellConfig = SubCellConfig()) -> PatchExport:
    """Write the patch model of ``student`` (a models.student_io.LoadedStudent) to ``out``
    atomically.  ``input_size`` (W, H) the runtime feeds, at least 32 x 32 (any size: the
    trunk is fully convolutional, cell j of an input of n pixels is centred on pixel 16 j,
    ceil(n / 16) cells);
    ``calib_images`` uint8 [H, W, 3] frames whose cells fit the PCA; ``subcell`` where the
    keypoints lie inside their cells (default: coarse-to-fine at stride 4, SubCellConfig).  UserError for a
    bad size or sub-cell setting, too few cells, or ONNX Runtime disagreeing with torch by
    more than 1e-4."""
    import dataclasses
    from ...foundation.preprocess import preprocess

    w_in, h_in = (int(v) for v in input_size)
    if min(w_in, h_in) < 2 * STRIDE or max(w_in, h_in) > 4096:
        raise UserError(f"patch export: input size {w_in}x{h_in} must be {2 * STRIDE}..4096 pixels per "
                        f"side (the trunk's stride is {STRIDE})")
    model = student.model.float().cpu().eval()
    if not hasattr(model, "backbone") or not hasattr(model, "input_norm"):
        raise UserError(f"patch export: {student.path} is not a camera-only student "
                        "(no input_norm/backbone); pass student_best.pt of 'distilvpr distil'")
    contract = dataclasses.replace(student.contract, input_size=(w_in, h_in), resize="stretch")
    net = PatchNet(model.input_norm, model.backbone, pool, subcell=subcell).eval()
    cells = []
    with torch.no_grad():
        for img in calib_images:
            f, _ = net.cells(torch.from_numpy(preprocess(img, contract)))
            cells.append(f[0].flatten(1).T.numpy())
    if not cells:
        raise UserError("patch export: no calibration images; pass --calib with images of the "
                        "training town (never the drives that validate or test)")
    cells_np = np.concatenate(cells)
    mean, comp, explained = fit_pca(cells_np, runtime.DESC_DIM)
    net = PatchNet(model.input_norm, model.backbone, pool, mean, comp, subcell).eval()

    digest, diff = export_checked(
        net, torch.zeros(1, 3, h_in, w_in), torch.randn(1, 3, h_in, w_in, generator=torch.Generator().manual_seed(0)),
        "DistilVPR patch local features: the student's layer-3 cells (distilvpr export-patch)",
        {"format": runtime.META_FORMAT, "format_version": runtime.FORMAT_VERSION,
         "desc_dim": str(runtime.DESC_DIM), "stride": str(STRIDE), "input_width": str(w_in),
         "input_height": str(h_in), "pool": str(pool), "subcell_source": subcell.source,
         "subcell_stride": str(subcell.stride), "subcell_radius": str(subcell.radius),
         "subcell_beta": repr(float(subcell.beta)), "preprocess": student.contract.to_json(),
         "student_fingerprint": student.fingerprint, "pca_vectors": str(len(cells_np)),
         "pca_explained": f"{explained:.4f}"}, out, (subcell.output,))
    return PatchExport(Path(out), digest, len(cells_np), explained, diff)
