"""Table E.1 (`tables.table_e1_rows`): every classification backdoor attack, each method, the
paper's numbers beside; when the database holds poisoned classification runs under a backdoor."""
from __future__ import annotations

from typing import Any

from ttrlab.report.sections import Section, section
from ttrlab.report.tables import TABLE_E1_METRICS, metric_labels, paper_numbers, table_e1_rows


@section
class TableE1(Section):
    id = "table-e1"
    title = "Table E.1"
    template = "table_e1.html"

    def build(self, data, folder) -> dict[str, Any] | None:
        rows = table_e1_rows(data.cells, data.learned)
        if not rows:
            return None
        return {"rows": rows, "metrics": metric_labels(TABLE_E1_METRICS), "paper": paper_numbers()["table_e1"]}
