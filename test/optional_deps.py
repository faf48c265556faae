"""Tests that need a training-only dependency skip cleanly without it.

A robot installed with the run-time rosdep keys only (package.xml) has no
torch, torchvision, onnx, ...; ``colcon test`` there must pass, not fail at
collection.  Registered by conftest.py: a test module, fixture or test whose
import of one of :data:`OPTIONAL` fails is reported as skipped, naming the
module; any other ImportError stays an error.
"""
from __future__ import annotations

import pytest

#: Top-level modules of the training/export/simulation extras (setup.py "train", "sim").
OPTIONAL = frozenset({"torch", "torchvision", "onnx", "onnxscript", "tensorboard", "trimesh", "embreex"})


def missing_optional(exc: BaseException | None) -> str | None:
    """The optional module whose absence caused ``exc`` (or its cause), else None."""
    while exc is not None:
        if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in OPTIONAL:
            return exc.name.split(".")[0]
        exc = exc.__cause__ or exc.__context__
    return None


def _skip(name: str) -> None:
    pytest.skip(f"needs {name}, a training/simulation-only dependency (DISTILVPR_TRAINING=1 rosdep "
                "install ..., or pip install -e .[train,sim])", allow_module_level=True)


def _skip_if_optional(exc: ImportError) -> None:
    """Skip the test when ``exc`` is a missing optional dependency; re-raise it otherwise."""
    if (name := missing_optional(exc)) is None:
        raise exc
    _skip(name)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    try:
        return (yield)
    except ImportError as exc:
        _skip_if_optional(exc)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    try:
        return (yield)
    except ImportError as exc:
        _skip_if_optional(exc)


class _Module(pytest.Module):
    def _getobj(self):
        try:
            return super()._getobj()
        except self.CollectError as exc:
            if (name := missing_optional(exc)) is None:
                raise
            _skip(name)


def pytest_pycollect_makemodule(module_path, parent):
    return _Module.from_parent(parent, path=module_path)
