"""package.xml declares what the code imports, with keys that exist in rosdep,
and the tests pass (skip) on a robot that has only the run-time keys.

The rosdep database is vendored in test/data/rosdep_keys.yaml (from
ros/rosdistro at the commit it names; refresh with
scripts/vendor_rosdep_keys.py), so this runs offline.
"""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
import yaml

#: Python top-level module -> the package.xml key that provides it.
MODULE_KEYS = {
    "rclpy": "rclpy", "rcl_interfaces": "rcl_interfaces", "builtin_interfaces": "builtin_interfaces",
    "sensor_msgs": "sensor_msgs", "std_msgs": "std_msgs", "geometry_msgs": "geometry_msgs",
    "nav_msgs": "nav_msgs", "visualization_msgs": "visualization_msgs", "diagnostic_msgs": "diagnostic_msgs",
    "std_srvs": "std_srvs", "lifecycle_msgs": "lifecycle_msgs", "ament_index_python": "ament_index_python",
    "launch": "launch",
    "launch_ros": "launch_ros", "numpy": "python3-numpy", "yaml": "python3-yaml", "PIL": "python3-pil",
    "tqdm": "python3-tqdm", "matplotlib": "python3-matplotlib", "faiss": "python3-faiss",
    "onnxruntime": "python3-onnxruntime-pip", "rosbags": "python3-rosbags-pip",
    "torch": "python3-torch", "torchvision": "python3-torchvision", "tensorboard": "python3-tensorboard-pip",
    "trimesh": "python3-trimesh-pip", "pytest": "python3-pytest", "hypothesis": "python3-hypothesis",
    "cv2": "python3-opencv",
}
#: Imported only on paths that say what to install when missing, with no rosdep key:
#: TensorRT/CUDA (JetPack or pip, docs/deployment.md), onnx/onnxscript (export,
#: TensorRT engine build), embreex (faster ray casting in the synthetic town).
#: tf2_msgs: only with publish_tf:=true, whose start-up error names the package to install;
#: it is a ROS package of every distribution but not in the vendored key list
#: (test/data/rosdep_keys.yaml, regenerated with network access only) nor in the PyPI
#: ROS wheels, so it is not declared in package.xml yet.
NO_KEY = {"tensorrt", "cuda", "pycuda", "onnx", "onnxscript", "embreex", "google", "distilvpr_core",
          "distilvpr_ros", "pointcloud2", "tf2_msgs"}
TRAINING_KEYS = {"python3-torch", "python3-torchvision", "python3-tensorboard-pip", "python3-trimesh-pip"}


@pytest.fixture(scope="module")
def manifest(repo_root):
    root = ET.parse(repo_root / "package.xml").getroot()
    return [(e.tag, e.text.strip(), e.get("condition")) for e in root
            if e.tag.endswith("depend")]


@pytest.fixture(scope="module")
def rosdep_db(repo_root):
    return yaml.safe_load((repo_root / "test" / "data" / "rosdep_keys.yaml").read_text())


def test_every_declared_key_exists_in_rosdep_or_every_ros_distribution(manifest, rosdep_db):
    for _, key, _ in manifest:
        in_rosdep = key in rosdep_db["rosdep"]
        released = set(rosdep_db["ros_packages"].get(key, ()))
        assert in_rosdep or released >= {"humble", "jazzy", "kilted"}, \
            f"package.xml key {key!r} is not a rosdep key nor a ROS package in humble, jazzy and kilted"
    assert len(rosdep_db["rosdistro_commit"]) == 40


def test_every_imported_module_is_declared(repo_root, manifest):
    declared = {key for _, key, _ in manifest}
    stdlib = set(sys.stdlib_module_names)
    sources = [*(repo_root / "distilvpr_core").rglob("*.py"), *(repo_root / "distilvpr_ros").rglob("*.py"),
               *(repo_root / "launch").glob("*.py"), *(repo_root / "test").glob("*.py")]
    local_tests = {p.stem for d in ("test", "scripts") for p in (repo_root / d).glob("*.py")}
    missing = {}
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            for name in names:
                top = name.split(".")[0]
                if top in stdlib or top in NO_KEY or top in local_tests:
                    continue
                key = MODULE_KEYS.get(top)
                if key not in declared:
                    missing.setdefault(top, str(path.relative_to(repo_root)))
    assert not missing, f"imported but not declared in package.xml (module: first file): {missing}"


def test_training_only_keys_are_conditional_and_runtime_keys_are_not(manifest):
    for tag, key, condition in manifest:
        if key in TRAINING_KEYS:
            assert condition == "$DISTILVPR_TRAINING == 1", key
        else:
            assert condition is None, key
    assert ("exec_depend", "rcl_interfaces", None) in manifest


def test_tests_collect_without_training_dependencies(repo_root, tmp_path):
    # What `colcon test` sees on a robot with only the run-time keys: torch,
    # onnx, ... absent (None in sys.modules is what a missing module looks like
    # to both `import` and importlib.util.find_spec).
    (tmp_path / "no_training_deps.py").write_text(
        "import sys\nfor m in ('torch', 'torchvision', 'onnx', 'onnxscript', 'tensorboard', 'trimesh',"
        " 'embreex'):\n    sys.modules[m] = None\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(repo_root),
                                                       os.environ.get("PYTHONPATH", "")]))
    res = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no_training_deps",
                          "-p", "no:cacheprovider", str(repo_root / "test")],
                         cwd=repo_root, env=env, capture_output=True, text=True, timeout=600)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert not re.search(r"\d+ errors?\b|ERROR collecting", out), out[-3000:]
    assert "needs torch" in out  # the torch-only modules were skipped, not silently passed


def test_rosdep_sees_training_keys_only_when_asked(repo_root):
    # catkin_pkg is the parser rosdep and colcon use; conditions are evaluated
    # against the environment, as `DISTILVPR_TRAINING=1 rosdep install ...` does.
    package = pytest.importorskip("catkin_pkg.package")
    pkg = package.parse_package(str(repo_root / "package.xml"))
    wanted = {}
    for env in ({}, {"DISTILVPR_TRAINING": "1"}):
        pkg.evaluate_conditions(env)
        wanted[bool(env)] = {d.name for d in pkg.exec_depends if d.evaluated_condition}
    assert not wanted[False] & TRAINING_KEYS
    assert wanted[True] - wanted[False] == TRAINING_KEYS
    assert {"python3-faiss", "python3-onnxruntime-pip", "python3-rosbags-pip", "rcl_interfaces"} <= wanted[False]


def test_install_hints_name_the_declared_training_keys(manifest):
    # The one line a robot without torch/trimesh prints names a key package.xml declares.
    from distilvpr_core.foundation.missing_deps import EXTRAS
    conditional = {key for _, key, condition in manifest if condition}
    for module, (key, _pip) in EXTRAS.items():
        if key is not None:
            assert key in conditional and MODULE_KEYS.get(module, key) == key, module
        else:
            assert module in NO_KEY, module


def test_distil_executable_runs_the_interpreter_that_built_the_package(repo_root, tmp_path):
    # The install layout `ros2 run distilvpr_core distil` sees: lib/distilvpr_core/distil beside
    # lib/distilvpr_ros/distilvpr (a console script whose shebang setuptools wrote).  With no
    # python3 on PATH at all, distil must still reach that console script.
    (tmp_path / "lib" / "distilvpr_core").mkdir(parents=True)
    (tmp_path / "lib" / "distilvpr_ros").mkdir(parents=True)
    console = tmp_path / "lib" / "distilvpr_ros" / "distilvpr"
    console.write_text('#!/bin/sh\nprintf "%s|" "$@"\n')
    console.chmod(0o755)
    for how in ("copy", "symlink"):  # colcon build, and colcon build --symlink-install
        exe = tmp_path / "lib" / "distilvpr_core" / "distil"
        exe.unlink(missing_ok=True)
        if how == "copy":
            exe.write_bytes((repo_root / "scripts" / "distil").read_bytes())
            exe.chmod(0o755)
        else:
            exe.symlink_to(repo_root / "scripts" / "distil")
        res = subprocess.run([str(exe), "--config", "a b.yaml"], env={"PATH": str(tmp_path / "nowhere")},
                             capture_output=True, text=True, timeout=30)
        assert res.returncode == 0 and res.stdout == "distil|--config|a b.yaml|", (how, res.stderr)
