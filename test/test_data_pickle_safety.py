"""A malicious pickle anywhere in either public layout is refused with a UserError
naming the file, and never runs: every payload would create a marker file."""
from __future__ import annotations

import os
import pickle
import shutil

import numpy as np
import pytest

from benchmark_fixtures import make_boreas, make_oxford
from distilvpr_core.app.cli import main
from distilvpr_core.data.datasets import DataConfig, select
from distilvpr_core.data.traversals import open_traversals
from distilvpr_core.data.oxford_format import TrainingTuple
from distilvpr_core.foundation.errors import UserError

FILES = {"oxford": ["training_queries_baseline.pickle", "test_queries_baseline.pickle",
                    "oxford_evaluation_database.pickle", "oxford_evaluation_query.pickle",
                    "lidar2image_ndx.pickle"],
         "boreas": ["boreas_training_queries_baseline.pickle", "boreas_test_queries_baseline.pickle",
                    "boreas_evaluation_database.pickle", "boreas_evaluation_query.pickle",
                    "boreas_lidar2image_ndx.pickle"]}


class _System:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _Eval(_System):
    def __reduce__(self):
        return eval, (f"open({str(self.marker)!r}, 'w')",)


def _payload(kind: str, marker) -> bytes:
    if kind == "os.system":
        return pickle.dumps(_System(marker))
    if kind == "eval":
        return pickle.dumps(_Eval(marker))
    if kind == "nested":   # deep inside a structure that is otherwise a valid evaluation set
        return pickle.dumps([{0: {"query": "oxford/x/y/1.bin", "northing": 1.0, "easting": 2.0,
                                  1: [0, _System(marker)]}}])
    if kind == "reconstructor-empty":   # protocol 0: copyreg._reconstructor(TrainingTuple, object, None)
        return pickle.dumps({0: object.__new__(TrainingTuple)}, protocol=0)
    if kind == "reconstructor-other":   # _reconstructor with another class/base pair
        return b"ccopyreg\n_reconstructor\n(cnumpy\nndarray\ncnumpy\ndtype\nS'f8'\ntR."
    if kind == "reconstructor-state":   # a harmless-looking tuple whose state smuggles a call
        inner = pickle.dumps(_System(marker), protocol=0)[:-1]   # without STOP
        return (b"(dp0\nI0\nccopyreg\n_reconstructor\n(cdistilvpr_core.data.oxford_format\nTrainingTuple\n"
                b"c__builtin__\nobject\nNtR(dS'id'\n" + inner + b"\nsbs.")
    raise AssertionError(kind)


KINDS = ["os.system", "eval", "nested", "reconstructor-empty", "reconstructor-other", "reconstructor-state"]


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    base = tmp_path_factory.mktemp("safety")
    return {"oxford": make_oxford(base / "ox"), "boreas": make_boreas(base / "bo")}


def _clone(src_root, src_images, dst):
    """A copy whose pickles are files and whose big folders are links."""
    root = dst / "root"
    root.mkdir(parents=True)
    for p in src_root.iterdir():
        (root / p.name).symlink_to(p) if p.is_dir() else shutil.copy(p, root / p.name)
    if src_images.parent == src_root:            # Boreas: images inside root/boreas
        return root, root / src_images.name
    images = dst / "images"
    images.mkdir()
    for p in src_images.iterdir():
        (images / p.name).symlink_to(p) if p.is_dir() else shutil.copy(p, images / p.name)
    return root, images


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fmt", ["oxford", "boreas"])
def test_malicious_pickle_anywhere_is_refused(layouts, tmp_path, fmt, kind):
    root, images = _clone(*layouts[fmt], tmp_path)
    marker = tmp_path / "PWNED"
    for name in FILES[fmt]:
        target = (images if (images / name).exists() else root) / name
        saved = target.read_bytes()
        target.write_bytes(_payload(kind, marker))
        with pytest.raises(UserError) as err:
            open_traversals(DataConfig(format=fmt, root=str(root), image_root=str(images)))
        assert str(target) in str(err.value), err.value
        assert not marker.exists(), f"{kind} in {name} ran code"
        target.write_bytes(saved)
    assert open_traversals(DataConfig(format=fmt, root=str(root), image_root=str(images)))


def test_doctor_names_refused_classes_without_unpickling(layouts, tmp_path, capsys):
    root, images = _clone(*layouts["oxford"], tmp_path)
    marker = tmp_path / "PWNED"
    (root / "oxford_evaluation_query.pickle").write_bytes(_payload("nested", marker))
    assert main(["doctor", "--data", str(root), "--image-root", str(images)]) == 1
    out = capsys.readouterr().out
    assert "REFUSED" in out and ("posix.system" in out or "os.system" in out) and not marker.exists()


def test_boreas_cloud_with_pickled_objects_is_refused(layouts, tmp_path):
    root, images = _clone(*layouts["boreas"], tmp_path)
    t = select(open_traversals(DataConfig(format="boreas", root=str(root), image_root=str(images))), "test")[0]
    path = root / t.relpaths[0]
    (root / "boreas").unlink()  # a link into the shared fixture: copy it, never write through it
    shutil.copytree(layouts["boreas"][0] / "boreas", root / "boreas")
    marker = tmp_path / "PWNED"
    np.save(path, np.array([_System(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(UserError, match=f"{path}: refused .*plain numeric .npy"):
        t.load_lidar(0)
    assert not marker.exists()
