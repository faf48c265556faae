"""Start-up fails fast, naming the file or parameter, with exit code 2 and no traceback."""
from __future__ import annotations

import shutil

import pytest

from distilvpr_ros import launch_args, synthetic_assets
from distilvpr_ros.replay.node_process import LocalizerProcess


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    import torch
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("startup")
    return {
        "main": synthetic_assets.build(root / "main", places=3, dim=64, seed=0),
        "other_weights": synthetic_assets.build(root / "other", places=2, dim=64, seed=1),
        "other_dim": synthetic_assets.build(root / "dim32", places=2, dim=32, seed=0),
    }


def run_node(tmp_path, map_path, model_path, *params, timeout_s=60):
    args = launch_args.node_arguments({"map": str(map_path), "model": str(model_path)})
    for p in params:
        args += ["-p", p]
    return _run_args(tmp_path, args, timeout_s)


def _run_args(tmp_path, args, timeout_s=60):
    """Run the node to its exit; (exit code, output), never a traceback or an RCLError."""
    proc = LocalizerProcess(args, tmp_path / "node.log")
    try:
        rc = proc.proc.wait(timeout_s)
    finally:
        proc.stop()
    out = proc.output()
    assert "Traceback" not in out and "RCLError" not in out, out
    return rc, out


def test_missing_map_names_the_path(assets, tmp_path):
    rc, out = run_node(tmp_path, tmp_path / "no_such_map", assets["main"].model)
    assert rc == 2 and "no_such_map" in out and "map_path" in out


def test_missing_model_names_the_path(assets, tmp_path):
    rc, out = run_node(tmp_path, assets["main"].map, tmp_path / "gone.onnx")
    assert rc == 2 and "gone.onnx" in out and "model_path" in out


def test_corrupt_model_names_the_path(assets, tmp_path):
    bad = tmp_path / "truncated.onnx"
    bad.write_bytes(assets["main"].model.read_bytes()[:1000])
    rc, out = run_node(tmp_path, assets["main"].map, bad)
    assert rc == 2 and "truncated.onnx" in out


def test_map_of_another_model_is_refused_naming_both_fingerprints(assets, tmp_path):
    rc, out = run_node(tmp_path, assets["main"].map, assets["other_weights"].model)
    assert rc == 2 and "fingerprint" in out and str(assets["main"].map) in out


def test_map_of_another_dim_is_refused_naming_both_dims(assets, tmp_path):
    rc, out = run_node(tmp_path, assets["main"].map, assets["other_dim"].model)
    assert rc == 2 and "64" in out and "32" in out and "dim" in out


def test_damaged_map_is_refused(assets, tmp_path):
    damaged = tmp_path / "damaged_map"
    shutil.copytree(assets["main"].map, damaged)
    (damaged / "poses.npy").write_bytes(b"garbage")
    rc, out = run_node(tmp_path, damaged, assets["main"].model)
    assert rc == 2 and "poses.npy" in out


@pytest.mark.parametrize("param,name", [("top_k:=500", "top_k"), ("backend:=cuda", "backend"),
                                        ("min_interval_s:=1", "min_interval_s"),
                                        ("score_threshold:=2.0", "score_threshold"),
                                        # With the params file (run_node passes one) rcl kept the
                                        # file's top_k for these and the node started (issue 18).
                                        ("top_k:=7.0", "top_k"), ("top_k:=abc", "top_k"),
                                        ("top_k:=[1,2]", "top_k"), ("localizer:top_k:=7.0", "top_k")])
def test_invalid_parameter_is_refused_naming_it(assets, tmp_path, param, name):
    rc, out = run_node(tmp_path, assets["main"].map, assets["main"].model, param)
    assert rc == 2 and f"parameter '{name}'" in out
    assert "--params-file" in launch_args.node_arguments({"map": "m", "model": "m"})


def test_required_parameters(assets, tmp_path):
    proc = LocalizerProcess(["--ros-args", "-p", f"model_path:={assets['main'].model}"], tmp_path / "n.log")
    try:
        rc = proc.proc.wait(60)
    finally:
        proc.stop()
    assert rc == 2 and "parameter 'map_path' is required" in proc.output()


@pytest.mark.parametrize("given, said", [
    (["-p", "top_k:=[1,a]"], "Couldn't parse parameter override rule: '-p top_k:=[1,a]'"),
    (["--params-file", "BAD"], "Couldn't parse params file"),
    (["--params-file", "MISSING"], "Couldn't parse params file: '--params-file MISSING'"),
])
def test_what_rcl_cannot_parse_is_one_line_and_exit_2(assets, tmp_path, given, said):
    bad = tmp_path / "bad.yaml"
    bad.write_text('localizer:\n  ros__parameters:\n    top_k: [1, "a"\n')
    subst = {"BAD": str(bad), "MISSING": str(tmp_path / "missing.yaml")}
    given = [subst.get(a, a) for a in given]
    said = said.replace("MISSING", subst["MISSING"])
    args = launch_args.node_arguments({"map": str(assets["main"].map), "model": str(assets["main"].model)})
    rc, out = _run_args(tmp_path, args + given)
    assert rc == 2, out
    (line,) = out.strip().splitlines()  # one line, nothing else
    assert line.startswith("localizer: error:") and said in line and "/project/src" not in line


@pytest.mark.parametrize("section", ["localizer", "/localizer", "/**/localizer"])
def test_misspelled_params_file_key_names_it_and_the_closest_name(assets, tmp_path, section):
    typo = tmp_path / "typo.yaml"
    typo.write_text(f"{section}:\n  ros__parameters:\n    top_k: 3\n    scor_threshold: 0.5\n")
    args = launch_args.node_arguments({"map": str(assets["main"].map), "model": str(assets["main"].model),
                                       "params_file": str(typo)})
    rc, out = _run_args(tmp_path, args)
    assert rc == 2, out
    assert f"{typo}: section '{section}': 'scor_threshold' is not a parameter of /localizer; " \
           "did you mean 'score_threshold'?" in out


def test_ready_line_names_the_resolved_topic_and_core_logs_reach_rosout(assets, tmp_path):
    # The test map has no local features: the engine's warning about it goes through
    # Python logging; it must reach /rosout as the node's own WARN.
    from rcl_interfaces.msg import Log
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    from distilvpr_ros.replay.node_process import local_ros_client, spin_until
    shared = tmp_path / "shared.yaml"   # a /** section may hold other nodes' parameters
    shared.write_text("/**:\n  ros__parameters:\n    some_other_nodes_param: 1\n")
    args = launch_args.node_arguments({"map": str(assets["main"].map), "model": str(assets["main"].model),
                                       "image_topic": "/cam/rgb", "namespace": "robot1"})
    args += ["--params-file", str(shared)]
    got = []
    with local_ros_client("rosout_listener") as ros:
        # /rosout keeps its last messages (transient local, as rcl publishes it): a line
        # logged before discovery matched this subscription still arrives.
        rosout_qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE,
                                durability=DurabilityPolicy.TRANSIENT_LOCAL)
        sub = ros.create_subscription(Log, "/rosout", got.append, rosout_qos)
        with LocalizerProcess(args, tmp_path / "node.log") as proc:
            spin_until(ros, lambda: any(m.name == "robot1.localizer" and "ready:" in m.msg for m in got), 60,
                       "ready on /rosout", proc)
            out = proc.output()
        ros.destroy_subscription(sub)
    ready = next(m.msg for m in got if "ready:" in m.msg)
    assert ready.endswith("images on /cam/rgb"), ready
    warn = [m for m in got if "no local features" in m.msg]
    assert len(warn) == 1 and warn[0].level == Log.WARN and warn[0].name == "robot1.localizer"
    assert "rebuild the map" in warn[0].msg  # the map has keyframes: rebuilding is the fix
    # Printed once, in the ROS format, not as a bare Python logging line.
    lines = [ln for ln in out.splitlines() if "no local features" in ln]
    assert len(lines) == 1 and lines[0].startswith("[WARN]") and "[robot1.localizer]" in lines[0], out
