"""Local feature extractors by name: what the map records and the query must match.

``"sift"`` (RootSIFT on a CLAHE-normalised image, 128 bytes) is the default
of map building: on the validation drive of the demo town (dawn, winter) it
gave 9 metric poses with no wrong one where ORB gave 1 (docs/replay_eval.md,
"Per condition").  ``"orb"`` (32-byte binary, cheaper) stays as the fallback.  A map
stores its kind (mapdb/features.py) and a query is only ever matched with
features of the same kind.

``"learned"`` (features/learned/, a small CNN trained on the synthetic town,
128 bytes) needs its ONNX model: :func:`bound` gives the extract function of
a kind with the model file a map carries (mapdb/features.py); the registry's
own ``extract`` of it raises a UserError saying so.  Measured per condition
(docs/local_features.md) it gives more poses than RootSIFT at dawn and in fog
but is less precise at noon on the validation drives, so the default stays
``"sift"``.

``"patch"`` (features/patch/, the place-recognition student's own layer-3
cells, PCA to 128 bytes, as in Patch-NetVLAD) needs its ONNX model too
(``distilvpr export-patch``); it is bound the same way.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..foundation.errors import UserError
from . import orb, sift
from .learned import runtime as learned
from .patch import runtime as patch
from .types import Features


@dataclass(frozen=True)
class Extractor:
    """name; ``extract(rgb, max_features) -> Features``; descriptor dtype and width;
    ``empty()`` a zero-feature result of this kind; ``load(path)`` the extractor object
    (with an ``extract`` method) of a model file, for a kind that needs one, else None."""
    name: str
    extract: Callable[[np.ndarray, int], Features]
    desc_dtype: type
    desc_dim: int
    empty: Callable[[], Features]
    load: Callable[[str], Any] | None = None


EXTRACTORS: dict[str, Extractor] = {
    orb.KIND: Extractor(orb.KIND, orb.extract, np.uint8, orb.DESC_DIM, orb.empty),
    sift.KIND: Extractor(sift.KIND, sift.extract, np.uint8, sift.DESC_DIM, sift.empty),
    learned.KIND: Extractor(learned.KIND, learned.extract, np.uint8, learned.DESC_DIM, learned.empty,
                            learned.load),
    patch.KIND: Extractor(patch.KIND, patch.extract, np.uint8, patch.DESC_DIM, patch.empty, patch.load),
}
#: Kinds whose extractor is a model file (the map carries it).
NEEDS_MODEL: frozenset[str] = frozenset(k for k, e in EXTRACTORS.items() if e.load is not None)
DEFAULT = sift.KIND  # chosen on validation drives, learned included (module doc)
KINDS: tuple[str, ...] = tuple(EXTRACTORS)


def get(kind: str, where: str = "features") -> Extractor:
    """The extractor named ``kind``; UserError listing the known ones."""
    try:
        return EXTRACTORS[kind]
    except (KeyError, TypeError):
        raise UserError(f"{where}: unknown local feature kind {kind!r}; known: {list(KINDS)}") from None


def extract(kind: str, rgb: np.ndarray, max_features: int) -> Features:
    """Features of ``kind`` of uint8 [H, W, 3] RGB, at most ``max_features``."""
    return get(kind).extract(rgb, max_features)


def bound(kind: str, model_path: str | Path | None = None) -> Callable[[np.ndarray, int], Features]:
    """``extract(rgb, max_features)`` of ``kind``; for a kind in NEEDS_MODEL the one of the
    model at ``model_path`` (UserError when there is none or it cannot be loaded)."""
    ex = get(kind)
    if kind not in NEEDS_MODEL:
        return ex.extract
    if model_path is None:
        raise UserError(f"features: {kind!r} local features need their model file; the map does not "
                        f"carry one -- rebuild it with --features {kind} --local-model FILE.onnx")
    return ex.load(str(model_path)).extract


def check_same_kind(query_kind: str, map_kind: str, where: str) -> None:
    """UserError naming both kinds when a query's features cannot match the map's."""
    if query_kind != map_kind:
        raise UserError(f"{where}: the query uses {query_kind!r} local features but the map stores "
                        f"{map_kind!r}; set local_features to {map_kind!r} (or 'map'), or rebuild "
                        f"the map with --features {query_kind}")
