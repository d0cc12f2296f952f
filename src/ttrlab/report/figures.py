"""The paper's figures (Section 4 and Appendix E.4), from whatever the database holds.

Each figure is declared as data (`paper_figures.yaml`, read into `FIGURES`): its x axis
(poisoning rate, LoRA rank or the init variance scale k), and its rows of panels (an attack
*family* and a metric); columns are tasks.
Points are mean ± standard deviation (ddof=1) over seeds, as the paper's shaded bands.

| figure | x        | rows (family: metric on which test set)                          | series            |
|--------|----------|------------------------------------------------------------------|-------------------|
| 1      | rate     | untargeted: clean accuracy                                       | FF vs LoRA        |
| 2      | rate     | backdoor: triggered accuracy, ASR                                | FF vs LoRA        |
| 4      | rank     | untargeted: clean accuracy; backdoor: triggered accuracy         | LoRA clean vs poisoned (FF dashed) |
| 5      | k        | untargeted: clean accuracy; backdoor: triggered accuracy         | LoRA clean vs poisoned (FF dashed) |
| 6      | rate     | untargeted: clean accuracy, precision, recall, F1                | FF vs LoRA        |
| 7      | rate     | backdoor: triggered accuracy, precision, recall, F1, ASR         | FF vs LoRA        |
| 8      | rate     | backdoor: untriggered (clean) accuracy, precision, recall, F1    | FF vs LoRA        |
| 9, 10  | rank     | untargeted clean / backdoor triggered, four metrics (+ ASR)      | as Fig. 4         |
| 11, 12 | k        | untargeted clean / backdoor triggered, four metrics (+ ASR)      | as Fig. 5         |

A figure is drawn once per attack of its families that the database holds poisoned runs of:
with the paper's attacks (`paper_attacks` of the YAML file) it keeps the paper's number (`fig2`); every
other attack of the family is a variant labelled with it (`fig2_cl_bpa`, only its family's rows).
The x = 0 point of a row is clean training (rate 0 or no attack): any clean run for an
untargeted row (clean accuracy does not depend on the attack), only the same attack's rate-0
runs for a backdoor row (its triggered test set is that attack's) — `baseline_needs_same_attack`
of the attack's family.

Where this departs from the paper's plots: clean training is drawn as the x = 0 point of the rate
figures; in the rate figures one setting of each non-full method is drawn — the one with the most
rates in the database, then the kind's default (the paper's text uses r = 8, α = 16); for the
rank/variance figures, the full method at the same attack and rate is a dashed horizontal line.
A figure needs one series with two or more x values; otherwise it is skipped with a note. Runs
that differ in anything else (model, data size, steps, ...) go to separate figure variants
(`fig1a`, `fig1b`), never into one line.
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from importlib import resources
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ttrlab.attacks import ATTACKS, FAMILIES, AttackFamily
from ttrlab.data.tasks import TASKS, task_label
from ttrlab.evaluation import METRICS
from ttrlab.methods import INIT_STRATEGIES, METHODS, full_method
from ttrlab.report.aggregate import (
    cell_config,
    cell_id,
    is_clean,
    is_default_setting,
    is_stale,
    method_label,
    method_owned_keys,
    task_type,
    trains,
)
from ttrlab.report.drawing import finish, pyplot, style
from ttrlab.report.stats import summarize
from ttrlab.sweep.store import StoredRun


@dataclass(frozen=True, eq=False)
class Row:
    family: AttackFamily
    metric: str  # flat metric name, e.g. "clean.accuracy"

    def label(self, attack: str) -> str:
        return f"{ATTACKS.get(attack).label}: {METRICS.info(self.metric).label}"


@dataclass(frozen=True, eq=False)
class FigureSpec:
    id: str
    number: int
    x: str  # "rate", or a method setting: "rank" | "init_scale"
    rows: tuple[Row, ...]
    title: str
    paper_attacks: tuple[str, ...]  # the attacks the paper drew it with
    x_label: str = ""
    x_scale: str = "linear"  # "linear" | "log" | "log2" (powers of two, ticks at the values drawn)
    task_type: str = "classification"
    fixed: tuple[str, ...] = ()  # method settings that must be at their default (k: the init strategy)

    @property
    def series_by_method(self) -> bool:
        return self.x == "rate"

    def families(self) -> set[str]:
        return {row.family.name for row in self.rows}


def default_scale(method, config: dict[str, Any]) -> float | None:
    """The init variance scale k of a run that left it unset: its init strategy's own (peft's
    Kaiming-uniform draws Var(A) = 1/(3n), k = 1/3), None where the strategy has no k form."""
    init = config.get("init", getattr(method.settings(), "init", None)) if method.settings is not None else None
    return INIT_STRATEGIES.get(init).default_k if init in INIT_STRATEGIES else None


def _read_figures() -> tuple[FigureSpec, ...]:
    """paper_figures.yaml, its families, metrics and attacks checked against the registries."""
    import yaml

    data = yaml.safe_load(resources.files("ttrlab").joinpath("report/paper_figures.yaml").read_text(encoding="utf-8"))
    families = {family.name: family for family in FAMILIES}
    attacks = tuple(ATTACKS.get(name).name for name in data["paper_attacks"])
    specs = []
    for entry in data["figures"]:
        rows = tuple(Row(families[row["family"]], METRICS.info(metric).name)
                     for row in entry["rows"] for metric in row["metrics"])
        axis = data["axes"][entry["x"]]
        specs.append(FigureSpec(entry["id"], int(entry["number"]), entry["x"], rows, entry["title"], attacks,
                                axis["label"], axis.get("scale", "linear"), fixed=tuple(entry.get("fixed", ()))))
    return tuple(specs)


FIGURES: tuple[FigureSpec, ...] = _read_figures()


# ---- data ----------------------------------------------------------------------------------------
@dataclass
class Line:
    label: str
    full: bool = False  # the full method's line (rate figures) or reference (rank / k figures)
    method: str = ""
    condition: str = ""  # rank / k figures: "clean" or "BPA ρ=0.02"; a line and its reference share it
    default: bool = False  # the method's settings are the kind's defaults
    points: dict[float, dict[Any, float]] = field(default_factory=dict)  # x -> seed -> value
    cells: dict[str, float | None] = field(default_factory=dict)  # the id of each cell drawn in it -> its x (None: a reference)

    def xs(self) -> list[float]:
        return sorted(self.points)

    def summary(self, x: float):
        return summarize(list(self.points[x].values()))


@dataclass
class FigureData:
    spec: FigureSpec
    attacks: dict[str, str]  # family name -> the attack drawn in its rows
    attack_variant: str  # "" for the paper's attacks, else the attack this variant is of
    context: dict[str, Any]
    tasks: list[str]
    panels: dict[tuple[int, str], list[Line]]  # (row index, task) -> lines
    references: dict[tuple[int, str], list[Line]]  # full-method dashed lines (x = 0 holds its values)
    variant: str = ""
    default_x: float | None = None  # the x of the method's default setting, marked on the axis (k figures)
    kind: str = ""  # the run kind of its runs

    def lines(self) -> list[tuple[str, Line]]:
        """(task, line) of every line and reference line drawn."""
        return [(task, line) for (r, task), lines in [*self.panels.items(), *self.references.items()] for line in lines]

    @property
    def cells(self) -> set[str]:
        """The ids of every cell drawn in the figure (its lines and reference lines)."""
        return {cid for lines in (*self.panels.values(), *self.references.values()) for line in lines
                for cid in line.cells}

    @property
    def stem(self) -> str:
        """File name and anchor: fig2, fig2a; fig2_cl_bpa, fig2_cl_bpa_a."""
        if self.attack_variant:
            return f"{self.spec.id}_{self.attack_variant}" + (f"_{self.variant}" if self.variant else "")
        return f"{self.spec.id}{self.variant}"

    @property
    def name(self) -> str:
        """'Fig. 2a', 'Fig. 2 (CL-BPA)'."""
        attack = f" ({ATTACKS.get(self.attack_variant).label})" if self.attack_variant else ""
        return f"Fig. {self.spec.number}{attack}{self.variant}"

    def row_label(self, r: int) -> str:
        row = self.spec.rows[r]
        return row.label(self.attacks[row.family.name])

    def table(self) -> list[dict[str, Any]]:
        """The numbers behind the figure: one row per (panel, line, x)."""
        rows = []
        for (r, task), lines in sorted(self.panels.items()):
            for line in [*lines, *self.references.get((r, task), [])]:
                for x in line.xs():
                    s = line.summary(x)
                    rows.append({"row": self.row_label(r), "task": task, "series": line.label,
                                 "x": x, "n": s.n, "mean": s.mean, "std": s.std})
        return rows


def figure_records(runs: list[StoredRun]) -> list[dict[str, Any]]:
    """The runs figures can use — those of kinds that train (theory runs are the Theory
    section's), stale ones left out (`aggregate.is_stale`) — once: kind, task type, identity
    without the seed (and the id of its cell), metrics, seed."""
    records = []
    for run in runs:
        if not trains(run.kind) or is_stale(run):
            continue
        config = cell_config(run.kind, run.config)
        records.append({"kind": run.kind, "task_type": task_type(run.kind), "config": config,
                        "cell": cell_id(run.kind, config), "metrics": run.metrics, "seed": run.seed})
    return records


def attacks_drawn(spec: FigureSpec, records: list[dict[str, Any]]) -> list[tuple[str, dict[str, str]]]:
    """(variant attack, {family name: attack}) for each drawing of `spec`: the paper's attacks
    ("" variant) where the database holds poisoned runs of them, then every other attack of the
    figure's families that it holds poisoned runs of."""
    present = sorted({r["config"].get("attack") for r in records
                      if r["task_type"] == spec.task_type and not is_clean(r["config"]) and r["config"].get("attack") in ATTACKS})
    families = spec.families()
    paper = {ATTACKS.get(a).family.name: a for a in spec.paper_attacks if a in present}
    drawn = [("", {f: a for f, a in paper.items() if f in families})] if set(paper) & families else []
    for attack in present:
        family = ATTACKS.get(attack).family.name
        if family in families and attack not in spec.paper_attacks:
            drawn.append((attack, {family: attack}))
    return drawn


def _row_rate(row: Row, attacks: dict[str, str], config: dict[str, Any]) -> float | None:
    """The poisoning rate a run stands for in `row` (0: clean training), or None if it does not
    belong there: the row's attack, or clean training (of the same attack for a backdoor)."""
    attack = attacks.get(row.family.name)
    if attack is None:
        return None
    if is_clean(config):
        same = config.get("attack") == attack
        return 0.0 if same or not row.family.baseline_needs_same_attack else None
    return float(config.get("rate") or 0) if config.get("attack") == attack else None


def _x_value(spec: FigureSpec, config: dict[str, Any]) -> float | None:
    """A rank / k figure's x: the run's method must own the setting, the `fixed` ones at default."""
    method = METHODS.get(config["method"]) if config.get("method") in METHODS else None
    if method is None or method.settings is None or spec.x not in method.settings.field_names():
        return None
    defaults = method.settings()
    if any(config.get(name) != getattr(defaults, name) for name in spec.fixed):
        return None  # e.g. other init strategies: Table 2
    value = config.get(spec.x)
    if value is None:  # the k figures fix the init strategy: a run that left k unset drew with its own k
        return default_scale(method, config) if spec.fixed else None
    return float(value)


def _context(spec: FigureSpec, config: dict[str, Any], drop_method_settings: bool) -> str:
    """What must be equal for runs to share a figure: all but the plotted/series keys."""
    drop = {"task", "attack", "rate", "lr", "method", spec.x, *spec.fixed}
    if drop_method_settings:
        drop |= method_owned_keys()
    return json.dumps({k: v for k, v in config.items() if k not in drop}, sort_keys=True, default=str)


def figure_data(spec: FigureSpec, records: list[dict[str, Any]], attacks: dict[str, str],
                attack_variant: str = "") -> list[FigureData]:
    """One FigureData per context that has at least one line with two or more x values."""
    by_context: dict[str, list[dict[str, Any]]] = defaultdict(list)
    full_by_context: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        if record["task_type"] != spec.task_type:
            continue
        config = record["config"]
        method = METHODS.get(config["method"]) if config.get("method") in METHODS else None
        if method is None:
            continue
        if not spec.series_by_method and method.is_full:
            full_by_context[_context(spec, config, True)].append(record)
            continue
        if not spec.series_by_method and _x_value(spec, config) is None:
            continue
        by_context[_context(spec, config, spec.series_by_method)].append(record)

    figures = []
    for ctx, group in by_context.items():
        context = json.loads(ctx)
        panels: dict[tuple[int, str], dict[str, Line]] = defaultdict(dict)
        for record in group:
            config = record["config"]
            for r, row in enumerate(spec.rows):
                rate = _row_rate(row, attacks, config)
                if rate is None or row.metric not in record["metrics"]:
                    continue
                line = _line(spec, record, row, rate, attacks, panels[(r, config["task"])])
                x = rate if spec.series_by_method else _x_value(spec, config)
                line.points.setdefault(x, {}).setdefault(record["seed"], record["metrics"][row.metric])
                line.cells[record["cell"]] = x
        panels = {key: lines for key, lines in panels.items() if lines}
        if spec.series_by_method:
            panels = {key: _keep_one_setting(lines) for key, lines in panels.items()}
        else:  # a rank/variance line needs two x values (single points belong to other figures)
            panels = {key: {label: line for label, line in lines.items() if len(line.points) >= 2}
                      for key, lines in panels.items()}
            panels = {key: lines for key, lines in panels.items() if lines}
        if not any(len(line.points) >= 2 for lines in panels.values() for line in lines.values()):
            continue
        references: dict[tuple[int, str], list[Line]] = {}
        if not spec.series_by_method:
            full_ctx = json.dumps({k: v for k, v in context.items() if k not in method_owned_keys()},
                                  sort_keys=True, default=str)
            references = _full_references(spec, full_by_context.get(full_ctx, []), panels, attacks)
        tasks = sorted({task for _, task in panels}, key=task_order)
        default_x = None
        if spec.fixed:  # the k figures mark the k of the method's default init strategy
            method = next(METHODS.get(line.method) for lines in panels.values() for line in lines.values())
            default_x = default_scale(method, {})
        figures.append(FigureData(spec, attacks, attack_variant, context, tasks,
                                  {key: sorted(lines.values(), key=_series_order) for key, lines in panels.items()},
                                  references, default_x=default_x, kind=group[0]["kind"]))
    if len(figures) > 1:
        for i, figure in enumerate(figures):
            figure.variant = chr(ord("a") + i)
    return figures


def _condition(row: Row, rate: float, attacks: dict[str, str]) -> str:
    return "clean" if rate == 0 else f"{ATTACKS.get(attacks[row.family.name]).label} ρ={rate:g}"


def _line(spec: FigureSpec, record: dict[str, Any], row: Row, rate: float, attacks: dict[str, str],
          lines: dict[str, Line]) -> Line:
    """The series a run belongs to in one panel: its method setting (rate figures) or its
    method and condition (rank / k figures)."""
    config = record["config"]
    method = METHODS.get(config["method"])
    if spec.series_by_method:
        label = method_label(config)
        return lines.setdefault(label, Line(label, method.is_full, method.name,
                                            default=is_default_setting(record["kind"], config)))
    condition = _condition(row, rate, attacks)
    label = f"{method.label} {condition}"
    return lines.setdefault(label, Line(label, False, method.name, condition))


def _keep_one_setting(lines: dict[str, Line]) -> dict[str, Line]:
    """Rate figures draw the full method and one setting per other method: the one with the most
    rates, then the most runs, then the kind's default setting."""
    best: dict[str, Line] = {}
    for line in lines.values():
        if line.full:
            continue
        rank = (len(line.points), sum(len(v) for v in line.points.values()), line.default)
        current = best.get(line.method)
        if current is None or rank > (len(current.points), sum(len(v) for v in current.points.values()), current.default):
            best[line.method] = line
    return {label: line for label, line in lines.items() if line.full or best.get(line.method) is line}


def _full_references(spec: FigureSpec, records: list[dict[str, Any]], panels,
                     attacks: dict[str, str]) -> dict[tuple[int, str], list[Line]]:
    """The full method at each condition a panel draws, as a dashed line."""
    full = full_method()
    out: dict[tuple[int, str], list[Line]] = defaultdict(list)
    for (r, task), lines in panels.items():
        row = spec.rows[r]
        wanted = {line.condition for line in lines.values()}
        refs: dict[str, Line] = {}
        for record in records:
            config = record["config"]
            rate = _row_rate(row, attacks, config)
            if config["task"] != task or rate is None or row.metric not in record["metrics"]:
                continue
            condition = _condition(row, rate, attacks)
            if condition not in wanted:
                continue
            line = refs.setdefault(condition, Line(f"{full.label} {condition}", True, full.name, condition))
            line.points.setdefault(0.0, {}).setdefault(record["seed"], record["metrics"][row.metric])
            line.cells[record["cell"]] = None
        out[(r, task)] = sorted(refs.values(), key=_series_order)
    return out


def task_order(task: str) -> tuple[int, str]:
    """The registered tasks in the order they are declared (the paper's), then the others by name."""
    order = TASKS.registered()
    return (order.index(task) if task in order else len(order), str(task))


def _series_order(line: Line) -> tuple[int, str]:
    """The full method first, then clean lines, then the poisoned ones."""
    return (0 if line.full and not line.condition else 1 if line.condition == "clean" else 2, line.label)


# ---- the paper's figures of one database ---------------------------------------------------------
def paper_figures(records: list[dict[str, Any]]) -> tuple[list[FigureData], list[str]]:
    """Every figure of FIGURES the records can draw, once per attack drawn (`attacks_drawn`), and
    a note for each figure, or attack variant of one, that they cannot."""
    figures, notes = [], []
    for spec in FIGURES:
        drawn_paper, not_drawn = False, []
        for variant, attacks in attacks_drawn(spec, records):
            data = figure_data(spec, records, attacks, variant)
            if not data:
                not_drawn.append(variant)
            drawn_paper |= bool(data) and not variant
            figures.extend(data)
        variants = [v for v in not_drawn if v]
        if not drawn_paper:
            notes.append(f"Fig. {spec.number}: no {_needs(spec)}" + (f" (nor for {', '.join(variants)})" if variants else ""))
        elif variants:
            notes.append(f"Fig. {spec.number} for {', '.join(variants)}: no {_needs(spec)}")
    return figures, notes


def _needs(spec: FigureSpec) -> str:
    """What a figure needs, in words: one series over two or more values of its x."""
    if spec.series_by_method:
        return f"runs of a method and the full method at two or more values of {spec.x_label}"
    return (f"runs of a method owning {spec.x_label} at two or more values of it"
            + (f" ({', '.join(spec.fixed)} at its default)" if spec.fixed else ""))


# ---- drawing -------------------------------------------------------------------------------------
def draw(figure: FigureData):
    """One figure as a matplotlib Figure: rows of panels × a column per task."""
    plt = pyplot()
    spec, rows, tasks = figure.spec, figure.spec.rows, figure.tasks
    used_rows = [r for r in range(len(rows)) if any((r, t) in figure.panels for t in tasks)]
    fig, axes = plt.subplots(len(used_rows), len(tasks), figsize=(max(6.4, 3.6 * len(tasks) + 0.6), 2.7 * len(used_rows) + 0.9),
                             squeeze=False)
    seen: list[str] = []
    for i, r in enumerate(used_rows):
        for j, task in enumerate(tasks):
            ax = axes[i][j]
            lines = figure.panels.get((r, task), [])
            if not lines:
                ax.text(0.5, 0.5, "no runs", ha="center", va="center", transform=ax.transAxes, color="#888")
            for line in lines:
                look = _style(line, seen)
                xs = line.xs()
                stats = [line.summary(x) for x in xs]
                means = np.array([s.mean for s in stats])
                stds = np.array([0.0 if math.isnan(s.std) else s.std for s in stats])
                ax.errorbar(xs, means, yerr=stds, capsize=3, linewidth=1.6, markersize=6, markerfacecolor="none",
                            label=line.label, **look)
                ax.fill_between(xs, means - stds, means + stds, alpha=0.15, color=look["color"], linewidth=0)
            for line in figure.references.get((r, task), []):
                look = _style(line, seen)
                s = line.summary(0.0)
                ax.axhline(s.mean, linestyle="--", linewidth=1.2, color=look["color"], label=line.label)
            _axis(ax, figure, lines)
            if i == 0:
                title = task_label(task)  # a task file by its task's name, not its path
                ax.set_title(title.upper() if len(title) <= 5 else title)
            if j == 0:
                ax.set_ylabel(figure.row_label(r), fontsize=8)
            if i == len(used_rows) - 1:
                ax.set_xlabel(spec.x_label)
    finish(fig, f"{figure.name}: {spec.title}", axes)
    return fig


def _style(line: Line, seen: list[str]) -> dict[str, Any]:
    """Same colour for a condition and its full-method reference line (rank / k figures)."""
    key = line.condition or line.label
    if key not in seen:
        seen.append(key)
    return style(seen.index(key))


def _axis(ax, figure: FigureData, lines: list[Line]) -> None:
    xs = sorted({x for line in lines for x in line.xs()})
    if figure.spec.x_scale == "log2":
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
    elif figure.spec.x_scale == "log":
        ax.set_xscale("log")
    if figure.default_x is not None:
        ax.axvline(figure.default_x, color="#aaa", linestyle=":", linewidth=1)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
