"""Several towns in one data set (``data.towns``, or ``data.root`` = a towns folder).

Each town is a native dataset (``distilvpr synth --seeds`` writes them as
``DIR/town_<seed>``).  Its traversals join the data set with

* a namespaced name, ``town_<seed>/<drive>``, so drive names may repeat across towns;
* ``town``: the town's directory name (the main dataset's traversals have ``town == ""``);
* a role set by the data config, not by the dataset: ``val`` for the towns in
  ``data.val_towns``, ``test`` for those in ``data.test_towns`` (protocol T: towns no
  training frame comes from), ``train`` for every other town;
* positions shifted by ``k * TOWN_OFFSET_M`` along x (k = 1, 2, ... in the order the towns
  are opened).  Every positive/negative, sampler and true-neighbour decision is a distance
  test, so the shift is what keeps each town's places its own: no pair of frames from two
  towns is ever closer than ~1000 km, so no positive pair and no true neighbour crosses towns,
  while frames of other towns are valid negatives (they are other places).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..foundation.errors import UserError
from .traversal_view import TraversalView

#: Metres between the origins of two towns' frames (x axis); far beyond any radius in use.
TOWN_OFFSET_M = 1.0e6
#: Directory-name prefix of a town inside a towns folder (sim.towns writes it).
TOWN_PREFIX = "town_"


def is_towns_folder(path: str | Path) -> bool:
    """True when ``path`` is not a dataset itself but holds ``town_*/dataset.json``."""
    p = Path(path)
    return not (p / "dataset.json").is_file() and any(p.glob(f"{TOWN_PREFIX}*/dataset.json"))


def town_dirs(paths: Sequence[str | Path]) -> list[Path]:
    """Dataset directories of ``paths``: a dataset itself, or every finished ``town_*`` of a towns
    folder (ordered by the number after ``town_``).  UserError for a path that is neither."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if (p / "dataset.json").is_file():
            out.append(p)
            continue
        found = sorted((d.parent for d in p.glob(f"{TOWN_PREFIX}*/dataset.json")), key=_town_sort_key)
        if not found:
            raise UserError(f"data.towns: {p} is neither a dataset (no dataset.json) nor a towns folder "
                            f"(no {TOWN_PREFIX}*/dataset.json inside); make towns with "
                            "'distilvpr synth --seeds 0-4 --out DIR'")
        out += found
    names = [d.name for d in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UserError(f"data.towns: town name(s) {dup} appear twice; each town directory needs its own name")
    return out


def _town_sort_key(path: Path) -> tuple[int, str]:
    tail = path.name[len(TOWN_PREFIX):]
    return (int(tail), "") if tail.isdigit() else (1 << 62, path.name)


def town_role(town: str, val_towns: Sequence[str], test_towns: Sequence[str]) -> str:
    """The role every traversal of ``town`` gets: val, test or train."""
    if town in val_towns:
        return "val"
    return "test" if town in test_towns else "train"


def check_town_roles(towns: Sequence[str], val_towns: Sequence[str], test_towns: Sequence[str]) -> None:
    """UserError for a val/test town that is not opened, or a town that is both."""
    for key, chosen in (("data.val_towns", val_towns), ("data.test_towns", test_towns)):
        unknown = [t for t in chosen if t not in towns]
        if unknown:
            raise UserError(f"{key}: {unknown} not among the towns opened {list(towns)}; "
                            "name towns by their directory (e.g. town_4)")
    both = sorted(set(val_towns) & set(test_towns))
    if both:
        raise UserError(f"data.val_towns and data.test_towns both name {both}; a town is one or the other")


class TownTraversal(TraversalView):
    """A traversal of town number ``k`` (>= 1): namespaced name, the town's role, shifted positions."""

    def __init__(self, trav: Any, town: str, k: int, role: str) -> None:
        self._trav = trav
        self.town, self.role, self.has_lidar = town, role, trav.has_lidar
        self.drive = trav.name
        self.name = f"{town}/{trav.name}"
        self.condition = getattr(trav, "condition", "")
        pos = np.asarray(trav.positions, dtype=np.float64).copy()
        pos[:, 0] += k * TOWN_OFFSET_M
        self.positions = pos

