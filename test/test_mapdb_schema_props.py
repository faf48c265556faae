"""Property-based tests (hypothesis) of ``schema.json`` parsing.

For any schema the writer can produce, parsing gives it back; any change to
a written schema that does not also recompute ``schema_sha256`` is refused
naming schema.json; and no input makes the parser fail with anything but
UserError.
"""
from __future__ import annotations

import copy
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distilvpr_core.foundation.errors import UserError
from distilvpr_core.mapdb.schema import FileEntry, MapSchema, parse_schema, seal

WHERE = "/maps/m/schema.json"
text = st.text(max_size=12)
json_leaf = st.none() | st.booleans() | st.integers(-10**6, 10**6) | text \
    | st.floats(allow_nan=False, allow_infinity=False)
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(text, inner, max_size=3), max_leaves=8)
file_names = st.from_regex(r"[a-z_]{1,10}\.(npy|faiss)", fullmatch=True)

schemas = st.builds(
    MapSchema,
    dim=st.integers(1, 4096),
    index_type=st.sampled_from(["flat", "hnsw", "ivfpq"]),
    index_params=st.dictionaries(text, st.integers(0, 1000), max_size=3),
    model_fingerprint=st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
    preprocessing=st.dictionaries(text.filter(lambda k: k != "format"), json_value, max_size=4),
    keyframes=st.integers(0, 10**9),
    sources=st.integers(0, 1000),
    created_at=text,
    files=st.dictionaries(file_names, st.builds(FileEntry, sha256=st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
                                                bytes=st.integers(0, 2**40)), max_size=4),
    faiss_version=text,
    features=st.none() | st.dictionaries(text, json_value, max_size=3),
)


def _paths(obj, prefix=()):
    """Every key path of a nested dict."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield prefix + (k,)
            yield from _paths(v, prefix + (k,))


@settings(max_examples=50, deadline=None)
@given(schema=schemas)
def test_what_the_writer_writes_the_reader_reads_back(schema):
    raw = json.dumps(schema.to_dict(), indent=2).encode()
    assert parse_schema(raw, WHERE) == schema


@settings(max_examples=150, deadline=None)
@given(schema=schemas, data=st.data())
def test_any_unsealed_change_is_refused_naming_schema_json(schema, data):
    d = schema.to_dict()
    paths = list(_paths(d))
    path = data.draw(st.sampled_from(paths))
    parent = d
    for k in path[:-1]:
        parent = parent[k]
    action = data.draw(st.sampled_from(["delete", "replace", "add"]))
    before = copy.deepcopy(d)
    if action == "delete":
        del parent[path[-1]]
    elif action == "replace":
        parent[path[-1]] = data.draw(json_value)
    else:
        parent[data.draw(text)] = data.draw(json_value)
    if d == before:  # the change happened to change nothing
        return
    try:
        parse_schema(json.dumps(d).encode(), WHERE)
    except UserError as exc:
        assert str(exc).startswith(WHERE + ":"), str(exc)
    else:
        raise AssertionError(f"accepted a changed schema ({action} {path})")


@settings(max_examples=150, deadline=None)
@given(schema=schemas, data=st.data())
def test_sealed_edits_are_parsed_strictly_and_only_user_errors_escape(schema, data):
    """An edit with a recomputed digest (a hand-edited map) still meets strict
    parsing: it parses to a schema or raises UserError, nothing else."""
    d = schema.to_dict()
    path = data.draw(st.sampled_from(list(_paths(d))))
    parent = d
    for k in path[:-1]:
        parent = parent[k]
    parent[path[-1]] = data.draw(json_value)
    try:
        parsed = parse_schema(json.dumps(seal(d)).encode(), WHERE)
    except UserError:
        return
    assert isinstance(parsed, MapSchema)


@settings(max_examples=100, deadline=None)
@given(doc=json_value | st.binary(max_size=200))
def test_arbitrary_documents_raise_user_error(doc):
    raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    try:
        parse_schema(raw, WHERE)
    except UserError as exc:
        assert str(exc).startswith(WHERE + ":")
    else:
        raise AssertionError(f"accepted {raw[:80]!r}")


def test_a_version_2_schema_with_a_null_digest_is_refused():
    """Found by the property above: ``"schema_sha256": null`` once passed as 'no digest'."""
    schema = MapSchema(dim=4, index_type="flat", index_params={}, model_fingerprint="0" * 64,
                       preprocessing={}, keyframes=0, sources=0, created_at="", files={})
    d = seal(schema.to_dict())
    parse_schema(json.dumps(d).encode(), WHERE)  # the sealed original parses
    d["schema_sha256"] = None
    with pytest.raises(UserError, match="schema_sha256 is 'None'"):
        parse_schema(json.dumps(d).encode(), WHERE)
