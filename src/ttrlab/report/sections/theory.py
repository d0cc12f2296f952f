"""The Theory section (`report.theory`): when the database holds runs of the theory kind."""
from __future__ import annotations

from typing import Any

from ttrlab.report.sections import Section, section
from ttrlab.report.theory import theory_section


@section
class Theory(Section):
    id = "theory"
    title = "Theory"
    template = "theory.html"
    files = ("theory.json",)

    def build(self, data, folder) -> dict[str, Any] | None:
        return theory_section(data.runs, folder)
