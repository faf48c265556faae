"""Opening a dataset's traversals: one reader per format, then the data options that
wrap them (``data.frame_stride`` thins frames, ``data.cache_images`` decodes every
image once into memory) and, for a benchmark town, the geographic split.

The traversal interface every reader and wrapper offers is described in
:mod:`distilvpr_core.data.datasets`.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from ..foundation.config import ConfigError
from ..foundation.errors import UserError
from .traversal_view import TraversalView
from .datasets import FORMATS, DataConfig


class _NativeTraversal(TraversalView):
    has_lidar: bool

    def __init__(self, ds: Any, name: str) -> None:
        self._trav = ds.traversal(name)
        self.name, self.role = name, ds.role(name)
        self.positions = np.asarray(self._trav.poses, dtype=np.float64)[:, :2]
        self.has_lidar = bool(getattr(ds, "lidar", None))
        c = self._trav.conditions
        #: "time_of_day/weather/season", the label of R@1 per query condition
        self.condition = "/".join(str(c.get(k, "")) for k in ("time_of_day", "weather", "season"))



class _StridedTraversal:
    """Every ``stride``-th frame of another traversal (same name, role, LiDAR, town, condition)."""

    def __init__(self, trav: Any, stride: int) -> None:
        self._trav, self._stride = trav, stride
        self.name, self.role, self.has_lidar = trav.name, trav.role, trav.has_lidar
        self.town, self.condition = getattr(trav, "town", ""), getattr(trav, "condition", "")
        self.positions = np.asarray(trav.positions, dtype=np.float64)[::stride]

    def __len__(self) -> int:
        return len(self.positions)

    def load_image(self, i: int) -> np.ndarray:
        return self._trav.load_image(i * self._stride)

    def load_lidar(self, i: int) -> np.ndarray:
        return self._trav.load_lidar(i * self._stride)


class _CachedImageTraversal:
    """Another traversal with every camera frame decoded once, into memory (data.cache_images).

    The images are stored read-only, so a consumer that would change a cached frame in
    place fails loudly instead of corrupting the next epoch.  Everything else (LiDAR,
    positions, an evaluation run's query lists) comes from the wrapped traversal.
    """

    def __init__(self, trav: Any, threads: int) -> None:
        from concurrent.futures import ThreadPoolExecutor
        self._trav = trav
        # PNG/JPEG decoding releases the GIL, so threads use several cores.
        with ThreadPoolExecutor(max(1, threads)) as pool:
            self._images = list(pool.map(self._decode, range(len(trav))))

    def _decode(self, i: int) -> np.ndarray:
        img = np.array(self._trav.load_image(i), copy=True)
        img.flags.writeable = False
        return img

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # not found on this object (e.g. while unpickling)
            raise AttributeError(name)
        return getattr(self._trav, name)

    def __len__(self) -> int:
        return len(self._images)

    def load_image(self, i: int) -> np.ndarray:
        return self._images[i]


def open_traversals(cfg: DataConfig) -> list[Any]:
    """All traversals of the configured dataset, in dataset order, thinned to
    every ``cfg.frame_stride``-th frame -- except evaluation runs whose queries
    and true neighbours come from the dataset's query pickle (the protocol
    indexes their frames) -- and with their images decoded into memory if
    ``cfg.cache_images``."""
    travs = _open_format(cfg) + _open_towns(cfg)
    if cfg.frame_stride > 1:
        travs = [t if getattr(t, "query_indices", None) is not None else _StridedTraversal(t, cfg.frame_stride)
                 for t in travs]
    if cfg.cache_images:
        from tqdm import tqdm
        check_image_cache_fits(travs, available_memory_bytes())
        threads = min(8, os.cpu_count() or 1)
        travs = [_CachedImageTraversal(t, threads)
                 for t in tqdm(travs, desc="decode images into memory", unit="traversal")]
    return travs


def available_memory_bytes() -> int | None:
    """Memory the OS can still hand out (bytes), or None where it cannot be read."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_image_cache_fits(travs: Sequence[Any], available: int | None) -> None:
    """UserError if decoding every frame (estimated from each traversal's first frame)
    would take more than half of ``available`` bytes: full-resolution benchmark images
    (e.g. 1280x960 RGB, 3.7 MB) over tens of thousands of frames do not fit."""
    frames = sum(len(t) for t in travs)
    need = sum(len(t) * t.load_image(0).nbytes for t in travs if len(t))
    if available is not None and need > available // 2:
        raise UserError(f"data.cache_images: decoding all {frames} frames would take "
                        f"{need / 2**30:.1f} GiB, more than half of the {available / 2**30:.1f} GiB "
                        "of memory available; set data.cache_images: false (or thin the data "
                        "with data.frame_stride)")


def _open_format(cfg: DataConfig) -> list[Any]:
    if cfg.format == "native":
        from . import native  # imported here: only the chosen format's reader is needed
        from .towns import is_towns_folder
        if is_towns_folder(cfg.root):
            return []   # data.root is a towns folder: every traversal comes from _open_towns
        ds = native.open_dataset(cfg.root)
        return [_NativeTraversal(ds, name) for name in ds.traversals]
    if cfg.format in ("oxford", "boreas"):
        from .benchmark_layout import open_benchmark
        if cfg.format == "oxford":
            from .oxford_format import oxford_layout
            layout = oxford_layout()
        else:
            from .boreas import BOREAS as layout
        return open_benchmark(layout, cfg.root, cfg.image_root, cfg.val_runs)
    raise ConfigError(f"data.format: unknown format {cfg.format!r}; valid: {list(FORMATS)}")


def _open_towns(cfg: DataConfig) -> list[Any]:
    """The traversals of every town (data.towns, or data.root when it is a towns folder), namespaced
    and shifted apart (:mod:`distilvpr_core.data.towns`)."""
    from .towns import TownTraversal, check_town_roles, is_towns_folder, town_dirs, town_role
    paths = [*([cfg.root] if cfg.format == "native" and is_towns_folder(cfg.root) else []), *cfg.towns]
    if (cfg.val_towns or cfg.test_towns) and not paths:
        raise UserError("data.val_towns / data.test_towns name towns, but no towns are opened; "
                        "set data.towns: [DIR] (or data.root to a towns folder)")
    if not paths:
        return []
    if cfg.format != "native":
        raise UserError(f"data.towns: towns are native datasets; data.format is {cfg.format!r}")
    from . import native
    dirs = town_dirs(paths)
    check_town_roles([d.name for d in dirs], cfg.val_towns, cfg.test_towns)
    out: list[Any] = []
    for k, d in enumerate(dirs, start=1):
        ds = native.open_dataset(d)
        role = town_role(d.name, cfg.val_towns, cfg.test_towns)
        out += [TownTraversal(_NativeTraversal(ds, name), d.name, k, role) for name in ds.traversals]
    return out


def open_split_traversals(data: DataConfig) -> tuple[list[Any], Any]:
    """(traversals, geographic split or None) of ``data``, with every frame near a test
    region dropped when the native dataset has a split: the frames training, validation
    and the teacher cache see."""
    from .geosplit import exclude_near_test_regions, read_split
    traversals = open_traversals(data)
    # The split is the main dataset's (data.root); town traversals are not in it.
    main = [t for t in traversals if not getattr(t, "town", "")]
    towns = [t for t in traversals if getattr(t, "town", "")]
    split = read_split(data.root, main, data.frame_stride) if data.format == "native" and main else None
    if split is not None:
        main = exclude_near_test_regions(main, split)
    return main + towns, split
