"""The one share-directory lookup: a data file of this package, checkout or install.

From a source checkout the file is read from the repository (so edits take
effect without a rebuild); from a colcon/pip install it is
``share/distilvpr_ros/<relpath>`` found through the ament index.
"""
from __future__ import annotations

from pathlib import Path

PACKAGE = "distilvpr_ros"


def share_file(relpath: str) -> Path:
    """Path of ``relpath`` (e.g. ``config/localize.yaml``); the installed one
    when the checkout does not have it."""
    source = Path(__file__).resolve().parent.parent / relpath
    if source.is_file():
        return source
    from ament_index_python.packages import get_package_share_directory
    return Path(get_package_share_directory(PACKAGE)) / relpath
