"""The record of the PointNetVLAD / MinkLoc++ / DistilVPR training and evaluation pickles.

Its own module so that the safe pickle reader (benchmark_pickles.py) and the
Oxford writer (oxford_format.py) both use it without importing each other.
"""
from __future__ import annotations

import numpy as np


class TrainingTuple:
    """One query of a training/validation set (field names as in MinkLoc++).

    ``id`` int, ``timestamp`` int (us), ``rel_scan_filepath`` str relative to
    the export root, ``positives`` / ``non_negatives`` sorted int64 arrays of
    ids (non-negatives include the query and its positives), ``position``
    float64 [2] (northing, easting) in metres.
    """

    def __init__(self, id: int, timestamp: int, rel_scan_filepath: str, positives: np.ndarray,
                 non_negatives: np.ndarray, position: np.ndarray) -> None:
        assert position.shape == (2,)
        self.id = id
        self.timestamp = timestamp
        self.rel_scan_filepath = rel_scan_filepath
        self.positives = positives
        self.non_negatives = non_negatives
        self.position = position

    def __repr__(self) -> str:
        return (f"TrainingTuple(id={self.id}, timestamp={self.timestamp}, "
                f"rel_scan_filepath={self.rel_scan_filepath!r}, "
                f"positives={len(self.positives)}, non_negatives={len(self.non_negatives)})")
