"""A figure of what each sweep varied, for the sweeps the paper's figures do not draw (a user's own
design: one rate and several methods, a learning-rate or data-size sweep, a task of their own).

The keys a sweep varied are read from its cells (the settings of its runs without the seed): the
keys whose value differs between them. The figure puts
- on x the varied number with the most values (a poisoning rate, a data size, a step count, ...;
  a method's own setting such as LoRA's rank only when nothing else numeric varies: methods that do
  not own it are then dashed reference lines), or, where no number varies, one position per series;
- one series per combination of the other varied keys (the method as it describes itself, with its
  learning rate where that varies too);
- a column per task and a row per metric: the clean task's (`AttackFamily.headline` of the clean
  family) and what each attack of the sweep leads with.
Points are mean ± std (ddof=1) over seeds, as everywhere in the report.
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ttrlab.attacks import CLEAN
from ttrlab.data.tasks import task_label
from ttrlab.evaluation import METRICS
from ttrlab.methods import METHODS
from ttrlab.report.aggregate import Cell, fmt, kind_config, method_owned_keys, task_type
from ttrlab.report.drawing import finish, pyplot, style
from ttrlab.report.figures import task_order
from ttrlab.report.stats import summarize
from ttrlab.report.tables import attack_order

LOG_SPAN = 16  # a positive x axis spanning this factor or more is drawn on a log scale
TASK_KEY = "task"


@dataclass
class Series:
    label: str
    reference: bool = False  # runs of methods without the x setting: a dashed line per panel
    cells: dict[str, tuple[Cell, float | None]] = field(default_factory=dict)  # cell id -> (cell, x)

    def points(self, task: str, metric: str) -> dict[float | None, list[float]]:
        """x -> the per-seed values of `metric` for `task` (one seed's value once)."""
        by_x: dict[float | None, dict[Any, float]] = defaultdict(dict)
        for cell, x in self.cells.values():
            if str(cell.task) == task:
                for seed, value in cell.values.get(metric, {}).items():
                    by_x[x].setdefault(seed, value)
        return {x: list(values.values()) for x, values in by_x.items()}


@dataclass
class VariedFigure:
    sweep: str  # the sweep's name ("" for runs in no sweep)
    kind: str
    varied: list[str]  # every key its cells differ in, in the config's order
    x: str | None  # the key on x; None: one position per series
    tasks: list[str]
    metrics: list[str]
    series: list[Series]
    shared: dict[str, Any]  # the setting every cell shares
    stem: str = ""

    @property
    def name(self) -> str:
        return f"Sweep {self.sweep}" if self.sweep else "Runs in no sweep"

    @property
    def title(self) -> str:
        varied = " × ".join(self.varied) if self.varied else "nothing but the seed"
        return f"{self.name}: {varied}"

    def table(self) -> list[dict[str, Any]]:
        rows = []
        for task in self.tasks:
            for metric in self.metrics:
                for series in self.series:
                    for x, values in sorted(series.points(task, metric).items(), key=lambda item: _x_order(item[0])):
                        s = summarize(values)
                        rows.append({"task": task_label(task), "metric": METRICS.info(metric).label, "series": series.label,
                                     "x": x, "n": s.n, "mean": s.mean, "std": s.std})
        return rows

    def cell_ids(self) -> set[str]:
        return {cid for series in self.series for cid in series.cells}


def varied_figures(cells: list[Cell], sweeps: list[str], drawn: set[str]) -> list[VariedFigure]:
    """One figure per sweep (in `sweeps` order, then the runs in no sweep) and run kind whose cells
    the paper's figures, tables or defenses do not all show (`drawn`: their cell ids)."""
    figures = []
    for name in [*sweeps, ""]:
        members = [c for c in cells if (name in c.sweeps if name else not c.sweeps)]
        by_kind: dict[str, list[Cell]] = defaultdict(list)
        for cell in members:
            by_kind[cell.kind].append(cell)
        for kind, group in by_kind.items():
            if {c.id for c in group} <= drawn:
                continue
            figure = _figure(name, kind, group)
            if figure is not None:
                figure.stem = f"varied_{len(figures) + 1}"
                figures.append(figure)
    return figures


def _figure(sweep: str, kind: str, cells: list[Cell]) -> VariedFigure | None:
    metrics = _metrics(kind, cells)
    if not metrics:
        return None
    fields = kind_config(kind).field_names() if kind_config(kind) is not None else tuple(sorted({k for c in cells for k in c.config}))
    varied = [k for k in fields if len({_text(c.config.get(k)) for c in cells}) > 1]
    if "lr" in varied and all(len({c.config.get("lr") for c in cells if c.method_label() == label}) == 1
                              for label in {c.method_label() for c in cells}):
        varied.remove("lr")  # each method's own rate (a preset's): it varies with the method, not apart from it
    method_keys = {"method", "lr", *method_owned_keys()}
    others = [k for k in varied if k not in method_keys and k != TASK_KEY]
    x = _pick_x(cells, others) or _pick_x(cells, [k for k in varied if k in method_owned_keys()])
    series: dict[str, Series] = {}
    for cell in cells:
        value = cell.config.get(x) if x else None
        label, reference = _label(cell, x, varied, cells)
        entry = series.setdefault(label, Series(label, reference))
        entry.cells[cell.id] = (cell, None if value is None else float(value))
    tasks = sorted({str(c.task) for c in cells}, key=task_order)
    ordered = sorted(series.values(), key=lambda s: (s.reference, _full_first(s), s.label))
    shared = {k: v for k, v in cells[0].config.items() if k not in varied}
    return VariedFigure(sweep, kind, varied, x, tasks, metrics, ordered, shared)


def _metrics(kind: str, cells: list[Cell]) -> list[str]:
    """The clean task's metric(s), then each attack's headline metrics, those the cells hold."""
    kind_type = task_type(kind) or ""
    wanted = list(CLEAN.headline.get(kind_type, ()))
    for attack in sorted({c.attack for c in cells if c.attack is not None}, key=lambda a: attack_order(a.name)):
        wanted += [m for m in attack.headline_metrics(kind_type) if m not in wanted]
    return [m for m in wanted if any(m in c.values for c in cells)]


def _pick_x(cells: list[Cell], keys: list[str]) -> str | None:
    """The numeric key among `keys` with the most distinct values (two or more), the first on ties."""
    best, most = None, 1
    for key in keys:
        values = {c.config.get(key) for c in cells if c.config.get(key) is not None}
        if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) and len(values) > most:
            best, most = key, len(values)
    return best


def _label(cell: Cell, x: str | None, varied: list[str], cells: list[Cell]) -> tuple[str, bool]:
    """(the series label of a cell, whether it is a reference line: a method without setting x)."""
    method = cell.method
    name = method.label if method is not None else str(cell.config.get("method"))
    owned = method_owned_keys()
    if x in owned and (method is None or method.settings is None or x not in method.settings.field_names()):
        return name, True
    parts = []
    if x in owned:  # the method and its other settings that vary, without the one on x
        parts.append(name)
        parts += [f"{k}={_short(cell.config.get(k))}" for k in varied
                  if k in owned and k != x and cell.config.get(k) is not None]
    elif any(k in varied for k in ("method", *owned)):
        parts.append(cell.method_label())
    if "lr" in varied and len({c.config.get("lr") for c in cells if c.method_label() == cell.method_label()}) > 1:
        parts.append(f"lr {fmt(cell.config.get('lr'))}")
    parts += [f"{k}={_short(cell.config.get(k))}" for k in varied
              if k not in ("method", "lr", TASK_KEY, x) and k not in owned]
    return (", ".join(parts) or "runs"), False


def _full_first(series: Series) -> bool:
    return not any(cell.method is not None and cell.method.is_full for cell, _ in series.cells.values())


def _text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _short(value: Any) -> str:
    text = fmt(value) if isinstance(value, float) else str(value)
    return text if len(text) <= 24 else text[:21] + "…"


def _x_order(x: float | None) -> tuple[int, float]:
    return (x is None, 0.0 if x is None else x)


# ---- drawing -------------------------------------------------------------------------------------
def draw(figure: VariedFigure):
    """Rows of metrics × a column per task; lines over x, or one position per series."""
    plt = pyplot()
    rows, columns = len(figure.metrics), len(figure.tasks)
    categorical = figure.x is None
    width = max(6.4, (3.6 + (0.35 * len(figure.series) if categorical else 0)) * columns + 0.6)
    fig, axes = plt.subplots(rows, columns, figsize=(width, 2.7 * rows + 1.2), squeeze=False)
    for i, metric in enumerate(figure.metrics):
        for j, task in enumerate(figure.tasks):
            ax = axes[i][j]
            for k, series in enumerate(figure.series):
                look = style(k)
                points = series.points(task, metric)
                if not points:
                    continue
                if categorical or series.reference:
                    values = [v for vs in points.values() for v in vs]
                    s = summarize(values)
                    if categorical:
                        ax.errorbar([k], [s.mean], yerr=[0.0 if math.isnan(s.std) else s.std], capsize=3, markersize=7,
                                    markerfacecolor="none", linestyle="none", label=series.label, **look)
                    else:
                        ax.axhline(s.mean, linestyle="--", linewidth=1.2, color=look["color"], label=series.label)
                    continue
                xs = sorted((x for x in points if x is not None))
                stats = [summarize(points[x]) for x in xs]
                means = np.array([s.mean for s in stats])
                stds = np.array([0.0 if math.isnan(s.std) else s.std for s in stats])
                ax.errorbar(xs, means, yerr=stds, capsize=3, linewidth=1.6, markersize=6, markerfacecolor="none",
                            label=series.label, **look)
                ax.fill_between(xs, means - stds, means + stds, alpha=0.15, color=look["color"], linewidth=0)
            if categorical:
                ax.set_xticks(range(len(figure.series)), [s.label for s in figure.series], rotation=20, ha="right",
                              fontsize=7)
                ax.set_xlim(-0.6, len(figure.series) - 0.4)
            else:
                xs = sorted({x for s in figure.series for cell, x in s.cells.values() if x is not None})
                if xs and xs[0] > 0 and xs[-1] / xs[0] >= LOG_SPAN:
                    ax.set_xscale("log")
                if i == rows - 1:
                    ax.set_xlabel(figure.x, fontsize=9)
            if i == 0:
                title = str(task_label(task))
                ax.set_title(title.upper() if len(title) <= 5 else title, fontsize=10)
            if j == 0:
                ax.set_ylabel(METRICS.info(metric).label, fontsize=8)
            ax.tick_params(labelsize=8)
            ax.grid(alpha=0.3)
    finish(fig, f"{figure.title} (mean ± std over seeds)", axes)
    return fig
