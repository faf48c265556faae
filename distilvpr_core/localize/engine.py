"""The localization engine: decode -> gate -> embed -> search -> filters -> candidates.

One :class:`LocalizationEngine` is what the ROS node runs on every camera
message and what the offline evaluation runs on every bag message, so a
"ROS vs offline" comparison measures transport only.  It is ROS-free: it
takes sensor_msgs-shaped messages (rclpy or rosbags) or decoded images, and
returns :class:`FrameResult`; the node turns that into messages.

Order per frame: O(1) message check, odometry lookup, keyframe gate (a gated
frame is never decoded), decode, embed, search the PriorMap (excluding the
most recent keyframes), score threshold, temporal consistency, sequence
score, geometric verification of the top candidates (:mod:`.geometry`; with
a map that stores 3D points this gives the robot's metric pose by PnP, which
must then agree with the odometry, :mod:`.pose_consistency`), and with
online mapping the query is added to the map at its odometry pose.
Verification may promote a lower-ranked candidate: the results' arrays put
the match first (see :class:`QueryResult`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import logging

import numpy as np

from ..data import images
from .filters import ConsistencyFilter, KeyframeGate, SequenceScore
from .geometry import CandidateChecks, GeometricVerifier, passes
from .odom import OdomBuffer
from .pose_consistency import PoseConsistency
from .ports import PlaceEmbedder, PlaceMap
from .settings import LocalizerSettings

log = logging.getLogger("distilvpr.localize")


@dataclass(kw_only=True)
class QueryResult:
    """Top-k candidates of one query, the match first (K <= top_k; padding removed).

    ids int64 [K], scores float32 [K], poses float64 [K, 7] (x y z qx qy qz qw,
    map frame), stamps_ns int64 [K]: retrieval order, except that the
    candidate geometric verification chose (``match_rank`` in retrieval
    order) is moved to the front.  ``accepted`` says whether that match
    passed every enabled stage; otherwise ``reject`` is ``"empty"``,
    ``"score"``, ``"consistency"``, ``"sequence"``, ``"geometry"``,
    ``"pose_consistency"`` or ``"no_odometry"`` (metric map, the check needs odometry).
    ``raw_score``: retrieval top-1 cosine; ``sequence_score`` in [0, 1] or NaN
    (off / not enough history); ``checks``: verification of the candidates
    (retrieval order) or None when it did not run; ``verified``: the match
    passed verification (never True without it).  ``pose`` float64 [7] and
    ``pose_cov`` float64 [6, 6] (x y z roll pitch yaw): base_link in the map
    frame from PnP on the match (metric maps; None otherwise or when PnP found
    none); ``pose_consistent``: the pose consistency stage's verdict (None: not
    checked, no odometry or no metric map); ``geometry_ok``: the whole geometric
    acceptance passed (verified and, on a metric map, pose consistent, with
    odometry where ``pose_require_odom`` asks for it), whatever the other stages said.  ``embed_s``, ``search_s``,
    ``verify_s`` are wall-clock seconds; ``added_id`` is the new keyframe id
    with online mapping, else -1.
    """
    ids: np.ndarray
    scores: np.ndarray
    poses: np.ndarray
    stamps_ns: np.ndarray
    accepted: bool
    reject: str | None
    embed_s: float
    search_s: float
    added_id: int = -1
    match_rank: int = 0
    raw_score: float = float("nan")
    sequence_score: float = float("nan")
    checks: CandidateChecks | None = None
    verified: bool = False
    verify_s: float = 0.0
    pose: np.ndarray | None = None
    pose_cov: np.ndarray | None = None
    pose_consistent: bool | None = None
    geometry_ok: bool = False

    @property
    def localized(self) -> bool:
        """Accepted with a metric pose: what ~/pose publishes."""
        return bool(self.accepted and self.pose is not None)


@dataclass
class FrameResult:
    """What the engine did with one frame.

    ``gated`` is ``"interval"`` or ``"distance"`` when the keyframe gate held
    the frame back (then ``query`` is None and nothing was decoded);
    ``odom`` is the robot pose float64 [7] used for it, or None; ``decode_s``
    is the seconds from the call to the decoded image.
    """
    stamp_ns: int
    gated: str | None = None
    query: QueryResult | None = None
    odom: np.ndarray | None = None
    decode_s: float = 0.0


class LocalizationEngine:
    """Stateful engine over one Embedder and one PriorMap (not thread-safe).

    ``embedder``: ``embed(uint8 [H, W, 3]) -> float32 [1, D]`` (L2-normalised);
    ``prior_map``: a :class:`distilvpr_core.mapdb.PriorMap`; ``source``: the
    source name of keyframes added by online mapping.
    """

    def __init__(self, embedder: PlaceEmbedder, prior_map: PlaceMap, settings: LocalizerSettings,
                 source: str = "online") -> None:
        self.embedder = embedder
        self.map = prior_map
        self.source = source
        self.gate = KeyframeGate()
        self.consistency = ConsistencyFilter()
        self.sequence = SequenceScore()
        self.verifier = GeometricVerifier(prior_map)
        self.pose_check = PoseConsistency()
        self.odom = OdomBuffer()
        self._frame = 0
        # Frames far above the model input are refused before decoding (data/images.py).
        self.max_pixels = images.pixel_limit(getattr(getattr(embedder, "contract", None), "input_size", None))
        self._warned = False
        self.configure(settings)

    def configure(self, settings: LocalizerSettings) -> None:
        """Apply new settings; gate, consistency history and odometry are kept."""
        self.settings = settings
        self.gate.min_interval_s, self.gate.min_distance_m = settings.min_interval_s, settings.min_distance_m
        self.consistency.configure(settings.consistency_n, settings.consistency_radius_m)
        self.sequence.configure(settings.sequence_n, settings.sequence_tolerance_m)
        self.pose_check.configure(settings.pose_consistency_n, settings.pose_consistency_m,
                                  settings.pose_consistency_deg)
        if self.verifier.available and settings.local_features != "map":
            from ..features.registry import check_same_kind
            check_same_kind(settings.local_features, self.map.features.kind, "local_features")
        if settings.verify and not self.verifier.available and not self._warned:
            self._warned = True  # once: the node logs it at start-up, not per frame
            if len(self.map) == 0:  # nothing to rebuild: say what is true
                log.warning("the map is empty (no keyframes, no local features): geometric "
                            "verification is off")
            else:
                log.warning("the map has no local features (built with --no-features or before "
                            "verification existed): geometric verification is off; rebuild the map "
                            "with 'distilvpr map build' to enable it")

    @property
    def verifying(self) -> bool:
        """Whether geometric verification runs (setting on and the map has features)."""
        return bool(self.settings.verify and self.verifier.available)
    def add_odometry(self, stamp_ns: int, pose: np.ndarray) -> bool:
        """Buffer a robot pose float64 [7] (odometry frame); False (ignored) if not
        finite or beyond ``odom.MAX_ABS`` (1e9)."""
        return self.odom.add(int(stamp_ns), np.asarray(pose, np.float64).reshape(7))

    def process(self, msg: Any, stamp_ns: int) -> FrameResult:
        """One sensor_msgs Image or CompressedImage stamped ``stamp_ns``; raises
        :class:`distilvpr_core.data.images.BadImage` for a malformed message."""
        t0 = time.perf_counter()
        images.check(msg, self.max_pixels)
        return self._frame_step(int(stamp_ns), lambda: images.decode(msg, self.max_pixels), t0)

    def process_rgb(self, rgb: np.ndarray, stamp_ns: int) -> FrameResult:
        """One decoded uint8 [H, W, 3] RGB frame stamped ``stamp_ns``."""
        return self._frame_step(int(stamp_ns), lambda: rgb, time.perf_counter())

    def _frame_step(self, stamp_ns: int, decode: Callable[[], np.ndarray], t0: float) -> FrameResult:
        odom = self.odom.at(stamp_ns, self.settings.odom_timeout_s)
        xyz = None if odom is None else odom[:3]
        reason = self.gate.due(stamp_ns * 1e-9, xyz)
        if reason:
            return FrameResult(stamp_ns, gated=reason, odom=odom)
        rgb = decode()
        decode_s = time.perf_counter() - t0
        # Marked only now: a frame that fails to decode must not hold back the next good one.
        self.gate.mark(stamp_ns * 1e-9, xyz)
        return FrameResult(stamp_ns, None, self.query(rgb, stamp_ns, odom), odom, decode_s)

    def query(self, rgb: np.ndarray, stamp_ns: int, odom_pose: np.ndarray | None = None) -> QueryResult:
        """Match uint8 [H, W, 3] RGB taken at ``stamp_ns`` (no gating); ``odom_pose``
        is the robot pose float64 [7] used for online mapping, or None."""
        s = self.settings
        t0 = time.perf_counter()
        desc = self.embedder.embed(rgb)                      # float32 [1, D], L2-normalised
        t1 = time.perf_counter()
        ids = np.zeros(0, np.int64)
        scores = np.zeros(0, np.float32)
        if len(self.map):
            res = self.map.search(desc, s.top_k, query_stamp_ns=int(stamp_ns),
                                  exclude_within_s=s.exclude_recent_s, exclude_last_n=s.exclude_recent_n)
            keep = res.ids[0] >= 0
            ids, scores = res.ids[0][keep].astype(np.int64), res.scores[0][keep].astype(np.float32)
        t2 = time.perf_counter()
        # Keyframe id == row of the map's arrays (PriorMap contract).
        poses = np.asarray(self.map.poses[ids], np.float64) if len(ids) else np.zeros((0, 7))
        stamps = np.asarray(self.map.stamps_ns[ids], np.int64) if len(ids) else np.zeros(0, np.int64)
        seq = self.sequence.update(None if odom_pose is None else np.asarray(odom_pose)[:3],
                                   poses[0, :3] if len(ids) else None, int(ids[0]) if len(ids) else -1)
        checks, qf, t3 = None, None, time.perf_counter()
        if self.verifying and len(ids) and scores[0] >= s.score_threshold:
            # Below the threshold the query is rejected whatever the geometry says.
            checks, qf = self.verifier.check(rgb, ids, s)
        verified = passes(checks, s)
        pose = checks.pose if (checks is not None and verified) else None
        pose_ok = self.pose_check.update(pose, odom_pose) if self.verifier.metric else None
        if len(ids) == 0:
            reject = "empty"
        elif scores[0] < s.score_threshold:
            reject = "score"
        else:
            reject = None
        consistent = self.consistency.update(None if reject else poses[0, :3])
        if reject is None and not consistent:
            reject = "consistency"
        if reject is None and s.sequence_n > 1 and not seq >= s.sequence_min_score:
            reject = "sequence"  # NaN (no odometry, short history) fails too
        match = checks.best if (checks is not None and checks.best >= 0) else 0
        if reject is None and self.verifying and not (verified and scores[match] >= s.score_threshold):
            reject = "geometry"
        if reject is None and self.verifying and pose_ok is False:
            reject = "pose_consistency"  # the PnP pose disagrees with the odometry
        no_odom = bool(pose_ok is None and self.verifier.metric and s.pose_require_odom
                       and s.pose_consistency_n > 1)
        if reject is None and self.verifying and no_odom:
            reject = "no_odometry"  # nothing to check the PnP pose against
        order = np.r_[match, np.delete(np.arange(len(ids)), match)].astype(np.int64) if len(ids) else ids
        verify_s = time.perf_counter() - t3
        added = -1
        if s.online_mapping and odom_pose is not None:
            added = int(self.map.add(desc, np.array([stamp_ns], np.int64),
                                     np.asarray(odom_pose, np.float64).reshape(1, 7), self.source,
                                     np.array([self._frame], np.int64))[0])
            store = self.map.features
            if store is not None and tuple(rgb.shape[:2]) == (store.camera.height, store.camera.width):
                # The new keyframe can be verified against later (no depth: no 3D points).
                store.set(added, qf if qf is not None else self.verifier.extract(rgb, s.verify_max_features))
        self._frame += 1
        return QueryResult(ids=ids[order], scores=scores[order], poses=poses[order], stamps_ns=stamps[order],
                           accepted=reject is None, reject=reject, embed_s=t1 - t0, search_s=t2 - t1,
                           added_id=added, match_rank=match,
                           raw_score=float(scores[0]) if len(ids) else float("nan"), sequence_score=seq,
                           checks=checks, verified=bool(verified), verify_s=verify_s, pose=pose,
                           pose_cov=None if pose is None else checks.pose_cov, pose_consistent=pose_ok,
                           geometry_ok=bool(verified and pose_ok is not False and not no_odom))
