"""Table 2 (`tables.table2_rows`): a method's init strategies × variance scale k, the paper's row
beside each; when the database holds runs of a strategy other than the method's default."""
from __future__ import annotations

from typing import Any

from ttrlab.report.aggregate import fmt
from ttrlab.report.sections import Section, section
from ttrlab.report.tables import paper_table2_row, pm, table2_rows


@section
class Table2(Section):
    id = "table2"
    title = "Table 2"
    template = "table2.html"

    def build(self, data, folder) -> dict[str, Any] | None:
        rows = table2_rows(data.cells, data.learned)
        if not rows:
            return None
        return {"rows": [{
            **{k: row[k] for k in ("task", "init", "attack", "rank", "n", "not_learned")},
            "k": fmt(row["k"]), "rate": fmt(row["rate"]), "test_set": row["test set"],
            **{m: pm(row[m]) for m in ("accuracy", "precision", "recall", "f1")},
            "paper": _paper(row),
        } for row in rows]}


def _paper(row: dict[str, Any]) -> str:
    """The paper's Acc. / F1 for this row's strategy, k and clean-or-backdoored, or ''."""
    paper = paper_table2_row(row["init"], row["k"], row["rate"] > 0)
    if paper is None:
        return ""
    return f"{paper['mean'][0]:.2f} / {paper['mean'][3]:.2f} ({paper['label']}, k = {paper['k']:g}, {100 * paper['rate']:g}%)"
