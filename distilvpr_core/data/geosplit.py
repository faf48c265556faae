"""The geographic split of a dataset (``split.json``) applied to its traversals.

``distilvpr synth`` writes ``split.json`` for towns with ``split.test_regions``
(see :mod:`distilvpr_core.sim.split`).  Loading it:

* training and validation traversals lose every frame within ``buffer_m`` of
  any test-region frame (of any traversal), so no place of a test region is
  ever trained on or used for model selection;
* test traversals are kept whole; :class:`GeoSplit` says which of their frames
  are test-region frames (protocol P) and which are not (protocol D), and
  which traversals are stress traversals (protocol S).

Datasets without ``split.json`` load unchanged.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..foundation.errors import UserError


def near(points: np.ndarray, others: np.ndarray, radius_m: float) -> np.ndarray:
    """bool [N]: point i (float [N, 2], metres) lies within ``radius_m`` of some row of ``others``."""
    pts, oth = np.asarray(points, np.float64), np.asarray(others, np.float64)
    out = np.zeros(len(pts), dtype=bool)
    if len(oth) == 0:
        return out
    for i in range(0, len(pts), 1024):   # chunks keep the [chunk, M] matrix small
        d2 = ((pts[i:i + 1024, None, :] - oth[None]) ** 2).sum(-1)
        out[i:i + 1024] = (d2 <= radius_m ** 2).any(axis=1)
    return out


class FrameSubset:
    """Frames ``indices`` (int64 [K], ascending) of another traversal; same name, role, LiDAR,
    town and condition."""

    def __init__(self, trav: Any, indices: np.ndarray) -> None:
        self.source = trav
        self.indices = np.asarray(indices, dtype=np.int64)
        self.name, self.role, self.has_lidar = trav.name, trav.role, trav.has_lidar
        self.town, self.condition = getattr(trav, "town", ""), getattr(trav, "condition", "")
        self.positions = np.asarray(trav.positions, np.float64)[self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def load_image(self, i: int) -> np.ndarray:
        return self.source.load_image(int(self.indices[i]))

    def load_lidar(self, i: int) -> np.ndarray:
        return self.source.load_lidar(int(self.indices[i]))


@dataclass(frozen=True)
class GeoSplit:
    """What ``split.json`` says about the (possibly strided) traversals.

    region_masks: traversal name -> bool [N] (its frames in a test region);
    conditions: traversal name -> (time_of_day, weather, season);
    stress: names of the stress traversals (protocol S); buffer_m: metres.
    """
    region_masks: dict[str, np.ndarray]
    conditions: dict[str, tuple[str, ...]]
    stress: tuple[str, ...]
    buffer_m: float


def read_split(root: str | Path, traversals: Sequence[Any], frame_stride: int = 1) -> GeoSplit | None:
    """Parse ``root/split.json`` for ``traversals`` (None when the file is absent).

    Frame indices in the file refer to the rendered frames; ``frame_stride``
    maps them onto traversals opened with ``data.frame_stride``.
    """
    path = Path(root) / "split.json"
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
        frames = doc["test_region_frames"]
        buffer_m = float(doc["buffer_m"])
        stress = tuple(doc.get("stress_traversals", []))
        conditions = {k: tuple(v) for k, v in doc.get("conditions", {}).items()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: not a readable split file ({exc}); regenerate the dataset "
                        "with 'distilvpr synth'") from None
    masks = {}
    for t in traversals:
        if t.name not in frames:
            raise UserError(f"{path}: traversal {t.name!r} of the dataset is not in the split; "
                            "regenerate the dataset")
        full = np.zeros(len(t) * frame_stride, dtype=bool)
        idx = np.asarray(frames[t.name], dtype=np.int64)
        full[idx[idx < len(full)]] = True
        masks[t.name] = full[::frame_stride][:len(t)]
    by_name = {t.name: t for t in traversals}
    for name in stress:
        if by_name.get(name) is None or by_name[name].role != "test":
            raise UserError(f"{path}: stress traversal {name!r} is not a test traversal of the dataset")
    return GeoSplit(masks, conditions, stress, buffer_m)


def exclude_near_test_regions(traversals: Sequence[Any], split: GeoSplit) -> list[Any]:
    """Training/validation traversals without frames within ``buffer_m`` of a test-region frame.

    Test traversals are returned unchanged.  A training/validation traversal
    left with no frame is an error naming it.
    """
    region_xy = [np.asarray(t.positions, np.float64)[split.region_masks[t.name]] for t in traversals]
    region_xy = np.concatenate(region_xy) if region_xy else np.zeros((0, 2))
    out = []
    for t in traversals:
        if t.role not in ("train", "val"):
            out.append(t)
            continue
        keep = np.nonzero(~near(t.positions, region_xy, split.buffer_m) & ~split.region_masks[t.name])[0]
        if len(keep) == 0:
            raise UserError(f"traversal {t.name!r} ({t.role}): every frame lies within {split.buffer_m} m "
                            "of a test region; it cannot be used for training or validation")
        out.append(t if len(keep) == len(t) else FrameSubset(t, keep))
    return out
