"""Builders for the replay tests: a tiny exported student, a prior map, real rosbags.

The "town" is a 240 m loop of places whose camera images are smooth random
textures seeded by the place (every 8 m), so a random-init student already
tells places apart.  The map traversal and the query traversal see the same
places with different noise and a 2-3 m lateral offset; the query traversal
also runs past the mapped stretch, so some queries are not revisits.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from distilvpr_core.data.bags import BagReader
from distilvpr_core.loopeval.groundtruth import bag_track
from distilvpr_ros.replay.replay_eval import add_arguments

W, H = 64, 48
DIM = 32
MAP_T0_NS = 1_000 * 1_000_000_000     # the map was recorded long before the query bag
QUERY_T0_NS = 5_000 * 1_000_000_000
QUERY_HZ = 10.0


def place_image(s_m: float, rng: np.random.Generator) -> np.ndarray:
    """uint8 [H, W, 3] RGB seen at arc length ``s_m``: a texture per 8 m place + noise."""
    place = int(s_m // 8.0)
    base = np.random.default_rng(1000 + place).uniform(0, 255, (6, 8, 3))
    img = np.kron(base, np.ones((H // 6, W // 8, 1)))
    img = img + rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def loop_xyz(s_m: np.ndarray, lateral_m: float = 0.0) -> np.ndarray:
    """float64 [N, 3] positions on a 240 m rectangle-ish loop (map frame)."""
    ang = np.asarray(s_m) / 240.0 * 2 * np.pi
    r = 240.0 / (2 * np.pi) + lateral_m
    return np.stack([r * np.cos(ang), r * np.sin(ang), np.zeros_like(ang)], axis=-1)


def export_model(out: Path) -> Path:
    """A random-init ResNet18 student (D = 32, 64x48 input) exported to ONNX."""
    import torch
    from distilvpr_core.models.fingerprint import module_fingerprint
    from distilvpr_core.export.onnx_export import export_student_onnx
    from distilvpr_core.foundation.contract import PreprocessContract
    from distilvpr_core.models.config import StudentConfig
    from distilvpr_core.models.student import build_student

    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = build_student(StudentConfig(dim=DIM)).eval()
    contract = PreprocessContract(input_size=(W, H), descriptor_dim=DIM)
    export_student_onnx(model, contract, module_fingerprint(model), out)
    return out


def build_map(model: Path, out: Path, n: int = 60) -> Path:
    """Map traversal: ``n`` keyframes every 2 m over the first 120 m of the loop."""
    from distilvpr_core.infer import load_embedder
    from distilvpr_core.mapdb import PriorMap

    emb = load_embedder(model, backend="onnxruntime", intra_op_threads=1)
    rng = np.random.default_rng(1)
    s = np.arange(n) * 2.0
    desc = emb.embed([place_image(v, rng) for v in s])
    poses = np.zeros((n, 7))
    poses[:, :3] = loop_xyz(s)
    poses[:, 6] = 1.0
    m = PriorMap.create(emb.dim, emb.fingerprint, emb.contract, index="flat")
    m.add(desc, MAP_T0_NS + (s * 1e8).astype(np.int64), poses, "map_traversal", np.arange(n))
    m.save(out)
    return out


def query_frames(n: int = 24) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """(stamps_ns int64 [n], positions float64 [n, 3], images) of the query traversal.

    5 m apart from s = 1 m: frames 0..23 reach s = 116 m inside the mapped 0..118 m;
    with n > 24 the rest lies beyond the map (not revisits).
    """
    rng = np.random.default_rng(2)
    s = 1.0 + 5.0 * np.arange(n)
    stamps = QUERY_T0_NS + (np.arange(n) * 1e9 / QUERY_HZ).astype(np.int64)
    return stamps, loop_xyz(s, lateral_m=2.5), [place_image(v, rng) for v in s]


def write_bag(path: Path, n: int = 24, with_pose: bool = True, storage: str = "mcap",
              empty: bool = False, compressed: bool = False) -> Path:
    """A rosbag2 of the query traversal: /camera/image_raw (rgb8) and /ground_truth/pose.

    Poses are at 20 Hz (twice the camera rate), so ground truth is interpolated.
    ``compressed``: /camera/image_raw/compressed (png) instead of raw.
    """
    import io

    from PIL import Image as PILImage
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    T = ts.types
    stamps, xyz, images = query_frames(n)
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3

    def header(ns: int, frame: str):
        return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](
            sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000)), frame_id=frame)

    with Writer(path, version=9, storage_plugin=plugin) as w:
        itype = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
        itopic = "/camera/image_raw/compressed" if compressed else "/camera/image_raw"
        cimg = w.add_connection(itopic, itype, typestore=ts)
        cpose = w.add_connection("/ground_truth/pose", "geometry_msgs/msg/PoseStamped",
                                 typestore=ts) if with_pose else None
        if empty:
            return path
        events = []
        for t, img in zip(stamps, images):
            if compressed:
                buf = io.BytesIO()
                PILImage.fromarray(img).save(buf, format="PNG")
                msg = T[itype](header=header(t, "camera"), format="png",
                               data=np.frombuffer(buf.getvalue(), np.uint8))
            else:
                msg = T[itype](header=header(t, "camera"), height=H, width=W, encoding="rgb8",
                               is_bigendian=0, step=W * 3, data=img.reshape(-1))
            events.append((int(t), cimg, ts.serialize_cdr(msg, itype)))
        if cpose is not None:
            pt = QUERY_T0_NS - 100_000_000 + np.arange(2 * n + 4) * 50_000_000
            s = 1.0 + 5.0 * (pt - QUERY_T0_NS) / 1e9 * QUERY_HZ
            pxyz = loop_xyz(s, lateral_m=2.5)
            for t, p in zip(pt, pxyz):
                msg = T["geometry_msgs/msg/PoseStamped"](header=header(t, "map"), pose=T[
                    "geometry_msgs/msg/Pose"](position=T["geometry_msgs/msg/Point"](
                        x=p[0], y=p[1], z=p[2]), orientation=T["geometry_msgs/msg/Quaternion"](
                        x=0.0, y=0.0, z=0.0, w=1.0)))
                events.append((int(t), cpose, ts.serialize_cdr(msg, "geometry_msgs/msg/PoseStamped")))
        for t, conn, raw in sorted(events, key=lambda e: e[0]):
            w.write(conn, t, raw)
    return path


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bag_reads_back_with_interpolatable_ground_truth(tmp_path, storage):
    bag = write_bag(tmp_path / "q", n=6, storage=storage)
    with BagReader(bag) as src:
        assert src.check("/camera/image_raw", ("sensor_msgs/msg/Image",)) == "sensor_msgs/msg/Image"
        (t, p), problem = bag_track(src, "/ground_truth/pose")
        assert problem is None
        recs = list(src.image_records("/camera/image_raw"))
        stamps, xyz, images = query_frames(6)
        assert [r.stamp_ns for r in recs] == stamps.tolist()
        np.testing.assert_array_equal(src.decode(src.image_message(recs[3]), "/camera/image_raw"), images[3])
        assert len(t) == 16 and p.shape == (16, 3)
        assert bag_track(src, "")[1] == "no ground-truth pose topic given (--pose-topic)"
        track, problem = bag_track(src, "/camera/image_raw")
        assert track is None and "has type sensor_msgs/msg/Image, expected one of" in problem


def assets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(model.onnx, map dir), built once per test session and shared by the test files."""
    root = tmp_path_factory.getbasetemp() / "replay_assets"
    model, prior_map = root / "model.onnx", root / "map"
    if not (prior_map / "schema.json").exists():
        root.mkdir(parents=True, exist_ok=True)
        export_model(model)
        build_map(model, prior_map)
    return model, prior_map


# Registered under the name ``model_map``; the function has another name so a test file that
# imports it and takes ``model_map`` as a parameter does not shadow the import (pyflakes F811).
@pytest.fixture(scope="module", name="model_map")
def model_map_fixture(tmp_path_factory):
    """(model.onnx, map dir) of :func:`assets`, as a fixture for the replay test files."""
    return assets(tmp_path_factory)


def eval_args(*argv: str) -> argparse.Namespace:
    """``distilvpr replay-eval`` arguments parsed as the command line would."""
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(list(argv))
