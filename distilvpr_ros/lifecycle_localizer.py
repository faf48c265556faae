"""The managed (lifecycle) ``localizer``, as nav2's nodes are.

Same parameters, topics and services as :mod:`distilvpr_ros.localizer`, and
the same code (:class:`~distilvpr_ros.localizer_wiring.LocalizerMixin`), run
transition by transition:

* configure: read the parameters, load the model and the map (a wrong one
  fails the transition, naming the parameter or file; the node stays
  unconfigured);
* activate: create the subscriptions, publishers, services and timers;
* deactivate: destroy them (no frame is processed, nothing is published);
* cleanup: close the model and drop the map; shutdown: all of it.

``autostart`` (parameter, default false; the launch file's
``lifecycle:=true`` sets it true unless ``autostart:=false``) configures and
activates the node right after start; a configuration error then ends the
process with exit code 2, as the plain node does.  Otherwise a lifecycle
manager (or ``ros2 lifecycle set /localizer configure``) drives it.

Run: ``python -m distilvpr_ros.lifecycle_localizer --ros-args -p autostart:=true ...``
"""
from __future__ import annotations

import sys
from typing import Any, Sequence

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.lifecycle import LifecycleNode, State, TransitionCallbackReturn

from distilvpr_core.foundation.errors import UserError

from .localizer import run_node
from .localizer_wiring import LocalizerMixin


class LifecycleLocalizer(LocalizerMixin, LifecycleNode):
    """The localizer as a lifecycle node: configure loads model and map, activate creates the ROS
    interfaces (see module doc); ``autostart`` does both at start."""
    EXTRA_PARAMS = ("autostart",)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("localizer", **kwargs)
        self.autostart = bool(self.declare_parameter(
            "autostart", False, ParameterDescriptor(
                description="configure and activate right after start (no lifecycle manager)",
                read_only=True)).value)
        self._declare()
        self.configure_error = ""
        if self.autostart:
            self.trigger_configure()
            if self.configure_error:
                raise UserError(self.configure_error)
            self.trigger_activate()

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        try:
            self._load()
        except UserError as exc:
            self.configure_error = str(exc)
            self.get_logger().error(f"configure failed: {exc}")
            self._free()
            return TransitionCallbackReturn.FAILURE
        self.configure_error = ""
        self.get_logger().info(f"configured: map {self.p.map_path} ({len(self.map)} keyframes), "
                               f"model {self.p.model_path} on {self.embedder.backend}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self._open()
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._close()
        self.get_logger().info("deactivated: no subscriptions or publishers")
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._free()
        self.get_logger().info("cleaned up: model and map released")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self._close()
        self._free()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: State) -> TransitionCallbackReturn:
        self._close()
        self._free()
        return TransitionCallbackReturn.SUCCESS

    def destroy_node(self) -> None:
        self._close()
        self._free()
        self._stop_log_forwarding()
        super().destroy_node()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``lifecycle_localizer``; exit code as the plain node's."""
    return run_node(LifecycleLocalizer, argv)


if __name__ == "__main__":
    sys.exit(main())
