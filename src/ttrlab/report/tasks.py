"""What the tasks of a database are, in words, from what their runs recorded: a registered
classification task by the benchmark split it is scored on (GLUE's dev sets, the paper's "test"),
a task file by its name and where its data came from (the file and the dev split its runs were
scored on, or the Hugging Face dataset), a generative task by what its trigger makes the model do."""
from __future__ import annotations

from typing import Any

from ttrlab.data.tasks import TASKS, task_label
from ttrlab.report.aggregate import Cell, task_type, trains
from ttrlab.report.figures import task_order


def describe(cell: Cell) -> str:
    """One task's description, as the runs of `cell` recorded it."""
    data = cell.data or {}
    if data.get("task_file"):
        source = data.get("dev_file") or {}
        hub = data.get("hub") or {}
        if hub.get("path"):
            where = f"Hugging Face dataset {hub['path']}" + (f" ({hub['config']})" if hub.get("config") else "")
            return f"task file {data['task_file']}: {where}, scored on its dev split"
        fmt = f" ({source['format']})" if source.get("format") else ""
        return f"task file {data['task_file']}: scored on its dev split {source.get('path', '–')}{fmt}"
    if task_type(cell.kind) == "generation":
        from ttrlab.kinds.generative.tasks import GENERATIVE_TASKS as GENERATIVE

        if cell.task in GENERATIVE:
            return f"BackdoorLLM test prompts — {GENERATIVE.get(cell.task).summary}"
    if cell.task in TASKS:
        spec = TASKS.get(cell.task)
        if spec.glue_dir is not None:
            return f"the GLUE {spec.glue_dir} dev set (the paper's “test”)"
    return "a task this ttrlab does not know (as stored)"


def task_rows(cells: list[Cell]) -> list[dict[str, Any]]:
    """Each task the training runs of the database hold, once, with its description."""
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for cell in cells:
        if not trains(cell.kind):
            continue
        key = (str(task_type(cell.kind)), str(cell.task))
        if key not in seen:
            seen[key] = {"task": task_label(cell.task), "kind": cell.kind, "about": describe(cell)}
    return [seen[key] for key in sorted(seen, key=lambda k: (k[0], task_order(k[1])))]
