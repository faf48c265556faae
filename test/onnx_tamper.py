"""Edit one weight of a saved ONNX model, as a corrupted or hand-patched file would be, so the
runtimes' weights-digest check (infer/model_meta.weights_digest) has something to catch."""
from __future__ import annotations

from pathlib import Path


def tamper_first_weight(src: str | Path, dst: str | Path) -> Path:
    """Copy the ONNX model ``src`` to ``dst`` with 1.0 added to the first value of its first
    initializer (metadata, and so the stored digest, unchanged); returns ``dst``."""
    import onnx
    proto = onnx.load(str(src))
    w = proto.graph.initializer[0]
    arr = onnx.numpy_helper.to_array(w).copy()
    arr.flat[0] += 1.0
    w.CopyFrom(onnx.numpy_helper.from_array(arr, w.name))
    onnx.save(proto, str(dst))
    return Path(dst)


def with_metadata(src: str | Path, dst: str | Path, key: str, value: str) -> Path:
    """Copy the ONNX model ``src`` to ``dst`` with its metadata entry ``key`` set to ``value``
    (graph and weights unchanged, as a hand-edited file would be); returns ``dst``.  KeyError
    if ``src`` has no such entry, so a test cannot silently edit nothing."""
    import onnx
    proto = onnx.load(str(src))
    props = [p for p in proto.metadata_props if p.key == key]
    if not props:
        raise KeyError(f"{src}: no metadata entry {key!r}")
    for prop in props:
        prop.value = value
    onnx.save(proto, str(dst))
    return Path(dst)
