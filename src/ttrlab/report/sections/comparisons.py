"""Every method-vs-full comparison at every setting (`aggregate.method_vs_full`): on the page and
in comparisons.csv / .md when the database holds a method and the full method at one setting."""
from __future__ import annotations

from typing import Any

from ttrlab.report.aggregate import COMPARISON_COLUMNS, comparison_rows, fmt, to_csv, to_markdown
from ttrlab.report.sections import Section, section


@section
class Comparisons(Section):
    id = "comparisons"
    title = "Methods vs full fine-tuning"
    template = "comparisons.html"
    files = ("comparisons.csv", "comparisons.md")

    def build(self, data, folder) -> dict[str, Any] | None:
        if not data.comparisons:
            return None
        rows = comparison_rows(data.comparisons, data.learned.failed)
        folder.write("comparisons.csv", to_csv(rows, COMPARISON_COLUMNS))
        folder.write("comparisons.md", to_markdown(rows, COMPARISON_COLUMNS))
        return {"columns": COMPARISON_COLUMNS, "rows": [[fmt(r[k]) for k in COMPARISON_COLUMNS] for r in rows]}
