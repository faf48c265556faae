"""The ``"learned"`` extractor: the exported network under ONNX Runtime.

``LearnedExtractor(path).extract(rgb, max_features) -> Features`` has the
contract of every extractor (features/registry.py): Shi-Tomasi corners of the
normalised grey image (preprocess.py), ranked by the network's score, at most
``max_features``; each keypoint's descriptor is the dense descriptor map
sampled bilinearly there and L2-normalised, stored as uint8 (``quantise``:
``round(127.5 * d + 127.5)``; :func:`as_float` undoes it, the step 1/127.5 is
far below the distances the ratio test separates), so a 128-d descriptor takes
128 bytes like RootSIFT.

Where the model comes from: a map built with ``--features learned`` carries
its ONNX file (mapdb/features.py, ``files.model``), so the localizer uses the
network the map was built with; :func:`load` caches one session per file.
The ONNX metadata (written by localtrain/export.py) gives the descriptor
width, the stride and a digest of the weights, checked at load.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from ...foundation.errors import UserError
from ..types import Features
from . import preprocess
from ..onnx_local import DESC_NAME, INPUT_NAME, SCORE_NAME  # one I/O contract for both kinds

KIND = "learned"
DESC_DIM = 128
QUANT = 127.5
#: Corner candidates per wanted feature, ranked by the network's score.
OVERSAMPLE = 2
#: metadata_props keys of the export.
META_FORMAT = "distilvpr_local_features"
FORMAT_VERSION = "1"


def empty() -> Features:
    """Learned features of a frame with none: keypoints float32 [0, 2], descriptors uint8 [0, 128]."""
    return Features(np.zeros((0, 2), np.float32), np.zeros((0, DESC_DIM), np.uint8), KIND)


def quantise(desc: np.ndarray) -> np.ndarray:
    """float32 [F, D] unit-norm descriptors -> uint8 [F, D] (module doc)."""
    return np.clip(np.rint(np.asarray(desc, np.float32) * QUANT + QUANT), 0, 255).astype(np.uint8)


def as_float(desc: np.ndarray) -> np.ndarray:
    """uint8 [F, D] quantised descriptors -> float32 [F, D] (about unit L2 norm)."""
    return (np.asarray(desc, np.float32) - QUANT) / QUANT


class LearnedExtractor:
    """One ONNX Runtime session of an exported network (``path``); UserError for a
    missing, unreadable or foreign file, or one whose weights do not match its digest."""

    def __init__(self, path: str | Path, threads: int = 1):
        import onnx
        import onnxruntime as ort
        from ...infer.model_meta import weights_digest
        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"learned local features: model file {self.path} does not exist; train one "
                            "with 'distilvpr train-local' and pass its .onnx (map build --local-model)")
        try:
            proto = onnx.load(str(self.path))
        except Exception as exc:  # noqa: BLE001 - any parse failure is the same user problem
            raise UserError(f"learned local features: {self.path} is not an ONNX model ({exc}); "
                            "pass the .onnx written by 'distilvpr train-local'") from None
        meta = {p.key: p.value for p in proto.metadata_props}
        if meta.get("format") != META_FORMAT:
            raise UserError(f"learned local features: {self.path} is not a local-feature model "
                            f"(metadata format {meta.get('format')!r}, expected {META_FORMAT!r}); pass the "
                            ".onnx written by 'distilvpr train-local', not a place-recognition student")
        if weights_digest(proto) != meta.get("weights_sha256"):
            raise UserError(f"learned local features: {self.path}: the weights do not match the digest in "
                            "its metadata (the file was changed after export); export it again")
        self.desc_dim, self.stride = int(meta["desc_dim"]), int(meta["stride"])
        if self.desc_dim != DESC_DIM:
            raise UserError(f"learned local features: {self.path} gives {self.desc_dim}-d descriptors, "
                            f"this distilvpr stores {DESC_DIM}-d ones; train with desc_dim {DESC_DIM}")
        self.weights_sha256 = meta["weights_sha256"]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])

    def dense(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(uint8 [H, W] normalised grey, float32 [D, h, w] descriptors, float32 [h, w] score)
        of uint8 [H, W, 3] RGB; the image is cropped to a multiple of the stride (bottom/right)."""
        grey = preprocess.normalised_grey(rgb)
        s = self.stride
        h, w = (grey.shape[0] // s) * s, (grey.shape[1] // s) * s
        desc, score = self.session.run([DESC_NAME, SCORE_NAME],
                                       {INPUT_NAME: preprocess.network_input(grey[:h, :w])})
        return grey, desc[0], score[0, 0]

    def extract(self, rgb: np.ndarray, max_features: int = 500) -> Features:
        """Features of uint8 [H, W, 3] RGB; at most ``max_features`` (module doc).  A
        textureless frame gives zero features, never an error."""
        n = int(max_features)
        grey, desc, score = self.dense(rgb)
        pts = preprocess.corners(grey, OVERSAMPLE * n)
        if len(pts) == 0 or n <= 0:
            return empty()
        s = preprocess.sample_map(score[None], pts, self.stride)[:, 0]
        keep = np.argsort(-s, kind="stable")[:n]
        pts = pts[keep]
        d = preprocess.sample_map(desc, pts, self.stride)
        d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
        return Features(np.ascontiguousarray(pts, np.float32), quantise(d), KIND)


@lru_cache(maxsize=4)
def load(path: str) -> LearnedExtractor:
    """The extractor of the ONNX file at ``path`` (one session per file, cached)."""
    return LearnedExtractor(path)


def extract(rgb: np.ndarray, max_features: int = 500) -> Features:
    """The registry's model-less entry: always a UserError that says where the model comes from."""
    raise UserError("learned local features need their ONNX model: build the map with "
                    "'distilvpr map build --features learned --local-model FILE.onnx' (the map then "
                    "carries the model), or call features.learned.runtime.load(FILE).extract")
