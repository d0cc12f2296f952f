"""The report's tables, from the cells and comparisons of `ttrlab.report.aggregate`:

- **headline**: for every attack the database holds, each non-full method against the full
  method on the metrics the attack leads with for its kind's task type
  (`Attack.headline_metrics`), generative kinds included; one setting per method and setting
  (the kind's default where present, else the one with the most paired seeds);
- **Table 2**: LoRA's init strategies × variance scale k (the method settings that own `init`);
- **Table E.1**: every classification backdoor attack, each method, mean ± std over seeds of the
  triggered-test-set Acc./Pre./Rec./F1 and the ASR, the paper's numbers beside;
- **Table 3**: generative runs per task × attack, each method: ASR, ASR without trigger (the
  false-trigger rate), the backdoor effect (their difference, `ttrlab.report.derived`) and
  utility, the paper's ASR beside the rows of its task (jailbreak); the paired FF-vs-LoRA tests
  of these rows are `ttrlab.report.paired`.

The paper's numbers live in `paper_numbers.yaml` (with their source); a row gets them when the
paper has a row for its attack, method and — where the paper's row names one — task, and the
run was poisoned (rate > 0). A stored config without a key the paper's row names (a generative
document written before tasks existed) counts with its kind's default (`config_value`).
"""
from __future__ import annotations

import math
from collections import defaultdict
from functools import lru_cache
from importlib import resources
from typing import Any

from ttrlab.attacks import ATTACKS
from ttrlab.data.tasks import task_label
from ttrlab.evaluation import METRICS
from ttrlab.methods import METHODS
from ttrlab.report.aggregate import (
    Cell,
    ComparisonRow,
    comparison_key,
    config_value,
    fmt,
    interval_text,
    is_default_setting,
    kind_order,
    task_type,
    trains,
)
from ttrlab.report.figures import default_scale, task_order
from ttrlab.report.learned import LearnedRule
from ttrlab.report.stats import Summary, summarize

TABLE_E1_METRICS = ("triggered.accuracy", "triggered.precision", "triggered.recall", "triggered.f1", "asr")
TABLE_3_METRICS = ("asr", "asr_no_trigger", "backdoor_effect", "utility_perplexity", "utility_rouge_l")
TABLE_3_TASK_TYPE = "generation"
PAPER_MATCH = ("attack", "method", "task")  # a paper row matches a cell on those of these keys it names
TABLE2_METRICS = ("accuracy", "precision", "recall", "f1")


# ---- the paper's numbers ------------------------------------------------------------------------
@lru_cache(maxsize=None)
def paper_numbers() -> dict[str, Any]:
    """paper_numbers.yaml, its attack and method names checked against the registries."""
    import yaml

    data = yaml.safe_load(resources.files("ttrlab").joinpath("report/paper_numbers.yaml").read_text(encoding="utf-8"))
    for row in data["table_2"]["rows"]:
        if len(row["mean"]) != len(data["table_2"]["metrics"]):
            raise ValueError(f"paper_numbers.yaml table_2: row {row} does not have one value per metric")
    for table in ("table_e1", "table_3"):
        for row in data[table]["rows"]:
            ATTACKS.get(row["attack"])
            METHODS.get(row["method"])
            if len(row["mean"]) != len(data[table]["metrics"]) or len(row.get("std", row["mean"])) != len(row["mean"]):
                raise ValueError(f"paper_numbers.yaml {table}: row {row} does not have one value per metric")
    return data


def paper_row(table: str, cell: Cell) -> dict[str, Any] | None:
    """The paper's row of `table` that agrees with the cell on every `PAPER_MATCH` key it names."""
    for row in paper_numbers()[table]["rows"]:
        if all(row[key] == config_value(cell.kind, cell.config, key) for key in PAPER_MATCH if key in row):
            return row
    return None


def paper_value(table: str, row: dict[str, Any] | None, metric: str) -> str:
    """'91.78 ± 0.47' — the paper's number of `metric` in that row, or ''."""
    metrics = paper_numbers()[table]["metrics"]
    if row is None or metric not in metrics:
        return ""
    i = metrics.index(metric)
    mean = f"{row['mean'][i]:.2f}"
    return f"{mean} ± {row['std'][i]:.2f}" if "std" in row else mean


def paper_table2_row(init: str, k: float | None, poisoned: bool) -> dict[str, Any] | None:
    """Table 2's row of the paper for an init strategy at variance scale k (the paper prints 0.33
    for 1/3), clean or backdoored (the paper's 0% / 0.15%, whatever rate was run here)."""
    for row in paper_numbers()["table_2"]["rows"]:
        if row["init"] == init and k is not None and abs(row["k"] - float(k)) < 0.01 and (row["rate"] > 0) == poisoned:
            return row
    return None


def pm(summary: Summary | None, percent: bool = True) -> str:
    """Mean ± std (ddof=1) of a cell, in % for shares; the mean alone for one seed."""
    if summary is None or summary.n == 0:
        return "–"
    scale, digits = (100.0, 2) if percent else (1.0, 3)
    if math.isnan(summary.std):
        return f"{scale * summary.mean:.{digits}f}"
    return f"{scale * summary.mean:.{digits}f} ± {scale * summary.std:.{digits}f}"


def attack_order(attack: str) -> tuple[int, str]:
    """The paper's row order (Table E.1, Table 3), then the other attacks by name."""
    order = [r["attack"] for table in ("table_e1", "table_3") for r in paper_numbers()[table]["rows"]]
    return (order.index(attack) if attack in order else len(order), attack)


def _poisoned(cell: Cell) -> bool:
    return cell.rate > 0


# ---- headline -----------------------------------------------------------------------------------
def headline_rows(comparisons: list[ComparisonRow], rule: LearnedRule) -> list[dict[str, Any]]:
    """One row per attack × setting × headline metric (see the module docstring); the rows where
    either arm did not learn the task (`rule`) are marked and come last."""
    chosen: dict[tuple, list[ComparisonRow]] = defaultdict(list)
    for c in comparisons:
        attack = c.cell.config.get("attack")
        if attack not in ATTACKS or c.metric not in ATTACKS.get(attack).headline_metrics(task_type(c.cell.kind)):
            continue
        chosen[(comparison_key(c.cell), c.cell.config.get("method"), c.full.id, c.metric)].append(c)
    rows = []
    for candidates in chosen.values():
        c = max(candidates, key=lambda r: (is_default_setting(r.cell.kind, r.cell.config), r.result.n_pairs, r.cell.id))
        config, r, info = c.cell.config, c.result, METRICS.info(c.metric)
        rows.append({
            "kind": c.cell.kind, "task": task_label(config.get("task", "–")), "model": config.get("model"),
            "attack": config.get("attack"), "rate": fmt(config.get("rate")), "metric": info.label,
            "direction": {True: "↑", False: "↓", None: "–"}[info.higher_is_better],
            "method": c.cell.method_label(), "full": c.full.method_label(),
            "mean_method": fmt(r.mean_a), "mean_full": fmt(r.mean_b),
            "difference": "–" if math.isnan(r.paired_difference) else f"{r.paired_difference:+.4f}",
            "ci": interval_text(r.n_pairs, r.ci_low, r.ci_high),
            "pairs": r.n_pairs, "p": fmt(r.p_sign_flip, 3), "p_floor": fmt(r.p_floor, 4), "mdd": fmt(r.mdd),
            "welch_p": fmt(r.welch_p, 3), "verdict": r.verdict, "sig": r.significant, "better": c.better(),
            "not_learned": rule.failed(c.cell, c.full) or "",
            # kind and model first: the page heads each (kind, model) group of rows once
            "_order": (kind_order(c.cell.kind), str(config.get("model")), str(config.get("task")),
                       attack_order(str(config.get("attack"))),
                       c.cell.rate, c.cell.method_label(), c.metric),
        })
    rows.sort(key=lambda row: (bool(row["not_learned"]), row.pop("_order")))
    return rows


def attacks_without_comparison(cells: list[Cell], comparisons: list[ComparisonRow]) -> list[str]:
    """Attacks of training kinds in the database that no method-vs-full pair covers."""
    compared = {c.cell.config.get("attack") for c in comparisons}
    held = {cell.config.get("attack") for cell in cells if trains(cell.kind)}
    return [f"{ATTACKS.get(a).label} ({a})" if a in ATTACKS and ATTACKS.get(a).label != a else str(a)
            for a in sorted(str(a) for a in held - compared if a is not None)]


# ---- Table 2 ------------------------------------------------------------------------------------
def table2_rows(cells: list[Cell], rule: LearnedRule) -> list[dict[str, Any]]:
    """Table 2: a method with an init strategy (LoRA) per strategy × variance scale k × poisoning
    rate, mean ± std of Acc, Pre, Rec, F1 — on triggered test data for backdoor attacks (the
    paper's table is the BPA setting, rates 0% and 0.15%), on clean test data otherwise. Only
    tasks where a strategy other than the method's default was run are listed."""
    rows = []
    for cell in cells:
        method, config = cell.method, cell.config
        if not trains(cell.kind) or task_type(cell.kind) != "classification" or method is None \
                or method.settings is None or "init" not in method.settings.field_names():
            continue
        default_init = method.settings().init
        attack = config.get("attack")
        backdoor = attack in ATTACKS and ATTACKS.get(attack).is_backdoor()
        test_set = "triggered" if backdoor else "clean"
        init, k = config.get("init", default_init), config.get("init_scale")
        row = {"task": task_label(config.get("task")), "init": init, "default_init": init == default_init,
               "k": default_scale(method, config) if k is None and init == default_init else k, "attack": attack,
               "rate": cell.rate, "rank": config.get("rank"), "test set": test_set, "cell": cell.id,
               "not_learned": rule.failed(cell) or ""}
        for metric in TABLE2_METRICS:
            s = cell.summaries.get(f"{test_set}.{metric}") or summarize([])
            row["n"] = max(row.get("n", 0), s.n)
            row[metric] = s
        rows.append(row)
    tasks_with_others = {row["task"] for row in rows if not row["default_init"]}
    rows = [row for row in rows if row["task"] in tasks_with_others]
    return sorted(rows, key=lambda r: (task_order(str(r["task"])), r["init"], r["k"] if r["k"] is not None else -1,
                                       str(r["attack"]), r["rate"], str(r["cell"])))


# ---- Table E.1 and Table 3 ----------------------------------------------------------------------
def _paper_table_rows(cells: list[Cell], table: str, task: str, metrics: tuple[str, ...], wanted, rule: LearnedRule,
                      poisoned_only: bool = False) -> list[dict[str, Any]]:
    """One row per cell of a training kind of `task` type under an attack `wanted` accepts; with
    `poisoned_only`, only attacks the database holds poisoned runs of (their rate-0 runs stay,
    as the clean reference)."""
    chosen = [cell for cell in cells
              if task_type(cell.kind) == task and trains(cell.kind) and cell.method is not None
              and cell.config.get("attack") in ATTACKS and wanted(ATTACKS.get(cell.config["attack"]))]
    if poisoned_only:
        attacked = {cell.config["attack"] for cell in chosen if _poisoned(cell)}
        chosen = [cell for cell in chosen if cell.config["attack"] in attacked]
    rows = []
    for cell in chosen:
        attack = cell.config["attack"]
        paper = paper_row(table, cell) if _poisoned(cell) else None
        task = config_value(cell.kind, cell.config, "task")
        row = {"kind": cell.kind, "attack": attack, "paper_label": paper["label"] if paper else "",
               "rate": fmt(cell.config.get("rate")), "method": cell.method_label(), "task": "–" if task is None else task,
               "model": cell.config.get("model"), "steps": cell.config.get("max_steps"), "n": len(cell.seeds),
               "cell": cell.id, "values": {}, "paper": {}, "not_learned": rule.failed(cell) or ""}
        for metric in metrics:
            row["values"][metric] = pm(cell.summaries.get(metric), METRICS.info(metric).percent)
            row["paper"][metric] = paper_value(table, paper, metric)
        row["_order"] = (kind_order(cell.kind), default_task_first(cell.kind, row["task"]), attack_order(attack), cell.rate,
                         not cell.method.is_full, row["method"], cell.id)
        rows.append(row)
    rows.sort(key=lambda r: r.pop("_order"))
    return rows


def table_e1_rows(cells: list[Cell], rule: LearnedRule) -> list[dict[str, Any]]:
    """Every classification backdoor attack the database holds poisoned runs of, every method,
    mean ± std over seeds (in %)."""
    return _paper_table_rows(cells, "table_e1", "classification", TABLE_E1_METRICS,
                             lambda attack: attack.is_backdoor() and "classification" in attack.task_types, rule,
                             poisoned_only=True)


def table3_rows(cells: list[Cell], rule: LearnedRule) -> list[dict[str, Any]]:
    """Generative runs per task × attack: ASR, ASR without trigger, the backdoor effect, utility
    (perplexity, ROUGE-L), mean ± std over seeds."""
    return _paper_table_rows(cells, "table_3", TABLE_3_TASK_TYPE, TABLE_3_METRICS, lambda attack: True, rule)


def default_task_first(kind: str, task: Any) -> tuple[bool, str]:
    """The kind's default task first (the generative kind's: the paper's jailbreak), then by name."""
    return (str(task) != str(config_value(kind, {}, "task")), str(task))


def metric_labels(metrics: tuple[str, ...]) -> list[dict[str, Any]]:
    """Column heads of a table: label, unit and direction of each metric."""
    out = []
    for metric in metrics:
        info = METRICS.info(metric)
        arrow = {True: " ↑", False: " ↓", None: ""}[info.higher_is_better]
        out.append({"metric": metric, "label": info.label + (" (%)" if info.percent else "") + arrow,
                    "summary": info.summary})
    return out
