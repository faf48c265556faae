"""``train_local(cfg, out)``: render the places, train the network, keep the best, export ONNX.

Places: a random frame of a random drive of each training town is a place;
it is rendered from that pose and from a second pose (pairs.perturb) under
one look per distinct condition of the town's drives (time of day x weather x
season), each with that drive's geometry: 2 x L views with depth.  A training
pair is two views of one place (view A is the noon look half the time, the
map's condition; B differs in viewpoint, look or both), cropped, with up to
``points`` exact correspondences (half at A's corners, where the extractor
puts keypoints, half anywhere).  Validation: fixed pairs of held-out places;
the best checkpoint is the one whose correspondences most often beat every
negative (loss.py ``accuracy``).

Outputs in ``out``: ``checkpoint_best.pt``, ``checkpoint_last.pt``,
``local_features.onnx`` (the best, exported), ``train_log.json`` (config,
seconds spent rendering and training, validation per look).
"""
from __future__ import annotations

import dataclasses
import io
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..foundation.atomic import write_bytes_atomic, write_text_atomic
from ..foundation.config import to_dict
from ..foundation.errors import UserError
from .config import LocalTrainConfig
from .pairs import TownRenderer, View, correspond, perturb

#: Corners kept per view as correspondence candidates.
CORNERS_PER_VIEW = 600


@dataclass
class StoredView:
    """A view as training needs it: uint8 [H, W] normalised grey, float16 [H, W] depth (m,
    inf: none), float64 [4, 4] camera -> map, the look's drive name, int64 [M, 2] corners."""
    grey: np.ndarray
    depth: np.ndarray
    T_map_cam: np.ndarray
    look: str
    corners: np.ndarray

    def as_view(self) -> View:
        """The pairs.View of it (rgb unused by correspond)."""
        return View(self.grey, self.depth.astype(np.float32), self.T_map_cam, self.look)


@dataclass
class Pair:
    """One training pair: crops uint8 [h, w] and correspondences float32 [N, 2] (x, y of each crop)."""
    grey_a: np.ndarray
    grey_b: np.ndarray
    pts_a: np.ndarray
    pts_b: np.ndarray
    look_b: str


def distinct_looks(renderer: TownRenderer) -> list[int]:
    """Traversal indexes with one per distinct (time of day, weather, season), noon first."""
    seen: dict[tuple, int] = {}
    for i, p in enumerate(renderer.plans):
        seen.setdefault(p.cfg.condition(), i)
    return sorted(seen.values(), key=lambda i: (renderer.plans[i].cfg.time_of_day != "noon"
                                                or renderer.plans[i].cfg.weather != "clear", i))


def render_places(renderer: TownRenderer, cfg: LocalTrainConfig, count: int, rng: np.random.Generator,
                  bar: Any = None) -> list[list[StoredView]]:
    """``count`` places, each a list of views [viewpoint 0 x looks, viewpoint 1 x looks]."""
    from ..features.learned import preprocess
    looks = distinct_looks(renderer)
    poses = renderer.base_poses()
    places = []
    for _ in range(count):
        base = poses[rng.integers(len(poses))]
        views = []
        for T in (base, perturb(base, rng, cfg.forward_m, cfg.lateral_m, cfg.yaw_deg)):
            for ti in looks:
                v = renderer.render(ti, T, np.random.default_rng(rng.integers(1 << 62)))
                grey = preprocess.normalised_grey(v.rgb)
                c = np.rint(preprocess.corners(grey, CORNERS_PER_VIEW)).astype(np.int64)
                views.append(StoredView(grey, v.depth.astype(np.float16), v.T_map_cam, v.look, c))
                if bar is not None:
                    bar.update(1)
        places.append(views)
    return places


def make_pair(place: list[StoredView], K: np.ndarray, cfg: LocalTrainConfig,
              rng: np.random.Generator, tries: int = 10) -> Pair | None:
    """A random pair of views of ``place`` with correspondences (module doc); None when
    ``tries`` draws all gave fewer than 16 visible correspondences."""
    n_looks = len(place) // 2
    ch, cw = int(cfg.crop[0]), int(cfg.crop[1])
    for _ in range(tries):
        vp_a, li_a = int(rng.integers(2)), (0 if rng.random() < 0.5 else int(rng.integers(n_looks)))
        vp_b = 1 - vp_a if rng.random() < 0.7 else vp_a
        li_b = int(rng.integers(n_looks))
        if (vp_b, li_b) == (vp_a, li_a):
            li_b = (li_b + 1 + int(rng.integers(n_looks - 1))) % n_looks if n_looks > 1 else li_b
            if (vp_b, li_b) == (vp_a, li_a):
                vp_b = 1 - vp_a
        a, b = place[vp_a * n_looks + li_a], place[vp_b * n_looks + li_b]
        h, w = a.grey.shape
        y0, x0 = 4 * int(rng.integers((h - ch) // 4 + 1)), 4 * int(rng.integers((w - cw) // 4 + 1))
        inside = ((a.corners[:, 0] >= x0) & (a.corners[:, 0] < x0 + cw)
                  & (a.corners[:, 1] >= y0) & (a.corners[:, 1] < y0 + ch))
        cand = a.corners[inside]
        cand = cand[rng.permutation(len(cand))[:cfg.points]]
        rand = np.c_[rng.integers(x0, x0 + cw, cfg.points), rng.integers(y0, y0 + ch, cfg.points)]
        cand = np.concatenate([cand, rand])
        uv, ok = correspond(a.as_view(), b.as_view(), K, cand)
        if ok.sum() < 16:
            continue
        cand, uv = cand[ok], uv[ok]
        cy, cx = np.median(uv[:, 1]), np.median(uv[:, 0])
        by0 = int(np.clip(4 * round((cy - ch / 2) / 4), 0, (h - ch) // 4 * 4))
        bx0 = int(np.clip(4 * round((cx - cw / 2) / 4), 0, (w - cw) // 4 * 4))
        keep = ((uv[:, 0] >= bx0) & (uv[:, 0] <= bx0 + cw - 1) & (uv[:, 1] >= by0) & (uv[:, 1] <= by0 + ch - 1))
        if keep.sum() < 16:
            continue
        cand, uv = cand[keep], uv[keep]
        sel = rng.permutation(len(cand))[:cfg.points]
        return Pair(a.grey[y0:y0 + ch, x0:x0 + cw], b.grey[by0:by0 + ch, bx0:bx0 + cw],
                    (cand[sel] - [x0, y0]).astype(np.float32), (uv[sel] - [bx0, by0]).astype(np.float32),
                    b.look)
    return None


def _batch_loss(model, pairs: list[Pair], cfg: LocalTrainConfig):
    """Mean loss of ``pairs`` (one forward pass over all crops) and the mean stats."""
    import torch
    from .loss import pair_loss
    x = torch.from_numpy(np.stack([g for p in pairs for g in (p.grey_a, p.grey_b)])[:, None].astype(np.float32)
                         / 255.0)
    desc, logit = model.score_logits(x)
    losses, stats = [], []
    for i, p in enumerate(pairs):
        loss, st = pair_loss(desc[2 * i], logit[2 * i], desc[2 * i + 1], logit[2 * i + 1],
                             torch.from_numpy(p.pts_a), torch.from_numpy(p.pts_b), cfg.temperature,
                             cfg.radius_px, cfg.score_weight)
        losses.append(loss)
        stats.append(st)
    return torch.stack(losses).mean(), {k: float(np.mean([s[k] for s in stats])) for k in stats[0]}


def validate(model, pairs: list[Pair], cfg: LocalTrainConfig) -> dict[str, Any]:
    """Accuracy (loss.py) on the validation pairs: overall and per look of view B."""
    import torch
    model.eval()
    per: dict[str, list[float]] = {}
    with torch.no_grad():
        for p in pairs:
            _, st = _batch_loss(model, [p], cfg)
            per.setdefault(p.look_b, []).append(st["accuracy"])
    model.train()
    return {"accuracy": float(np.mean([v for vs in per.values() for v in vs])),
            "accuracy_by_look_b": {k: float(np.mean(v)) for k, v in sorted(per.items())}}


def _save(path: Path, model, cfg: LocalTrainConfig, step: int, val: dict[str, Any]) -> None:
    import torch
    buf = io.BytesIO()
    torch.save({"state_dict": model.state_dict(), "config": to_dict(cfg), "step": step, "val": val,
                "desc_dim": model.desc_dim, "width": model.width}, buf)
    write_bytes_atomic(path, buf.getvalue())


def load_checkpoint(path: str | Path):
    """The LocalFeatureNet of a ``train-local`` checkpoint (eval mode); UserError for a bad file."""
    import torch
    from ..features.learned.model import LocalFeatureNet
    try:
        ck = torch.load(str(path), map_location="cpu", weights_only=True)
        model = LocalFeatureNet(int(ck["desc_dim"]), int(ck["width"]))
        model.load_state_dict(ck["state_dict"])
    except (OSError, KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise UserError(f"{path}: not a train-local checkpoint ({str(exc)[:200]})") from None
    return model.eval()


def train_local(cfg: LocalTrainConfig, out: str | Path, progress: bool = True) -> dict[str, Any]:
    """Render, train, export (module doc); returns the train_log.json record."""
    import torch
    from tqdm import tqdm
    from ..foundation.config import load_config
    from ..features.learned.model import LocalFeatureNet
    from ..sim.config import SynthConfig
    from .export import export_local_onnx

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    t0 = time.perf_counter()
    base = load_config(SynthConfig, cfg.synth_config)
    train, val, Ks = [], [], []
    for seed in cfg.seeds:
        renderer = TownRenderer(dataclasses.replace(base, seed=int(seed)))
        n_views = 2 * len(distinct_looks(renderer)) * (cfg.places + cfg.val_places)
        with tqdm(total=n_views, desc=f"render town seed {seed}", unit="view", disable=not progress,
                  file=sys.stderr) as bar:
            train += render_places(renderer, cfg, cfg.places, rng, bar)
            val += render_places(renderer, cfg, cfg.val_places, rng, bar)
        Ks.append(renderer.K)
    if any(not np.allclose(k, Ks[0]) for k in Ks):
        raise UserError("train-local: the towns' cameras differ; use one synth_config")
    K = Ks[0]
    vrng = np.random.default_rng([cfg.seed, 1])
    val_pairs = [p for p in (make_pair(val[i % len(val)], K, cfg, vrng) for i in range(4 * len(val))) if p]
    render_s = time.perf_counter() - t0

    model = LocalFeatureNet(cfg.desc_dim, cfg.width)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    best, history = -1.0, []
    t1 = time.perf_counter()
    bar = tqdm(range(1, cfg.steps + 1), desc="train-local", unit="step", disable=not progress, file=sys.stderr)
    for step in bar:
        pairs = []
        while len(pairs) < cfg.batch_pairs:
            p = make_pair(train[int(rng.integers(len(train)))], K, cfg, rng)
            if p is not None:
                pairs.append(p)
        loss, st = _batch_loss(model, pairs, cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{float(loss.detach()):.3f}", acc=f"{st['accuracy']:.2f}")
        if step % cfg.val_every == 0 or step == cfg.steps:
            v = validate(model, val_pairs, cfg)
            history.append({"step": step, "train_loss": float(loss.detach()), **v})
            bar.write(f"step {step}: val accuracy {v['accuracy']:.3f} "
                      + " ".join(f"{k} {a:.2f}" for k, a in v["accuracy_by_look_b"].items()), file=sys.stderr)
            _save(out / "checkpoint_last.pt", model, cfg, step, v)
            if v["accuracy"] > best:
                best = v["accuracy"]
                _save(out / "checkpoint_best.pt", model, cfg, step, v)
    bar.close()
    train_s = time.perf_counter() - t1
    res = export_local_onnx(load_checkpoint(out / "checkpoint_best.pt"), out / "local_features.onnx")
    record = {"config": to_dict(cfg), "render_s": round(render_s, 1), "train_s": round(train_s, 1),
              "total_s": round(time.perf_counter() - t0, 1), "train_views": sum(map(len, train)),
              "val_pairs": len(val_pairs), "best_val_accuracy": best, "history": history,
              "onnx": {"path": str(res.path), "weights_sha256": res.weights_sha256,
                       "max_abs_diff": res.max_abs_diff}}
    write_text_atomic(out / "train_log.json", json.dumps(record, indent=1) + "\n")
    return record
