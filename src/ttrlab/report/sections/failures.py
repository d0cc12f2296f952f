"""Failed runs (their errors) and stored rows the report left out: when there are any."""
from __future__ import annotations

from typing import Any

from ttrlab.report.sections import Section, section

LABEL_KEYS = ("task", "method", "attack", "rate", "seed")  # what names a failed run in its one line


@section
class Failures(Section):
    id = "failures"
    title = "Failures"
    template = "failures.html"

    def build(self, data, folder) -> dict[str, Any] | None:
        if not data.failed and not data.skipped:
            return None
        return {"failures": [_failure(run) for run in data.failed], "skipped": data.skipped}


def _failure(run) -> dict[str, str]:
    lines = [line for line in (run.error or "").strip().splitlines() if line.strip()]
    label = " ".join(str(run.config.get(k)) for k in LABEL_KEYS if k in run.config) or run.run_key
    return {"label": f"{run.kind} {label}", "last": lines[-1] if lines else "error", "error": run.error or ""}
