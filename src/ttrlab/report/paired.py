"""Table 3's paired comparisons: each non-full method (LoRA) against the full method (FF) at the
same generative setting (task, attack, rate, ...; the pairs of `aggregate.full_pairs`).

- **prompt level, within one run pair**: for each seed, the exact McNemar test
  (`stats.mcnemar_counts`) on the triggered outcomes of seed s of one arm against seed s of the
  other (`outcomes.triggered`, one 0/1 per scored prompt in a fixed order that is the same for
  every seed and method at the same `n_eval`), prompt i with prompt i: b = the full method's
  answer hit and the other's did not, c = the reverse. It describes one pair of runs; it is not a
  test of the methods, whose independent unit is the seed (prompts of different seeds are not
  independent draws: the same prompts, the same poison set). A seed whose two outcome lists
  differ in length (which the fixed order rules out for one `n_eval`) is left out and counted;
- **seed level**: the comparisons every method-vs-full row already has (`stats.compare`: paired
  difference, sign-flip p, verdict) on the ASR and on the backdoor effect. The declared claims
  (`report.claims`) decide Table 3 at this level.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ttrlab.report.aggregate import Cell, ComparisonRow, config_value, fmt, full_pairs, kind_order, task_type
from ttrlab.report.stats import Comparison, McNemar, mcnemar
from ttrlab.report.tables import attack_order, default_task_first

OUTCOMES = "triggered"  # the outcomes tested: with the trigger (the backdoor's)
SEED_METRICS = ("asr", "backdoor_effect")  # the seed-paired comparisons shown beside


@dataclass
class PairedRow:
    cell: Cell  # the non-full method's
    full: Cell
    seeds: list[Any]  # seeds both arms hold outcomes of, with lists of one length
    mismatched: list[Any]  # seeds both hold whose outcome lists differ in length (left out)
    test: McNemar  # the discordant counts summed over the seeds (its p is not shown: seeds are the unit)
    per_seed: list[tuple[Any, McNemar]] = field(default_factory=list)  # within each run pair
    seed_level: dict[str, Comparison] = field(default_factory=dict)  # metric -> seed-paired comparison


def prompt_pairs(method: Cell, full: Cell, outcomes: str = OUTCOMES) -> tuple[list[Any], list[Any], McNemar]:
    """(paired seeds, mismatched seeds, the McNemar counts summed over the paired seeds: a
    description of how the runs' answers differ, not a test across seeds)."""
    seeds, mismatched, ours, theirs = [], [], [], []
    for seed in method.outcomes:
        if seed not in full.outcomes:
            continue
        a, b = method.outcomes[seed].get(outcomes) or [], full.outcomes[seed].get(outcomes) or []
        if len(a) != len(b):
            mismatched.append(seed)
        elif a:
            seeds.append(seed)
            ours += a
            theirs += b
    return seeds, mismatched, mcnemar(ours, theirs)  # b: the full method hit, the other did not


def paired_rows(cells: list[Cell], comparisons: list[ComparisonRow], task: str) -> list[PairedRow]:
    """One row per (method cell, full cell) pair (`full_pairs`: kinds that train) of `task` type."""
    seed_level = {(c.cell.id, c.full.id, c.metric): c.result for c in comparisons}
    rows = []
    for cell, full in full_pairs(cells):
        if task_type(cell.kind) != task:
            continue
        seeds, mismatched, test = prompt_pairs(cell, full)
        found = {m: seed_level[(cell.id, full.id, m)] for m in SEED_METRICS if (cell.id, full.id, m) in seed_level}
        per_seed = [(seed, mcnemar(cell.outcomes[seed][OUTCOMES], full.outcomes[seed][OUTCOMES])) for seed in seeds]
        rows.append(PairedRow(cell, full, seeds, mismatched, test, per_seed, found))
    return sorted(rows, key=_order)


def _order(row: PairedRow) -> tuple:
    """Table 3's order: task (the kind's default first), attack, rate, method."""
    c = row.cell
    return (kind_order(c.kind), default_task_first(c.kind, config_value(c.kind, c.config, "task")),
            attack_order(str(c.config.get("attack"))), c.rate, c.method_label(), c.id, row.full.id)


def display(row: PairedRow) -> dict[str, Any]:
    """A paired row as the report shows it."""
    config, t = row.cell.config, row.test
    task = config_value(row.cell.kind, config, "task")
    out = {"task": "–" if task is None else task, "attack": config.get("attack"),
           "rate": fmt(config.get("rate")), "model": config.get("model"),
           "method": f"{row.cell.method_label()} vs {row.full.method_label()}",
           "seeds": len(row.seeds), "prompts": t.pairs, "b": t.b, "c": t.c,
           "per_seed": "; ".join(f"seed {seed}: b {m.b}, c {m.c}, p {fmt(m.p, 3)}" for seed, m in row.per_seed),
           "mismatched": " ".join(map(str, row.mismatched))}
    for metric in SEED_METRICS:
        r = row.seed_level.get(metric)
        out[metric] = {"pairs": r.n_pairs if r else 0, "difference": fmt(r.paired_difference) if r else "–",
                       "p": fmt(r.p_sign_flip, 3) if r else "–", "sig": bool(r and r.significant),
                       "verdict": r.verdict if r else "no seed both arms hold"}
    return out
