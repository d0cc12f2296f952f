"""The summary: what the database holds, the statistics' rules, what its tasks are, and the
headline comparisons — each method against the full method on the metrics its attack leads with
(`tables.headline_rows`), the rows where a method did not learn the task marked and last."""
from __future__ import annotations

from typing import Any

from ttrlab.report.aggregate import task_type, trains
from ttrlab.report.sections import Section, section
from ttrlab.report.tables import attacks_without_comparison, headline_rows
from ttrlab.report.tasks import task_rows


@section
class Summary(Section):
    id = "summary"
    title = "Summary"
    template = "summary.html"

    def build(self, data, folder) -> dict[str, Any]:
        headline = headline_rows(data.comparisons, data.learned)
        return {
            "counts": {"finished": len(data.runs), "failed": len(data.failed), "stale": data.stale,
                       "untrained": sum(not trains(run.kind) for run in data.runs)},
            "n_cells": len(data.cells),
            "hours": f"{data.seconds / 3600:.2f}",
            "tasks": task_rows(data.cells),
            "triggered": any(cell.attack is not None and cell.attack.is_backdoor() and task_type(cell.kind) == "classification"
                             for cell in data.training_cells),
            "headline": headline,
            "grouped": len({(r["kind"], str(r["model"])) for r in headline}) > 1,
            "not_learned": sum(bool(r["not_learned"]) for r in headline),
            "learned_rule": data.learned.describe(),
            "missing": attacks_without_comparison(data.cells, data.comparisons),
            "claims": data.verdicts.headline() if data.claims_shown else "",
        }
