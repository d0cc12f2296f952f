"""The `ttrlab` command: argument parsing and error reporting only; the work is in the API.

Bad input (a `UserError`, or an argument argparse rejects) prints one line on stderr and exits
with code 2. Commands from other parts of the package are contributed by the modules in
COMMAND_MODULES, each with a `register(subparsers)` function.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence

from ttrlab.errors import UserError, shown

COMMAND_MODULES: list[str] = [
    "ttrlab.commands.core",
    "ttrlab.sweep.commands",
    "ttrlab.report.commands",
    "ttrlab.theory.commands",
    "ttrlab.generative.commands",
    "ttrlab.defenses.commands",
]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse prints usage + message)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    from ttrlab.sweep.kinds import load_plugins

    load_plugins()  # TTRLAB_PLUGINS as it is now (a bad value: one line, whatever the command)
    parser = _Parser(prog="ttrlab", description="Training-time robustness of LoRA vs full fine-tuning.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        args = build_parser().parse_args(argv)  # a bad TTRLAB_PLUGINS fails here, for every command
        return int(args.func(args) or 0)
    except UserError as error:
        print(f"ttrlab: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ttrlab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which closed early
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as error:
        if error.filename is None:
            raise  # not about a path the user named: a bug, with its traceback
        # a path the command's own checks did not foresee (they map the ones they know)
        print(f"ttrlab: error: {shown(os.fsdecode(error.filename))}: {error.strerror or error}", file=sys.stderr)
        return 2


def print_json(document) -> None:
    print(json.dumps(document, indent=2))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
