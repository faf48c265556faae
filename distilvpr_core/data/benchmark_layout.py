"""Traversals from a PointNetVLAD-style benchmark folder (Oxford RobotCar, Boreas).

Both public layouts are indexed by the same kinds of pickles (field names as
written by the PointNetVLAD / MinkLoc++ / DistilVPR generator scripts)::

    <root>/<train pickle>        {id: TrainingTuple}                 -> role train
    <root>/<val pickle>          {id: TrainingTuple}  (optional)     -> role val
    <root>/<eval database>       [ {i: {query, northing, easting}} per run ]      -> role test
    <root>/<eval query>          [ {i: {query, northing, easting, j: [db ids of run j within 25 m]}} ]
    <l2i folder>/<l2i pickle>    {lidar ts: [image ts, nearest first]}
    <root>/<scan path>           the point cloud named by ``query`` / ``rel_scan_filepath``

The run of a frame is the folder two levels above its scan
(``oxford/<run>/pointcloud_20m_10overlap/<ts>.bin``); the lidar timestamp is
the scan's file stem, so evaluation pickles need no ``timestamp`` key.

Roles are kept apart per run *and* per role: a run that has training tuples
and evaluation frames gives two traversals (``<run>:train``, ``<run>:test``),
so evaluation frames are never trained on.  An evaluation traversal holds the
run's database frames; ``query_indices`` (int64 [Q], into those frames) are
the query pickle's frames and ``true_neighbours[m]`` (list of Q int64 arrays)
its true-neighbour lists in evaluation run ``m`` (``eval_set``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Sequence

import numpy as np

from ..foundation.errors import UserError
from .benchmark_pickles import read_evaluation_sets, read_lidar2image, read_training_tuples
from .eval_sets import attach_queries, run_of


@dataclass(frozen=True)
class LayoutSpec:
    """File names and per-format readers of one public benchmark layout."""
    name: str
    train_pickle: str
    val_pickle: str
    eval_database: str
    eval_query: str
    l2i_pickle: str
    l2i_in_image_root: bool                       # Oxford: next to the images; Boreas: in root
    image_dirs: Callable[[Path, str], list[Path]]  # (image_root, run) -> candidate image folders
    read_cloud: Callable[[Path], np.ndarray]       # scan path -> float32 [P, 4] x y z intensity


def check_relpath(rel: str, source: Path) -> None:
    """UserError naming ``source`` unless ``rel`` is a plain relative path inside
    data.root: no absolute path, no ``..`` component, no NUL (a pickle could
    otherwise make training read any file the user can read)."""
    parts = PurePosixPath(rel).parts
    if not rel or "\0" in rel or "\\" in rel or PurePosixPath(rel).is_absolute() or ".." in parts:
        raise UserError(f"{source}: scan path {rel[:120]!r} is not a relative path inside data.root "
                        "(absolute, '..' or a NUL byte); regenerate the pickle")


def _lidar_ts(relpath: str, source: Path) -> int:
    stem = Path(relpath).stem
    if not stem.isdigit():
        raise UserError(f"{source}: scan {relpath!r}: file name must be the lidar timestamp "
                        "(digits) so its image can be found in the lidar-to-image index")
    return int(stem)


class BenchmarkRun:
    """One run in one role: ``positions`` float64 [N, 2] (northing, easting, metres);
    ``load_image(i)`` uint8 [H, W, 3] RGB; ``load_lidar(i)`` float32 [P, 4]."""
    has_lidar = True

    def __init__(self, spec: LayoutSpec, root: Path, image_dir: Path, run: str, role: str,
                 relpaths: list[str], positions: np.ndarray, image_ts: list[int]) -> None:
        self.spec, self.root, self.image_dir = spec, root, image_dir
        self.run, self.role, self.name = run, role, f"{run}:{role}"
        self.relpaths, self.image_ts = relpaths, image_ts
        self.positions = np.asarray(positions, dtype=np.float64).reshape(-1, 2)
        self.query_indices: np.ndarray | None = None
        self.true_neighbours: dict[int, list[np.ndarray]] | None = None
        self.eval_set: int | None = None

    def __len__(self) -> int:
        return len(self.relpaths)

    def image_path(self, i: int) -> Path:
        return self.image_dir / f"{self.image_ts[i]}.png"

    def load_image(self, i: int) -> np.ndarray:
        from .images import read_rgb_file
        return read_rgb_file(self.image_path(i), f"of scan {self.relpaths[i]}")

    def load_lidar(self, i: int) -> np.ndarray:
        return self.spec.read_cloud(self.root / self.relpaths[i])


def _image_dir(spec: LayoutSpec, image_root: Path, run: str) -> Path:
    candidates = spec.image_dirs(image_root, run)
    for d in candidates:
        if d.is_dir():
            return d
    raise UserError(f"run {run} has no images: none of {[str(c) for c in candidates]} exists; "
                    "set data.image_root to the folder that holds one image folder per run")


class _Builder:
    """Collects frames per (run, role) in first-seen order."""

    def __init__(self, spec: LayoutSpec, root: Path, image_root: Path, l2i: dict[int, list[int]],
                 l2i_path: Path) -> None:
        self.spec, self.root, self.image_root = spec, root, image_root
        self.l2i, self.l2i_path = l2i, l2i_path
        self.groups: dict[tuple[str, str], dict[str, list[Any]]] = {}

    def add(self, run: str, role: str, rel: str, pos: tuple[float, float], source: Path) -> int:
        check_relpath(rel, source)
        if not run:
            raise UserError(f"{source}: scan {rel!r} is not <run>/<scan folder>/<timestamp>")
        ts = _lidar_ts(rel, source)
        images = self.l2i.get(ts)
        if not images:
            raise UserError(f"{self.l2i_path}: no image for lidar timestamp {ts} (scan {rel} of run "
                            f"{run}, listed in {source.name}); regenerate the lidar-to-image index "
                            "for this run or remove the scan from the pickle")
        g = self.groups.setdefault((run, role), {"rel": [], "pos": [], "img": []})
        g["rel"].append(rel)
        g["pos"].append(pos)
        g["img"].append(images[0])  # nearest image first, as the reference (k=1)
        return len(g["rel"]) - 1

    def build(self, run: str, role: str) -> BenchmarkRun:
        g = self.groups[(run, role)]
        trav = BenchmarkRun(self.spec, self.root, _image_dir(self.spec, self.image_root, run), run, role,
                            g["rel"], np.array(g["pos"], dtype=np.float64), g["img"])
        for path, what in ((self.root / g["rel"][0], "scan"), (trav.image_path(0), "image")):
            if not path.is_file():
                raise UserError(f"{path}: missing ({what} of the first frame of run {run}, role {role}); "
                                "check data.root / data.image_root")
        return trav


def open_benchmark(spec: LayoutSpec, root: str | Path, image_root: str | Path = "",
                   val_runs: Sequence[str] = ()) -> list[BenchmarkRun]:
    """Train, val and test traversals of a benchmark folder (see module docstring).

    ``image_root`` "" means ``root``; ``val_runs`` moves whole runs of the
    training pickle to role val (held out from training for model selection).
    """
    root = Path(root)
    image_root = Path(image_root) if str(image_root) else root
    if not root.is_dir():
        raise UserError(f"data.root: {root}: directory not found")
    if not image_root.is_dir():
        raise UserError(f"data.image_root: {image_root}: directory not found; set it to the folder "
                        f"with the per-run images and {spec.l2i_pickle}")
    l2i_path = (image_root if spec.l2i_in_image_root else root) / spec.l2i_pickle
    if not l2i_path.is_file():
        where = "data.image_root" if spec.l2i_in_image_root else "data.root"
        raise UserError(f"{l2i_path}: not found; the {spec.name} layout needs {spec.l2i_pickle} in "
                        f"{where} (check data.root, data.image_root and data.format)")
    b = _Builder(spec, root, image_root, read_lidar2image(l2i_path), l2i_path)
    order: list[tuple[str, str]] = []
    train_path = root / spec.train_pickle
    train_runs: set[str] = set()
    for role, fname in (("train", spec.train_pickle), ("val", spec.val_pickle)):
        path = root / fname
        if not path.is_file():
            continue
        for _, t in sorted(read_training_tuples(path).items()):
            run = run_of(t.rel_scan_filepath)
            r = "val" if role == "train" and run in val_runs else role
            if role == "train":
                train_runs.add(run)
            if (run, r) not in b.groups:
                order.append((run, r))
            b.add(run, r, t.rel_scan_filepath, (float(t.position[0]), float(t.position[1])), path)
    unknown = sorted(set(val_runs) - train_runs)
    if unknown:
        raise UserError(f"data.val_runs: {unknown} not found in {train_path}; valid runs: {sorted(train_runs)}")
    travs = [b.build(run, role) for run, role in order]
    return travs + _open_evaluation(b, root)


def _open_evaluation(b: _Builder, root: Path) -> list[BenchmarkRun]:
    db_path = root / b.spec.eval_database
    q_path = root / b.spec.eval_query
    if not db_path.is_file():
        if q_path.is_file():
            raise UserError(f"{q_path}: found without {db_path.name}, whose frames its indices refer to; "
                            "add the database pickle or remove the query pickle")
        return []
    tests = []
    for m, run_set in enumerate(read_evaluation_sets(db_path)):
        runs = {run_of(e["query"]) for e in run_set.values()}
        if not runs:
            raise UserError(f"{db_path}: evaluation run {m} has no frames; drop it from the list "
                            "(and from the query pickle)")
        if len(runs) != 1:
            raise UserError(f"{db_path}: evaluation run {m} mixes runs {sorted(runs)}; one run per list entry")
        run = runs.pop()
        if (run, "test") in b.groups:
            raise UserError(f"{db_path}: run {run} appears twice (evaluation runs {m} and earlier)")
        for k in range(len(run_set)):
            e = run_set[k]
            b.add(run, "test", e["query"], (float(e["northing"]), float(e["easting"])), db_path)
        trav = b.build(run, "test")
        trav.eval_set = m
        tests.append(trav)
    if q_path.is_file():
        attach_queries(tests, read_evaluation_sets(q_path), q_path, db_path)
    return tests
