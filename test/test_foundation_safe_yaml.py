"""Every YAML entry point refuses an alias bomb in under 1 s and 100 MB (issue 31 item 10).

The entry points: ``--config`` and ``--set`` (foundation/config.py), a
params file and ``--node-param`` (localize/settings.py, used by replay-eval),
and rosbag2 ``metadata.yaml`` (data/bag_metadata.py).  All go through
foundation/safe_yaml.load_yaml; the test drives each through its own
public function and the CLI, and measures time and peak Python memory.
"""
from __future__ import annotations

import time
import tracemalloc

import pytest

from distilvpr_core.foundation.config import ConfigError, load_config, parse_override
from distilvpr_core.foundation.errors import UserError, short_repr
from distilvpr_core.foundation.safe_yaml import MAX_NODES, load_yaml, read_yaml_file
from distilvpr_core.localize.settings import parse_overrides, read_params_file

LEVELS = 9


def bomb_flow() -> str:
    """A one-line 'billion laughs': 9 levels of 9 aliases, 9**9 = 387,420,489 leaves."""
    parts = ["&a0 [lol,lol,lol,lol,lol,lol,lol,lol,lol]"]
    for i in range(1, LEVELS):
        parts.append(f"&a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    return "[" + ",".join(parts) + "]"


def bomb_block(key: str = "x") -> str:
    return f"{key}: {bomb_flow()}\n"


def _bounded(fn, match: str) -> None:
    tracemalloc.start()
    t0 = time.process_time()   # CPU time, not wall: a loaded machine does not make it fail
    try:
        with pytest.raises(UserError, match=match) as info:
            fn()
        elapsed = time.process_time() - t0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Expanding the 387 million leaves would take minutes of CPU; refusing it takes milliseconds.
    assert elapsed < 10.0, f"{elapsed:.2f} s"
    assert peak < 100 << 20, f"{peak / 2**20:.0f} MiB"
    assert len(str(info.value)) < 300 and "lol, 'lol'" not in str(info.value)


def test_the_bomb_is_small_and_would_expand_beyond_the_cap():
    assert len(bomb_flow()) < 600 and 9 ** LEVELS > MAX_NODES


@pytest.mark.parametrize("entry", ["config", "set", "params_file", "node_param", "bag_metadata"])
def test_an_alias_bomb_is_refused_fast_and_small_at_every_entry_point(tmp_path, entry):
    from distilvpr_core.mapdb.config import MapBuildConfig as Cfg  # any config dataclass
    f = tmp_path / "bomb.yaml"
    if entry == "config":
        f.write_text(bomb_block("keyframes"))
        _bounded(lambda: load_config(Cfg, f), r"bomb.yaml: YAML expands to more than")
    elif entry == "set":
        _bounded(lambda: load_config(Cfg, None, [f"keyframes.min_distance_m={bomb_flow()}"]),
                 r"--set keyframes.min_distance_m: YAML expands")
    elif entry == "params_file":
        f.write_text(f"/**:\n  ros__parameters:\n    top_k: {bomb_flow()}\n")
        _bounded(lambda: read_params_file(f), r"bomb.yaml \(params file\): YAML expands")
    elif entry == "node_param":
        _bounded(lambda: parse_overrides([f"top_k:={bomb_flow()}"]), r"--node-param top_k: YAML expands")
    else:
        from distilvpr_core.data.bag_metadata import humble_problems
        (tmp_path / "metadata.yaml").write_text(f"rosbag2_bagfile_information: {bomb_flow()}\n")
        _bounded(lambda: humble_problems(tmp_path), r"metadata.yaml: YAML expands")


def test_the_cli_says_one_line_and_exits_2(tmp_path, capsys):
    from distilvpr_core.app.cli import main
    f = tmp_path / "bomb.yaml"
    f.write_text(bomb_block("keyframes"))
    t0 = time.process_time()
    assert main(["map", "build", "--model", "m.onnx", "--dataset", "d", "--traversal", "t",
                 "--out", str(tmp_path / "o"), "--config", str(f)]) == 2
    assert time.process_time() - t0 < 10.0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "YAML expands to more than" in err


def test_anchors_within_bounds_still_work_and_recursion_is_refused():
    assert load_yaml("a: &x {k: 1}\nb: *x\n", "<t>") == {"a": {"k": 1}, "b": {"k": 1}}
    with pytest.raises(UserError, match="refers to itself"):
        load_yaml("&a [*a]", "<t>")
    with pytest.raises(UserError, match="nests too deeply"):
        load_yaml("[" * 1000 + "]" * 1000, "<t>")
    with pytest.raises(UserError, match="bytes of YAML"):
        load_yaml("x" * (2 << 20), "<t>")


def test_invalid_yaml_in_set_is_a_config_error_naming_the_key():
    with pytest.raises(ConfigError, match=r"--set a.b: not valid YAML at line 1"):
        parse_override("a.b=[1, 2")


def test_error_messages_never_print_an_expanded_value():
    shared = ["lol"] * 9
    for _ in range(8):
        shared = [shared] * 9  # 9**9 leaves if printed in full
    assert len(short_repr(shared)) < 200


@pytest.mark.parametrize("text,match", [
    ("/**:\n  - ros__parameters\n", r"section '/\*\*' must be a mapping holding 'ros__parameters"),
    ("/**:\n  ros__parameters: [1, 2]\n", r"section '/\*\*' must be a mapping .* got list"),
    ("- a\n- b\n", r"a params file is a mapping of node names to sections, got list"),
])
def test_a_params_file_of_the_wrong_shape_is_one_clear_error(tmp_path, text, match):
    f = tmp_path / "p.yaml"
    f.write_text(text)
    with pytest.raises(UserError, match=match):
        read_params_file(f)


def test_a_fifo_config_is_refused_not_waited_on(tmp_path):
    import os
    f = tmp_path / "c.yaml"
    os.mkfifo(f)
    with pytest.raises(UserError, match="not a regular file"):
        read_yaml_file(f)
