"""`ttrlab report --db results.sqlite --out report/`."""
from __future__ import annotations

import argparse
from ttrlab.cli import command_parser


def register(subparsers) -> None:
    report = command_parser(subparsers, "report")
    report.add_argument("--db", required=True, help="results database: a file path (SQLite) or an SQLAlchemy URL")
    report.add_argument("--out", required=True, help="output folder (index.html, figures/, aggregates.csv, ...)")
    report.add_argument("--compare-paper", action="store_true",
                        help="show the declared claims' verdicts even where these runs test none, and print their "
                             "table (OUT/paper_comparison.md)")
    report.add_argument("--claims", default=None, metavar="FILE",
                        help="a claims file to decide (default: the paper's, report/claims/paper_claims.yaml)")
    report.add_argument("--probes", default=None, metavar="FILE",
                        help="the advisor's stored probes (ttrlab advise --probes): adds the Advisor section, the "
                             "held-out rho of every predictor on this database's configurations (computes no probe)")
    report.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    from ttrlab.report import build_report

    index = build_report(args.db, args.out, claims=args.claims, probes=args.probes, compare_paper=args.compare_paper)
    if args.compare_paper:
        print((index.parent / "paper_comparison.md").read_text(encoding="utf-8"))
    print(index)
    return 0
