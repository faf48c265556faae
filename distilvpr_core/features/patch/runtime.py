"""The ``"patch"`` extractor: the student's layer-3 cells as local features, under ONNX Runtime.

``PatchExtractor(path).extract(rgb, max_features) -> Features`` has the
contract of every extractor (features/registry.py).  The frame is resized
(stretched) to the export's input size ``W_in x H_in`` and normalised as the
student's preprocessing contract says (foundation/preprocess.py); the network
(export.py) gives a 128-d unit-norm descriptor and a score per layer-3 cell.
Every cell is a candidate feature; the ``max_features`` with the highest score
(the norm of the cell's pooled activation: where the trunk responds most) are
kept.  Where a feature's point lies (the file's ``subcell_source``): the cell's
centre plus the network's ``offsets`` output (content-anchored: where in the
window the fine response peaks, subcell.py; zero for ``--subcell-source off``),
mapped to the image as captured (:func:`cell_keypoints`); or, coarse-to-fine
(``match4`` / ``match8``), the cell's centre, with the query's fine layer-3 map
(the ``fine`` output) attached as ``Features.dense``, on which the engine moves
each matched query point before PnP (coarse_to_fine.py,
features/matching.query_points); keyframes keep the centres.  Descriptors are stored as uint8 like the learned
kind's (``round(127.5 d + 127.5)``, features/learned/runtime.py): 128 bytes
per feature.

Where the model comes from: a map built with ``--features patch
--local-model FILE.onnx`` carries the file (mapdb/features.py, ``files.model``),
so the localizer extracts exactly what the map stores.  The ONNX metadata
(written by export.py) gives the format tag, the descriptor width, the stride,
the input size, the pooling window, the student's preprocessing and a digest
of the weights; a missing, foreign or edited file is a UserError saying what
to pass instead.
"""
from __future__ import annotations

import dataclasses
from functools import lru_cache
from pathlib import Path

import numpy as np

from ...foundation.errors import UserError
from ..learned.runtime import as_float, quantise  # noqa: F401 - one quantisation for both learned kinds
from ..types import Features
from ..onnx_local import DESC_NAME, INPUT_NAME, SCORE_NAME  # one I/O contract for both kinds

KIND = "patch"
DESC_DIM = 128
#: metadata_props ``format`` of the export; distinct from the student's and the learned kind's.
META_FORMAT = "distilvpr_patch_features"
#: 2: the ``offsets`` or ``fine`` output (sub-cell keypoints).  Version 1 files (cell centres) are
#: refused: a map built with them stores other keypoints than this runtime would extract.
FORMAT_VERSION = "2"
OFFSETS_NAME, FINE_NAME = "offsets", "fine"
_EXPORT_HINT = "export one with 'distilvpr export-patch --checkpoint student_best.pt --out patch.onnx'"


def empty() -> Features:
    """Patch features of a frame with none: keypoints float32 [0, 2], descriptors uint8 [0, 128]."""
    return Features(np.zeros((0, 2), np.float32), np.zeros((0, DESC_DIM), np.uint8), KIND)


def cell_centres(h: int, w: int, stride: int, input_size: tuple[int, int],
                 image_size: tuple[int, int]) -> np.ndarray:
    """float32 [h * w, 2] (x, y) pixels of the image as captured (``image_size`` (W, H), pixel
    centre at integer coordinates) of the centres of an [h, w] cell map, row-major
    (:func:`cell_keypoints` with zero offsets).

    Cell (i, j) of a stride-``stride`` ResNet trunk is centred on input pixel (stride j,
    stride i): every strided convolution and pooling of the trunk has a centred, symmetric
    window (kernel k, padding (k - 1) / 2), so output k sees input 2k +- (k - 1) / 2.  The
    input is the frame stretched to ``input_size`` (W_in, H_in), so an input pixel x maps to
    (x + 0.5) W / W_in - 0.5 in the frame (edges align).
    """
    return cell_keypoints(np.zeros((2, h, w), np.float32), stride, input_size, image_size)


def cell_keypoints(offsets: np.ndarray, stride: int, input_size: tuple[int, int],
                   image_size: tuple[int, int]) -> np.ndarray:
    """float32 [h * w, 2] (x, y) pixels of the image as captured of each cell's keypoint, row-major:
    the centre of cell (i, j), input pixel (stride j, stride i) (:func:`cell_centres`), plus
    ``offsets`` float32 [2, h, w] ((dx, dy) input pixels, the network's sub-cell output),
    mapped through the stretch."""
    _, h, w = offsets.shape
    sx, sy = image_size[0] / input_size[0], image_size[1] / input_size[1]
    jj, ii = np.meshgrid(np.arange(w), np.arange(h))
    x = (stride * jj.ravel() + offsets[0].ravel().astype(np.float64) + 0.5) * sx - 0.5
    y = (stride * ii.ravel() + offsets[1].ravel().astype(np.float64) + 0.5) * sy - 0.5
    return np.ascontiguousarray(np.c_[x, y], np.float32)


class PatchExtractor:
    """One ONNX Runtime session of an exported patch model (``path``); UserError for a
    missing, unreadable or foreign file, or one whose weights do not match its digest."""

    def __init__(self, path: str | Path, threads: int = 1):
        import onnx
        import onnxruntime as ort
        from ...foundation.contract import PreprocessContract
        from ...infer.model_meta import FORMAT_KEY, weights_digest
        self.path = Path(path)
        where = f"patch local features: {self.path}"
        if not self.path.is_file():
            raise UserError(f"{where} does not exist; {_EXPORT_HINT} and pass it (map build --local-model)")
        try:
            proto = onnx.load(str(self.path))
        except Exception as exc:  # noqa: BLE001 - any parse failure is the same user problem
            raise UserError(f"{where} is not an ONNX model ({exc}); {_EXPORT_HINT}") from None
        meta = {p.key: p.value for p in proto.metadata_props}
        if meta.get("format") != META_FORMAT:
            what = ("a place-recognition student (distilvpr export)" if FORMAT_KEY in meta else
                    "the learned local descriptor (distilvpr train-local); use --features learned for it"
                    if meta.get("format") == "distilvpr_local_features" else
                    f"not a patch-feature model (metadata format {meta.get('format')!r})")
            raise UserError(f"{where} is {what}, not the student's dense patch model "
                            f"(format {META_FORMAT!r}); {_EXPORT_HINT}")
        if meta.get("format_version") != FORMAT_VERSION:
            old = (" (version 1: keypoints at cell centres, before sub-cell keypoints)"
                   if meta.get("format_version") == "1" else "")
            raise UserError(f"{where}: format version {meta.get('format_version')!r}{old}, this distilvpr "
                            f"reads {FORMAT_VERSION!r}; {_EXPORT_HINT}, then rebuild any map made with "
                            "the old file (map build --features patch --local-model patch.onnx)")
        if weights_digest(proto) != meta.get("weights_sha256"):
            raise UserError(f"{where}: the weights do not match the digest in its metadata (the file "
                            f"was changed after export); {_EXPORT_HINT}")
        self.desc_dim, self.stride = int(meta["desc_dim"]), int(meta["stride"])
        if self.desc_dim != DESC_DIM:
            raise UserError(f"{where} gives {self.desc_dim}-d descriptors, this distilvpr stores "
                            f"{DESC_DIM}-d ones; {_EXPORT_HINT}")
        self.input_size = (int(meta["input_width"]), int(meta["input_height"]))
        self.pool = int(meta["pool"])
        self.subcell = {k: meta.get(f"subcell_{k}") for k in ("source", "stride", "radius", "beta")}
        from .coarse_to_fine import MATCH_STRIDES
        self.coarse_to_fine = self.subcell["source"] in MATCH_STRIDES
        self.student_fingerprint = meta.get("student_fingerprint", "")
        self.weights_sha256 = meta["weights_sha256"]
        # The student's own normalisation, at the dense input size, stretched so that
        # cell centres map back to the frame by a scale alone (cell_centres).
        self.contract = dataclasses.replace(
            PreprocessContract.from_json(meta["preprocess"], source=f"{where}: preprocess"),
            input_size=self.input_size, resize="stretch")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        third = FINE_NAME if self.coarse_to_fine else OFFSETS_NAME
        if third not in {o.name for o in self.session.get_outputs()}:
            raise UserError(f"{where}: no {third!r} output for sub-cell source {self.subcell['source']!r} "
                            f"(an incomplete or edited export); {_EXPORT_HINT}")

    def dense(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(float32 [D, h, w] unit-norm descriptors, float32 [h, w] scores, and float32 [2, h, w]
        sub-cell offsets (dx, dy) in input pixels or, coarse-to-fine, the fine descriptors
        float32 [D, Hf, Wf]) of uint8 [H, W, 3] RGB (or [H, W] grey); h = ceil(H_in / stride),
        w = ceil(W_in / stride)."""
        from ...foundation.preprocess import preprocess
        third = FINE_NAME if self.coarse_to_fine else OFFSETS_NAME
        desc, score, extra = self.session.run([DESC_NAME, SCORE_NAME, third],
                                              {INPUT_NAME: preprocess(rgb, self.contract)})
        return desc[0], score[0, 0], extra[0]

    def extract(self, rgb: np.ndarray, max_features: int = 500) -> Features:
        """Features of uint8 [H, W, 3] RGB; at most ``max_features``, highest score first
        (module doc).  A blank frame still gives cells (every cell is a patch); a frame
        whose cells all score 0 gives zero features."""
        n = int(max_features)
        desc, score, extra = self.dense(rgb)
        d, h, w = desc.shape
        s = score.ravel()
        keep = np.argsort(-s, kind="stable")[:max(n, 0)]
        keep = keep[s[keep] > 0]
        if len(keep) == 0:
            return empty()
        img = np.asarray(rgb)
        size = (img.shape[1], img.shape[0])
        if not self.coarse_to_fine:
            pts = cell_keypoints(extra, self.stride, self.input_size, size)[keep]
            return Features(pts, quantise(desc.reshape(d, -1).T[keep]), KIND)
        # Coarse-to-fine: cell centres, plus the fine map a query's matches are refined on.
        from .coarse_to_fine import FineMap
        fine = FineMap(extra, int(self.subcell["stride"]), self.input_size, size,
                       int(self.subcell["radius"]), float(self.subcell["beta"]))
        pts = cell_centres(h, w, self.stride, self.input_size, size)[keep]
        return Features(pts, quantise(desc.reshape(d, -1).T[keep]), KIND, dense=fine)


@lru_cache(maxsize=4)
def load(path: str) -> PatchExtractor:
    """The extractor of the ONNX file at ``path`` (one session per file, cached)."""
    return PatchExtractor(path)


def extract(rgb: np.ndarray, max_features: int = 500) -> Features:
    """The registry's model-less entry: always a UserError that says where the model comes from."""
    raise UserError("patch local features need the student's dense ONNX model: "
                    f"{_EXPORT_HINT}, then 'distilvpr map build --features patch --local-model patch.onnx' "
                    "(the map then carries the model)")
