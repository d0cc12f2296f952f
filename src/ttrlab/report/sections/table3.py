"""Table 3 (`tables.table3_rows`) and its paired comparisons (`report.paired`): when the database
holds generative runs."""
from __future__ import annotations

from typing import Any

from ttrlab.evaluation import METRICS
from ttrlab.report.paired import SEED_METRICS, display, paired_rows
from ttrlab.report.sections import Section, section
from ttrlab.report.tables import TABLE_3_METRICS, TABLE_3_TASK_TYPE, metric_labels, paper_numbers, table3_rows


@section
class Table3(Section):
    id = "table3"
    title = "Table 3"
    template = "table3.html"

    def build(self, data, folder) -> dict[str, Any] | None:
        rows = table3_rows(data.cells, data.learned)
        if not rows:
            return None
        return {"rows": rows, "metrics": metric_labels(TABLE_3_METRICS), "paper": paper_numbers()["table_3"],
                "tasks": _task_summaries(rows)}


@section
class Table3Paired(Section):
    id = "table3-paired"
    title = "Table 3 paired"
    template = "table3_paired.html"

    def build(self, data, folder) -> dict[str, Any] | None:
        if not table3_rows(data.cells, data.learned):
            return None
        return {"rows": [display(r) for r in paired_rows(data.cells, data.comparisons, TABLE_3_TASK_TYPE)],
                "metrics": [{"metric": m, "label": METRICS.info(m).label, "summary": METRICS.info(m).summary}
                            for m in SEED_METRICS]}


def _task_summaries(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(task, what its trigger does) for the generative tasks Table 3 holds, in its order."""
    from ttrlab.kinds.generative.tasks import GENERATIVE_TASKS

    names = list(dict.fromkeys(str(r["task"]) for r in rows))
    return [(name, GENERATIVE_TASKS.get(name).summary) for name in names if name in GENERATIVE_TASKS]
