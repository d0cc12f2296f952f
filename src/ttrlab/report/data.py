"""What a report is built from: one results database read once (typed records, `StoredRun`), and
what the sections derive from its runs, each computed once on first use — the cells (one setting
over its seeds), the method-vs-full comparisons, the declared claims' verdicts, the rule that marks
a method that did not learn the task, and the paper's figures as data (which cells they draw)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from ttrlab.core.errors import UserError, note
from ttrlab.report import claims as declared_claims
from ttrlab.report.aggregate import Cell, ComparisonRow, build_cells, is_stale, method_vs_full, trains
from ttrlab.report.claims.declared import ClaimsFile
from ttrlab.report.claims.decide import NOT_TESTABLE
from ttrlab.report.learned import LearnedRule
from ttrlab.sweep.store import FAILED, FINISHED, ResultStore, StoredRun, Sweep, as_given


@dataclass
class ReportData:
    runs: list[StoredRun]  # finished
    failed: list[StoredRun]
    skipped: list[dict[str, Any]]  # stored rows left out (damaged, edited by hand)
    sweeps: list[Sweep]
    database: str  # as the user named it (secrets hidden): `store.as_given`
    declared: ClaimsFile  # the claims to decide
    claims_asked: bool = False  # the user asked for the verdicts (--compare-paper, or a claims file)
    probes: str | None = None  # the advisor's stored probes (`ttrlab report --probes`): the Advisor section

    @classmethod
    def read(cls, db: str | os.PathLike, claims: str | os.PathLike | None = None,
             compare_paper: bool = False, probes: str | os.PathLike | None = None) -> ReportData:
        """Read the database (never writing to it); notes go to stderr as the store gives them."""
        if probes is not None and not os.path.isfile(probes):
            raise UserError(f"--probes {str(probes)!r} is not a file; allowed: a JSON-lines file of "
                            "`ttrlab advise --probes`")
        declared = declared_claims.load_claims(claims)
        with ResultStore(db, create=False) as store:
            runs, failed, sweeps = store.runs(status=FINISHED), store.runs(status=FAILED), store.sweeps()
            for message in store.notes:
                note(message)
            for row in store.skipped:
                note(f"left out of the report: stored run {row['id']} ({row['kind']} {row['run_key']}): {row['problem']}")
            return cls(runs, failed, list(store.skipped), sweeps, as_given(db), declared,
                       claims_asked=compare_paper or claims is not None,
                       probes=None if probes is None else str(probes))

    @cached_property
    def cells(self) -> list[Cell]:
        return build_cells(self.runs)

    @cached_property
    def training_cells(self) -> list[Cell]:
        """The cells of the kinds that train (theory computes at initialisation)."""
        return [cell for cell in self.cells if trains(cell.kind)]

    @cached_property
    def stale(self) -> int:
        return sum(is_stale(run) for run in self.runs)

    @cached_property
    def comparisons(self) -> list[ComparisonRow]:
        return method_vs_full(self.cells)

    @cached_property
    def verdicts(self) -> declared_claims.Verdicts:
        return declared_claims.check(self.cells, self.declared)

    @cached_property
    def testable_claims(self) -> int:
        """How many declared claims these runs can test (or describe)."""
        return sum(d.verdict != NOT_TESTABLE for d in self.verdicts.decisions)

    @property
    def claims_shown(self) -> bool:
        """The verdicts are on the page when the runs can test (or describe) a declared claim, or
        when the user asked for them."""
        return self.claims_asked or self.testable_claims > 0

    @cached_property
    def learned(self) -> LearnedRule:
        return LearnedRule(self.cells, self.declared)

    @cached_property
    def paper_figures(self):
        """The paper's figures this database can draw, as data (`figures.paper_figures`)."""
        from ttrlab.report.figures import figure_records, paper_figures

        return paper_figures(figure_records(self.runs))

    @cached_property
    def seconds(self) -> float:
        return sum(run.seconds or 0.0 for run in self.runs)
