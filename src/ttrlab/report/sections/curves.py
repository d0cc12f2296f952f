"""Learning curves (`report.learning_curves`): when runs were made with `curve_every > 0`."""
from __future__ import annotations

from typing import Any

from ttrlab.evaluation import METRICS
from ttrlab.report import learning_curves
from ttrlab.report.aggregate import fmt
from ttrlab.report.sections import Section, section


@section
class Curves(Section):
    id = "curves"
    title = "Learning curves"
    template = "curves.html"

    def build(self, data, folder) -> dict[str, Any] | None:
        figures, notes = learning_curves.curve_figures(data.cells)
        if not figures and not notes:
            return None
        drawn = []
        for figure in figures:
            table = figure.table()
            metrics = " and ".join(METRICS.info(m).label for m in figure.metrics)
            drawn.append({
                "anchor": figure.stem,
                "title": f"{figure.name}.",
                "caption": f"{metrics} at each checkpoint, one colour per method setting "
                           f"({learning_curves.style_text(figure)}); mean ± std (ddof=1) over the seeds that hold the "
                           f"point; panels are task × attack.",
                "alt": f"{figure.name}: {metrics} over training steps",
                "context": learning_curves.context_text(figure),
                **folder.figure(learning_curves.draw(figure), figure.stem, table),
                "table": [{**r, "panel": learning_curves.panel_title(r["task"], r["attack"]), "mean": fmt(r["mean"]),
                           "std": fmt(r["std"])} for r in table],
            })
        reach = [{**r, "steps": fmt(r["steps"]), "poisoned_seen": fmt(r["poisoned_seen"]),
                  "examples_seen": fmt(r["examples_seen"]), "panel": learning_curves.panel_title(r["task"], r["attack"])}
                 for r in learning_curves.reach_rows(figures)]
        return {"figures": drawn, "notes": notes, "reach": reach,
                "reach_metric": METRICS.info(learning_curves.REACH_METRIC).label,
                "threshold": f"{100 * learning_curves.REACH_THRESHOLD:g}%"}
