"""The benchmark's three evaluation protocols on a dataset with a geographic split.

One trained model, three ways (all with :mod:`distilvpr_core.evaluation.recall`: cosine
top-25, true neighbour within 25 m, R@1 / R@5 / R@1%):

* ``unseen_places`` (P, the paper's Oxford protocol): the test-region frames
  of the (non-stress) test traversals, every ordered pair of them;
* ``deployment`` (D): database = the mapping traversal (a training drive),
  queries = the frames of every (non-stress) test traversal outside the test
  regions;
* ``unseen_condition`` (S, a stress row): like D with the stress traversals
  (conditions no training drive has) as queries;
* ``unseen_town`` (T): the test towns (``data.test_towns``: towns no training frame
  comes from), every ordered pair of one town's drives except its mapping drive, as in P;
* ``unseen_town_map`` (TD, T's deployment form): database = a test town's mapping drive
  (``eval.town_map``, its noon drive), queries = every other drive of that town.

Each protocol reports its chance level (descriptors without information) and
R@1 per query condition.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ..data.geosplit import FrameSubset, GeoSplit
from ..foundation.errors import UserError
from .recall import evaluate_runs, true_neighbours

PROTOCOLS = ("unseen_places", "deployment", "unseen_condition", "unseen_town", "unseen_town_map")
#: The short names the docs and logs use: P, D, S, T, TD.
LETTERS = {"unseen_places": "P", "deployment": "D", "unseen_condition": "S", "unseen_town": "T",
           "unseen_town_map": "TD"}


def pair_chance_r1(positions: Sequence[np.ndarray], pairs: Sequence[tuple[int, int]],
                   radius_m: float) -> float:
    """Expected R@1 (percent) of uninformative descriptors, averaged over ``pairs`` like Recall@N."""
    per_pair = []
    for i, j in pairs:
        t = true_neighbours(positions[i], positions[j], radius_m).sum(axis=1)
        if (t > 0).any():
            per_pair.append(100.0 * float(np.mean(t[t > 0] / len(positions[j]))))
    return float(np.mean(per_pair)) if per_pair else 0.0


def protocol_runs(tests: Sequence[Any], database: Any,
                  split: GeoSplit) -> dict[str, tuple[list[Any], list[tuple[int, int]]]]:
    """protocol -> (runs, (query, database) index pairs into runs).

    ``tests``: the test traversals (whole); ``database``: the mapping traversal.
    """
    normal = [t for t in tests if t.name not in split.stress]
    stress = [t for t in tests if t.name in split.stress]
    if len(normal) < 2:
        raise UserError(f"protocol P needs >= 2 non-stress test traversals, found {[t.name for t in normal]}")

    def part(t: Any, in_region: bool) -> FrameSubset:
        mask = split.region_masks[t.name]
        return FrameSubset(t, np.nonzero(mask if in_region else ~mask)[0])
    p_runs = [part(t, True) for t in normal]
    out = {"unseen_places": (p_runs, [(i, j) for i in range(len(p_runs)) for j in range(len(p_runs)) if i != j])}
    d_runs = [database] + [part(t, False) for t in normal]
    out["deployment"] = (d_runs, [(i, 0) for i in range(1, len(d_runs))])
    if stress:
        s_runs = [database] + [part(t, False) for t in stress]
        out["unseen_condition"] = (s_runs, [(i, 0) for i in range(1, len(s_runs))])
    return out


def town_protocol_runs(tests: Sequence[Any], town_map: str) -> dict[str, tuple[list[Any], list[tuple[int, int]]]]:
    """protocol T (and TD where a town has its mapping drive) -> (runs, (query, database) pairs).

    ``tests``: the test towns' traversals (each with ``town`` and ``drive``, the name in its
    town); ``town_map``: the drive name of a town's mapping drive.  Pairs never cross towns.
    """
    by_town: dict[str, list[Any]] = {}
    for t in tests:
        by_town.setdefault(t.town, []).append(t)
    runs: list[Any] = []
    t_pairs: list[tuple[int, int]] = []
    m_pairs: list[tuple[int, int]] = []
    for town, travs in by_town.items():
        base = len(runs)
        runs += travs
        maps = [base + k for k, t in enumerate(travs) if getattr(t, "drive", t.name) == town_map]
        drives = [base + k for k in range(len(travs)) if base + k not in maps]
        if len(drives) < 2:
            raise UserError(f"protocol T: test town {town} needs >= 2 drives besides its map drive "
                            f"{town_map!r}, found {[t.name for t in travs]}")
        t_pairs += [(i, j) for i in drives for j in drives if i != j]
        if maps:
            m_pairs += [(i, maps[0]) for i in drives]
    out = {"unseen_town": (runs, t_pairs)}
    if m_pairs:
        out["unseen_town_map"] = (runs, m_pairs)
    return out


def evaluate_protocols(embed: Callable[[Any], np.ndarray], tests: Sequence[Any], database: Any,
                       split: GeoSplit | None, top_k: int = 25, radius_m: float = 25.0,
                       town_tests: Sequence[Any] = (), town_map: str = "map_noon") -> dict[str, dict[str, Any]]:
    """Recall of every protocol.

    ``embed(traversal) -> float32 [N, D]`` embeds a whole traversal (each is
    embedded once; the protocols slice the descriptors).  ``tests``/``database``/``split``:
    the main dataset's (P, D, S; skipped when ``split`` is None); ``town_tests``: the test
    towns' traversals (T, TD).
    """
    runs_of: dict[str, tuple[list[Any], list[tuple[int, int]]]] = {}
    if split is not None:
        runs_of.update(protocol_runs(tests, database, split))
    if town_tests:
        runs_of.update(town_protocol_runs(town_tests, town_map))
    whole = {t.name: t for t in [*(tests if split is not None else ()), *([database] if split is not None else ()),
                                 *town_tests]}
    descs = {name: embed(t) for name, t in whole.items()}
    out: dict[str, dict[str, Any]] = {}
    for proto, (runs, pairs) in runs_of.items():
        # Slices of a whole traversal index its descriptors; the database is embedded as it is.
        d = [descs[r.name][r.indices] if getattr(r, "source", None) is whole[r.name] else descs[r.name]
             for r in runs]
        pos = [np.asarray(r.positions, np.float64) for r in runs]
        res = evaluate_runs(d, pos, top_k, radius_m, pairs=pairs)
        row: dict[str, Any] = res.to_dict()
        names = [r.name for r in runs]
        row["R@1 by pair"] = {f"{names[i]}->{names[j]}": r for i, j, r in res.pair_r1}
        by_cond: dict[str, list[float]] = {}
        for i, _, r1 in res.pair_r1:
            by_cond.setdefault(condition_label(split, runs[i]), []).append(r1)
        row["R@1 by query condition"] = {c: float(np.mean(v)) for c, v in sorted(by_cond.items())}
        row["chance R@1"] = pair_chance_r1(pos, pairs, radius_m)
        out[proto] = row
    return out


def condition_label(split: GeoSplit | None, trav: Any) -> str:
    """'night/clear/summer' for a traversal (from the split, else its own ``condition``), or its
    name when neither knows the condition."""
    cond = split.conditions.get(trav.name) if split is not None else None
    return "/".join(cond) if cond else (getattr(trav, "condition", "") or trav.name)


def mapping_traversal(train: Sequence[Any], name: str = "") -> Any:
    """The database of protocols D and S: training traversal ``name`` (default: the first)."""
    if not train:
        raise UserError("protocols D and S need a training traversal as the database (the mapping run)")
    if not name:
        return train[0]
    for t in train:
        if t.name == name:
            return t
    raise UserError(f"eval.database: {name!r} is not a training traversal; choose one of "
                    f"{[t.name for t in train]}")
