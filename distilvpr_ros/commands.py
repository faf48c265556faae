"""What this package adds to the ``distilvpr`` command (found through the
``distilvpr.plugins`` entry point, so the ROS-free core never names it).

Importing this module imports nothing: the modules named here are imported
only when their subcommand is chosen.
"""
from __future__ import annotations

#: ``distilvpr <name>``: name -> (module, one-line help).
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "replay-eval": ("distilvpr_ros.replay.replay_eval", "replay a rosbag through the localizer node and report "
                    "recall, precision-recall and latency"),
}

#: ``distilvpr bench <name>``: name -> module.
BENCH_TARGETS: dict[str, str] = {
    "node": "distilvpr_ros.bench_node",
}
