"""One help string per subcommand: the CLI's table (read without importing a module, so
``distilvpr --help`` needs no torch) and each module's own ``HELP`` say the same thing."""
from __future__ import annotations

import argparse
import importlib

import pytest

from distilvpr_core.app.cli import all_subcommands
from distilvpr_core.bench.cli import targets


@pytest.mark.parametrize("name", sorted(all_subcommands()))
def test_the_cli_table_and_the_module_share_one_help_string(name: str) -> None:
    module_name, table_help = all_subcommands()[name]
    module = importlib.import_module(module_name)
    assert module.HELP == table_help, (f"{name}: the CLI says {table_help!r}, "
                                       f"{module_name}.HELP says {module.HELP!r}")


def _option_strings(module_name: str) -> set[str]:
    parser = argparse.ArgumentParser()
    importlib.import_module(module_name).add_arguments(parser)
    return {s for action in parser._actions for s in action.option_strings}


def test_every_bench_target_writes_json_with_the_same_flag() -> None:
    flags = {name: _option_strings(module) for name, module in targets().items()}
    assert all("--json" in f and "--out" not in f for f in flags.values()), flags
