"""The sweeps (their specs as written) and the full config of every cell."""
from __future__ import annotations

import json
from typing import Any

from ttrlab.report.sections import Section, section


@section
class Sweeps(Section):
    id = "sweeps"
    title = "Sweeps & configs"
    template = "sweeps.html"

    def build(self, data, folder) -> dict[str, Any] | None:
        if not data.sweeps and not data.cells:
            return None
        return {
            "sweeps": [{"name": s.name, "planned": s.planned_runs, "path": s.spec_path or "(inline spec)",
                        "sha": s.spec_sha256, "text": s.spec_text} for s in data.sweeps],
            "cells": [{"id": cell.id, "kind": cell.kind, "seeds": " ".join(map(str, cell.seeds)),
                       "config": json.dumps(cell.config, sort_keys=True, default=str)} for cell in data.cells],
        }
