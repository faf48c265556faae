"""Coarse-to-fine matching of the patch kind: a match between two layer-3 cells, moved to the
sub-cell position where the keyframe's descriptor fits the query best.

Why: cell-centre keypoints make PnP return the keyframe's own pose
(docs/local_features.md, "Sub-cell keypoints").  The keyframe keeps its
keypoint at its cell centre (its 3D point comes from depth there); the query
keypoint moves to where that keyframe cell's content is in the query image.

How (Patch2Pix / LoFTR's fine stage, with the student's own layer-3
descriptors as the fine features, so nothing new is stored in the map):

* the export runs the trunk "a trous" (:func:`dilated_trunk`): the strided
  first convolution of layer 3 (and of layer 2 for stride 4) gets stride 1 and
  every later 3x3 convolution the dilation that keeps its footprint, so the
  layer-3 map has stride ``s`` = 8 or 4 instead of 16 and its samples at every
  (16 / s)-th pixel ARE the stride-16 cells (same weights, exact);
  the network outputs that fine map, projected and normalised like the
  cells (``fine`` float32 [1, 128, Hf, Wf]);
* at query time (:func:`refine_points`), for each mutual-nearest-neighbour
  match (query cell q, keyframe cell k), the cosine between the keyframe's
  stored descriptor of k and the query's fine map over the fine pixels within
  ``radius`` of q's centre, and the query keypoint moves to its peak: the
  best fine pixel moved by a parabola through it and its neighbours on each
  axis (``beta`` = 0: sub-sample precision), or the soft-argmax with ``beta``
  on the cosine (``beta`` > 0).  PnP then runs on the moved query points
  against the keyframe's 3D points (localize/geometry.py).

Cost: layer 3 at 4x (stride 8) or layer 2 at 4x and layer 3 at 16x (stride
4) the positions, on the query only (the map build extracts the same file, but
its keyframes' keypoints stay the cell centres).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

#: Sources of the coarse-to-fine kind (export --subcell-source) -> stride of the fine layer-3 map.
MATCH_STRIDES = {"match8": 8, "match4": 4}
COARSE_STRIDE = 16


def dilated_trunk(backbone, fine_stride: int):
    """A copy of the ResNet trunk ``backbone`` (Sequential conv1 bn1 relu maxpool layer1 layer2
    layer3) whose layer-3 map has stride ``fine_stride`` (8 or 4) instead of 16 and whose
    samples at every (16 / fine_stride)-th pixel equal the original map's cells."""
    net = copy.deepcopy(backbone)
    layers = [net[6]] if fine_stride == 8 else [net[5], net[6]]
    dil = 1
    for layer in layers:
        for b, block in enumerate(layer):
            for name in ("conv1", "conv2"):
                conv = getattr(block, name)
                if b == 0 and name == "conv1":
                    conv.stride, conv.dilation, conv.padding = (1, 1), (dil, dil), (dil, dil)
                    dil *= 2  # everything after the removed stride sees a twice finer grid
                    continue
                conv.dilation, conv.padding = (dil, dil), (dil, dil)
            if block.downsample is not None:
                block.downsample[0].stride = (1, 1)
    return net


@dataclass(frozen=True)
class FineMap:
    """A query's fine layer-3 descriptors: ``desc`` float32 [D, Hf, Wf] (unit norm per pixel),
    fine pixel (u, v) centred on input pixel (``stride`` u, ``stride`` v); ``input_size`` and
    ``image_size`` (W, H) map input pixels to the image as captured (stretch); ``radius``
    (fine pixels) the search window and ``beta`` the peak rule of :func:`refine_points`
    (0: arg-max + parabola, > 0: soft-argmax)."""
    desc: np.ndarray
    stride: int
    input_size: tuple[int, int]
    image_size: tuple[int, int]
    radius: int
    beta: float


def refine_points(fine: FineMap, query_kp: np.ndarray, key_desc: np.ndarray) -> np.ndarray:
    """float32 [M, 2] query points (pixels of the image as captured) of M matches: the query
    keypoints float [M, 2] (cell centres) moved to the peak (module doc) of the cosine between
    each match's keyframe descriptor float [M, D] (unit norm) and the fine map within
    ``fine.radius`` fine pixels of the keypoint."""
    kp = np.asarray(query_kp, np.float64).reshape(-1, 2)
    if not len(kp):
        return np.zeros((0, 2), np.float32)
    d, hf, wf = fine.desc.shape
    sx, sy = fine.image_size[0] / fine.input_size[0], fine.image_size[1] / fine.input_size[1]
    s, r = fine.stride, fine.radius
    # Frame -> input pixels -> the fine pixel the cell centre sits on (exact: centres are on the grid).
    u0 = np.rint(((kp[:, 0] + 0.5) / sx - 0.5) / s).astype(int)
    v0 = np.rint(((kp[:, 1] + 0.5) / sy - 0.5) / s).astype(int)
    du, dv = np.meshgrid(np.arange(-r, r + 1), np.arange(-r, r + 1))
    uu, vv = u0[:, None] + du.ravel()[None], v0[:, None] + dv.ravel()[None]        # [M, n]
    inside = (uu >= 0) & (uu < wf) & (vv >= 0) & (vv < hf)
    flat = fine.desc.reshape(d, -1)
    cos = np.einsum("md,dmn->mn", np.asarray(key_desc, np.float32),
                    flat[:, (np.clip(vv, 0, hf - 1) * wf + np.clip(uu, 0, wf - 1))])
    if fine.beta > 0:
        z = np.where(inside, fine.beta * cos, -np.inf)
        w = np.exp(z - z.max(axis=1, keepdims=True))
        w /= w.sum(axis=1, keepdims=True)
        x_in, y_in = (w * uu).sum(1) * s, (w * vv).sum(1) * s
    else:
        x_in, y_in = _parabolic_peak(np.where(inside, cos, -np.inf).reshape(-1, 2 * r + 1, 2 * r + 1), u0, v0, r, s)
    return np.ascontiguousarray(np.c_[(x_in + 0.5) * sx - 0.5, (y_in + 0.5) * sy - 0.5], np.float32)


def _parabolic_peak(c: np.ndarray, u0: np.ndarray, v0: np.ndarray, r: int, s: int) -> tuple[np.ndarray, np.ndarray]:
    """Input-pixel (x [M], y [M]) of the best fine pixel of each window c float [M, n, n]
    (-inf outside the map) moved by a parabola through it and its two neighbours on each
    axis (sub-sample peak; no move at the window's or the map's edge)."""
    m, n, _ = c.shape
    flat = c.reshape(m, -1).argmax(1)
    iy, ix = flat // n, flat % n
    rows = np.arange(m)

    def vertex(lo, mid, hi):    # parabola through (-1, lo), (0, mid), (1, hi): its vertex
        with np.errstate(invalid="ignore"):
            den = lo - 2 * mid + hi
            ok = np.isfinite(lo) & np.isfinite(hi) & (den < 0)
            return np.where(ok, 0.5 * (lo - hi) / np.where(ok, den, -1.0), 0.0)

    def get(y, x):              # window value, -inf beyond the window
        inside = (y >= 0) & (y < n) & (x >= 0) & (x < n)
        return np.where(inside, c[rows, np.clip(y, 0, n - 1), np.clip(x, 0, n - 1)], -np.inf)

    dx = vertex(get(iy, ix - 1), c[rows, iy, ix], get(iy, ix + 1))
    dy = vertex(get(iy - 1, ix), c[rows, iy, ix], get(iy + 1, ix))
    return (u0 + ix - r + dx) * s, (v0 + iy - r + dy) * s
