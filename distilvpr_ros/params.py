"""The localizer's ROS parameters: one per field of LocalizerSettings.

The settings class (:mod:`distilvpr_core.localize.settings`) gives name,
default, description, range/choices and whether a value may change while
running; :func:`declare_all` turns it into ``declare_parameter`` calls with
descriptors (so ``ros2 param describe`` shows ranges).  Validation is the
settings' own :func:`~distilvpr_core.localize.settings.check`.

No rclpy at import time: the launch file and the CLI import this module.
"""
from __future__ import annotations

from typing import Any

from distilvpr_core.errors import UserError
from distilvpr_core.localize.settings import SPECS, LocalizerSettings


def declare_all(node: Any) -> LocalizerSettings:
    """Declare every setting as a parameter of ``node`` with its descriptor;
    return the values as settings.

    Raises UserError naming the parameter when an override has the wrong type
    or is out of range (rclpy rejects it while declaring).
    """
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
    from rclpy.exceptions import ParameterException

    values = {}
    for p in SPECS.values():
        desc = ParameterDescriptor(name=p.name, description=p.description, read_only=p.read_only)
        if p.choices:
            desc.additional_constraints = "one of: " + ", ".join(p.choices)
        if p.lo is not None and isinstance(p.default, float):
            desc.floating_point_range = [FloatingPointRange(from_value=float(p.lo), to_value=float(p.hi))]
        elif p.lo is not None:
            desc.integer_range = [IntegerRange(from_value=int(p.lo), to_value=int(p.hi), step=1)]
        try:
            values[p.name] = node.declare_parameter(p.name, p.default, desc).value
        except ParameterException as exc:
            hint = " (write 1.0, not 1)" if isinstance(p.default, float) else ""
            raise UserError(f"parameter '{p.name}': {exc}; expected {type(p.default).__name__}"
                            + (f" in [{p.lo}, {p.hi}]" if p.lo is not None else "") + hint) from None
    return LocalizerSettings.from_values(values)
