#!/usr/bin/env python3
"""Probe of coarse-to-fine refinement for the patch kind (design (b) of docs/local_features.md,
"Sub-cell keypoints"), before building it: how close would refined query keypoints be to the truth?

For a map built with cell-centre or Harris-anchored patch features
(``export-patch --subcell-source off`` or ``image``, 3D points from depth) and the
checkpoint it was exported from: every
``--frame-stride``-th frame of each ``--queries`` drive within 5 m of a keyframe
is matched, as the engine does, with the keyframe nearest the truth.  For each
match with a 3D point, the keyframe's fine descriptor at its keypoint (what a
map would store per feature) is correlated (cosine) with the query's fine map
in a window of ``radius`` fine pixels around the matched query keypoint,
and the query keypoint moves to the soft-argmax (``beta``) of the correlation.
The error is the distance (pixels of the image as captured) from the
projection of the 3D point into the query camera at its ground-truth pose.
Fine maps (``--variant SOURCE:RADIUS:BETA``): ``pixels`` (the normalised
input, stride 1, a 9x9 patch per pixel), ``conv1`` (stride 2), ``layer1``
(stride 4), ``layer2`` (stride 8), each L2-normalised per pixel after the
channel mean is removed.

    python scripts/subcell_probe.py --dataset DIR --map OUT/map_patch --checkpoint student.pt \\
        --queries val_dawn train_night --variant layer1:3:50 --variant pixels:12:50 --out probe.json

Writes ``--out`` (JSON: per drive and variant, the share of matches within 1, 2, 4 and 8 px of the
truth and the median, with the unrefined cell centres as ``none``).
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from distilvpr_core.features.patch.coarse_to_fine import dilated_trunk  # noqa: E402
from distilvpr_core.foundation.atomic import write_text_atomic  # noqa: E402
from keypoint_reprojection import _summary  # noqa: E402  (same shares and thresholds)

#: fine source -> (trunk layers to run, -1: the normalised input; stride in input pixels)
SOURCES = {"pixels": (-1, 1), "conv1": (2, 2), "layer1": (4, 4), "layer2": (5, 8), "layer3s8": (None, 8),
           "layer3s4": (None, 4)}


def fine_maps(model, x, dilated: dict) -> dict:
    """{source: float32 [C, Hf, Wf] per-pixel unit vectors} of a normalised input [1, 3, H, W]."""
    import torch
    from torch.nn import functional as F
    out = {}
    with torch.no_grad():
        for name, net in dilated.items():   # layer-3 cells, as the patch kind takes them (unit norm)
            out[name] = F.normalize(net(model.input_norm(x)), dim=1)[0].numpy()
        f = model.input_norm(x)
        patches = F.unfold(f, 9, padding=4).reshape(1, -1, *f.shape[2:])
        maps = {"pixels": patches}
        for i, layer in enumerate(model.backbone):
            f = layer(f)
            for name, (idx, _) in SOURCES.items():
                if idx == i:
                    maps[name] = f
        for name, v in maps.items():
            if name in out:
                continue
            v = v - v.mean(dim=1, keepdim=True)
            out[name] = F.normalize(v, dim=1)[0].numpy()
    return out


def refine(qmap: np.ndarray, kdesc: np.ndarray, centre: np.ndarray, stride: int, radius: int,
           beta: float) -> np.ndarray:
    """Input-pixel (x, y) soft-argmax of the cosine between ``kdesc`` [C] and ``qmap`` [C, Hf, Wf]
    within ``radius`` fine pixels of the input pixel ``centre`` (x, y)."""
    _, hf, wf = qmap.shape
    u0, v0 = int(round(centre[0] / stride)), int(round(centre[1] / stride))
    us = np.arange(max(u0 - radius, 0), min(u0 + radius, wf - 1) + 1)
    vs = np.arange(max(v0 - radius, 0), min(v0 + radius, hf - 1) + 1)
    c = np.einsum("c,cij->ij", kdesc, qmap[:, vs[0]:vs[-1] + 1, us[0]:us[-1] + 1])
    w = np.exp(beta * (c - c.max()))
    w /= w.sum()
    return np.array([(w.sum(0) * us).sum(), (w.sum(1) * vs).sum()]) * stride


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--map", required=True)
    ap.add_argument("--map-traversal", default="train_noon")
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--queries", nargs="+", required=True)
    ap.add_argument("--frame-stride", type=int, default=4)
    ap.add_argument("--variant", action="append", required=True, metavar="SOURCE:RADIUS:BETA")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    import torch
    torch.set_num_threads(1)
    from distilvpr_core.data import native
    from distilvpr_core.features import matching, registry
    from distilvpr_core.features.rotations import pose_to_matrix
    from distilvpr_core.foundation.preprocess import preprocess
    from distilvpr_core.loopeval.offline import frames_from_traversal
    from distilvpr_core.mapdb import PriorMap
    from distilvpr_core.models.student_io import load_student_checkpoint

    variants = [(s, int(r), float(b)) for s, r, b in (v.split(":") for v in args.variant)]
    m = PriorMap.load(args.map)
    store = m.features
    ex = registry.get("patch").load(str(store.model_path))
    if ex.coarse_to_fine:
        print(f"{args.map}: its patch model refines matches itself; build the map with an "
              "--subcell-source off (cell centres) or image (Harris keypoints) export", file=sys.stderr)
        return 2
    model = load_student_checkpoint(args.checkpoint).model.float().eval()
    dilated = {src: dilated_trunk(model.backbone, SOURCES[src][1]).eval() for src, _, _ in variants
               if SOURCES[src][0] is None}
    contract = dataclasses.replace(ex.contract)
    w_in, h_in = ex.input_size
    cam, K = store.camera, store.camera.matrix()
    sx, sy = cam.width / w_in, cam.height / h_in
    def to_input(p):
        return (np.c_[(p[:, 0] + 0.5) / sx - 0.5, (p[:, 1] + 0.5) / sy - 0.5])
    def to_frame(p):
        return (np.c_[(p[:, 0] + 0.5) * sx - 0.5, (p[:, 1] + 0.5) * sy - 0.5])
    T_bc = pose_to_matrix(store.T_base_camera)
    map_trav = native.open_dataset(args.dataset).traversal(args.map_traversal)
    poses = np.asarray(m.poses, np.float64)
    out = {"command": " ".join(sys.argv), "drives": {}}
    for trav in args.queries:
        errs: dict = {"none": []}
        for f in itertools.islice(frames_from_traversal(args.dataset, trav), 0, None, max(1, args.frame_stride)):
            d = np.linalg.norm(poses[:, :3] - f.position[None], axis=1)
            kid = int(np.argmin(d))
            if d[kid] > 5.0:
                continue
            q, kf = ex.extract(f.image, 300), store.get(kid)
            pairs = matching.match(q, kf)
            p3 = store.points(kid)[pairs[:, 1]].astype(np.float64) if len(pairs) else np.zeros((0, 3))
            T = np.linalg.inv(pose_to_matrix(np.r_[f.position, f.orientation]) @ T_bc)
            pc = p3 @ T[:3, :3].T + T[:3, 3]
            ok = np.all(np.isfinite(pc), axis=1) & (pc[:, 2] > 0.1)
            if not ok.any():
                continue
            pairs, uv = pairs[ok], (pc[ok] @ K.T)[:, :2] / pc[ok, 2:3]
            errs["none"].append(np.linalg.norm(q.keypoints[pairs[:, 0]] - uv, axis=1))
            qin, kin = to_input(q.keypoints[pairs[:, 0]]), to_input(kf.keypoints[pairs[:, 1]])
            fq = fine_maps(model, torch.from_numpy(preprocess(f.image, contract)), dilated)
            fk = fine_maps(model, torch.from_numpy(preprocess(map_trav.load_image(int(m.frame_index[kid])), contract)),
                           dilated)
            for src, radius, beta in variants:
                s = SOURCES[src][1]
                hf, wf = fk[src].shape[1:]
                got = np.array([refine(fq[src], fk[src][:, min(int(round(kc[1] / s)), hf - 1),
                                                         min(int(round(kc[0] / s)), wf - 1)], qc, s,
                                       radius, beta) for qc, kc in zip(qin, kin)])
                errs.setdefault(f"{src}:{radius}:{beta:g}", []).append(np.linalg.norm(to_frame(got) - uv, axis=1))
        out["drives"][trav] = {k: _summary(np.concatenate(v) if v else np.zeros(0)) for k, v in errs.items()}
        for k, v in out["drives"][trav].items():
            print(f"{trav} {k}: {v['pairs']} pairs, within 2 px {v['within_2px']}, 4 px {v['within_4px']}, "
                  f"median {v['median_px']}", flush=True)
    write_text_atomic(args.out, json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
