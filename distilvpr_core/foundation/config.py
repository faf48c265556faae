"""Typed configuration: dataclasses loaded from YAML, checked strictly.

Every config section is a dataclass whose fields carry their constraints in
``field(metadata=spec(...))``.  Loading rejects unknown keys, wrong types and
out-of-range values with a :class:`ConfigError` that names the file, the dotted
key path and what was expected, so a typo never silently falls back to a
default.  ``--set a.b=3`` style overrides are parsed as YAML scalars and go
through the same checks.

Example::

    @dataclass
    class TrainConfig:
        epochs: int = field(default=10, metadata=spec("passes over the data", ge=1))
        lr: float = field(default=1e-3, metadata=spec("Adam learning rate", gt=0))

    cfg = load_config(TrainConfig, "config/train.yaml", overrides=["epochs=3"])
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Mapping, TypeVar

import yaml

from .errors import UserError, short_repr
from .safe_yaml import load_yaml, read_yaml_file

T = TypeVar("T")


class ConfigError(UserError, ValueError):
    """A user-fixable configuration mistake; the message says what to change."""


def spec(help: str = "", *, ge: float | None = None, gt: float | None = None,
         le: float | None = None, lt: float | None = None,
         choices: Iterable[Any] | None = None) -> dict[str, Any]:
    """Metadata for ``dataclasses.field``: a help text, numeric bounds, choices."""
    return {"help": help, "ge": ge, "gt": gt, "le": le, "lt": lt,
            "choices": tuple(choices) if choices is not None else None}


def _where(source: str, path: str) -> str:
    return f"{source}: {path or '<root>'}"


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, source: str, path: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return the typed value."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, source, path)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{_where(source, path)}: expected {_type_name(tp)}, got {short_repr(value)}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{_where(source, path)}: expected one of {list(args)}, got {short_repr(value)}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{_where(source, path)}: expected a mapping (section "
                              f"{tp.__name__}), got {type(value).__name__} {short_repr(value)}")
        return _build(tp, value, source, path)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{_where(source, path)}: expected a list, got {short_repr(value)}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{_where(source, path)}: expected a list of {len(args)} "
                                  f"items, got {len(value)}")
            return tuple(_convert(v, a, source, f"{path}[{i}]")
                         for i, (v, a) in enumerate(zip(value, args)))
        item_tp = args[0] if args else Any
        items = [_convert(v, item_tp, source, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{_where(source, path)}: expected a mapping, got {short_repr(value)}")
        key_tp, val_tp = args if args else (Any, Any)
        return {_convert(k, key_tp, source, f"{path}.{k}"):
                _convert(v, val_tp, source, f"{path}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{_where(source, path)}: expected true/false, got {short_repr(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{_where(source, path)}: expected an integer, got {short_repr(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{_where(source, path)}: expected a number, got {short_repr(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{_where(source, path)}: expected a string, got {short_repr(value)}")
        return value
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{_where(source, path)}: expected {_type_name(tp)}, got {short_repr(value)}")


def _check_bounds(value: Any, meta: Mapping[str, Any], source: str, path: str) -> None:
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{_where(source, path)}: expected one of {list(choices)}, got {short_repr(value)}")
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    bounds = (("ge", lambda v, b: v >= b, ">="), ("gt", lambda v, b: v > b, ">"),
              ("le", lambda v, b: v <= b, "<="), ("lt", lambda v, b: v < b, "<"))
    for key, ok, sign in bounds:
        bound = meta.get(key)
        if bound is not None and not ok(value, bound):
            raise ConfigError(f"{_where(source, path)}: expected a value {sign} {bound}, got {short_repr(value)}")


def _build(cls: type[T], data: Mapping[str, Any], source: str, prefix: str) -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        key = f"{prefix}.{unknown[0]}" if prefix else str(unknown[0])
        raise ConfigError(f"{_where(source, key)}: unknown key; valid keys here are "
                          f"{sorted(fields)}")
    kwargs = {}
    for name, value in data.items():
        path = f"{prefix}.{name}" if prefix else name
        typed = _convert(value, hints[name], source, path)
        _check_bounds(typed, fields[name].metadata, source, path)
        kwargs[name] = typed
    try:
        obj = cls(**kwargs)
    except TypeError as exc:  # a required field without a default is missing
        raise ConfigError(f"{_where(source, prefix)}: {exc}") from None
    # Defaults are checked too, so a section's own __post_init__ can rely on them.
    for name, f in fields.items():
        if name not in kwargs and not dataclasses.is_dataclass(getattr(obj, name)):
            _check_bounds(getattr(obj, name), f.metadata, source, f"{prefix}.{name}" if prefix else name)
    return obj


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``"train.epochs=3"`` into (["train", "epochs"], 3), value parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY.PATH=VALUE, e.g. train.epochs=3")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text!r}: empty key part in {key!r}")
    try:
        value = load_yaml(raw, f"--set {key}") if raw.strip() else ""
    except UserError as exc:
        raise ConfigError(str(exc)) from None
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``a.b=v`` override applied."""
    import copy
    result = copy.deepcopy(data)
    for text in overrides:
        parts, value = parse_override(text)
        node = result
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {text!r}: {part!r} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return result


#: The package whose share directory holds the installed ``config/*.yaml``
#: (setup.py installs them into ``share/distilvpr_core/config``).
CONFIG_PACKAGE = "distilvpr_core"


def config_dirs() -> list[Path]:
    """Where a config given by name is looked for, in order: the source
    checkout's ``config/`` (edits take effect without a rebuild), then the
    installed ``share/distilvpr_core/config`` (ament index of a colcon
    workspace, then this interpreter's prefix, where pip puts data files)."""
    dirs = [Path(__file__).resolve().parents[2] / "config"]
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:  # pip install without ROS
        pass
    else:
        try:
            dirs.append(Path(get_package_share_directory(CONFIG_PACKAGE)) / "config")
        except (PackageNotFoundError, ValueError, LookupError):
            pass
    dirs.append(Path(sys.prefix) / "share" / CONFIG_PACKAGE / "config")
    out: list[Path] = []
    for d in dirs:
        if d not in out:
            out.append(d)
    return out


def find_config(path: str | Path) -> Path:
    """The file ``path`` names: itself when it exists, else, for a bare name
    (``distil_synth``, ``distil_synth.yaml``) or ``config/NAME``, the first
    :func:`config_dirs` entry that has it.  So ``--config config/distil_synth.yaml``
    works outside the source tree too.  ConfigError lists where it looked."""
    path = Path(path)
    if path.is_file():
        return path
    looked = [str(path.resolve())]
    if path.parent in (Path("."), Path("config")) and path.name not in ("", ".", ".."):
        name = path.name if path.suffix in (".yaml", ".yml") else path.name + ".yaml"
        for d in config_dirs():
            if (d / name).is_file():
                return d / name
            looked.append(str(d / name))
    raise ConfigError(f"{path}: config file not found; looked for {', '.join(looked)}")


def add_config_args(parser: argparse.ArgumentParser, default_config: str | None = None) -> None:
    """The ``--config FILE`` and repeatable ``--set KEY.PATH=VALUE`` flags."""
    parser.add_argument("--config", default=default_config, metavar="FILE",
                        help="YAML config file, or the name of an installed one (e.g. distil_synth)"
                             + (f" (default: {default_config})" if default_config else ""))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config value, e.g. --set train.epochs=3 (repeatable)")


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping (``path`` resolved by :func:`find_config`), with
    errors that name the file."""
    path = find_config(path)
    try:
        data = read_yaml_file(path) or {}
    except UserError as exc:
        raise ConfigError(str(exc)) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def load_config(cls: type[T], path: str | Path | None = None,
                overrides: Iterable[str] = (), data: Mapping[str, Any] | None = None) -> T:
    """Build ``cls`` from a YAML file (or ``data``) plus ``--set`` overrides.

    Raises :class:`ConfigError` naming the file and key path on any mistake.
    """
    overrides = list(overrides)
    if data is None and path is not None:
        path = find_config(path)
    base = dict(data) if data is not None else (read_yaml(path) if path is not None else {})
    source = str(path) if path is not None else "<config>"
    if overrides:
        base = apply_overrides(base, overrides)
        source += " (with --set overrides)"
    return _build(cls, base, source, "")


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain-Python (YAML-safe) dict of a config dataclass; tuples become lists."""
    def plain(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return plain(dataclasses.asdict(cfg))


def dump_yaml(cfg: Any) -> str:
    """The resolved config as YAML text, in field order."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
