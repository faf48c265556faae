"""The localizer's ROS parameters: one per field of LocalizerSettings.

The settings class (:mod:`distilvpr_core.localize.settings`) gives name,
default, description, range/choices and whether a value may change while
running; :func:`declare_all` turns it into ``declare_parameter`` calls with
descriptors (so ``ros2 param describe`` shows ranges).  Validation is the
settings' own :func:`~distilvpr_core.localize.settings.check`.

``-p name:=value`` overrides are checked here from the command line itself
(:func:`check_cli_overrides`): when a params file sets the same parameter,
rcl keeps the file's value for a ``-p`` value of another type, so rclpy
never sees the bad value and the node would start with the file's value.

No rclpy at import time: the launch file and the CLI import this module.
"""
from __future__ import annotations

import sys
from typing import Any, Sequence

from distilvpr_core.foundation.errors import UserError
from distilvpr_core.foundation.safe_yaml import InvalidYAML, load_yaml
from distilvpr_core.localize.settings import SPECS, LocalizerSettings, check


#: Parameters every rclpy node has, valid in a params file beside the settings.
ROS_BUILTIN = frozenset({"use_sim_time", "start_type_description_service"})


def declare_all(node: Any, argv: Sequence[str] | None = None, extra: Sequence[str] = ()) -> LocalizerSettings:
    """Declare every setting as a parameter of ``node`` with its descriptor;
    return the values as settings.

    Raises UserError naming the parameter when an override has the wrong type
    or is out of range (rclpy rejects it while declaring; ``-p`` overrides in
    ``argv``, default ``sys.argv``, are checked first by :func:`check_cli_overrides`).
    A params-file section for this node with a key that is no parameter of
    it (``top_kk``) is a UserError naming the closest valid name
    (:func:`check_params_files`); ``extra``: the node's own parameters beyond
    the settings (the lifecycle node's ``autostart``).
    """
    argv = sys.argv if argv is None else argv
    check_cli_overrides(argv, node.get_name())
    check_params_files(argv, node.get_name(), node.get_fully_qualified_name(), extra)
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


def cli_overrides(argv: Sequence[str], node_name: str) -> list[tuple[str, str]]:
    """(name, raw value) of each ``-p``/``--param name:=value`` in the
    ``--ros-args`` sections of ``argv`` that applies to ``node_name`` (plain,
    ``node_name:``, ``/node_name:`` or ``/**:`` prefixed)."""
    out, in_ros = [], False
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--ros-args":
            in_ros = True
        elif arg == "--":
            in_ros = False
        elif in_ros and arg in ("-p", "--param") and i + 1 < len(argv):
            i += 1
            name, sep, value = argv[i].partition(":=")
            target, _, pname = name.rpartition(":")
            if sep and target in ("", node_name, "/" + node_name, "/**", "**"):
                out.append((pname, value))
        i += 1
    return out


def check_cli_overrides(argv: Sequence[str], node_name: str = "localizer") -> None:
    """UserError naming the parameter, the value and the expected type for the
    first ``-p`` override of a setting with the wrong type (the rule rclpy
    applies: exactly the default's type, so ``1`` is no float) or out of range.
    Values are read as YAML, as rcl reads them, by the bounded loader: an alias
    bomb or an over-long value is refused (UserError) before it is expanded; text
    that is not YAML at all is taken as the string it is."""
    for name, raw in cli_overrides(argv, node_name):
        spec = SPECS.get(name)
        if spec is None:
            continue
        try:
            value = load_yaml(raw, f"-p {name}:=...")
        except InvalidYAML:
            value = raw
        kind = type(spec.default)
        if type(value) is not kind:
            hint = " (write 1.0, not 1)" if kind is float and type(value) is int else ""
            raise UserError(f"parameter '{name}': -p {name}:={raw} is {type(value).__name__} "
                            f"{value!r}, expected {kind.__name__}{hint}")
        why = check(name, value)
        if why:
            raise UserError(f"{why} (from -p {name}:={raw})")


def params_files(argv: Sequence[str]) -> list[str]:
    """Paths given with ``--params-file`` in the ``--ros-args`` sections of ``argv``."""
    out, in_ros = [], False
    for i, arg in enumerate(argv):
        if arg == "--ros-args":
            in_ros = True
        elif arg == "--":
            in_ros = False
        elif in_ros and arg == "--params-file" and i + 1 < len(argv):
            out.append(argv[i + 1])
    return out


def _flatten(values: Any, prefix: str = "") -> list[str]:
    # Nested mappings are dotted names in ROS 2 (qos_overrides./image.subscription.depth).
    if not isinstance(values, dict):
        return [prefix]
    return [n for k, v in values.items() for n in _flatten(v, f"{prefix}{k}.")]


def check_params_files(argv: Sequence[str], node_name: str, fqn: str, extra: Sequence[str] = ()) -> None:
    """UserError naming the file, the key and the closest valid name for the
    first key of a params-file section for this node (``localizer:``,
    ``/localizer:``, ``/ns/localizer:``, ``/**/localizer:``) that is no
    parameter of it; rcl would silently ignore it.  Sections for every node
    (``/**:``) may hold other nodes' parameters and are not checked."""
    import difflib

    import yaml
    mine = {node_name, "/" + node_name, fqn, fqn.lstrip("/"), "/**/" + node_name}
    valid = set(SPECS) | ROS_BUILTIN | set(extra)
    for path in params_files(argv):
        try:
            with open(path) as fh:
                data = yaml.safe_load(fh)
        except (OSError, yaml.YAMLError):
            continue  # rcl has already parsed it; it reports its own errors
        if not isinstance(data, dict):
            continue
        for section, body in data.items():
            if str(section) not in mine or not isinstance(body, dict):
                continue
            names = _flatten(body.get("ros__parameters") or {})
            for name in (n[:-1] for n in names):
                if name in valid or name.startswith("qos_overrides."):
                    continue
                close = difflib.get_close_matches(name, sorted(valid), n=1)
                hint = f"; did you mean '{close[0]}'?" if close else f"; valid: {', '.join(sorted(valid))}"
                raise UserError(f"{path}: section '{section}': '{name}' is not a parameter of "
                                f"{fqn}{hint}")
