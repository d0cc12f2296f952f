"""The declared claims (the paper's, or the user's `--claims` file), decided on this database
(`report.claims`): on the page when the runs can test or describe at least one of them, or when
the user asked for the verdicts (`--compare-paper`, `--claims`); then also paper_comparison.md
and .csv beside the report. A row shows what decides the claim; the rest (the paper's words, the
arms' values, the look's own p, the verdict without the manipulation checks, why) is behind it.
The claims these runs cannot test are listed apart, closed, with what each would need."""
from __future__ import annotations

from typing import Any

from ttrlab.report.claims.decide import NOT_TESTABLE
from ttrlab.report.sections import Section, section

# what a row of the page shows (the other columns of `claims.tables.COLUMNS` go behind each claim)
DETAILS = (("role", "role"), ("paper", "the paper"), ("ttrlab", "measured here"), ("p_look", "p (this look)"),
           ("mdd", "smallest difference the design could see"), ("without_exclusions", "without the manipulation checks"),
           ("mixed_model", "mixed model"), ("why", "why / left out"))


@section
class Claims(Section):
    id = "paper"
    title = "The declared claims"
    template = "claims.html"
    files = ("paper_comparison.md", "paper_comparison.csv")

    def build(self, data, folder) -> dict[str, Any] | None:
        if not data.claims_shown:
            return None
        verdicts = data.verdicts
        folder.write("paper_comparison.md", f"{verdicts.header()}\n\n**{verdicts.headline()}**\n\n{verdicts.markdown()}")
        folder.write("paper_comparison.csv", verdicts.csv())
        tested, untested = [], []
        for row, decision in zip(verdicts.rows(), verdicts.decisions):
            details = [(label, row[key]) for key, label in DETAILS if row.get(key) not in (None, "", "–")]
            (untested if decision.verdict == NOT_TESTABLE else tested).append(
                {**row, "decided": decision.decided, "details": details})
        return {"rows": tested, "untested": untested, "header": verdicts.header(), "summary": verdicts.headline(),
                "checks": list(data.declared.checks.values()), "total": len(tested) + len(untested)}
