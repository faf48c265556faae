"""Match received candidate answers to the query frames that were sent, by stamp.

The node copies the query image's header stamp into its answer, so the stamp
is the join key; the wall-clock times on both sides give the latency.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Collection, Sequence

import numpy as np

from .outcome import QueryOutcome


@dataclass
class SentFrame:
    """A query image handed to the system: header stamp (ns), wall time sent (s)."""

    stamp_ns: int
    sent_s: float


@dataclass
class Answer:
    """One candidates answer: the query stamp it names, wall time received (s), rows.

    ``ids`` int64 [k], ``scores`` float32 [k], ``positions`` float64 [k, 3]
    (map frame, metres), rank order.
    """

    stamp_ns: int
    received_s: float
    ids: np.ndarray
    scores: np.ndarray
    positions: np.ndarray


@dataclass
class MatchSummary:
    """Answers that fit no sent frame, and extra answers for an already answered frame."""

    unmatched_answers: int
    duplicate_answers: int


def match_answers(sent: Sequence[SentFrame], answers: Sequence[Answer],
                  gt_positions: np.ndarray, accepted_stamps: Collection[int] | None = None
                  ) -> tuple[list[QueryOutcome], MatchSummary]:
    """Join answers to sent frames by exact stamp; the first answer per frame counts.

    ``gt_positions`` float64 [len(sent), 3], NaN rows = no ground truth.
    ``accepted_stamps``: query stamps for which the localizer accepted a loop
    closure (its ``~/match_pose`` stamps), or None when unknown.
    Returns one :class:`QueryOutcome` per sent frame, in sending order.
    """
    assert len(gt_positions) == len(sent), "one ground-truth row per sent frame"
    index = {}
    for i, f in enumerate(sent):
        index.setdefault(int(f.stamp_ns), i)  # a repeated stamp keeps its first frame
    first: dict[int, Answer] = {}
    unmatched = duplicates = 0
    for a in answers:
        i = index.get(int(a.stamp_ns))
        if i is None:
            unmatched += 1
        elif i in first:
            duplicates += 1
        else:
            first[i] = a
    outcomes = []
    for i, f in enumerate(sent):
        pos = gt_positions[i]
        pos = None if np.isnan(pos).any() else pos
        a = first.get(i)
        if a is None:
            outcomes.append(QueryOutcome(f.stamp_ns, pos, answered=False))
        else:
            accepted = None if accepted_stamps is None else int(f.stamp_ns) in accepted_stamps
            outcomes.append(QueryOutcome(f.stamp_ns, pos, True, a.ids, a.scores, a.positions,
                                         latency_s=a.received_s - f.sent_s, accepted=accepted))
    return outcomes, MatchSummary(unmatched, duplicates)
