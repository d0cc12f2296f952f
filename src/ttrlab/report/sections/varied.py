"""What each sweep varied (`report.varied`): a figure per sweep whose runs the paper's figures,
Tables 2 and 3 and the defense tables do not all show — a user's own design gets the figure of
what it varied, not only the paper's."""
from __future__ import annotations

from typing import Any

from ttrlab.report.aggregate import fmt, setting_text
from ttrlab.report.defenses import defense_tables
from ttrlab.report.sections import Section, section
from ttrlab.report.sections.figures import not_learned_text
from ttrlab.report.tables import table2_rows, table3_rows
from ttrlab.report.varied import draw, varied_figures


@section
class Varied(Section):
    id = "varied"
    title = "What each sweep varied"
    template = "varied.html"

    def build(self, data, folder) -> dict[str, Any] | None:
        figures = varied_figures(data.training_cells, [s.name for s in data.sweeps], shown_elsewhere(data))
        if not figures:
            return None
        cells = {cell.id: cell for cell in data.cells}
        drawn = []
        for figure in figures:
            table = figure.table()
            series = [(task, s.label, {cid: at for cid, (_, at) in s.cells.items()})
                      for s in figure.series for task in figure.tasks]
            drawn.append({
                "anchor": figure.stem,
                "title": f"{figure.name}.",
                "caption": (f"What it varied: {', '.join(figure.varied) or 'nothing but the seed'}. "
                            + (f"x: {figure.x}; " if figure.x else "One position per series; ")
                            + "mean ± std (ddof=1) over seeds; rows are metrics, columns tasks."),
                "alt": figure.title,
                "context": setting_text(figure.kind, figure.shared),
                "not_learned": not_learned_text(series, cells, data.learned, figure.x or ""),
                **folder.figure(draw(figure), figure.stem, table),
                "x_label": figure.x or "series",
                "table": [{**r, "x": fmt(r["x"]), "mean": fmt(r["mean"]), "std": fmt(r["std"])} for r in table],
            })
        return {"figures": drawn}


def shown_elsewhere(data) -> set[str]:
    """The ids of the cells the paper's figures, Tables 2 and 3 and the defense tables show."""
    figures, _ = data.paper_figures
    shown = {cid for figure in figures for cid in figure.cells}
    shown |= {row["cell"] for row in table2_rows(data.cells, data.learned)}
    shown |= {row["cell"] for row in table3_rows(data.cells, data.learned)}
    shown |= {cid for table in defense_tables(data.cells) for cid in table["cell_ids"]}
    return shown
