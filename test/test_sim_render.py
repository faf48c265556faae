"""Ray casting, camera and LiDAR against scenes with known geometry."""
from __future__ import annotations

import numpy as np
import pytest

from distilvpr_core.sim import camera, lidar
from distilvpr_core.sim.conditions import look_for
from distilvpr_core.sim.config import CameraConfig, LidarConfig, TraversalConfig
from distilvpr_core.sim.scene import build_scene, with_dynamic
from distilvpr_core.sim.world import GROUND, WALL, Facade, Solid


def _wall_scene(x=20.0):
    """Ground plane plus a 10 m high wall facing the origin at distance ``x`` (map +x)."""
    ground = Solid("ground", (0.0, 0.0, -0.2), (400.0, 400.0, 0.2), 0.0, GROUND, (0.3, 0.4, 0.2))
    wall = Solid("building", (x + 1.0, 0.0, 0.0), (2.0, 40.0, 10.0), 0.0, WALL, (0.8, 0.7, 0.6), facade=0)
    return build_scene([ground, wall])


def test_cast_distances_match_geometry():
    scene = _wall_scene(20.0)
    o = np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    d = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 0.0, 1.0]])
    face, dist = scene.cast(o, d)
    assert dist[0] == pytest.approx(20.0, abs=1e-3) and scene.material[face[0]] == WALL
    assert dist[1] == pytest.approx(1.0, abs=1e-3) and scene.material[face[1]] == GROUND
    assert face[2] == -1 and np.isinf(dist[2])
    assert scene.occluded(o[:1], d[:1])[0] and not scene.occluded(o[2:], d[2:])[0]


def test_dynamic_layer_occludes_static():
    scene = _wall_scene(20.0)
    car = build_scene([Solid("car", (10.0, 0.0, 0.0), (4.0, 2.0, 2.0), 0.0, 9, (1.0, 0.0, 0.0))])
    both = with_dynamic(scene, car)
    face, dist = both.cast(np.array([[0.0, 0.0, 1.0]]), np.array([[1.0, 0.0, 0.0]]))
    assert dist[0] == pytest.approx(8.0, abs=1e-3) and both.material[face[0]] == 9


def test_lidar_ranges_and_frame():
    scene = _wall_scene(15.0)
    cfg = LidarConfig(beams=16, azimuth_bins=360, noise_m=0.0, dropout=0.0, max_range_m=100.0)
    pose = np.eye(4)
    pts = lidar.scan(scene, cfg, lidar.beam_directions(cfg), pose, np.random.default_rng(0))
    assert pts.dtype == np.float32 and pts.shape[1] == 4
    fwd = (np.abs(np.arctan2(pts[:, 1], pts[:, 0])) < 0.02) & (pts[:, 2] > -1.0)
    assert np.allclose(pts[fwd, 0], 15.0, atol=0.02)          # wall face at x = 15 m
    ground = (pts[:, 2] < -1.0) & (pts[:, 0] < 14.0)
    assert np.allclose(pts[ground, 2], -cfg.position_m[2], atol=0.02)
    # Turning the vehicle by 90 degrees turns the scan, not the world.
    yaw = np.eye(4)
    yaw[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
    pts2 = lidar.scan(scene, cfg, lidar.beam_directions(cfg), yaw, np.random.default_rng(0))
    right = (np.abs(np.arctan2(pts2[:, 1], pts2[:, 0]) + np.pi / 2) < 0.02) & (pts2[:, 2] > -1.0)
    assert np.allclose(pts2[right, 1], -15.0, atol=0.02)


def _facades():
    return camera.facade_arrays([Facade(wall=(0.8, 0.7, 0.6), window=(0.1, 0.1, 0.2), floor_h=3.0,
                                        win_spacing=3.0, win_w=0.5, win_h=0.5, sign=None, door_u=2.0, lit_seed=1)])


@pytest.mark.parametrize("tod", ["noon", "night"])
def test_camera_image_shape_sky_and_ground(tod):
    cam = CameraConfig(width=64, height=48, shadows=True)
    scene = _wall_scene(30.0)
    look = look_for(TraversalConfig(name="x", time_of_day=tod))
    img = camera.render(scene, _facades(), look, cam, camera.pixel_rays(cam), np.eye(4),
                        np.zeros((0, 3)), np.random.default_rng(0))
    assert img.shape == (48, 64, 3) and img.dtype == np.uint8
    if tod == "noon":
        assert img[0].mean(axis=0)[2] > img[0].mean(axis=0)[0]        # blue-ish sky at the top


def test_night_is_darker_and_noisier_than_noon():
    cam = CameraConfig(width=64, height=48)
    scene = _wall_scene(15.0)
    imgs = {}
    for tod in ("noon", "night"):
        look = look_for(TraversalConfig(name="x", time_of_day=tod))
        imgs[tod] = camera.render(scene, _facades(), look, cam, camera.pixel_rays(cam), np.eye(4),
                                  np.zeros((0, 3)), np.random.default_rng(0)).astype(float)
    assert imgs["night"].mean() < 0.5 * imgs["noon"].mean()


def test_shadow_rays_darken_the_ground_behind_a_tower():
    """Noon sun from azimuth 200 deg, elevation 60: a 20 m tower shades the ground towards +x."""
    cam = CameraConfig(width=96, height=72, hfov_deg=90.0, pitch_deg=-89.0, position_m=(0.0, 0.0, 40.0))
    tower = Solid("building", (0.0, 0.0, 0.0), (4.0, 4.0, 20.0), 0.0, WALL, (0.8, 0.7, 0.6), facade=0)
    ground = Solid("ground", (0.0, 0.0, -0.2), (400.0, 400.0, 0.2), 0.0, GROUND, (0.5, 0.5, 0.5))
    scene = build_scene([ground, tower])
    out = {}
    for shadows in (True, False):
        look = look_for(TraversalConfig(name="x", time_of_day="noon"), shadows=shadows)
        out[shadows] = camera.render(scene, _facades(), look, cam, camera.pixel_rays(cam), np.eye(4),
                                     np.zeros((0, 3)), np.random.default_rng(0)).astype(float).mean(axis=2)
    diff = out[False] - out[True]
    assert diff.min() > -12                   # shadows only ever remove sunlight (noise aside)
    shaded = diff > 40
    assert 20 < shaded.sum() < 0.3 * shaded.size
    # Looking down with base_link x forward, image "up" is +x: the shadow lies above the tower.
    rows = np.nonzero(shaded)[0]
    assert rows.mean() < 36
