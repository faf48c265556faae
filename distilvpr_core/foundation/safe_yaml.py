"""The one YAML reader for everything a user or a file hands us.

``yaml.safe_load`` builds no objects from tags, but it still follows
aliases: a 504-byte "billion laughs" document is a tree of 10**9 nodes
once anything walks it (``repr`` in an error message, a deep copy, a
comparison), which took 45 s and 2.85 GB.  :func:`load_yaml` composes the
node graph first and refuses a document whose *expanded* size exceeds
:data:`MAX_NODES` or whose nesting exceeds :data:`MAX_DEPTH`, and any text
longer than :data:`MAX_BYTES`, before constructing a value.  Anchors and
aliases within those bounds keep working (the shipped configs use them).
Error messages quote at most a short excerpt of the source, never a value.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import UserError
from .safe_files import read_bytes

#: Longest YAML text read (configs and params files are a few KiB).
MAX_BYTES = 1 << 20
#: Most nodes a document may hold with every alias expanded.
MAX_NODES = 100_000
#: Deepest nesting of sequences/mappings.
MAX_DEPTH = 64


class InvalidYAML(UserError):
    """The text is not YAML at all (a syntax error), as opposed to YAML refused for its size."""


def _expanded_size(root: yaml.Node, where: str) -> None:
    """UserError if ``root`` expands to more than MAX_NODES nodes, nests deeper than
    MAX_DEPTH, or refers to itself (an alias inside its own anchor)."""
    sizes: dict[int, int] = {}
    # Iterative post-order walk; memoised per node, so shared (aliased) nodes cost once.
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    active: set[int] = set()
    while stack:
        node, depth, done = stack.pop()
        key = id(node)
        if done:
            active.discard(key)
            kids = _children(node)
            total = 1 + sum(sizes[id(k)] for k in kids)
            if total > MAX_NODES:
                raise UserError(f"{where}: YAML expands to more than {MAX_NODES} values (aliases "
                                "repeating aliases, an 'alias bomb'); refused")
            sizes[key] = total
            continue
        if key in sizes:
            continue
        if key in active:
            raise UserError(f"{where}: YAML alias refers to itself (a recursive document); refused")
        if depth > MAX_DEPTH:
            raise UserError(f"{where}: YAML nests too deeply (more than {MAX_DEPTH} levels); refused")
        active.add(key)
        stack.append((node, depth, True))
        for kid in _children(node):
            if id(kid) not in sizes:
                stack.append((kid, depth + 1, False))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def load_yaml(text: str | bytes, where: str) -> Any:
    """The value of one YAML document (safe tags only), bounded as the module says;
    UserError naming ``where`` for text that is too long, invalid, or a bomb."""
    if len(text) > MAX_BYTES:
        raise UserError(f"{where}: {len(text)} bytes of YAML, more than the {MAX_BYTES} allowed")
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, where)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise InvalidYAML(f"{where}: not valid YAML{at}: {str(problem)[:120]}") from None
    except RecursionError:  # the composer recurses per nesting level
        raise UserError(f"{where}: YAML nests too deeply; refused") from None
    finally:
        loader.dispose()


def read_yaml_file(path: str | Path, what: str = "") -> Any:
    """:func:`load_yaml` of a regular file (symlinks followed: installed configs are links)."""
    where = what or str(path)
    raw = read_bytes(path, MAX_BYTES, where, follow_symlinks=True)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return load_yaml(text, where)
