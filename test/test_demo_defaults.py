"""The demo's default inputs exist in the source checkout (a moved module once pointed them
into the package folder, and only a full demo run would have noticed)."""
from __future__ import annotations

import argparse
from pathlib import Path

from distilvpr_core.app import demo


def test_default_configs_of_the_demo_exist() -> None:
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    args = parser.parse_args([])
    for path in (args.town_config, args.distil_config):
        assert Path(path).is_file(), path
    assert (demo.REPO / "package.xml").is_file(), demo.REPO
