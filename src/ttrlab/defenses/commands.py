"""`ttrlab defenses`: every registered defense, its kind and the settings it reads."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    defenses = subparsers.add_parser("defenses", help="list the registered defenses of classification runs")
    defenses.set_defaults(func=_defenses)


def _defenses(args: argparse.Namespace) -> int:
    from ttrlab.defenses import DEFENSES

    for name in DEFENSES.registered():
        defense = DEFENSES.get(name)
        print(f"{name:22s} {defense.kind:13s} {defense.summary}  [settings: {', '.join(defense.uses) or 'none'}]")
    return 0
