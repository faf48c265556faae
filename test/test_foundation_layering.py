"""distilvpr_core is usable without ROS: it never imports rclpy or distilvpr_ros."""
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
