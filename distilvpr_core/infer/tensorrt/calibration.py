"""Calibration images for INT8 (ONNX Runtime QDQ and TensorRT): a directory or a dataset traversal.

No torch.  Images are sampled evenly over the source (deterministic), so a
calibration run sees the whole route, not its first seconds.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from ...foundation.errors import UserError
from ...foundation.contract import PreprocessContract
from ...foundation.preprocess import preprocess

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class CalibrationSource:
    """``path``: a directory of images, or a native dataset root when ``traversal`` is set.
    ``limit``: at most this many images, evenly spaced."""
    path: Path
    traversal: str | None = None
    limit: int = 128

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise UserError(f"calibration limit must be >= 1, got {self.limit}")
        if not Path(self.path).is_dir():
            what = "dataset root" if self.traversal else "calibration image directory"
            raise UserError(f"{self.path}: {what} not found; pass an existing directory")


def _pick(n: int, limit: int) -> list[int]:
    if n <= limit:
        return list(range(n))
    return sorted({int(i) for i in np.linspace(0, n - 1, limit)})


def _dir_files(path: Path) -> list[Path]:
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise UserError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) found for calibration")
    return files


def iter_images(src: CalibrationSource) -> Iterator[np.ndarray]:
    """uint8 images [H, W, 3] RGB (or [H, W] mono) of the source, evenly sampled."""
    if src.traversal is None:
        files = _dir_files(Path(src.path))
        for i in _pick(len(files), src.limit):
            try:
                with Image.open(files[i]) as im:
                    yield np.asarray(im.convert("RGB") if im.mode not in ("RGB", "L") else im)
            except OSError as exc:
                raise UserError(f"{files[i]}: unreadable calibration image ({exc})") from None
        return
    from ...data import native  # lazily: the dataset reader is only needed here

    ds = native.open_dataset(src.path)
    if src.traversal not in ds.traversals:
        raise UserError(f"{src.path}: no traversal {src.traversal!r}; available: {ds.traversals}")
    trav = ds.traversal(src.traversal)
    for i in _pick(len(trav), src.limit):
        yield trav.load_image(i)


def iter_batches(src: CalibrationSource, contract: PreprocessContract,
                 batch_size: int = 8) -> Iterator[np.ndarray]:
    """Network inputs float32 [B, 3, H, W] (last batch may be smaller)."""
    buf: list[np.ndarray] = []
    for img in iter_images(src):
        buf.append(img)
        if len(buf) == batch_size:
            yield preprocess(buf, contract)
            buf = []
    if buf:
        yield preprocess(buf, contract)


def source_digest(src: CalibrationSource) -> str:
    """sha256 hex identifying the calibration set (names + sizes + mtimes, or dataset + traversal).

    Part of the INT8 engine cache key: other calibration data -> other engine.
    """
    h = hashlib.sha256(f"limit={src.limit}\ntraversal={src.traversal}\n".encode())
    root = Path(src.path).resolve()
    if src.traversal is None:
        for f in _dir_files(root):
            st = f.stat()
            h.update(f"{f.relative_to(root)}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    else:
        h.update(str(root).encode())
        meta = root / "dataset.json"
        if meta.is_file():
            h.update(meta.read_bytes())
    return h.hexdigest()
