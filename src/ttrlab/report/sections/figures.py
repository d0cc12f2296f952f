"""The paper's figures drawn from this database (`report.figures`): on the page when at least one
can be drawn, each with the numbers behind it; the figures the runs cannot draw are listed in one
line, with what each needs."""
from __future__ import annotations

from typing import Any

from ttrlab.attacks import ATTACKS
from ttrlab.data.tasks import task_label
from ttrlab.report.aggregate import fmt, setting_text
from ttrlab.report.figures import draw
from ttrlab.report.sections import Section, section


@section
class Figures(Section):
    id = "figures"
    title = "Figures"
    template = "figures.html"

    def build(self, data, folder) -> dict[str, Any] | None:
        figures, notes = data.paper_figures
        if not figures:
            return None
        cells = {cell.id: cell for cell in data.cells}
        drawn = []
        for figure in figures:
            table = figure.table()
            attacks = ", ".join(ATTACKS.get(a).label for a in figure.attacks.values())
            drawn.append({
                "anchor": figure.stem,
                "title": f"{figure.name}.",
                "caption": f"{figure.spec.title} ({attacks}). Mean ± std (ddof=1) over seeds; columns are tasks.",
                "alt": f"{figure.name}: {figure.spec.title} ({attacks})",
                "context": setting_text(figure.kind, figure.context),
                "not_learned": not_learned_text([(task, line.label, line.cells) for task, line in figure.lines()],
                                                cells, data.learned, figure.spec.x),
                **folder.figure(draw(figure), figure.stem, table),
                "x_label": figure.spec.x_label,
                "table": [{**r, "x": fmt(r["x"]), "mean": fmt(r["mean"]), "std": fmt(r["std"])} for r in table],
            })
        return {"figures": drawn, "notes": notes}


def not_learned_text(series, cells, rule, x: str = "") -> str:
    """'cola: FF, LoRA r=8, α=16; sst2: LoRA clean at rank 1' — of `series` ((task, label,
    {cell id: its x}) drawn), those whose cells of that task hold a method that did not learn it
    (`report.learned`), per task; where only some points of a line did not, at which `x` (a
    reference line's cells have no x: it is named whole)."""
    found: dict[str, list[str]] = {}
    for task, label, points in series:
        held = {cid: at for cid, at in points.items() if cid in cells and str(cells[cid].task) == str(task)}
        failed = {at for cid, at in held.items() if rule.failed(cells[cid])}
        if not failed:
            continue
        partial = failed != set(held.values()) and None not in failed
        where = f" at {x} {', '.join(fmt(v) for v in sorted(failed))}" if partial else ""
        labels = found.setdefault(str(task_label(task)), [])
        if label + where not in labels:
            labels.append(label + where)
    return "; ".join(f"{task}: {', '.join(labels)}" for task, labels in found.items())
