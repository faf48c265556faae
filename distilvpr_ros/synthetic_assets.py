"""A random-init student (ONNX) and a prior map of procedurally drawn places.

For the node's end-to-end tests and ``distilvpr bench node --synthetic``:
real components (a real exported student, real FAISS map on disk), no
trained artefacts or downloads needed.  Place ``i`` is a smooth random
colour field with a few rectangles, seeded by ``i``, at pose
x = 10 i m, y = 0, identity rotation, stamped 1.6e9 + i seconds (long in the
past, so ``exclude_recent_s`` never hides it from a query stamped now).
Needs torch (export); the node that consumes the files does not.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAP_EPOCH_NS = 1_600_000_000 * 10**9


@dataclass
class SyntheticAssets:
    """Files and ground truth of :func:`build`: a random-init student (ONNX and checkpoint), its map of one
    keyframe per place, and each place's image, map-frame pose and stamp."""
    model: Path          # student.onnx
    checkpoint: Path     # student.pt (same weights, for backend torch)
    map: Path            # prior map directory
    images: np.ndarray   # uint8 [N, H, W, 3] RGB, one per place (row i = keyframe id i)
    poses: np.ndarray    # float64 [N, 7] x y z qx qy qz qw, map frame
    stamps_ns: np.ndarray  # int64 [N]


def place_image(i: int, width: int = 640, height: int = 480) -> np.ndarray:
    """uint8 [height, width, 3] RGB image of place ``i`` (deterministic)."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(1000 + i)
    coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    img = Image.fromarray(coarse).resize((width, height), Image.BICUBIC)
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        x0, y0 = rng.integers(0, width - 40), rng.integers(0, height - 40)
        w, h = rng.integers(20, width // 3), rng.integers(20, height // 3)
        draw.rectangle([int(x0), int(y0), int(x0 + w), int(y0 + h)],
                       fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    return np.asarray(img, np.uint8)


def export_random_student(out_dir: str | Path, input_size: tuple[int, int] = (160, 120), dim: int = 64,
                          seed: int = 0) -> tuple[Path, Path]:
    """Write a random-init student as ``student.pt`` and ``student.onnx``; returns both paths.

    input_size: student input (W, H) pixels; dim: descriptor size D.
    """
    from distilvpr_core.export.random_student import export_random_student as export
    return export(out_dir, input_size, dim, seed)


def build_map(out: str | Path, model: str | Path, images: np.ndarray, poses: np.ndarray,
              stamps_ns: np.ndarray, source: str) -> Path:
    """Embed uint8 [N, H, W, 3] images with ``model`` (ONNX Runtime) and save a
    flat map of them (poses float64 [N, 7], stamps int64 [N]) at ``out``."""
    from distilvpr_core.infer import load_embedder
    from distilvpr_core.mapdb import PriorMap

    emb = load_embedder(model, backend="onnxruntime", intra_op_threads=1)
    m = PriorMap.create(emb.dim, emb.fingerprint, emb.contract, index="flat")
    m.add(emb.embed(images), np.asarray(stamps_ns, np.int64), poses, source,
          np.arange(len(images), dtype=np.int64))
    return m.save(out)


def build(out_dir: str | Path, places: int = 12, input_size: tuple[int, int] = (160, 120),
          dim: int = 64, image_size: tuple[int, int] = (640, 480), seed: int = 0) -> SyntheticAssets:
    """Write ``out_dir/student.{pt,onnx}`` and ``out_dir/map`` of ``places``
    drawn places; return them with the images.  image_size: (W, H)."""
    out = Path(out_dir)
    checkpoint, model = export_random_student(out, input_size, dim, seed)
    images = np.stack([place_image(i, *image_size) for i in range(places)])
    poses = np.zeros((places, 7))
    poses[:, 0] = 10.0 * np.arange(places)
    poses[:, 6] = 1.0
    stamps = MAP_EPOCH_NS + np.arange(places, dtype=np.int64) * 10**9
    build_map(out / "map", model, images, poses, stamps, "synthetic_places")
    return SyntheticAssets(model, checkpoint, out / "map", images, poses, stamps)
