"""Test isolation: ROS never leaves this machine, logs go to a temp dir.

Set before any test imports rclpy, so every node in this process and every
subprocess a test starts (they inherit os.environ) uses:

* ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` — DDS discovery on loopback only
  (``ROS_LOCALHOST_ONLY`` is ignored on Kilted);
* a random ``ROS_DOMAIN_ID`` so parallel runs never see each other;
* ``ROS_HOME`` / ``ROS_LOG_DIR`` in a temp dir.

Markers: ``slow`` (long but still run by ``make test``), ``gpu`` (skipped
without torch CUDA), ``tensorrt`` (skipped without TensorRT 10 + cuda-python +
a CUDA device; torch is not involved).
"""
from __future__ import annotations

import importlib.util
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

_ROS_TMP = tempfile.mkdtemp(prefix="distilvpr-ros-")
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.pop("ROS_LOCALHOST_ONLY", None)
os.environ.pop("ROS_STATIC_PEERS", None)
# 1..101 keeps the DDS port range valid for every domain (domain ids > 101
# collide with the ephemeral port range on Linux).
os.environ["ROS_DOMAIN_ID"] = os.environ.get("DISTILVPR_TEST_DOMAIN_ID") or str(random.randint(1, 101))
os.environ["ROS_HOME"] = os.path.join(_ROS_TMP, "ros_home")
os.environ["ROS_LOG_DIR"] = os.path.join(_ROS_TMP, "ros_log")
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
if os.environ.get("VIRTUAL_ENV") is None and sys.prefix != sys.base_prefix:
    os.environ["VIRTUAL_ENV"] = sys.prefix
os.environ.setdefault("AMENT_PREFIX_PATH", sys.prefix)
# Fast DDS reads its XML profile once per process, at the first participant:
# set it before any test touches rclpy so every test (and every node it
# starts) uses shared memory for large raw images and UDP on loopback only.
# Both variables: Fast DDS 2.x (Humble, Jazzy) and 3 (Kilted) read different ones.
for _var in ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE"):
    os.environ.setdefault(_var, str(Path(__file__).resolve().parent.parent / "config" / "fastdds_large_images.xml"))
# Keep test runs off the network: torch hub and HF must never download.
os.environ["TORCH_HOME"] = os.path.join(_ROS_TMP, "torch_home")
os.environ["HF_HUB_OFFLINE"] = "1"

REPO_ROOT = Path(__file__).resolve().parent.parent


def _has_cuda() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch
    return bool(torch.cuda.is_available())


def _has_tensorrt() -> bool:
    """TensorRT 10 + cuda-python + a CUDA device: what the tensorrt backend itself needs (not torch)."""
    if importlib.util.find_spec("tensorrt") is None:
        return False
    from distilvpr_core.foundation.errors import UserError
    from distilvpr_core.infer.tensorrt.build import import_tensorrt
    from distilvpr_core.infer.tensorrt.cuda_mem import has_cuda_device
    try:
        import_tensorrt()
    except UserError:
        return False
    return has_cuda_device()


# Tests whose training-only imports (torch, onnx, ...) are missing skip
# instead of failing, so `colcon test` passes on a robot (test/optional_deps.py).
from optional_deps import (pytest_pycollect_makemodule, pytest_runtest_call,  # noqa: E402,F401
                           pytest_runtest_setup)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes more than ~20 s; still run by make test")
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU (skipped without one)")
    config.addinivalue_line("markers", "tensorrt: needs TensorRT 10, cuda-python and a CUDA device "
                                       "(skipped without them)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    need_gpu = any("gpu" in item.keywords for item in items)
    need_trt = any("tensorrt" in item.keywords for item in items)
    cuda = _has_cuda() if (need_gpu or need_trt) else False
    trt = _has_tensorrt() if need_trt else False
    for item in items:
        if "gpu" in item.keywords and not cuda:
            item.add_marker(pytest.mark.skip(reason="no CUDA GPU on this machine"))
        if "tensorrt" in item.keywords and not trt:
            item.add_marker(pytest.mark.skip(reason="needs TensorRT 10 (python package 'tensorrt'), "
                                                    "cuda-python and a CUDA device"))


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_ROS_TMP, ignore_errors=True)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (where package.xml lives)."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def synth_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic town (config/synth_tiny.yaml), generated once per session."""
    from distilvpr_core.sim import tiny_dataset
    return tiny_dataset(tmp_path_factory.mktemp("synth"))
