"""``unidet <command>``: one entry point for every tool.

Each command is a module ``unidetector/commands/<name>.py`` that defines
``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
Modules are found automatically, so adding a command is adding a file.

Errors: a :class:`~unidetector.errors.UnidetError` (a bad file, key, value or command line) or an
``OSError`` (missing file, full disk, permissions) ends the command with one line,
``unidet <command>: error: <message>``, and exit code 2; ``--debug`` (or ``UNIDET_DEBUG=1``) shows
the traceback instead. Ctrl-C exits with 130. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

from . import commands
from .errors import UnidetError

#: What the error boundary reports as one line: the user can fix these.
USER_ERRORS = (UnidetError, OSError)


def _command_modules():
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            yield info.name.replace("_", "-"), f"{commands.__name__}.{info.name}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unidet", description="UniDetector in pure Jittor.")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (also UNIDET_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in _command_modules():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=getattr(module, "__doc__", None),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the traceback of an error (also UNIDET_DEBUG=1)")
        p.set_defaults(_run=module.run)
    return parser


def error_message(err: BaseException) -> str:
    """One line (or a few) for the user: ``OSError`` as ``<strerror>: <file>``, others as their message."""
    if isinstance(err, OSError) and not isinstance(err, UnidetError) and err.strerror:
        where = err.filename if err.filename is not None else ""
        return f"{err.strerror}: {where}" if where != "" else err.strerror
    text = str(err)
    if isinstance(err, KeyError) and len(err.args) == 1 and isinstance(err.args[0], str):
        text = err.args[0]  # KeyError's str() adds quotes
    return text or type(err).__name__


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    debug = getattr(args, "debug", False) or os.environ.get("UNIDET_DEBUG", "") not in ("", "0")
    try:
        return int(args._run(args) or 0)
    except USER_ERRORS as err:
        if debug:
            raise
        print(f"unidet {args.command}: error: {error_message(err)}", file=sys.stderr)
        if not isinstance(err, UnidetError):
            print("  (run with --debug for the traceback)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"unidet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
