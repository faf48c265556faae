"""The managed node through the real lifecycle services (lifecycle_msgs), from another process.

configure loads map and model; activate creates the subscriptions and
publishers; deactivate removes them; cleanup frees everything; a failed
configure leaves the node unconfigured and alive; ``autostart`` runs
configure + activate at start, and a configuration error then exits 2.
"""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")  # the test student is exported from torch

from lifecycle_msgs.msg import State, Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image, PointCloud2  # noqa: E402

from distilvpr_ros import launch_args, synthetic_assets  # noqa: E402
from distilvpr_ros.outputs import ns_to_stamp  # noqa: E402
from distilvpr_ros.replay.node_process import LocalizerProcess, local_ros_client, spin_until  # noqa: E402

MODULE = "distilvpr_ros.lifecycle_localizer"


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    import torch
    torch.set_num_threads(1)
    return synthetic_assets.build(tmp_path_factory.mktemp("lifecycle"), places=2, image_size=(160, 120))


@pytest.fixture(scope="module")
def ros():
    with local_ros_client("lifecycle_test_client") as node:
        yield node


def _start(tmp_path, map_dir, model, *params):
    args = launch_args.node_arguments({"map": str(map_dir), "model": str(model)})
    for p in ("intra_op_threads:=1", "min_interval_s:=0.0", *params):
        args += ["-p", p]
    return LocalizerProcess(args, tmp_path / "node.log", module=MODULE)


def _call(ros, client, request, proc, what):
    spin_until(ros, client.service_is_ready, 30, f"{what} service", proc)
    future = client.call_async(request)
    spin_until(ros, future.done, 60, what, proc)
    return future.result()


def _state(ros, proc) -> int:
    client = ros.create_client(GetState, "/localizer/get_state")
    try:
        return _call(ros, client, GetState.Request(), proc, "get_state").current_state.id
    finally:
        ros.destroy_client(client)


def _change(ros, proc, transition: int) -> bool:
    client = ros.create_client(ChangeState, "/localizer/change_state")
    try:
        req = ChangeState.Request(transition=Transition(id=transition))
        return _call(ros, client, req, proc, f"transition {transition}").success
    finally:
        ros.destroy_client(client)


def _image(stamp_ns: int) -> Image:
    rgb = synthetic_assets.place_image(0, 160, 120)
    msg = Image(height=120, width=160, encoding="rgb8", step=480, data=np.ascontiguousarray(rgb).tobytes())
    msg.header.stamp = ns_to_stamp(stamp_ns)
    return msg


def test_transitions_load_open_close_and_free(assets, ros, tmp_path):
    got = []
    sub = ros.create_subscription(PointCloud2, "/localizer/candidates", got.append, 10)
    image = ros.create_publisher(Image, "/image", qos_profile_sensor_data)
    proc = _start(tmp_path, assets.map, assets.model)
    try:
        assert _state(ros, proc) == State.PRIMARY_STATE_UNCONFIGURED
        assert "ready:" not in proc.output() and "configured:" not in proc.output()

        assert _change(ros, proc, Transition.TRANSITION_CONFIGURE)
        assert _state(ros, proc) == State.PRIMARY_STATE_INACTIVE
        assert "configured: map" in proc.output()
        assert ros.count_subscribers("/image") == 0 and ros.count_publishers("/localizer/candidates") == 0

        assert _change(ros, proc, Transition.TRANSITION_ACTIVATE)
        assert _state(ros, proc) == State.PRIMARY_STATE_ACTIVE
        spin_until(ros, lambda: image.get_subscription_count() > 0, 20, "image subscription", proc)
        k = [0]

        def answered():
            k[0] += 1
            image.publish(_image(1_800_000_000 * 10**9 + k[0] * 10**8))
            return bool(got)
        spin_until(ros, answered, 30, "candidates while active", proc)

        assert _change(ros, proc, Transition.TRANSITION_DEACTIVATE)
        assert _state(ros, proc) == State.PRIMARY_STATE_INACTIVE
        spin_until(ros, lambda: image.get_subscription_count() == 0
                   and ros.count_publishers("/localizer/candidates") == 0, 20, "subscription gone", proc)

        assert _change(ros, proc, Transition.TRANSITION_CLEANUP)
        assert _state(ros, proc) == State.PRIMARY_STATE_UNCONFIGURED
        assert "model and map released" in proc.output()
        # And again: configure + activate after cleanup serve as the first time.
        assert _change(ros, proc, Transition.TRANSITION_CONFIGURE)
        assert _change(ros, proc, Transition.TRANSITION_ACTIVATE)
        spin_until(ros, lambda: image.get_subscription_count() > 0, 20, "image subscription again", proc)
    finally:
        ros.destroy_subscription(sub)
        ros.destroy_publisher(image)
        assert proc.stop() == 0
    assert "Traceback" not in proc.output()


def test_failed_configure_stays_unconfigured_and_alive(assets, ros, tmp_path):
    proc = _start(tmp_path, tmp_path / "no_such_map", assets.model)
    try:
        assert not _change(ros, proc, Transition.TRANSITION_CONFIGURE)
        assert _state(ros, proc) == State.PRIMARY_STATE_UNCONFIGURED
        assert proc.alive() and "no_such_map" in proc.output()
    finally:
        assert proc.stop() == 0
    assert "Traceback" not in proc.output()


def test_autostart_activates_and_a_configuration_error_exits_2(assets, ros, tmp_path):
    proc = _start(tmp_path, assets.map, assets.model, "autostart:=true")
    try:
        spin_until(ros, lambda: "ready:" in proc.output(), 60, "ready", proc)
        assert _state(ros, proc) == State.PRIMARY_STATE_ACTIVE
    finally:
        assert proc.stop() == 0
    bad = _start(tmp_path / "bad", tmp_path / "no_such_map", assets.model, "autostart:=true")
    try:
        assert bad.proc.wait(60) == 2
    finally:
        bad.stop()
    assert "no_such_map" in bad.output() and "Traceback" not in bad.output()
