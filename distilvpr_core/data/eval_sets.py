"""The evaluation query pickle: which frames are queries, and their true neighbours.

PointNetVLAD's ``generate_test_sets`` writes, per evaluation run ``n``, the
frames in the test regions as queries and, for every other run ``m``, the
indices of run ``m``'s database frames within 25 m.  Recall is computed on
exactly these queries and lists (reference protocol), so they are attached
to the evaluation traversals here and cross-checked by
:func:`neighbour_list_disagreements`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..foundation.errors import UserError


def run_of(relpath: str) -> str:
    """Run folder of a scan path ``.../<run>/<scan dir>/<ts>.<ext>``."""
    parts = Path(relpath).parts
    return parts[-3] if len(parts) >= 3 else ""


def attach_queries(tests: Sequence[Any], query_sets: list[dict[int, dict[Any, Any]]],
                   q_path: Path, db_path: Path) -> None:
    """Set ``query_indices`` int64 [Q] and ``true_neighbours`` {m: [Q int64 arrays]} on
    each evaluation traversal ``tests[n]`` (``tests[n].eval_set == n``)."""
    if len(query_sets) != len(tests):
        extra = [sorted({run_of(e["query"]) for e in s.values()}) for s in query_sets[len(tests):]]
        raise UserError(f"{q_path}: {len(query_sets)} runs, but {db_path.name} has {len(tests)}"
                        + (f"; run(s) {extra} of the query pickle are absent from the database pickle"
                           if extra else "")
                        + "; regenerate both pickles together")
    for n, (trav, qset) in enumerate(zip(tests, query_sets)):
        index = {rel: i for i, rel in enumerate(trav.relpaths)}
        q_idx = np.empty(len(qset), dtype=np.int64)
        lists: dict[int, list[np.ndarray]] = {m: [] for m in range(len(tests)) if m != n}
        for k in range(len(qset)):
            e = qset[k]
            if run_of(e["query"]) != trav.run:
                raise UserError(f"{q_path}: run {n} query {k} ({e['query']}) is from run "
                                f"{run_of(e['query'])}, but run {n} of {db_path.name} is {trav.run}")
            if e["query"] not in index:
                raise UserError(f"{q_path}: run {n} query {k} ({e['query']}) is absent from the database "
                                f"frames of run {trav.run} in {db_path.name}; regenerate both pickles together")
            q_idx[k] = index[e["query"]]
            for m in lists:
                if m not in e:
                    raise UserError(f"{q_path}: run {n} query {k} has no true-neighbour list for "
                                    f"evaluation run {m}; regenerate the query pickle")
                nb = np.asarray(e[m], dtype=np.int64).reshape(-1)
                if len(nb) and (nb.min() < 0 or nb.max() >= len(tests[m])):
                    raise UserError(f"{q_path}: run {n} query {k}: neighbour index {int(nb.max())} is "
                                    f"outside run {m}'s {len(tests[m])} database frames")
                lists[m].append(np.unique(nb))
        trav.query_indices, trav.true_neighbours = q_idx, lists


def neighbour_list_disagreements(tests: Sequence[Any], radius_m: float = 25.0) -> tuple[int, int]:
    """(queries whose given neighbour list differs from the ``radius_m`` recomputation
    over the positions, query lists compared), over every ordered pair of runs."""
    differ = total = 0
    for q in tests:
        if q.true_neighbours is None:
            continue
        for m, lists in q.true_neighbours.items():
            db = next(t for t in tests if t.eval_set == m)
            qpos = q.positions[q.query_indices]
            for k in range(0, len(qpos), 1024):
                d2 = ((qpos[k:k + 1024, None, :] - db.positions[None]) ** 2).sum(-1)
                for r, row in enumerate(d2 <= radius_m ** 2):
                    total += 1
                    differ += not np.array_equal(np.flatnonzero(row), lists[k + r])
    return differ, total
