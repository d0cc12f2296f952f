"""Every method against full fine-tuning, setting by setting, and robustness against the number of
trainable parameters (`report.methods`): when a setting holds the full method and two others."""
from __future__ import annotations

from typing import Any

from ttrlab.report.aggregate import fmt
from ttrlab.report.methods import FIGURE_STEM, method_tables, method_tables_markdown, spearman_note, trainable_figure
from ttrlab.report.sections import Section, section


@section
class Methods(Section):
    id = "methods"
    title = "Every method"
    template = "methods.html"
    files = ("methods.md",)

    def build(self, data, folder) -> dict[str, Any] | None:
        tables = method_tables(data.cells, data.comparisons, data.learned)
        if not tables:
            return None
        folder.write("methods.md", method_tables_markdown(tables))
        fig, numbers = trainable_figure(data.cells, data.learned)
        figure = None
        if fig is not None:
            figure = {**folder.figure(fig, FIGURE_STEM, numbers), "notes": spearman_note(numbers),
                      "table": [{**r, "trainable": fmt(r["trainable"]), "mean": fmt(r["mean"]), "std": fmt(r["std"])}
                                for r in numbers]}
        return {"tables": tables, "figure": figure, "learned_rule": data.learned.describe()}
