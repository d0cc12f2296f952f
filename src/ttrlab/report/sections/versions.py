"""The package versions the runs recorded, and what built the report."""
from __future__ import annotations

import platform
from collections import Counter, defaultdict
from typing import Any

from ttrlab.report.sections import Section, section


@section
class Versions(Section):
    id = "versions"
    title = "Versions"
    template = "versions.html"

    def build(self, data, folder) -> dict[str, Any] | None:
        from ttrlab import __version__

        seen: dict[str, Counter] = defaultdict(Counter)
        for run in data.runs:
            for name, version in (run.versions or {}).items():
                seen[name][str(version)] += 1
        return {"versions": [(name, ", ".join(f"{v} ({n})" for v, n in counter.most_common()))
                             for name, counter in sorted(seen.items())],
                "ttrlab": __version__, "host": platform.node()}
