"""One ament_python package (distilvpr_ros) that also answers to distilvpr_core.

`ros2 run distilvpr_core distil` works because a second ament index marker
(resource/distilvpr_core) and an executable lib/distilvpr_core/distil are
installed from here.  Dependencies use loose ranges: robots bring their own
torch (e.g. NVIDIA's Jetson builds); the exact tested versions live in
constraints.txt.
"""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "distilvpr_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=["distilvpr_core", "distilvpr_core.*",
                                    "distilvpr_ros", "distilvpr_ros.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages",
         ["resource/distilvpr_ros", "resource/distilvpr_core"]),
        ("share/distilvpr_ros", ["package.xml"]),
        ("share/distilvpr_core", ["package.xml"]),
        ("share/distilvpr_ros/launch", glob("launch/*.launch.py")),
        ("share/distilvpr_ros/config", glob("config/*.yaml") + glob("config/*.xml") + glob("config/*.rviz")),
        # The core resolves `--config NAME` here (foundation/config.py), as it
        # never names the ROS package.
        ("share/distilvpr_core/config", glob("config/*.yaml")),
        ("lib/distilvpr_core", ["scripts/distil"]),
    ],
    python_requires=">=3.10",
    install_requires=[
        "numpy>=1.24",
        "pyyaml>=6",
        "pillow>=10",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        "onnx>=1.15",
        "onnxruntime>=1.17",
        "faiss-cpu>=1.7.4",
        "opencv-python-headless>=4.8",
        "rosbags>=0.10",
    ],
    extras_require={
        # Training, export and backend:=torch.  Not required on a robot that
        # runs the ONNX Runtime or TensorRT backend.
        "train": ["torch>=2.1", "torchvision>=0.16", "tensorboard>=2.14", "onnxscript>=0.1"],
        "sim": ["trimesh>=4", "embreex>=2.17"],
        "test": ["pytest>=7,<9"],
    },
    zip_safe=True,
    maintainer="distilvpr maintainers",
    maintainer_email="maintainers@distilvpr.dev",
    description="DistilVPR camera-only place recognition for ROS 2 (loop closures from a cheap camera)",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "distilvpr = distilvpr_core.app.cli:main",
            "localizer = distilvpr_ros.localizer:main",
            "lifecycle_localizer = distilvpr_ros.lifecycle_localizer:main",
            "replay_eval = distilvpr_ros.replay.replay_eval:main",
        ],
        # The ROS subcommands of `distilvpr` (replay-eval, bench node): the
        # ROS-free core finds them here and never names this package itself.
        "distilvpr.plugins": [
            "ros = distilvpr_ros.commands",
        ],
    },
)
