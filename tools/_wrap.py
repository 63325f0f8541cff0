"""Shared helper of the seed-compatible wrappers in tools/: translate the seed's flags, call `unidet`."""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from unidetector.errors import UnidetError  # noqa: E402  (after the path insertion)


class ToolError(UnidetError):
    """A seed command line that cannot be translated (the message names the config, key or dataset)."""


def run_unidet(argv: list) -> int:
    print("unidet " + " ".join(argv), flush=True)
    from unidetector.cli import main

    return main(argv)


def run_tool(prepare) -> int:
    """``prepare()`` -> the ``unidet`` command lines to run (a list of argv lists), run in order until one fails.

    A user error while preparing (a :class:`UnidetError`, e.g. a missing config or an unknown dataset
    name, or an ``OSError``) ends the tool with ``<tool>: error: <message>`` and exit code 2, as ``unidet``
    does; ``UNIDET_DEBUG=1`` shows the traceback instead.
    """
    try:
        commands = prepare()
    except (UnidetError, OSError) as err:
        if os.environ.get("UNIDET_DEBUG", "") not in ("", "0"):
            raise
        print(f"{os.path.basename(sys.argv[0])}: error: {err}", file=sys.stderr)
        return 2
    for argv in commands:
        rc = run_unidet(argv)
        if rc:
            return rc
    return 0


def parse_cfg_options(options) -> dict | None:
    """``['a.b=1', ...]`` -> the dict ``unidet``'s ``--cfg-options`` makes of them (None when empty)."""
    if not options:
        return None
    from unidetector.config import DictAction

    p = argparse.ArgumentParser(prog=os.path.basename(sys.argv[0]))
    p.add_argument("--cfg-options", nargs="+", action=DictAction)
    return p.parse_args(["--cfg-options", *options]).cfg_options


def load_tool_config(path, options):
    """The config at ``path`` with the ``--cfg-options`` strings ``options`` applied."""
    from unidetector.config import load_config

    return load_config(path, parse_cfg_options(options))
