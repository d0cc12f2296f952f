"""Every cell × metric over its seeds (`aggregate.aggregate_rows`), its columns the settings the
cells differ in: on the page and in aggregates.csv / .md when the database holds finished runs."""
from __future__ import annotations

from typing import Any

from ttrlab.report.aggregate import aggregate_columns, aggregate_rows, fmt, to_csv, to_markdown
from ttrlab.report.sections import Section, section


@section
class Aggregates(Section):
    id = "aggregates"
    title = "All aggregates"
    template = "aggregates.html"
    files = ("aggregates.csv", "aggregates.md")

    def build(self, data, folder) -> dict[str, Any] | None:
        if not data.cells:
            return None
        columns, shown = aggregate_columns(data.cells)
        rows = aggregate_rows(data.cells, columns)
        folder.write("aggregates.csv", to_csv(rows, columns))
        folder.write("aggregates.md", to_markdown(rows, shown))
        return {"columns": shown, "rows": [[fmt(r.get(k)) for k in shown] for r in rows]}
