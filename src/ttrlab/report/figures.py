"""The paper's figures (Section 4 and Appendix E.4), from whatever the database holds.

Each figure is declared as data (`FIGURES`): its x axis (poisoning rate, LoRA rank or the init
variance scale k), and its rows of panels (an attack *family* and a metric); columns are tasks.
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
with the paper's attacks (UPA, BPA: `paper_attacks`) it keeps the paper's number (`fig2`); every
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ttrlab.attacks import ATTACKS, BACKDOOR, UNTARGETED, AttackFamily
from ttrlab.data.tasks import task_label
from ttrlab.evaluation import METRICS
from ttrlab.methods import METHODS, full_method
from ttrlab.report.aggregate import (
    cell_config,
    is_default_setting,
    is_stale,
    method_label,
    method_owned_keys,
    task_type,
    trains,
)
from ttrlab.report.matching import is_clean
from ttrlab.report.stats import summarize

KAIMING_DEFAULT_K = 1.0 / 3.0  # peft's Kaiming-uniform: Var(A) = 1/(3 n), LoRA's default init


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
    paper_attacks: tuple[str, ...] = ("upa", "bpa")  # the attacks the paper drew it with
    task_type: str = "classification"
    x_when_unset: float | None = None  # the x of a run whose setting is None (k: the init's own)
    fixed: tuple[str, ...] = ()  # method settings that must be at their default (k: the init strategy)

    @property
    def series_by_method(self) -> bool:
        return self.x == "rate"

    def families(self) -> set[str]:
        return {row.family.name for row in self.rows}


def _rows(family: AttackFamily, test_set: str, asr: bool = False) -> tuple[Row, ...]:
    rows = tuple(Row(family, f"{test_set}.{m}") for m in ("accuracy", "precision", "recall", "f1"))
    return rows + ((Row(family, "asr"),) if asr else ())


_K = dict(x_when_unset=KAIMING_DEFAULT_K, fixed=("init",))
FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec("fig1", 1, "rate", (Row(UNTARGETED, "clean.accuracy"),), "Untargeted poisoning: FF vs LoRA over poisoning rates"),
    FigureSpec("fig2", 2, "rate", (Row(BACKDOOR, "triggered.accuracy"), Row(BACKDOOR, "asr")), "Backdoor poisoning: FF vs LoRA over poisoning rates"),
    FigureSpec("fig4", 4, "rank", (Row(UNTARGETED, "clean.accuracy"), Row(BACKDOOR, "triggered.accuracy")), "Effect of LoRA's rank under untargeted and backdoor poisoning"),
    FigureSpec("fig5", 5, "init_scale", (Row(UNTARGETED, "clean.accuracy"), Row(BACKDOOR, "triggered.accuracy")), "Effect of the initialization variance scale k (Var(A) = k/n) under untargeted and backdoor poisoning", **_K),
    FigureSpec("fig6", 6, "rate", _rows(UNTARGETED, "clean"), "Untargeted poisoning: FF vs LoRA, all metrics"),
    FigureSpec("fig7", 7, "rate", _rows(BACKDOOR, "triggered", asr=True), "Backdoor poisoning: FF vs LoRA, all metrics on triggered test data"),
    FigureSpec("fig8", 8, "rate", _rows(BACKDOOR, "clean"), "Backdoor poisoning: FF vs LoRA on untriggered test data"),
    FigureSpec("fig9", 9, "rank", _rows(UNTARGETED, "clean"), "Effect of rank under untargeted poisoning, all metrics"),
    FigureSpec("fig10", 10, "rank", _rows(BACKDOOR, "triggered", asr=True), "Effect of rank under backdoor poisoning, all metrics"),
    FigureSpec("fig11", 11, "init_scale", _rows(UNTARGETED, "clean"), "Effect of init variance under untargeted poisoning, all metrics", **_K),
    FigureSpec("fig12", 12, "init_scale", _rows(BACKDOOR, "triggered", asr=True), "Effect of init variance under backdoor poisoning, all metrics", **_K),
)


# ---- data ----------------------------------------------------------------------------------------
@dataclass
class Line:
    label: str
    full: bool = False  # the full method's line (rate figures) or reference (rank / k figures)
    method: str = ""
    condition: str = ""  # rank / k figures: "clean" or "BPA ρ=0.02"; a line and its reference share it
    default: bool = False  # the method's settings are the kind's defaults
    points: dict[float, dict[Any, float]] = field(default_factory=dict)  # x -> seed -> value

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


def figure_records(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs figures can use — those of kinds that train (theory runs are the Theory
    section's), stale ones left out (`aggregate.is_stale`) — once: kind, task type, identity
    without the seed, metrics, seed."""
    return [{"kind": run["kind"], "task_type": task_type(run["kind"]), "config": cell_config(run["kind"], run["config"]),
             "metrics": run["metrics"], "seed": run["config"].get("seed")} for run in runs
            if trains(run["kind"]) and not is_stale(run)]


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
    return spec.x_when_unset if value is None else float(value)


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
        figures.append(FigureData(spec, attacks, attack_variant, context, tasks,
                                  {key: sorted(lines.values(), key=_series_order) for key, lines in panels.items()},
                                  references))
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
        out[(r, task)] = sorted(refs.values(), key=_series_order)
    return out


TASK_ORDER = ("sst2", "cola", "qnli", "qqp", "rte", "mrpc")


def task_order(task: str) -> tuple[int, str]:
    return (TASK_ORDER.index(task) if task in TASK_ORDER else len(TASK_ORDER), task)


def _series_order(line: Line) -> tuple[int, str]:
    """The full method first, then clean lines, then the poisoned ones."""
    return (0 if line.full and not line.condition else 1 if line.condition == "clean" else 2, line.label)


# ---- drawing -------------------------------------------------------------------------------------
COLORS = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
X_AXIS = {"rate": "poisoning rate ρ", "rank": "LoRA rank r", "init_scale": "init variance scale k (Var(A) = k/n)"}


def render(figure: FigureData, out_dir: Path) -> dict[str, Path]:
    """Draw one figure; write PNG and SVG; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
                style = _style(line, seen)
                xs = line.xs()
                stats = [line.summary(x) for x in xs]
                means = np.array([s.mean for s in stats])
                stds = np.array([0.0 if math.isnan(s.std) else s.std for s in stats])
                ax.errorbar(xs, means, yerr=stds, capsize=3, linewidth=1.6, markersize=6, markerfacecolor="none",
                            label=line.label, **style)
                ax.fill_between(xs, means - stds, means + stds, alpha=0.15, color=style["color"], linewidth=0)
            for line in figure.references.get((r, task), []):
                style = _style(line, seen)
                s = line.summary(0.0)
                ax.axhline(s.mean, linestyle="--", linewidth=1.2, color=style["color"], label=line.label)
            _axis(ax, spec, lines)
            if i == 0:
                title = task_label(task)  # a task file by its task's name, not its path
                ax.set_title(title.upper() if len(title) <= 5 else title)
            if j == 0:
                ax.set_ylabel(figure.row_label(r), fontsize=8)
            if i == len(used_rows) - 1:
                ax.set_xlabel(X_AXIS.get(spec.x, spec.x))
    handles, names = legend_entries(axes)
    fig.legend(handles, names, loc="lower center", ncol=min(len(names), 4), frameon=False, fontsize=9)
    fig.suptitle(f"{figure.name}: {spec.title}", fontsize=11)
    fig.tight_layout(rect=(0, 0.06 + 0.02 * (len(names) > 4), 1, 0.97))
    return save_figure(fig, out_dir, figure.stem)


def legend_entries(axes) -> tuple[list[Any], list[str]]:
    """One legend entry per label over all panels (a figure's shared legend)."""
    handles, names = [], []
    for ax in axes.flat:
        for handle, name in zip(*ax.get_legend_handles_labels()):
            if name not in names:
                handles.append(handle)
                names.append(name)
    return handles, names


def save_figure(fig, out_dir: Path, stem: str) -> dict[str, Path]:
    """A report figure as PNG and SVG (text kept as text, a fixed hash salt: the same figure gives
    the same file); closes it."""
    import matplotlib.pyplot as plt

    from ttrlab.core.io import save_figure as save_atomic
    from ttrlab.theory.figures import save_svg

    paths = {"png": out_dir / f"{stem}.png", "svg": out_dir / f"{stem}.svg"}
    save_atomic(fig, paths["png"], dpi=110)
    save_svg(fig, paths["svg"])
    plt.close(fig)
    return paths


def _style(line: Line, seen: list[str]) -> dict[str, Any]:
    """Same colour for a condition and its full-method reference line (rank / k figures)."""
    key = line.condition or line.label
    if key not in seen:
        seen.append(key)
    i = seen.index(key)
    return {"color": COLORS[i % len(COLORS)], "marker": MARKERS[i % len(MARKERS)]}


def _axis(ax, spec: FigureSpec, lines: list[Line]) -> None:
    xs = sorted({x for line in lines for x in line.xs()})
    if spec.x == "rank":
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
    elif spec.x == "init_scale":
        ax.set_xscale("log")
        ax.axvline(KAIMING_DEFAULT_K, color="#aaa", linestyle=":", linewidth=1)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
