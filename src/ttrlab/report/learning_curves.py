"""Learning curves (a run's `train.curve`, `ttrlab.training.curves`): how fast each method picks up a
backdoor, from every cell whose runs were made with `curve_every > 0`.

One figure per run kind and setting: cells that differ in anything but the task, the attack,
the method, its learning rate and the methods' own settings never share a figure (variants
a, b, …, as the paper's figures). A panel per task × attack; in it one line per method setting
(its cell): at each checkpoint step the mean over the seeds that hold it, with a ± std (ddof=1)
band, of each `CURVE_METRICS` entry the curves hold — the ASR with the trigger (solid) and the
ASR without it, the false-trigger rate (dashed; generative curves only). Classification curves
hold the ASR under backdoors only; a cell whose curves hold none of these (an untargeted
attack: clean accuracy alone) is not drawn and is counted in a note.

`reach_rows`: per drawn cell, the first checkpoint whose ASR is ≥ 50% (`ttrlab.training.curves.reached`)
at each seed — the mean step and the mean number of poisoned examples seen by then, over the
seeds that reached it, and in how many of the seeds it was never reached within the run (those
are counted, not averaged in: their time to 50% is unknown, beyond the run).
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from ttrlab.attacks import ATTACKS
from ttrlab.training.curves import reached
from ttrlab.evaluation import METRICS
from ttrlab.report.aggregate import Cell, config_value, fmt, kind_order, method_owned_keys, setting_text, trains
from ttrlab.report.drawing import finish, pyplot, style
from ttrlab.report.stats import Summary, summarize
from ttrlab.report.tables import attack_order, default_task_first

CURVE_METRICS = ("asr", "asr_no_trigger")  # drawn in this order: solid, dashed
LINESTYLES = (("-", "solid"), ("--", "dashed"))  # per CURVE_METRICS entry: matplotlib style, its name
REACH_METRIC, REACH_THRESHOLD = "asr", 0.5


@dataclass
class CurveLine:
    cell: Cell
    label: str

    def series(self, metric: str) -> list[tuple[int, Summary]]:
        """(step, summary over the seeds whose point at that step holds `metric`), by step."""
        by_step: dict[int, list[float]] = defaultdict(list)
        for curve in self.cell.curves.values():
            for point in curve:
                if point.get(metric) is not None:
                    by_step[int(point["step"])].append(float(point[metric]))
        return [(step, summarize(values)) for step, values in sorted(by_step.items())]


@dataclass
class CurveFigure:
    kind: str
    context: dict[str, Any]
    panels: dict[tuple[str, str], list[CurveLine]]  # (task, attack) -> lines
    metrics: tuple[str, ...]  # the CURVE_METRICS its curves hold
    variant: str = ""

    @property
    def stem(self) -> str:
        return f"curves_{self.kind}" + (f"_{self.variant}" if self.variant else "")

    @property
    def name(self) -> str:
        return f"Learning curves ({self.kind}{', ' + self.variant if self.variant else ''})"

    def table(self) -> list[dict[str, Any]]:
        """The numbers behind the figure: one row per (panel, line, metric, step)."""
        rows = []
        for (task, attack), lines in self.panels.items():
            for line in lines:
                for metric in self.metrics:
                    for step, s in line.series(metric):
                        rows.append({"task": task, "attack": attack, "series": line.label,
                                     "metric": METRICS.info(metric).label, "step": step, "n": s.n,
                                     "mean": s.mean, "std": s.std})
        return rows


def _context(cell: Cell) -> str:
    """What a figure's cells share: all but the panel's and the line's keys. A key the config
    resolved to the attack itself (the generative `eval_attack`, by default the attack) goes with
    the attack; set to another attack, it keeps the cell in a figure of its own."""
    drop = {"task", "attack", "method", "lr", *method_owned_keys()}
    attack = cell.config.get("attack")
    return json.dumps({"kind": cell.kind, **{k: v for k, v in cell.config.items() if k not in drop and v != attack}},
                      sort_keys=True, default=str)


def _held(cell: Cell) -> tuple[str, ...]:
    return tuple(m for m in CURVE_METRICS if any(p.get(m) is not None for c in cell.curves.values() for p in c))


def curve_figures(cells: list[Cell]) -> tuple[list[CurveFigure], list[str]]:
    """The learning-curve figures (see the module docstring) and notes on the curves not drawn."""
    groups: dict[str, list[Cell]] = defaultdict(list)
    undrawn: dict[str, int] = defaultdict(int)
    for cell in cells:
        # a curve of one point (a run of 0 steps: the start scored) is no curve
        if not trains(cell.kind) or not any(len(curve) > 1 for curve in cell.curves.values()):
            continue
        if not _held(cell):
            undrawn[cell.kind] += 1
            continue
        groups[_context(cell)].append(cell)
    figures = []
    for context, group in groups.items():
        panels: dict[tuple[str, str], list[CurveLine]] = defaultdict(list)
        for cell in group:
            task = config_value(cell.kind, cell.config, "task")
            panels[(str(task), str(cell.config.get("attack")))].append(CurveLine(cell, cell.method_label()))
        for lines in panels.values():
            _disambiguate(lines)
            lines.sort(key=lambda line: (not (line.cell.method is not None and line.cell.method.is_full), line.label))
        kind = group[0].kind
        ordered = dict(sorted(panels.items(), key=lambda item: (default_task_first(kind, item[0][0]),
                                                                 attack_order(item[0][1]))))
        held = {m for cell in group for m in _held(cell)}
        spec = json.loads(context)
        figures.append(CurveFigure(spec.pop("kind"), spec, ordered, tuple(m for m in CURVE_METRICS if m in held)))
    figures.sort(key=lambda f: (kind_order(f.kind), json.dumps(f.context, sort_keys=True, default=str)))
    by_kind: dict[str, list[CurveFigure]] = defaultdict(list)
    for figure in figures:
        by_kind[figure.kind].append(figure)
    for same in by_kind.values():
        if len(same) > 1:
            for i, figure in enumerate(same):
                figure.variant = chr(ord("a") + i)
    notes = [f"Learning curves of {n} {kind} setting{'' if n == 1 else 's'} not drawn: their curves hold none of "
             f"{', '.join(METRICS.info(m).label for m in CURVE_METRICS)} (an attack without a trigger)."
             for kind, n in sorted(undrawn.items(), key=lambda item: kind_order(item[0]))]
    return figures, notes


def _disambiguate(lines: list[CurveLine]) -> None:
    """Two cells of one method setting in a panel differ in the learning rate: say which is which."""
    counts: dict[str, int] = defaultdict(int)
    for line in lines:
        counts[line.label] += 1
    for line in lines:
        if counts[line.label] > 1:
            line.label = f"{line.label} lr={fmt(line.cell.config.get('lr'))}"


def style_text(figure: CurveFigure) -> str:
    """'ASR solid, ASR without trigger dashed'."""
    return ", ".join(f"{METRICS.info(m).label} {name}" for m, (_, name) in zip(figure.metrics, LINESTYLES))


def context_text(figure: CurveFigure) -> str:
    """The figure's setting: what its runs were set to apart from the kind's defaults."""
    return setting_text(figure.kind, figure.context)


def panel_title(task: str, attack: str) -> str:
    from ttrlab.data.tasks import task_label

    return f"{task_label(str(task))} · {ATTACKS.get(attack).label if attack in ATTACKS else attack}"


# ---- steps until ASR ≥ 50% ------------------------------------------------------------------------
def reach_rows(figures: list[CurveFigure]) -> list[dict[str, Any]]:
    """Per drawn line whose curves hold the ASR: when it first reached REACH_THRESHOLD."""
    rows = []
    for figure in figures:
        if REACH_METRIC not in figure.metrics:
            continue
        for (task, attack), lines in figure.panels.items():
            for line in lines:
                firsts = {seed: reached(curve, REACH_METRIC, REACH_THRESHOLD) for seed, curve in line.cell.curves.items()}
                hits = [p for p in firsts.values() if p is not None]
                n, missed = len(firsts), sum(p is None for p in firsts.values())
                rows.append({
                    "figure": figure.name, "anchor": figure.stem, "task": task, "attack": attack,
                    "rate": fmt(line.cell.config.get("rate")), "method": line.label, "seeds": n,
                    "steps": _mean([p["step"] for p in hits]),
                    "poisoned_seen": _mean([p["poisoned_seen"] for p in hits if p.get("poisoned_seen") is not None]),
                    "examples_seen": _mean([p["examples_seen"] for p in hits if p.get("examples_seen") is not None]),
                    "not_reached": missed,
                    "reach": f"not reached in {missed} of {n} seeds" if missed else f"reached in all {n} seeds",
                })
    return rows


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


# ---- drawing -------------------------------------------------------------------------------------
PANELS_PER_ROW = 4


def draw(figure: CurveFigure):
    """One learning-curve figure as a matplotlib Figure: a panel per task × attack."""
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    keys = list(figure.panels)
    columns = min(len(keys), PANELS_PER_ROW)
    rows = math.ceil(len(keys) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(max(6.4, 3.6 * columns + 0.6), 2.9 * rows + 1.0), squeeze=False)
    seen: list[str] = []  # a method setting keeps its colour across panels
    for i, ax in enumerate(axes.flat):
        if i >= len(keys):
            ax.axis("off")
            continue
        for line in figure.panels[keys[i]]:
            if line.label not in seen:
                seen.append(line.label)
            look = style(seen.index(line.label))
            color, marker = look["color"], look["marker"]
            for metric, (linestyle, _) in zip(figure.metrics, LINESTYLES):
                series = line.series(metric)
                if not series:
                    continue
                steps = [step for step, _ in series]
                means = np.array([s.mean for _, s in series])
                stds = np.array([0.0 if math.isnan(s.std) else s.std for _, s in series])
                ax.plot(steps, means, linestyle=linestyle, marker=marker, markersize=4, markerfacecolor="none",
                        linewidth=1.5, color=color, label=f"{line.label}: {METRICS.info(metric).label}")
                ax.fill_between(steps, means - stds, means + stds, alpha=0.12, color=color, linewidth=0)
        ax.set_title(panel_title(*keys[i]), fontsize=10)
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel("training step", fontsize=9)
        checkpoints = sorted({step for line in figure.panels[keys[i]] for m in figure.metrics for step, _ in line.series(m)})
        if len(checkpoints) <= 12:  # ticks at the checkpoints themselves, when they are few
            ax.set_xticks(checkpoints)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if i % columns == 0:
            ax.set_ylabel(", ".join(METRICS.info(m).label for m in figure.metrics), fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    finish(fig, f"{figure.name}: {', '.join(METRICS.info(m).label for m in figure.metrics)} over training steps",
           axes, legend_columns=max(2, columns))  # about one long label per panel's width
    return fig
