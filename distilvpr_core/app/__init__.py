"""The ``distilvpr`` command: CLI, subcommand plugins, the demo and ``doctor``.
"""
