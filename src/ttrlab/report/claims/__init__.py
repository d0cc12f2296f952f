"""Declared claims, decided on a results database: the paper's (`paper_claims.yaml`) or a user's
own file of the same layout.

    declared = load_claims()                       # or load_claims("my_claims.yaml")
    verdicts = check(cells, declared)              # with and without the manipulation checks
    print(tables.headline(verdicts.decisions))

The parts: `declared` (the file, checked), `designs` (what each kind of claim measures per
independent unit), `checks` (the declared exclusion rules), `sequential` (the looks and their α),
`decide` (tests across units, family corrections, verdicts, the seeds still needed), `tables`.
"""
from __future__ import annotations

from dataclasses import dataclass

from ttrlab.report.aggregate import Cell
from ttrlab.report.claims import tables
from ttrlab.report.claims.declared import Claim, ClaimsFile
from ttrlab.report.claims.load import load_claims
from ttrlab.report.claims.decide import Decision, decide, summary


@dataclass
class Verdicts:
    declared: ClaimsFile
    decisions: list[Decision]  # with the declared manipulation checks
    without_checks: list[Decision]  # the sensitivity analysis: every setting kept

    def markdown(self, columns: tuple[str, ...] = tables.COLUMNS) -> str:
        return tables.markdown(self.decisions, self.without_checks, columns)

    def csv(self) -> str:
        return tables.csv(self.decisions, self.without_checks)

    def rows(self) -> list[dict]:
        return tables.rows(self.decisions, self.without_checks)

    def headline(self) -> str:
        return tables.headline(self.decisions)

    def header(self) -> str:
        return tables.header(self.declared)


def check(cells: list[Cell], declared: ClaimsFile | None = None) -> Verdicts:
    """Every declared claim decided with the manipulation checks, and again without them."""
    declared = declared or load_claims()
    return Verdicts(declared, decide(cells, declared, exclusions=True),
                    decide(cells, declared, exclusions=False, mixed_model=False))


__all__ = ["Claim", "ClaimsFile", "Decision", "Verdicts", "check", "decide", "load_claims", "summary", "tables"]
