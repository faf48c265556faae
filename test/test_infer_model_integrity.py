"""An ONNX model's metadata must describe its own weights (issue 31 item 12).

The fingerprint a map records comes from the model's metadata; these tests
forge that metadata the ways the attack campaign did and require the load
(ONNX Runtime backend, ``read_model_info``, ``map verify --model``) to refuse.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from distilvpr_core.app.cli import main
from distilvpr_core.export.random_student import export_random_student
from distilvpr_core.foundation.errors import UserError
from distilvpr_core.infer import load_embedder
from distilvpr_core.infer.model_meta import (CONTRACT_KEY, WEIGHTS_KEY, read_model_info,
                                             weights_digest)

SIZE, DIM = (64, 48), 32


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("models")
    a = export_random_student(base / "a", SIZE, DIM, seed=0)[1]
    b = export_random_student(base / "b", SIZE, DIM, seed=1)[1]
    return a, b


def _props(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def _set_props(model: onnx.ModelProto, props: dict[str, str]) -> None:
    del model.metadata_props[:]
    for k, v in props.items():
        model.metadata_props.add(key=k, value=v)


def test_an_exported_model_loads_and_its_digest_is_that_of_its_weights(models):
    a, _ = models
    info = read_model_info(a)
    assert info.weights_sha256 == weights_digest(onnx.load(str(a)))
    emb = load_embedder(a, backend="onnxruntime")
    assert emb.dim == DIM and emb.fingerprint == info.fingerprint
    emb.close()


def test_other_weights_with_copied_metadata_are_refused_naming_both(models, tmp_path, capsys):
    a, b = models
    forged = onnx.load(str(b))
    _set_props(forged, _props(onnx.load(str(a))))  # B's weights, A's fingerprint and digest
    path = tmp_path / "forged.onnx"
    onnx.save(forged, str(path))
    want, found = read_model_info(a).weights_sha256, weights_digest(forged)
    for load in (read_model_info, lambda p: load_embedder(p, backend="onnxruntime")):
        with pytest.raises(UserError, match=rf"weights do not match the metadata: they hash to {found}, "
                                            rf"the metadata records {WEIGHTS_KEY} {want}"):
            load(path)
    # A map built with A: 'map verify --model forged' must not say the model matches.
    from distilvpr_core.mapdb import PriorMap
    emb = load_embedder(a, backend="onnxruntime")
    m = PriorMap.create(emb.dim, emb.fingerprint, emb.contract)
    m.add(emb.embed(np.zeros((48, 64, 3), np.uint8)), [0], [[0, 0, 0, 0, 0, 0, 1.0]], "s", [0])
    emb.close()
    m.save(tmp_path / "map")
    assert main(["map", "verify", str(tmp_path / "map"), "--model", str(path)]) == 2
    assert "weights do not match the metadata" in capsys.readouterr().err


def test_a_graph_whose_output_differs_from_its_metadata_is_refused(models, tmp_path):
    a, _ = models
    model = onnx.load(str(a))
    props = _props(model)
    contract = json.loads(props[CONTRACT_KEY])
    contract["descriptor_dim"] = DIM * 2
    props[CONTRACT_KEY] = json.dumps(contract)  # the digest covers the graph, not the metadata
    _set_props(model, props)
    path = tmp_path / "wrongdim.onnx"
    onnx.save(model, str(path))
    with pytest.raises(UserError, match=rf"wrongdim.onnx: the graph outputs .*{DIM}.* descriptor_dim {DIM * 2}"):
        load_embedder(path, backend="onnxruntime")


def test_nan_weights_are_refused_at_load(models, tmp_path):
    a, _ = models
    model = onnx.load(str(a))
    init = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    arr = numpy_helper.to_array(init).copy()
    arr.reshape(-1)[3] = np.nan
    init.CopyFrom(numpy_helper.from_array(arr, init.name))
    props = _props(model)
    props[WEIGHTS_KEY] = weights_digest(model)  # resealed: only the finiteness check can catch it
    _set_props(model, props)
    path = tmp_path / "nan.onnx"
    onnx.save(model, str(path))
    with pytest.raises(UserError, match=rf"nan.onnx: weight '{init.name}' holds NaN or inf"):
        load_embedder(path, backend="onnxruntime")


def test_a_model_without_the_weights_digest_is_refused(models, tmp_path):
    a, _ = models
    model = onnx.load(str(a))
    _set_props(model, {k: v for k, v in _props(model).items() if k != WEIGHTS_KEY})
    path = tmp_path / "old.onnx"
    onnx.save(model, str(path))
    with pytest.raises(UserError, match=rf"metadata key '{WEIGHTS_KEY}' missing; re-export"):
        read_model_info(path)
