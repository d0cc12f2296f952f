"""Dose–response (`report.dose_response`): ED50 per method with seed-bootstrap intervals, where
the database holds a backdoor at two or more poisoned counts (specs/cpu/dose_response.yaml)."""
from __future__ import annotations

from typing import Any

from ttrlab.report.dose_response import BOOTSTRAP, dose_response_groups, dose_response_markdown
from ttrlab.report.sections import Section, section


@section
class DoseResponse(Section):
    id = "dose-response"
    title = "Dose–response"
    template = "dose_response.html"
    files = ("dose_response.md",)

    def build(self, data, folder) -> dict[str, Any] | None:
        groups = dose_response_groups(data.runs)
        if not groups:
            return None
        folder.write("dose_response.md", dose_response_markdown(groups))
        return {"groups": groups, "boot": BOOTSTRAP}
