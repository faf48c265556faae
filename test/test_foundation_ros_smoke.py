"""Two processes talk over real DDS: an Image published in one arrives intact.

The publisher runs in a subprocess with the same isolated environment
(conftest: LOCALHOST discovery, random domain id); matching is awaited with
get_subscription_count(), not sleeps.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import numpy as np

PUBLISHER = textwrap.dedent("""
    import sys, time
    import numpy as np
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy, HistoryPolicy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("smoke_publisher")
    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
    pub = node.create_publisher(Image, "smoke/image", qos)
    deadline = time.monotonic() + 20.0
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    if pub.get_subscription_count() == 0:
        print("no subscriber matched", file=sys.stderr); sys.exit(3)
    img = (np.arange(48 * 64 * 3) % 251).astype(np.uint8).reshape(48, 64, 3)
    msg = Image(height=48, width=64, encoding="rgb8", step=64 * 3, data=img.tobytes())
    msg.header.frame_id = "camera"
    pub.publish(msg)
    pub.wait_for_all_acked(rclpy.duration.Duration(seconds=10))
    node.destroy_node()
    rclpy.shutdown()
""")


def test_image_crosses_processes_over_dds() -> None:
    assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    import rclpy
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("smoke_subscriber")
    received: list[Image] = []
    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
    node.create_subscription(Image, "smoke/image", received.append, qos)
    proc = subprocess.Popen([sys.executable, "-c", PUBLISHER], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30.0
        while not received and time.monotonic() < deadline and proc.poll() in (None, 0):
            rclpy.spin_once(node, timeout_sec=0.05)
        assert received, f"no image received; publisher stderr: {proc.stderr.read() if proc.poll() is not None else ''}"
        msg = received[0]
        expected = (np.arange(48 * 64 * 3) % 251).astype(np.uint8)
        assert (msg.height, msg.width, msg.encoding, msg.header.frame_id) == (48, 64, "rgb8", "camera")
        assert np.array_equal(np.frombuffer(bytes(msg.data), np.uint8), expected)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        node.destroy_node()
        rclpy.shutdown()
