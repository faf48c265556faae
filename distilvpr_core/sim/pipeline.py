"""``generate(cfg, out_dir)``: render every traversal and write all outputs.

Rendering runs in worker processes (one per core by default); results come
back in task order (``imap``), so the bytes on disk never depend on
scheduling.  Everything is written into a temporary sibling directory that is
renamed into place at the end, so an interrupted run leaves nothing that
looks like a dataset.
"""
from __future__ import annotations

import io
import json
import multiprocessing as mp
import os
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..foundation.atomic import atomic_directory
from ..foundation.config import to_dict
from ..foundation.errors import UserError
from .config import SynthConfig

_STATE: dict[str, Any] = {}


def _init_worker(cfg: SynthConfig) -> None:
    """Build the world and plans once per process (cheap, deterministic)."""
    from .world import build_world
    from .plan import plan_traversals
    from . import camera, lidar
    world = build_world(cfg.town, cfg.seed)
    _STATE.clear()
    _STATE.update(cfg=cfg, world=world, plans=plan_traversals(cfg, world), scene_index=-1,
                  rays=camera.pixel_rays(cfg.camera).astype(np.float32),
                  beams=lidar.beam_directions(cfg.lidar).astype(np.float32))


def _scene_for(ti: int):
    if _STATE["scene_index"] != ti:
        from .camera import facade_arrays
        from .conditions import look_for
        from .scene import build_scene
        from .variation import traversal_solids
        cfg, plan = _STATE["cfg"], _STATE["plans"][ti]
        solids, facades = traversal_solids(_STATE["world"], cfg, ti, plan.cfg, plan.poses)
        _STATE.update(scene=build_scene(solids), facades=facade_arrays(facades),
                      look=look_for(plan.cfg, cfg.camera.shadows), scene_index=ti)
    return _STATE["scene"]


def render_frame(task: tuple[int, int]) -> dict[str, Any]:
    """Render frame ``fi`` of traversal ``ti``: image, scan and baseline descriptors."""
    from PIL import Image
    from ..data.oxford_format import make_submap
    from . import camera, lidar
    from .baselines import lidar_ring_spectrum, tiny_image
    from .route import quat_to_matrix
    from .scene import build_scene, with_dynamic
    from .variation import traffic_at
    ti, fi = task
    cfg = _STATE["cfg"]
    plan = _STATE["plans"][ti]
    seed = cfg.seed
    t_s = (plan.stamps_ns[fi] - plan.stamps_ns[0]) * 1e-9
    traffic = traffic_at(_STATE["world"], seed, ti, plan.cfg.traffic_cars, t_s, plan.poses[fi, :2])
    scene = with_dynamic(_scene_for(ti), build_scene(traffic) if traffic else None)
    t = np.eye(4)
    t[:3, :3] = quat_to_matrix(plan.poses[fi, 3:])
    t[:3, 3] = plan.poses[fi, :3]
    img = camera.render(scene, _STATE["facades"], _STATE["look"], cfg.camera, _STATE["rays"], t,
                        _STATE["world"].lamps, np.random.default_rng([seed, 11, ti, fi]))
    weather = plan.cfg.weather
    extra = {"fog": 0.05, "rain": 0.08}.get(weather, 0.0)
    pts = lidar.scan(scene, cfg.lidar, _STATE["beams"], t, np.random.default_rng([seed, 12, ti, fi]), extra)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG", compress_level=1)
    out = {"png": buf.getvalue(), "points": pts, "tiny": tiny_image(img),
           "lidar_desc": lidar_ring_spectrum(pts, cfg.lidar.position_m[2])}
    if cfg.output.bags and cfg.output.bag_image != "png":
        out["image"] = img
    if cfg.output.oxford:
        out["submap"] = make_submap(pts, np.random.default_rng([seed, 13, ti, fi]), cfg.output.oxford_points,
                                    cfg.lidar.position_m[2])
    return out


def _results(cfg: SynthConfig, tasks: list[tuple[int, int]], workers: int) -> Iterator[dict[str, Any]]:
    if workers <= 1:
        _init_worker(cfg)
        for task in tasks:
            yield render_frame(task)
        return
    # spawn, not fork: the caller may hold torch/OpenMP threads that fork would break.
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(cfg,)) as pool:
        yield from pool.imap(render_frame, tasks, chunksize=4)


def dataset_meta(cfg: SynthConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``camera`` and ``lidar`` dicts of dataset.json (intrinsics + extrinsics on base_link)."""
    from .camera import base_from_camera, intrinsics
    from .route import matrix_to_quat, yaw_to_quat
    c = cfg.camera
    tb = base_from_camera(c)
    q = matrix_to_quat(tb[:3, :3])
    camera = {"width": c.width, "height": c.height, **intrinsics(c), "hfov_deg": c.hfov_deg,
              "model": "pinhole", "distortion": "none", "frame_id": "camera", "optical_frame": True,
              "T_base_camera": [*map(float, tb[:3, 3]), *map(float, q)], "encoding": "rgb8"}
    li = cfg.lidar
    lq = yaw_to_quat(np.zeros(1), np.zeros(1), np.zeros(1))[0]
    lidar = {"beams": li.beams, "azimuth_bins": li.azimuth_bins, "vfov_up_deg": li.vfov_up_deg,
             "vfov_down_deg": li.vfov_down_deg, "max_range_m": li.max_range_m, "min_range_m": li.min_range_m,
             "frame_id": "lidar", "T_base_lidar": [*map(float, li.position_m), *map(float, lq)],
             "fields": ["x", "y", "z", "intensity"], "dtype": "float32"}
    return camera, lidar


def check_output_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuse a non-empty existing ``out_dir`` unless ``overwrite`` (before any work)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir}: exists and is not a directory; choose another path")
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise UserError(f"--out {out_dir}: directory exists and is not empty; pass --overwrite to replace it "
                        "or choose another directory")


def generate(cfg: SynthConfig, out_dir: str | Path, overwrite: bool = False, workers: int | None = None,
             progress: bool = True) -> Path:
    """Render ``cfg`` into ``out_dir`` (native dataset + bags + Oxford export + difficulty report).

    ``workers`` None = ``cfg.workers`` (0 = one per core).  Returns ``out_dir``.
    """
    from tqdm import tqdm
    from ..data import native
    from ..data.bagio import TraversalBagWriter
    from ..data.oxford_format import run_folder_name, submap_relpath, write_export_index, write_submap
    from .difficulty import Drive, difficulty_report, format_report
    from .plan import plan_traversals
    from .world import build_world

    out_dir = Path(out_dir)
    check_output_dir(out_dir, overwrite)
    n_workers = workers if workers is not None else cfg.workers
    if n_workers == 0:
        n_workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    world = build_world(cfg.town, cfg.seed)
    plans = plan_traversals(cfg, world)
    camera_meta, lidar_meta = dataset_meta(cfg)
    from .split import build_split
    split = build_split(cfg, world.loop, plans)   # checked before any rendering
    tasks = [(p.index, i) for p in plans for i in range(len(p.poses))]
    tiny: list[list[np.ndarray]] = [[] for _ in plans]
    ldesc: list[list[np.ndarray]] = [[] for _ in plans]
    runs = [run_folder_name(int(p.stamps_ns[0])) for p in plans]
    assert len(set(runs)) == len(runs), "each traversal starts on its own day (plan.EPOCH_NS)"
    with atomic_directory(out_dir, overwrite=overwrite) as tmp:
        bar = tqdm(total=len(tasks), desc="synth", unit="frame", disable=not progress, file=sys.stderr)
        results = _results(cfg, tasks, n_workers)
        for p in plans:
            name = p.cfg.name
            tdir = tmp / "traversals" / name
            ts_us = p.stamps_ns // 1000
            bag = None
            if cfg.output.bags:
                bag = TraversalBagWriter(tmp / "bags" / name, cfg.output.bag_storage, cfg.output.bag_image, camera_meta)
                bag.__enter__()
            try:
                for i in range(len(p.poses)):
                    r = next(results)
                    native.write_frame(tdir, i, r["png"], r["points"])
                    tiny[p.index].append(r["tiny"])
                    ldesc[p.index].append(r["lidar_desc"])
                    if bag is not None:
                        img = r.get("image")
                        if img is None:
                            img = np.asarray(_decode_png(r["png"]))
                        bag.write_frame(int(p.stamps_ns[i]), img, r["points"], p.poses[i], p.odom[i], p.twist[i],
                                        encoded=r["png"])
                    if cfg.output.oxford:
                        write_submap(tmp / "oxford", submap_relpath(runs[p.index], int(ts_us[i])), r["submap"])
                        img_path = tmp / "oxford" / "images4lidar" / runs[p.index] / f"{int(ts_us[i])}.png"
                        img_path.parent.mkdir(parents=True, exist_ok=True)
                        os.link(tdir / "images" / f"{native.frame_name(i)}.png", img_path)
                    bar.update(1)
            finally:
                if bag is not None:
                    bag.__exit__(None, None, None)
            conditions = {"time_of_day": p.cfg.time_of_day, "weather": p.cfg.weather, "season": p.cfg.season,
                          "moved_cars": p.cfg.moved_cars, "traffic_cars": p.cfg.traffic_cars,
                          "changed_buildings": p.cfg.changed_buildings, "reverse_fraction": p.cfg.reverse_fraction,
                          "lateral_offset_m": p.cfg.lateral_offset_m}
            rev = np.nonzero(p.reversed)[0]
            native.write_traversal(tdir, name, p.cfg.role, conditions, p.poses, p.stamps_ns, p.odom,
                                   extra={"reversed_from": int(rev[0]) if len(rev) else None,
                                          "oxford_run": runs[p.index] if cfg.output.oxford else None})
        bar.close()
        if cfg.output.oxford:
            write_export_index(tmp / "oxford", [
                {"run": runs[p.index], "name": p.cfg.name, "role": p.cfg.role, "timestamps_us": p.stamps_ns // 1000,
                 "positions": p.poses[:, [1, 0]].copy(), "image_timestamps_us": p.stamps_ns // 1000} for p in plans])
        report = None
        if cfg.output.difficulty_report:
            drives = [Drive(p.cfg.name, p.cfg.time_of_day, p.cfg.weather, p.cfg.season, p.poses[:, :2].copy())
                      for p in plans]
            report = difficulty_report(drives, [np.stack(d) for d in tiny], [np.stack(d) for d in ldesc])
            (tmp / "difficulty.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
            text = format_report(report)
            (tmp / "difficulty.txt").write_text(text)
            if progress:
                print(text, file=sys.stderr)
        native.write_dataset_json(tmp, {
            "generator": "distilvpr synth", "seed": cfg.seed, "camera": camera_meta, "lidar": lidar_meta,
            "frames": {"map": "ENU, metres, z up", "base_link": "x forward, y left, z up (REP 103)",
                       "camera": "optical: z forward, x right, y down", "lidar": "axes parallel to base_link"},
            "traversals": [{"name": p.cfg.name, "role": p.cfg.role, "num_frames": len(p.poses),
                            "conditions": {"time_of_day": p.cfg.time_of_day, "weather": p.cfg.weather,
                                           "season": p.cfg.season}} for p in plans],
            "outputs": {"bags": cfg.output.bags, "bag_storage": cfg.output.bag_storage, "oxford": cfg.output.oxford,
                        "difficulty_report": report is not None},
            "config": to_dict(cfg)})
        if split is not None:
            (tmp / "split.json").write_text(json.dumps(split, indent=1, sort_keys=True) + "\n")
        from .preview import contact_sheet
        (tmp / "preview.png").write_bytes(contact_sheet(tmp))
    return out_dir


def _decode_png(data: bytes):
    from PIL import Image
    with Image.open(io.BytesIO(data)) as im:
        return im.convert("RGB")
