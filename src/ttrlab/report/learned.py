"""One rule for "this method did not learn the task", marked wherever a table or figure shows its
numbers: the declared `learned` manipulation check of the claims (`claims.checks`: the arm's run
trained without poison fits its training data no better than a constant predictor, judged on its
training loss). The verdicts leave such settings out of a claim; the tables keep them, marked, so
that an ASR of 100% from a model that predicts the target for everything, or an accuracy at chance
under poisoning, is not read as a result about robustness.

The thresholds are the claims file's declaration of the check (a user's claims file that declares
none: the paper's). Where the check cannot tell (no training loss stored, a kind that is not
classification) nothing is marked.
"""
from __future__ import annotations

from functools import cached_property

from ttrlab.report.aggregate import Cell
from ttrlab.report.claims.cells import CellIndex
from ttrlab.report.claims.checks import CHECKS
from ttrlab.report.claims.declared import Check, ClaimsFile, read_claims

CHECK = "learned"  # the manipulation check's name in the claims file


class LearnedRule:
    """`failed(*arms)`: why the arms of one row (a cell, or a method and its full-method
    baseline) did not learn the task, or None."""

    def __init__(self, cells: list[Cell], declared: ClaimsFile):
        self.cells = cells
        self.declared = declared
        self._seen: dict[tuple[str, ...], str | None] = {}

    @cached_property
    def index(self) -> CellIndex:
        return CellIndex(self.cells)

    @cached_property
    def check(self) -> Check:
        if CHECK in self.declared.checks:
            return self.declared.checks[CHECK]
        # the paper's file declares the rule; its checks section needs no registered-name check
        return read_claims().checks[CHECK]

    def failed(self, *arms: Cell) -> str | None:
        key = tuple(cell.id for cell in arms)
        if key not in self._seen:
            self._seen[key] = CHECKS.get(CHECK).judge(list(arms), self.index, self.check)
        return self._seen[key]

    def learned(self, cell: Cell) -> bool:
        """False only where the check says the cell's method did not learn the task."""
        return self.failed(cell) is None

    def describe(self) -> str:
        """The rule in words, with the declared thresholds, for the page."""
        share = self.check.params.get("max_loss_share_of_log_classes")
        limit = f"{share:g} · ln(number of classes)" if share is not None else "its declared limit"
        return (f"did not learn the task: the same setting trained without poison ended with a mean training loss "
                f"≥ {limit}, no better than predicting the class shares (the claims' manipulation check "
                f"“{self.check.what or CHECK}”, v{self.check.version})")
