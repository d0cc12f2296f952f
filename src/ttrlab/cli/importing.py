"""`ttrlab import FILE --format NAME --db DB`: someone else's per-seed results into a results
database, marked as external with their provenance (`ttrlab.external`)."""
from __future__ import annotations

import argparse

from ttrlab.cli import command_parser


def register(subparsers) -> None:
    from ttrlab.external import FORMATS

    formats = "; ".join(f"{name}: {FORMATS.get(name).about}" for name in FORMATS.registered())
    command = command_parser(subparsers, "import", epilog=f"formats — {formats}")
    command.add_argument("file", help="the results file")
    command.add_argument("--format", required=True, choices=FORMATS.registered(), help="the file's layout")
    command.add_argument("--db", required=True, help="results database: a file path (SQLite) or an SQLAlchemy URL")
    command.add_argument("--source", default=None,
                         help="what produced the numbers (a citation or URL); stored with every run "
                              "(formats that know their provenance fill it in)")
    command.set_defaults(func=_import)


def _import(args: argparse.Namespace) -> int:
    from ttrlab.external import import_file

    done = import_file(args.file, args.format, args.db, args.source)
    print(f"{done.new} runs imported ({done.already} already stored) from {done.source}")
    for caveat in done.caveats:
        print(f"  caveat: {caveat}")
    return 0
