"""Training/evaluation data: the data settings, torch Datasets over the frames of
traversals, augmentations, and the P-pairs batch sampler.  Opening a dataset's
traversals (any supported format): :mod:`distilvpr_core.data.traversals`.

Every format is seen through one small interface (a *traversal*)::

    trav.name: str; trav.role: "train" | "val" | "test"; trav.has_lidar: bool
    trav.positions   float64 [N, 2] metres (planar position, any fixed frame)
    len(trav); trav.load_image(i) -> uint8 [H, W, 3] RGB
    trav.load_lidar(i) -> float32 [P, 4] x y z intensity, lidar frame
    optional (evaluation runs of oxford/boreas): trav.eval_set: int,
    trav.query_indices int64 [Q], trav.true_neighbours {eval_set m: [Q int64 arrays]}

Images go through the deployed preprocessing (``infer.preprocess``) so the
network sees training frames exactly as it sees them on the robot.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ..foundation.config import ConfigError, spec
from ..foundation.errors import UserError
from ..foundation.contract import PreprocessContract
from ..foundation.preprocess import preprocess, resize_image
from .augment import AugmentConfig, augment_lidar, jitter_image, photometric_image, random_erase  # noqa: F401 (AugmentConfig re-export)

FORMATS = ("native", "oxford", "boreas")


@dataclass
class DataConfig:
    """Where the data is and how frames become network inputs."""
    format: str = field(default="native", metadata=spec("dataset format", choices=FORMATS))
    root: str = field(default="data/synth_tiny", metadata=spec("dataset directory"))
    image_root: str = field(default="", metadata=spec(
        "formats oxford/boreas: folder with the per-run images (and, for oxford, "
        "lidar2image_ndx.pickle); empty = data.root"))
    val_runs: list[str] = field(default_factory=list, metadata=spec(
        "formats oxford/boreas: runs of the training pickle held out as role val "
        "(model selection) instead of being trained on"))
    towns: list[str] = field(default_factory=list, metadata=spec(
        "format native: more towns in the same data set, each a dataset directory or a towns "
        "folder (town_*/ as 'distilvpr synth --seeds' writes); data.root may itself be a towns "
        "folder.  A town's traversals train unless the town is in val_towns or test_towns "
        "(data/towns.py); places never cross towns"))
    val_towns: list[str] = field(default_factory=list, metadata=spec(
        "towns (directory names, e.g. town_4) whose traversals are validation drives (model selection)"))
    test_towns: list[str] = field(default_factory=list, metadata=spec(
        "towns (directory names) whose traversals are test drives: protocol T, an unseen town"))
    input_size: tuple[int, int] = field(default=(320, 240), metadata=spec("network input [W, H], pixels"))
    resize: str = field(default="center_crop", metadata=spec(
        "resize policy of the preprocessing contract", choices=("stretch", "center_crop")))
    num_workers: int = field(default=0, metadata=spec("DataLoader worker processes", ge=0))
    frame_stride: int = field(default=1, metadata=spec(
        "use every k-th frame of each traversal (1 = all); thins densely recorded data", ge=1))
    cache_images: bool = field(default=False, metadata=spec(
        "decode every camera frame once into memory when the data is opened (W x H x 3 bytes "
        "per frame, e.g. 0.23 MB at 320x240): training epochs and evaluations then skip the "
        "image decoding, which bounds the data loaders on a GPU machine"))

    def __post_init__(self) -> None:
        if any(v < 16 for v in self.input_size):
            raise ConfigError(f"data.input_size: expected [W, H] >= 16 pixels, got {list(self.input_size)}")

    def contract(self) -> PreprocessContract:
        """The preprocessing contract the trained model will be deployed with."""
        return PreprocessContract(input_size=tuple(self.input_size), resize=self.resize)


def select(traversals: Sequence[Any], role: str, source: str = "data") -> list[Any]:
    """The traversals with ``role``; UserError if there are none."""
    chosen = [t for t in traversals if t.role == role]
    if not chosen:
        hint = " (oxford/boreas: data.val_runs: [RUN] holds out training runs)" if role == "val" else ""
        raise UserError(f"{source}: no traversal with role {role!r} (roles present: "
                        f"{sorted({t.role for t in traversals})}); add one to the dataset{hint}")
    return chosen


class FrameIndex:
    """Frames of several traversals flattened into one index 0..N-1.

    ``positions`` float64 [N, 2] metres; ``traversal_ids`` int64 [N].
    """

    def __init__(self, traversals: Sequence[Any]) -> None:
        self.traversals = list(traversals)
        self.items = [(t, i) for t, trav in enumerate(self.traversals) for i in range(len(trav))]
        self.positions = np.concatenate([t.positions for t in self.traversals]).astype(np.float64)
        self.traversal_ids = np.concatenate([np.full(len(t), k, np.int64)
                                             for k, t in enumerate(self.traversals)])

    def __len__(self) -> int:
        return len(self.items)


class PlaceDataset(Dataset):
    """Frame k -> {"image": float32 [3, H, W] ImageNet-normalised, "index": k,
    "lidar": float32 prepared LiDAR input (only with ``lidar_prepare``)}."""

    def __init__(self, frames: FrameIndex, contract: PreprocessContract,
                 augment: AugmentConfig | None = None,
                 lidar_prepare: Callable[[np.ndarray], np.ndarray] | None = None,
                 seed: int = 0) -> None:
        if lidar_prepare is not None:
            bad = [t.name for t in frames.traversals if not t.has_lidar]
            if bad:
                raise UserError(f"the teacher needs LiDAR, but traversal(s) {bad} have no LiDAR "
                                "(camera-only dataset); train a student with a teacher checkpoint "
                                "instead (run.stages without teacher, run.teacher_checkpoint: PATH)")
        self.frames, self.contract, self.augment = frames, contract, augment
        self.lidar_prepare, self.seed = lidar_prepare, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Different augmentations each epoch, same ones for the same (seed, epoch, k)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, k: int) -> dict[str, Any]:
        t, i = self.frames.items[k]
        trav = self.frames.traversals[t]
        img = resize_image(_as_rgb(trav.load_image(i), trav.name, i), self.contract)
        out: dict[str, Any] = {"index": k}
        gen = None
        if self.augment is not None:
            seed = int(np.random.SeedSequence((self.seed, self.epoch, k)).generate_state(1)[0])
            gen = torch.Generator().manual_seed(seed)
            img = jitter_image(img, self.augment, gen)
            img = photometric_image(img, self.augment.photometric_prob, gen)
        image = torch.from_numpy(preprocess(img, self.contract)[0])
        if self.augment is not None and self.augment.erase_prob > 0:
            image = random_erase(image, self.augment.erase_prob, gen)
        out["image"] = image
        if self.lidar_prepare is not None:
            pts = trav.load_lidar(i)
            if self.augment is not None:
                rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
                pts = augment_lidar(pts, self.augment, rng)
            out["lidar"] = torch.from_numpy(self.lidar_prepare(pts))
        return out


def _as_rgb(img: np.ndarray, name: str, i: int) -> np.ndarray:
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] < 3 or img.dtype != np.uint8:
        raise UserError(f"traversal {name} frame {i}: expected uint8 RGB [H, W, 3], got "
                        f"{img.dtype} {img.shape}")
    return img[:, :, :3]


def neighbours_within(positions: np.ndarray, radius_m: float) -> list[np.ndarray]:
    """For each frame the indices of the *other* frames within ``radius_m`` (int64 arrays)."""
    pos = np.asarray(positions, np.float64)
    out = []
    for start in range(0, len(pos), 1024):  # chunked: N x N at once would not fit for big sets
        d2 = ((pos[start:start + 1024, None, :] - pos[None, :, :]) ** 2).sum(-1)
        for r, row in enumerate(d2 <= radius_m ** 2):
            row[start + r] = False
            out.append(np.flatnonzero(row))
    return out


class PairBatchSampler(Sampler[list[int]]):
    """Batches of P anchors, each followed by one positive: [a0, p0, a1, p1, ...].

    Positives are other frames within ``pos_radius_m``, preferably from another
    traversal (so a pair shows a change of conditions).  Anchors without any
    positive are never drawn.  With DDP, rank r takes every world-th batch.
    """

    def __init__(self, frames: FrameIndex, pairs_per_batch: int, pos_radius_m: float = 10.0,
                 seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        if pairs_per_batch < 2:
            raise ValueError("pairs_per_batch must be >= 2 (batch-hard mining needs negatives)")
        self.p, self.seed, self.rank, self.world = pairs_per_batch, seed, rank, world_size
        self.epoch = 0
        nbrs = neighbours_within(frames.positions, pos_radius_m)
        tid = frames.traversal_ids
        self.cross = [n[tid[n] != tid[k]] for k, n in enumerate(nbrs)]
        self.any = nbrs
        self.anchors = np.array([k for k, n in enumerate(nbrs) if len(n)], dtype=np.int64)
        if len(self.anchors) < pairs_per_batch:
            raise UserError(f"only {len(self.anchors)} training frames have a positive within "
                            f"{pos_radius_m} m, fewer than one batch of {pairs_per_batch} pairs; "
                            "lower train.pairs_per_batch or use more traversals")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.anchors) // self.p // self.world

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng((self.seed, self.epoch))
        order = rng.permutation(self.anchors)
        n = len(self) * self.world
        for b in range(self.rank, n, self.world):
            batch = []
            for a in order[b * self.p:(b + 1) * self.p]:
                pool = self.cross[a] if len(self.cross[a]) else self.any[a]
                batch += [int(a), int(pool[rng.integers(len(pool))])]
            yield batch


def collate(items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack a list of PlaceDataset items into batch tensors."""
    out = {"index": torch.tensor([it["index"] for it in items], dtype=torch.int64),
           "image": torch.stack([it["image"] for it in items])}
    if "lidar" in items[0]:
        out["lidar"] = torch.stack([it["lidar"] for it in items])
    return out
