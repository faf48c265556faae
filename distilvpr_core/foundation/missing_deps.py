"""What to install when a training/export/simulation-only module is missing.

A robot installed with the run-time rosdep keys only (package.xml) has no
torch, onnx or trimesh.  Subcommands import them lazily in ``run()``; when
the import fails the CLI prints :func:`install_hint`'s one line (exit 2)
instead of a traceback.
"""
from __future__ import annotations

# top-level module -> (rosdep key, pip requirement).  The rosdep keys are the
# ones package.xml declares under DISTILVPR_TRAINING=1; onnx has none there
# (export only), so pip is the way.
EXTRAS: dict[str, tuple[str | None, str]] = {
    "torch": ("python3-torch", "torch (pip install -e .[train])"),
    "torchvision": ("python3-torchvision", "torchvision (pip install -e .[train])"),
    "tensorboard": ("python3-tensorboard-pip", "tensorboard (pip install -e .[train])"),
    "onnx": (None, "onnx (pip install onnx)"),
    "onnxscript": (None, "onnxscript (pip install -e .[train])"),
    "trimesh": ("python3-trimesh-pip", "trimesh (pip install -e .[sim])"),
    "embreex": (None, "embreex (pip install -e .[sim])"),
}


def missing_extra(exc: BaseException | None) -> str | None:
    """The top-level name of the optional module whose absence caused ``exc``
    (or its cause/context), else None."""
    while exc is not None:
        if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in EXTRAS:
            return (exc.name or "").split(".")[0]
        exc = exc.__cause__ or exc.__context__
    return None


def install_hint(module: str, what: str) -> str:
    """One line: ``what`` needs ``module``, and the rosdep key or pip package to install."""
    key, pip = EXTRAS[module]
    ways = []
    if key:
        ways.append(f"rosdep key {key} (DISTILVPR_TRAINING=1 rosdep install --from-paths src --ignore-src -y)")
    ways.append(f"pip package {pip}")
    return f"{what} needs the Python module '{module}', which is not installed: install the " + \
        " or the ".join(ways)
