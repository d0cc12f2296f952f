"""Every fine-tuning method against full fine-tuning, setting by setting: the "method vs FF"
tables (one per task × attack × rate that holds the full method and at least two other
methods) and the figure of robustness against trainable-parameter count. A method that did not
learn the task (`report.learned`: the claims' manipulation check, on the training loss of the
setting trained without poison) is marked so: its ASR (a model predicting the target for every
input scores 100%) or its accuracy under poisoning say nothing about robustness.

A table's rows are the full method, then the others by trainable parameters. Each shows the
attack's headline metrics (`Attack.headline_metrics`: clean accuracy under untargeted poisoning,
triggered accuracy and ASR under a backdoor) as mean ± std over seeds, and, per metric, the
method's paired difference from the full method (the same `ComparisonRow` the headline table
uses: paired by seed, "n too small" below `stats.MIN_N` pairs). Trainable parameters are what
the runs recorded (`PreparedModel.trainable_parameters`), so a method's count is the real one
for the model it ran on, head included.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np

from ttrlab.attacks import ATTACKS
from ttrlab.data.tasks import task_label
from ttrlab.evaluation import METRICS
from ttrlab.report.aggregate import (Cell, ComparisonRow, comparison_key, fmt, interval_text, kind_order, markdown_text,
                                     task_type, trains)
from ttrlab.report.drawing import finish, pyplot, style
from ttrlab.report.learned import LearnedRule
from ttrlab.report.tables import attack_order, pm

MIN_OTHER_METHODS = 2  # with one, the headline table already says everything
FIGURE_STEM = "methods_trainable"
CLEAN = "clean.accuracy"


def _headline(cell: Cell) -> tuple[str, ...]:
    attack = cell.config.get("attack")
    if attack not in ATTACKS:
        return ()
    return ATTACKS.get(attack).headline_metrics(task_type(cell.kind) or "")


def _groups(cells: list[Cell]) -> list[tuple[Cell, list[Cell]]]:
    """(full cell, other methods' cells) per setting, others by trainable parameters. Where a
    setting holds several cells of one method (e.g. LoRA at two ranks) each is its own row."""
    by_setting: dict[str, list[Cell]] = defaultdict(list)
    for cell in cells:
        if trains(cell.kind) and cell.method is not None and _headline(cell):
            by_setting[comparison_key(cell)].append(cell)
    groups = []
    for members in by_setting.values():
        full = [c for c in members if c.method.is_full]
        others = [c for c in members if not c.method.is_full]
        if len(full) != 1 or len({c.method.name for c in others}) < MIN_OTHER_METHODS:
            continue
        others.sort(key=lambda c: (c.trainable_parameters or 0, c.method_label()))
        groups.append((full[0], others))
    groups.sort(key=lambda g: (kind_order(g[0].kind), str(g[0].config.get("task")),
                               attack_order(str(g[0].config.get("attack"))), g[0].rate))
    return groups


def _share(cell: Cell) -> str:
    if not cell.trainable_parameters or not cell.total_parameters:
        return "–"
    return f"{100 * cell.trainable_parameters / cell.total_parameters:.3g}%"


def method_tables(cells: list[Cell], comparisons: list[ComparisonRow], rule: LearnedRule) -> list[dict[str, Any]]:
    """The method-vs-FF tables (see the module docstring), ready for the page and Markdown."""
    against = {(c.cell.id, c.full.id, c.metric): c for c in comparisons}
    tables = []
    for full, others in _groups(cells):
        metrics = (CLEAN, *(m for m in _headline(full) if m != CLEAN))
        config = full.config
        rows = []
        for cell in (full, *others):
            row = {"method": cell.method_label(), "lr": fmt(cell.config.get("lr")),
                   "trainable": f"{cell.trainable_parameters:,}" if cell.trainable_parameters else "–", "share": _share(cell),
                   "seeds": len(cell.seeds), "is_full": cell is full, "not_learned": rule.failed(cell) or "",
                   "values": [], "differences": []}
            for metric in metrics:
                row["values"].append(pm(cell.summaries.get(metric)))
                compared = against.get((cell.id, full.id, metric))
                if cell is full or compared is None:
                    row["differences"].append({"text": "–", "ci": "", "sig": False})
                    continue
                r = compared.result
                text = "–" if math.isnan(r.paired_difference) else f"{100 * r.paired_difference:+.2f}"
                row["differences"].append({"text": text, "ci": interval_text(r.n_pairs, 100 * r.ci_low, 100 * r.ci_high),
                                           "sig": r.significant, "verdict": r.verdict})
            rows.append(row)
        attack = ATTACKS.get(config["attack"])
        tables.append({
            "kind": full.kind, "task": task_label(config.get("task")), "model": config.get("model"),
            "not_learned": [r["method"] for r in rows if r["not_learned"]],
            "attack": attack.label, "rate": fmt(config.get("rate")),
            "metrics": [{"name": m, "label": METRICS.info(m).label,
                         "direction": {True: "↑", False: "↓", None: ""}[METRICS.info(m).higher_is_better]} for m in metrics],
            "rows": rows,
        })
    return tables


def method_tables_markdown(tables: list[dict[str, Any]]) -> str:
    """The same tables as Markdown (methods.md beside the report)."""
    parts = []
    for t in tables:
        labels = [f"{m['label']} {m['direction']}".strip() for m in t["metrics"]]
        head = ["method", "lr", "trainable", "share", "seeds", *labels, *(f"Δ {m['label']} vs FF (pp)" for m in t["metrics"])]
        lines = [markdown_text(f"### {t['task']} · {t['model']} · {t['attack']} at rate {t['rate']} ({t['kind']})"), "",
                 "| " + " | ".join(map(markdown_text, head)) + " |", "|" + "---|" * len(head)]
        for r in t["rows"]:
            diffs = [f"{d['text']} {d['ci']}".strip() for d in r["differences"]]
            name = r["method"] + (" (did not learn the task)" if r["not_learned"] else "")
            cells = [name, r["lr"], r["trainable"], r["share"], str(r["seeds"]), *r["values"], *diffs]
            lines.append("| " + " | ".join(map(markdown_text, cells)) + " |")
        if t["not_learned"]:
            lines += ["", f"Did not learn the task (trained without poison, no better fit than a constant predictor): "
                          f"{', '.join(t['not_learned'])}; their other numbers test nothing."]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + ("\n" if parts else "")


def trainable_figure(cells: list[Cell], rule: LearnedRule) -> tuple[Any, list[dict[str, Any]]]:
    """Robustness against trainable parameters: one panel per setting × headline metric, one
    point per method (mean ± std over seeds), x on a log scale. (None, []) when no setting holds
    the full method and two others; else the drawn figure and the numbers drawn."""
    groups = _groups(cells)
    panels = [(full, others, metric) for full, others in groups for metric in _headline(full)]
    if not panels:
        return None, []
    plt = pyplot()
    columns = min(len(panels), 3)
    rows_n = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows_n, columns, figsize=(4.4 * columns, 3.3 * rows_n + 0.9), squeeze=False)
    labels: list[str] = []
    table = []
    for ax, (full, others, metric) in zip(axes.flat, panels):
        for cell in (full, *others):
            summary = cell.summaries.get(metric)
            if summary is None or summary.n == 0 or not cell.trainable_parameters:
                continue
            label = f"{cell.method_label()}, lr {fmt(cell.config.get('lr'))}" + ("" if rule.learned(cell) else " (did not learn)")
            if label not in labels:
                labels.append(label)
            look = style(labels.index(label))
            std = 0.0 if math.isnan(summary.std) else summary.std
            ax.errorbar([cell.trainable_parameters], [summary.mean], yerr=[std], capsize=3, linestyle="none",
                        marker=look["marker"], color=look["color"], markersize=7,
                        markerfacecolor="none" if cell is not full else look["color"], label=label)
            table.append({"panel": _panel_title(full, metric), "method": label, "trainable": cell.trainable_parameters,
                          "n": summary.n, "mean": summary.mean, "std": summary.std})
        ax.set_xscale("log")
        ax.set_title(_panel_title(full, metric), fontsize=9)
        ax.set_xlabel("trainable parameters")
        ax.set_ylabel(f"{METRICS.info(metric).label}", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    finish(fig, "Robustness against trainable parameters, every method (filled: full fine-tuning)", axes,
           legend_size=8)
    return fig, table


def _panel_title(full: Cell, metric: str) -> str:
    c = full.config
    return f"{c.get('task')} · {ATTACKS.get(c['attack']).label} ρ={fmt(c.get('rate'))} · {METRICS.info(metric).label}"


def spearman_note(table: list[dict[str, Any]]) -> list[str]:
    """Per panel, Spearman's rank correlation of the metric with trainable parameters over the
    methods drawn — a description of the points, not a test (few methods, few seeds)."""
    from scipy.stats import spearmanr

    by_panel: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in table:
        by_panel[r["panel"]].append((r["trainable"], r["mean"]))
    notes = []
    for panel, points in by_panel.items():
        if len(points) < 4:
            continue
        x, y = np.array(points).T
        rho = spearmanr(x, y).statistic
        notes.append(f"{panel}: Spearman ρ = {rho:+.2f} over {len(points)} methods")
    return notes
