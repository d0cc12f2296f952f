"""The advisor (`ttrlab.advise`): how well the predictors computed at initialisation rank this
database's configurations held out of their fit — per target, pooled and within each candidate
set, with the probes' cost beside the training's. Only with `ttrlab report --probes FILE`: the
report reads stored probes and computes none (no model is loaded)."""
from __future__ import annotations

from typing import Any

from ttrlab.report.sections import Section, section


@section
class Advisor(Section):
    id = "advisor"
    title = "Advisor"
    template = "advisor.html"
    files = ("advisor.md",)

    def build(self, data, folder) -> dict[str, Any] | None:
        if data.probes is None:
            return None
        from ttrlab.advise.cache import ProbeCache
        from ttrlab.advise.held_out import cell, cost_ratio, held_out_table, markdown
        from ttrlab.advise.predictors import PREDICTORS
        from ttrlab.advise.probe import ProbeSettings

        runs = [run for run in data.runs if run.kind == "train"]
        table = held_out_table(runs, ProbeCache(data.probes), ProbeSettings(), cached_only=True)
        folder.write("advisor.md", "\n".join([*table["notes"], *(markdown(n, t) for n, t in table["targets"].items())])
                     + "\n")
        targets = []
        for name, target in table["targets"].items():
            sets = list(target["candidate_sets"])
            targets.append({
                "name": name, "family": target["family"], "configurations": target["configurations"],
                "runs": target["runs"], "sets": [f"{s} (n={target['candidate_sets'][s]})" for s in sets],
                "rows": [{"model": model, "about": PREDICTORS.get(model).summary if model in PREDICTORS else
                          f"ridge over the {model} predictors together",
                          "cells": [cell(row), *(cell(row["within"][s]) for s in sets)]}
                         for model, row in target["models"].items()],
                "probe_seconds": f"{target['cost']['probe_seconds']:.0f}",
                "training_seconds": f"{target['cost']['stored_training_seconds_one_seed']:.0f}",
                "ratio": f"{cost_ratio(target):.1f}",
            })
        return {"targets": targets, "notes": table["notes"], "probes": data.probes,
                "probe": table["probe"]}
