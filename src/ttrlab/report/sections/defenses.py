"""Defense efficacy on victims of each method (`report.defenses`): on the page, and in
defenses.md, when the database holds defended runs."""
from __future__ import annotations

from typing import Any

from ttrlab.report.defenses import defense_tables, defense_tables_markdown
from ttrlab.report.sections import Section, section


@section
class Defenses(Section):
    id = "defenses"
    title = "Defenses"
    template = "defenses.html"
    files = ("defenses.md",)

    def build(self, data, folder) -> dict[str, Any] | None:
        tables = defense_tables(data.cells)
        if not tables:
            return None
        folder.write("defenses.md", defense_tables_markdown(tables))
        return {"tables": tables}
