"""distilvpr_core is usable without ROS: it never imports rclpy or distilvpr_ros, not even by string."""
from __future__ import annotations

import ast
from pathlib import Path

FORBIDDEN = ("rclpy", "distilvpr_ros", "sensor_msgs", "std_msgs", "geometry_msgs", "nav_msgs")


def test_core_never_imports_ros(repo_root: Path) -> None:
    offenders = []
    for path in sorted((repo_root / "distilvpr_core").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in FORBIDDEN:
                    offenders.append(f"{path.relative_to(repo_root)}:{node.lineno} imports {name}")
    assert not offenders, "distilvpr_core must not import ROS:\n" + "\n".join(offenders)


def _string_offences(source: str, where: str) -> list[str]:
    """What the import scan cannot see: a string constant naming distilvpr_ros
    (docstrings are prose and do not count), and importlib.import_module /
    __import__ of a ROS module."""
    tree = ast.parse(source)
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and n.body and isinstance(n.body[0], ast.Expr)
                  and isinstance(n.body[0].value, ast.Constant)}
    out = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
                and "distilvpr_ros" in node.value):
            out.append(f"{where}:{node.lineno} names distilvpr_ros in a string")
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            name = ast.unparse(node.func)
            target = str(node.args[0].value).split(".")[0]
            if name in ("__import__", "importlib.import_module", "import_module") and target in FORBIDDEN:
                out.append(f"{where}:{node.lineno} imports {node.args[0].value} through {name}")
    return sorted(out)


def test_core_never_names_ros_modules_in_strings(repo_root: Path) -> None:
    offenders = []
    for path in sorted((repo_root / "distilvpr_core").rglob("*.py")):
        offenders += _string_offences(path.read_text(), str(path.relative_to(repo_root)))
    assert not offenders, ("distilvpr_core must not reach ROS through importlib strings; register "
                           "ROS subcommands from distilvpr_ros (entry point distilvpr.plugins):\n"
                           + "\n".join(offenders))


def test_the_string_scan_sees_importlib_strings() -> None:
    bad = 'import importlib\nmod = importlib.import_module("distilvpr_ros.replay.replay_eval")\n'
    assert _string_offences(bad, "x.py") == [
        "x.py:2 imports distilvpr_ros.replay.replay_eval through importlib.import_module",
        "x.py:2 names distilvpr_ros in a string"]
    assert _string_offences('x = __import__("rclpy")\n', "y.py") == ["y.py:1 imports rclpy through __import__"]
    assert _string_offences('"""Talks to distilvpr_ros nodes."""\nT = "sensor_msgs/msg/Image"\n',
                            "z.py") == []


def test_ros_subcommands_come_from_the_ros_package_entry_point() -> None:
    from distilvpr_core.foundation import plugins
    from distilvpr_core.bench.cli import targets
    from distilvpr_core.app.cli import all_subcommands
    assert all_subcommands()["replay-eval"][0] == "distilvpr_ros.replay.replay_eval"
    assert targets()["node"] == "distilvpr_ros.bench_node"
    assert "replay-eval" in plugins.subcommands() and "node" in plugins.bench_targets()


def test_package_xml_and_setup_agree(repo_root: Path) -> None:
    import xml.etree.ElementTree as ET
    root = ET.parse(repo_root / "package.xml").getroot()
    assert root.get("format") == "3"
    assert root.findtext("name") == "distilvpr_ros"
    assert root.find("export/build_type").text == "ament_python"
    assert "@" in root.find("maintainer").get("email")  # colcon ignores ament_python without it
    setup_text = (repo_root / "setup.py").read_text()
    assert 'PACKAGE = "distilvpr_ros"' in setup_text and "lib/distilvpr_core" in setup_text
    assert (repo_root / "resource" / "distilvpr_core").is_file()
    assert (repo_root / "resource" / "distilvpr_ros").is_file()


def test_the_real_embedder_and_map_satisfy_the_engine_ports(tmp_path):
    """The protocols the engine is typed with describe the real collaborators."""
    import numpy as np

    from distilvpr_core.foundation.contract import PreprocessContract
    from distilvpr_core.infer.embedder import Embedder
    from distilvpr_core.localize.ports import KeyframeFeatures, PlaceEmbedder, PlaceMap
    from distilvpr_core.features.types import Intrinsics
    from distilvpr_core.mapdb import PriorMap
    from distilvpr_core.mapdb.features import FeatureStore

    class Identity(Embedder):
        backend = "identity"

        def _forward(self, batch):
            return batch.reshape(len(batch), -1)[:, :4]

    assert isinstance(Identity(PreprocessContract(input_size=(8, 8), descriptor_dim=4), "0" * 64), PlaceEmbedder)
    m = PriorMap.create(4, "0" * 64, PreprocessContract(input_size=(8, 8), descriptor_dim=4))
    assert isinstance(m, PlaceMap)
    assert isinstance(FeatureStore(Intrinsics(80.0, 80.0, 79.5, 59.5, 160, 120), 8), KeyframeFeatures)
    assert not isinstance(np.zeros(3), PlaceMap)
