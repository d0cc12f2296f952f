"""Defense efficacy on victims fine-tuned with each method: the report's answer to "does a defense
still work when the victim is trained with LoRA instead of FF?".

One table per task × attack × rate that holds defended runs (`defense` other than none). A row
is a defense; for each victim method it shows ASR and clean accuracy before → after the defense
(both recorded by the defended run itself: `metrics.defense.asr_before`,
`metrics.defense.clean_accuracy_before`, and the defended system's `asr`, `clean.accuracy`; for a
detector that screened a capped subset, the undefended numbers on that subset,
`..._before_evaluated`) and
the detection numbers the run holds (filters: AUROC, precision and recall of the poisoned
examples; detectors: FRR and FAR). The last columns compare each other method's ASR reduction
(before − after) with the full method's, paired by seed — "n too small" below `stats.MIN_N`
pairs, as every comparison in the report.
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from typing import Any

from ttrlab.attacks import ATTACKS
from ttrlab.report.aggregate import Cell, fmt, interval_text, kind_order, markdown_text, method_owned_keys, trains
from ttrlab.report.stats import compare, stable_seed
from ttrlab.report.tables import attack_order, pm

BEFORE_ASR, AFTER_ASR = "defense.asr_before", "asr"
BEFORE_CLEAN, AFTER_CLEAN = "defense.clean_accuracy_before", "clean.accuracy"
# a detector that screens only the first `*_max_inputs` scored inputs records the undefended
# numbers on that subset too: before and after are then compared on the same inputs
ON_SCREENED = "_evaluated"


def _before(cell: Cell, metric: str) -> str:
    screened = metric + ON_SCREENED
    return screened if screened in cell.values else metric
# detection numbers a defended run may hold (metrics.defense.*), in the order shown
DETECTION = (("defense.auroc", "AUROC"), ("defense.precision", "precision"), ("defense.recall", "recall"),
             ("defense.frr", "FRR"), ("defense.far", "FAR"))


def _defense_keys() -> set[str]:
    from ttrlab.defenses import DefenseSettings

    return set(DefenseSettings.field_names())


def _setting(cell: Cell) -> str:
    """Everything but the method, its learning rate, its settings and the defense."""
    drop = {"method", "lr", *method_owned_keys(), *_defense_keys()}
    return json.dumps({"kind": cell.kind, **{k: v for k, v in cell.config.items() if k not in drop}},
                      sort_keys=True, default=str)


def _reduction(cell: Cell) -> dict[Any, float]:
    """Seed → ASR before − after the defense (points the defense took off the attack)."""
    before, after = cell.values.get(_before(cell, BEFORE_ASR), {}), cell.values.get(AFTER_ASR, {})
    return {s: before[s] - after[s] for s in before if s in after and before[s] is not None and after[s] is not None}


def _arrow(cell: Cell, before: str, after: str) -> str:
    return f"{pm(cell.summaries.get(_before(cell, before)))} → {pm(cell.summaries.get(after))}"


def defense_tables(cells: list[Cell]) -> list[dict[str, Any]]:
    """The tables (see the module docstring); [] when the database holds no defended run."""
    from ttrlab.defenses import DEFENSES
    from ttrlab.methods import full_method

    groups: dict[str, list[Cell]] = defaultdict(list)
    for cell in cells:
        defense = cell.config.get("defense")
        if (trains(cell.kind) and cell.method is not None and defense in DEFENSES
                and DEFENSES.get(defense).changes_run and BEFORE_ASR in cell.values):
            groups[_setting(cell)].append(cell)
    full = full_method()
    tables = []
    for members in groups.values():
        methods = sorted({c.method_label(): c.method for c in members}.items(),
                         key=lambda item: (not item[1].is_full, item[0]))
        labels = [label for label, _ in methods]
        full_label = next((label for label, m in methods if m is full), None)
        by_defense: dict[str, dict[str, Cell]] = defaultdict(dict)
        for cell in members:
            by_defense[cell.config["defense"]][cell.method_label()] = cell
        rows = []
        for name in DEFENSES.registered():
            if name not in by_defense:
                continue
            victims = by_defense[name]
            row = {"defense": name, "kind": DEFENSES.get(name).kind, "cells": [], "versus": []}
            for label in labels:
                cell = victims.get(label)
                if cell is None:
                    row["cells"].append(None)
                    continue
                row["cells"].append({
                    "asr": _arrow(cell, BEFORE_ASR, AFTER_ASR), "clean": _arrow(cell, BEFORE_CLEAN, AFTER_CLEAN),
                    "detection": ", ".join(f"{text} {pm(cell.summaries[m], percent=False)}" for m, text in DETECTION
                                           if cell.summaries.get(m) is not None and cell.summaries[m].n),
                    "seeds": len(cell.seeds)})
            for label in labels:
                if label == full_label:
                    continue
                if full_label not in victims or label not in victims:  # keeps the columns aligned
                    row["versus"].append({"method": label, "difference": "–", "ci": "", "pairs": 0, "verdict": "", "sig": False})
                    continue
                r = compare(_reduction(victims[label]), _reduction(victims[full_label]),
                            seed=stable_seed(name, label))
                row["versus"].append({
                    "method": label,
                    "difference": "–" if math.isnan(r.paired_difference) else f"{100 * r.paired_difference:+.2f}",
                    "ci": interval_text(r.n_pairs, 100 * r.ci_low, 100 * r.ci_high), "pairs": r.n_pairs,
                    "verdict": r.verdict, "sig": r.significant})
            rows.append(row)
        first = members[0].config
        tables.append({"kind": members[0].kind, "task": first.get("task"), "model": first.get("model"),
                       "attack": ATTACKS.get(first["attack"]).label if first.get("attack") in ATTACKS else first.get("attack"),
                       "rate": fmt(first.get("rate")), "methods": labels, "full": full_label, "rows": rows,
                       "cell_ids": {c.id for c in members},
                       "_order": (kind_order(members[0].kind), str(first.get("task")),
                                  attack_order(str(first.get("attack"))), members[0].rate)})
    tables.sort(key=lambda t: t.pop("_order"))
    return tables


def defense_tables_markdown(tables: list[dict[str, Any]]) -> str:
    """The same tables as Markdown (defenses.md beside the report)."""
    parts = []
    for t in tables:
        others = [m for m in t["methods"] if m != t["full"]]
        head = ["defense", *(f"{m}: ASR before → after" for m in t["methods"]),
                *(f"{m}: clean acc. before → after" for m in t["methods"]),
                *(f"{m}: detection" for m in t["methods"]),
                *(f"ASR reduction {m} − {t['full']} (pp)" for m in others)]
        lines = [markdown_text(f"### {t['task']} · {t['model']} · {t['attack']} at rate {t['rate']} ({t['kind']})"), "",
                 "| " + " | ".join(map(markdown_text, head)) + " |", "|" + "---|" * len(head)]
        for r in t["rows"]:
            cells = r["cells"]
            versus = {v["method"]: f"{v['difference']} {v['ci']}" for v in r["versus"]}
            lines.append("| " + " | ".join(map(markdown_text, [
                f"{r['defense']} ({r['kind']})",
                *((c["asr"] if c else "–") for c in cells), *((c["clean"] if c else "–") for c in cells),
                *((c["detection"] or "–") if c else "–" for c in cells),
                *(versus.get(m, "–") for m in others)])) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + ("\n" if parts else "")
