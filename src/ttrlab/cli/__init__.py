"""The `ttrlab` command: argument parsing and error reporting only; the work is in the API.

The command table (`COMMANDS`) names each command's module and one-line help. Building the
parser imports only the module of the command being run (its `register(subparsers)` adds that
command's arguments, and those of its siblings in the module); every other command is a stub
with its help line. So `ttrlab --help`, `ttrlab status --help` and the listing commands import
no torch, transformers or peft (`tests/test_cli_startup.py`).

Bad input (a `UserError`, or an argument argparse rejects) prints one line on stderr and exits
with code 2.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from ttrlab.core.errors import UserError, shown


@dataclass(frozen=True)
class Command:
    module: str  # registers the command: `module.register(subparsers)`
    help: str


COMMANDS: dict[str, Command] = {
    "run": Command("ttrlab.cli.run", "the main job: SST-2, MiniLM, LoRA vs FF under clean/UPA/BPA as a small sweep, "
                                     "then the HTML report"),
    "train": Command("ttrlab.cli.run", "one fine-tuning run (poison, train, evaluate) → JSON result"),
    "sweep": Command("ttrlab.cli.sweep", "run a sweep spec (YAML) into a results database; resumable"),
    "status": Command("ttrlab.cli.sweep", "finished / running (where, how long) / failed / pending runs of a results "
                                          "database; writes nothing"),
    "report": Command("ttrlab.cli.report", "figures, tables, the declared claims' verdicts and one self-contained HTML "
                                           "file from a results database"),
    "theory": Command("ttrlab.cli.theory", "NTK, M', Fisher spectrum, IB, Renyi entropy, Thm 3.4, Fig. 3"),
    "advise": Command("ttrlab.cli.advise", "rank candidate configurations by predicted robustness before training "
                                           "(theory at init + cheap baselines); --calibrate: held-out rho on a --db"),
    "gen-train": Command("ttrlab.cli.generative", "one generative backdoor run (causal LM, FF or LoRA; task jailbreak, "
                                                  "refusal or negsentiment) → JSON result"),
    "import": Command("ttrlab.cli.importing", "someone else's per-seed results (CSV, or the paper's own raw data) into "
                                              "a results database, marked external with their provenance"),
    "list": Command("ttrlab.cli.listing", "list what is registered: tasks, attacks, methods, defenses, threats, "
                                          "kinds, gen-tasks, gen-attacks"),
    "tasks": Command("ttrlab.cli.listing", "list the registered tasks, or show the task of task files"),
    "attacks": Command("ttrlab.cli.listing", "list the registered attacks of every run kind"),
    "methods": Command("ttrlab.cli.listing", "list the registered fine-tuning methods"),
    "defenses": Command("ttrlab.cli.listing", "list the registered defenses of classification runs"),
    "threats": Command("ttrlab.cli.listing", "list the threat models (where the poison enters a run) and what each "
                                             "measures"),
    "gen-tasks": Command("ttrlab.cli.listing", "list the generative tasks and how each is judged"),
    "gen-attacks": Command("ttrlab.cli.listing", "list the attacks of generative runs"),
}


def command_parser(subparsers, name: str, **options):
    """The parser of command `name`, with the table's help line (what `register` functions call)."""
    return subparsers.add_parser(name, help=COMMANDS[name].help, **options)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse prints usage + message)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser, with full arguments for the command `argv` names (all stubs without one)."""
    from ttrlab.kinds.registry import load_plugins

    load_plugins()  # TTRLAB_PLUGINS as it is now (a bad value: one line, whatever the command)
    parser = _Parser(prog="ttrlab", description="Training-time robustness of LoRA vs full fine-tuning.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    chosen = next((a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")), None)
    if chosen in COMMANDS:
        importlib.import_module(COMMANDS[chosen].module).register(subparsers)
    for name, command in COMMANDS.items():
        if name not in subparsers.choices:
            subparsers.add_parser(name, help=command.help)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        args = build_parser(argv).parse_args(argv)  # a bad TTRLAB_PLUGINS fails here, for every command
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


