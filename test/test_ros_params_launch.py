"""LocalizerSettings, config/localize.yaml, launch_args.py and the launch file agree."""
from __future__ import annotations

import ast
import types

import pytest
import yaml

from distilvpr_core.foundation.errors import UserError
from distilvpr_core.localize import settings as params
from distilvpr_core.localize.settings import LocalizerSettings, check_required
from distilvpr_ros import launch_args

PARAMS = tuple(params.SPECS.values())


def test_config_yaml_holds_exactly_the_node_defaults(repo_root):
    data = yaml.safe_load((repo_root / "config" / "localize.yaml").read_text())
    values = data["/**"]["ros__parameters"]
    assert values == params.DEFAULTS
    for name, value in values.items():
        assert type(value) is type(params.DEFAULTS[name]), name  # 1 vs 1.0 matters to rclpy


def test_every_default_passes_its_own_check_and_has_a_description():
    for p in PARAMS:
        assert params.check(p.name, p.default) is None, p.name
        assert len(p.description) > 15, p.name
        if isinstance(p.default, (int, float)) and not isinstance(p.default, bool):
            assert p.lo is not None and p.hi is not None, f"{p.name} has no range"


@pytest.mark.parametrize("name,value,expect", [
    ("backend", "cuda", "expected one of"),
    ("top_k", 0, "in [1, 100]"),
    ("score_threshold", 1.5, "in [-1.0, 1.0]"),
    ("min_interval_s", -0.1, "min_interval_s"),
    ("top_k", 2.5, "expected int"),
    ("online_mapping", 1, "expected bool"),
    ("consistency_n", True, "expected int"),
])
def test_invalid_values_are_rejected_naming_the_parameter(name, value, expect):
    why = params.check(name, value)
    assert why is not None and expect in why and name in why


def test_startup_requires_map_and_model():
    values = dict(params.DEFAULTS, model_path="m.onnx")
    with pytest.raises(UserError, match="map_path"):
        check_required(LocalizerSettings.from_values(values))
    check_required(LocalizerSettings.from_values(dict(values, map_path="map")))
    with pytest.raises(UserError, match=r"parameter 'top_k': expected a value in \[1, 100\], got 0"):
        LocalizerSettings.from_values(dict(values, top_k=0))
    with pytest.raises(UserError, match="unknown localizer parameter.*'topk'"):
        LocalizerSettings.from_values({"topk": 3})


def test_replay_settings_come_from_the_params_file_then_overrides(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("/**:\n  ros__parameters:\n    top_k: 7\n    score_threshold: 0\n"
                 "localizer:\n  ros__parameters:\n    consistency_n: 3\n")
    s = params.settings_from_file(f, params.parse_overrides(["consistency_n:=4", "map_frame:=odom"]),
                                  map_path="/m")
    assert (s.top_k, s.consistency_n, s.map_frame, s.map_path) == (7, 4, "odom", "/m")
    assert s.score_threshold == 0.0 and type(s.score_threshold) is float
    with pytest.raises(UserError, match="--node-param 'top_k=3': expected NAME:=VALUE"):
        params.parse_overrides(["top_k=3"])


def test_launch_defaults_equal_node_defaults():
    required = {"map", "model", "backend", "engine_cache", "image_topic", "compressed",
                "namespace", "params_file", "log_level", "use_sim_time", "odom_topic", "candidates_topic",
                "loop_closure_topic", "match_pose_topic", "markers_topic", "diagnostics_topic", "respawn",
                "respawn_delay"}
    assert required <= set(launch_args.BY_NAME)
    for a in launch_args.LAUNCH_ARGS:
        assert a.description
        if a.param == "use_sim_time":  # ROS's own parameter, default false
            assert a.default == "false"
        elif a.param:
            default = params.DEFAULTS[a.param]
            text = str(default).lower() if isinstance(default, bool) else str(default)
            assert a.default == text, (a.name, a.param)
    assert launch_args.BY_NAME["image_topic"].default == "image"  # the node's own topic name


def test_node_arguments_match_launch_semantics(repo_root):
    args = launch_args.node_arguments({"map": "/maps/town", "image_topic": "/cam/rgb",
                                       "namespace": "robot1"})
    assert args[:3] == ["--ros-args", "--log-level", "info"]
    assert args[args.index("--params-file") + 1] == str(repo_root / "config" / "localize.yaml")
    assert "map_path:=/maps/town" in args and "__ns:=/robot1" in args
    assert "image:=/cam/rgb" in args and "image/compressed:=/cam/rgb/compressed" in args
    assert not any(a.startswith("model_path:=") for a in args)  # default: the params file decides
    with pytest.raises(ValueError, match="unknown launch argument"):
        launch_args.node_arguments({"mapp": "x"})


# Launch API present in ROS 2 Humble (the oldest distribution we support).
HUMBLE_API = {
    "launch": {"LaunchDescription"},
    "launch.actions": {"DeclareLaunchArgument", "OpaqueFunction", "GroupAction", "SetEnvironmentVariable",
                       "IncludeLaunchDescription", "LogInfo", "RegisterEventHandler", "EmitEvent",
                       "TimerAction"},
    "launch.event_handlers": {"OnProcessExit"},
    "launch.events": {"Shutdown"},
    "launch.substitutions": {"LaunchConfiguration", "PythonExpression", "TextSubstitution"},
    "launch.conditions": {"IfCondition", "UnlessCondition"},
    "launch_ros.actions": {"Node", "PushRosNamespace"},
    "launch_ros.parameter_descriptions": {"ParameterValue", "ParameterFile"},
    "ament_index_python.packages": {"get_package_share_directory"},
    "distilvpr_ros.launch_args": {"LAUNCH_ARGS", "node_failed", "overrides", "parse_bool", "parse_delay",
                                  "remappings", "respawn_after"},
    "os": None,
}
HUMBLE_NODE_KWARGS = {"package", "executable", "name", "namespace", "exec_name", "parameters", "remappings",
                      "arguments", "output", "emulate_tty", "respawn", "respawn_delay", "additional_env"}


def test_launch_file_imports_only_humble_api(repo_root):
    path = repo_root / "launch" / "localize.launch.py"
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.module in HUMBLE_API, f"import from {node.module}"
            allowed = HUMBLE_API[node.module]
            assert {a.name for a in node.names} <= allowed, (node.module, [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            assert all(a.name in HUMBLE_API for a in node.names)


def _run_launch_file(repo_root, monkeypatch, **given):
    """Execute localize.launch.py against recording stand-ins of the launch API
    (launch/launch_ros are not on PyPI); return (declared arguments, Node kwargs)."""
    import importlib.util
    import sys

    declared, nodes, handlers = [], [], []

    class DeclareLaunchArgument:
        def __init__(self, name, default_value, description):
            declared.append((name, default_value, description))

    class LaunchConfiguration:
        def __init__(self, name):
            self.name = name

        def perform(self, context):
            return context[self.name]

    class OpaqueFunction:
        def __init__(self, function):
            self.function = function

    class LaunchDescription:
        def __init__(self, entities):
            self.entities = entities

    def node(**kwargs):
        nodes.append(kwargs)
        return kwargs

    class OnProcessExit:
        def __init__(self, target_action, on_exit):
            self.target_action, self.on_exit = target_action, on_exit

    class RegisterEventHandler:
        def __init__(self, handler):
            handlers.append(handler)

    class EmitEvent:
        def __init__(self, event):
            self.event = event

    class Shutdown:
        def __init__(self, reason):
            self.reason = reason

    class LogInfo:
        def __init__(self, msg):
            self.msg = msg

    class TimerAction:
        def __init__(self, period, actions):
            self.period, self.actions = period, actions

    fakes = {"launch": {"LaunchDescription": LaunchDescription},
             "launch.actions": {"DeclareLaunchArgument": DeclareLaunchArgument, "OpaqueFunction": OpaqueFunction,
                                "RegisterEventHandler": RegisterEventHandler, "EmitEvent": EmitEvent,
                                "LogInfo": LogInfo, "TimerAction": TimerAction},
             "launch.event_handlers": {"OnProcessExit": OnProcessExit},
             "launch.events": {"Shutdown": Shutdown},
             "launch.substitutions": {"LaunchConfiguration": LaunchConfiguration},
             "launch_ros": {}, "launch_ros.actions": {"Node": node},
             "ament_index_python": {},
             "ament_index_python.packages": {"get_package_share_directory": lambda pkg: f"/share/{pkg}"}}
    for name, attrs in fakes.items():
        monkeypatch.setitem(sys.modules, name, types.SimpleNamespace(**attrs))
    spec = importlib.util.spec_from_file_location("localize_launch", repo_root / "launch" / "localize.launch.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ld = mod.generate_launch_description()
    context = {name: default for name, default, _ in declared}
    context.update(given)
    opaque = [e for e in ld.entities if isinstance(e, OpaqueFunction)]
    assert len(opaque) == 1
    returned = opaque[0].function(context)
    assert [a for a in returned if isinstance(a, dict)] == nodes  # every Node is launched
    return declared, nodes, handlers


def test_launch_file_declares_the_table_and_starts_the_node_like_node_arguments(repo_root, monkeypatch):
    declared, nodes, handlers = _run_launch_file(repo_root, monkeypatch)
    assert declared == [(a.name, a.default, a.description) for a in launch_args.LAUNCH_ARGS]
    (node,) = nodes
    assert set(node) <= HUMBLE_NODE_KWARGS
    assert (node["package"], node["executable"], node["namespace"]) == ("distilvpr_ros", "localizer", "")
    # Defaults only: the params file alone decides every parameter.
    assert node["parameters"] == ["/share/distilvpr_ros/config/localize.yaml", {}]
    assert node["remappings"] == [("image", "image"), ("image/compressed", "image/compressed")]
    assert node["arguments"] == ["--ros-args", "--log-level", "info"]
    # No tty emulation: redirected logs and journald get no ANSI colour codes.
    assert not node.get("emulate_tty") and "respawn" not in node
    (handler,) = handlers  # no respawn: the node's failure ends the launch
    assert handler.target_action is node

    _, nodes, _ = _run_launch_file(repo_root, monkeypatch, map="/maps/town", image_topic="/cam/rgb",
                                   compressed="true", namespace="robot1", params_file="/p.yaml",
                                   log_level="warn")
    (node,) = nodes
    assert node["parameters"] == ["/p.yaml", {"map_path": "/maps/town", "compressed": True}]
    assert node["remappings"] == [("image", "/cam/rgb"), ("image/compressed", "/cam/rgb/compressed")]
    assert node["namespace"] == "robot1" and node["arguments"][-1] == "warn"
    # The replay starts the node with the same meaning.
    args = launch_args.node_arguments({"map": "/maps/town", "image_topic": "/cam/rgb", "compressed": "true",
                                       "namespace": "robot1", "params_file": "/p.yaml", "log_level": "warn"})
    assert {"map_path:=/maps/town", "compressed:=true", "image:=/cam/rgb", "__ns:=/robot1"} <= set(args)
    assert args[args.index("--params-file") + 1] == "/p.yaml"
    with pytest.raises(ValueError, match="compressed:='maybe'"):
        _run_launch_file(repo_root, monkeypatch, compressed="maybe")


def test_launch_remaps_every_topic_sets_sim_time_and_respawns(repo_root, monkeypatch):
    given = {"odom_topic": "/vio/odom", "candidates_topic": "/vpr/candidates",
             "loop_closure_topic": "/lio_loop/loop_closure_detection", "match_pose_topic": "/vpr/pose",
             "markers_topic": "/vpr/markers", "diagnostics_topic": "/vpr/diagnostics",
             "use_sim_time": "true", "loop_closure_scope": "session"}
    _, nodes, handlers = _run_launch_file(repo_root, monkeypatch, respawn="true", respawn_delay="0.5", **given)
    (node,) = nodes
    assert set(node["remappings"][2:]) == {
        ("odom", "/vio/odom"), ("~/candidates", "/vpr/candidates"),
        ("~/loop_closure", "/lio_loop/loop_closure_detection"), ("~/match_pose", "/vpr/pose"),
        ("~/markers", "/vpr/markers"), ("/diagnostics", "/vpr/diagnostics")}
    assert node["parameters"][1] == {"use_sim_time": True, "loop_closure_scope": "session"}
    (handler,) = handlers  # respawn: an exit starts the node again, later
    running = types.SimpleNamespace(is_shutdown=False)
    log, timer = handler.on_exit(types.SimpleNamespace(returncode=-11), running)
    assert timer.period == 0.5 and "code -11" in log.msg  # a crash: respawn_delay
    assert timer.actions[0]["remappings"] == node["remappings"]
    args = launch_args.node_arguments(given)
    for src, dst in node["remappings"][2:]:
        assert f"{src}:={dst}" in args
    assert "use_sim_time:=true" in args and "loop_closure_scope:=session" in args
    with pytest.raises(ValueError, match="respawn_delay:='-1'"):
        _run_launch_file(repo_root, monkeypatch, respawn_delay="-1")
    with pytest.raises(ValueError, match="use_sim_time:='yes'"):
        launch_args.node_arguments({"use_sim_time": "yes"})


def test_launch_exit_handler_fails_the_launch_on_a_failed_start(repo_root, monkeypatch):
    _, _, (handler,) = _run_launch_file(repo_root, monkeypatch)

    def exit_event(code):
        return types.SimpleNamespace(returncode=code)

    # Exit 2 (start-up error) while launch is running: raising is what makes
    # launch's run() return non-zero (a Shutdown event alone returns 0).
    with pytest.raises(RuntimeError, match="exited with code 2 .*start-up error"):
        handler.on_exit(exit_event(2), types.SimpleNamespace(is_shutdown=False))
    with pytest.raises(RuntimeError, match="code -9"):
        handler.on_exit(exit_event(-9), types.SimpleNamespace(is_shutdown=False))
    # A clean exit ends the launch normally; any exit during launch's own
    # shutdown (Ctrl-C) is not a failure.
    (emit,) = handler.on_exit(exit_event(0), types.SimpleNamespace(is_shutdown=False))
    assert "exited" in emit.event.reason
    assert handler.on_exit(exit_event(-2), types.SimpleNamespace(is_shutdown=True))


def test_docs_list_every_parameter_and_launch_argument(repo_root):
    doc = (repo_root / "docs" / "node.md").read_text()
    for p in PARAMS:
        assert f"| `{p.name}` |" in doc, f"docs/node.md lacks parameter {p.name}"
        assert p.description in doc, f"docs/node.md has a stale description of {p.name}"
    for a in launch_args.LAUNCH_ARGS:
        assert f"| `{a.name}` |" in doc, f"docs/node.md lacks launch argument {a.name}"


def test_cli_overrides_are_type_checked_as_rclpy_would():
    from distilvpr_ros.params import check_cli_overrides, cli_overrides
    argv = ["prog", "--ros-args", "--params-file", "x.yaml", "-p", "top_k:=7", "-r", "a:=b",
            "--param", "other_node:top_k:=abc", "-p", "/localizer:min_interval_s:=2.0", "--", "-p", "x:=1"]
    assert cli_overrides(argv, "localizer") == [("top_k", "7"), ("min_interval_s", "2.0")]
    check_cli_overrides(argv, "localizer")
    for raw, expect in (("7.0", "float 7.0, expected int"), ("abc", "str 'abc', expected int"),
                        ("[1,2]", r"list \[1, 2\], expected int"), ("500", r"in \[1, 100\], got 500")):
        with pytest.raises(UserError, match=rf"parameter 'top_k': .*{expect}"):
            check_cli_overrides(["p", "--ros-args", "-p", f"top_k:={raw}"])
    with pytest.raises(UserError, match=r"write 1.0, not 1"):
        check_cli_overrides(["p", "--ros-args", "-p", "min_interval_s:=1"])
    check_cli_overrides(["p", "--ros-args", "-p", "use_sim_time:=true", "-p", "map_frame:=odom"])


def test_cli_override_alias_bomb_is_refused_before_it_is_expanded(repo_root):
    # yaml.safe_load followed every alias of a -p value, and the type error's repr walked the
    # 10**9 nodes of a few hundred bytes (a hang).  Run in a child so old code fails, not hangs.
    import subprocess
    import sys
    bomb = "[" + ", ".join(["&a0 [x, x, x, x, x, x, x, x, x, x]"] + [
        f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]) + "]"
    code = ("import sys\nfrom distilvpr_core.foundation.errors import UserError\n"
            "from distilvpr_ros.params import check_cli_overrides\n"
            "try:\n    check_cli_overrides(['p', '--ros-args', '-p', 'top_k:=' + sys.argv[1]])\n"
            "except UserError as exc:\n    print(exc)\n")
    try:
        out = subprocess.run([sys.executable, "-c", code, bomb], cwd=repo_root, capture_output=True,
                             text=True, timeout=30).stdout
    except subprocess.TimeoutExpired:
        pytest.fail("a YAML alias bomb in a -p value was expanded (no answer in 30 s)")
    assert "-p top_k:=...: YAML expands to more than" in out and "alias bomb" in out, out
    from distilvpr_ros.params import check_cli_overrides
    with pytest.raises(UserError, match=r"-p map_frame:=\.\.\.: .* bytes of YAML, more than"):
        check_cli_overrides(["p", "--ros-args", "-p", "map_frame:=" + "a" * (2 << 20)])
    # Text that is not YAML at all is still the string rcl would take it for.
    with pytest.raises(UserError, match=r"parameter 'top_k': -p top_k:=\[1, is str '\[1,', expected int"):
        check_cli_overrides(["p", "--ros-args", "-p", "top_k:=[1,"])


def test_respawn_backs_off_on_configuration_errors(repo_root, monkeypatch):
    # A permanent configuration error (exit 2) restarted the node every 1.8 s forever.
    _, nodes, handlers = _run_launch_file(repo_root, monkeypatch, respawn="true", respawn_delay="1.0")
    running = types.SimpleNamespace(is_shutdown=False)
    periods = []
    handler = handlers[-1]
    for _ in range(9):
        _, timer = handler.on_exit(types.SimpleNamespace(returncode=2), running)
        periods.append(timer.period)
        handler = handlers[-1]     # the restarted node's exit handler (made with the timer's actions)
    assert periods == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    _, timer = handler.on_exit(types.SimpleNamespace(returncode=1), running)
    assert timer.period == 1.0    # a crash restarts at once and resets the back-off
    assert handler.on_exit(types.SimpleNamespace(returncode=2), types.SimpleNamespace(is_shutdown=True)) is None
    assert launch_args.respawn_after(0, 3, 2.0) == (2.0, 0)
    assert launch_args.respawn_after(2, 0, 2.0) == (2.0, 1)


def test_lifecycle_and_rviz_arguments(repo_root, monkeypatch):
    _, nodes, _ = _run_launch_file(repo_root, monkeypatch, lifecycle="true")
    (node,) = nodes
    assert node["executable"] == "lifecycle_localizer" and node["parameters"][1] == {"autostart": True}
    _, nodes, _ = _run_launch_file(repo_root, monkeypatch, lifecycle="true", autostart="false", rviz="true")
    node, rviz = nodes
    assert node["parameters"][1] == {"autostart": False}
    assert rviz["executable"] == "rviz2" and rviz["arguments"] == ["-d", "/share/distilvpr_ros/config/distilvpr.rviz"]
    view = yaml.safe_load((repo_root / "config" / "distilvpr.rviz").read_text())
    topics = {d["Topic"]["Value"] for d in view["Visualization Manager"]["Displays"] if "Topic" in d}
    assert topics == {"/image", "/localizer/markers", "/localizer/candidates", "/localizer/match_pose",
                      "/localizer/pose"}
    assert view["Visualization Manager"]["Global Options"]["Fixed Frame"] == "map"  # map_frame's default
    _, nodes, _ = _run_launch_file(repo_root, monkeypatch)
    assert [n["executable"] for n in nodes] == ["localizer"]
