"""Manipulation checks: the declared rules that leave a setting out because it tests nothing (the
method never learned the task; the backdoor never implanted). Each is registered by the name the
claims file declares it under and reads its thresholds from that declaration; `judge` gets the
arms of one setting (a treatment cell and its baseline, or the cells of one block of a trend) and
returns why they fail, or None. A check that cannot tell (no training loss stored, no ASR) fails
nothing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from ttrlab.core.registry import Registry

if TYPE_CHECKING:
    from ttrlab.report.aggregate import Cell
    from ttrlab.report.claims.cells import CellIndex
    from ttrlab.report.claims.declared import Check


@dataclass(frozen=True)
class ManipulationCheck:
    name: str
    judge: Callable[[list["Cell"], "CellIndex", "Check"], "str | None"]


CHECKS: Registry[ManipulationCheck] = Registry("manipulation check")


def _learned(arms: list[Cell], index: CellIndex, declared: Check) -> str | None:
    """Either arm's run trained without poison at this setting fits its training data no better
    than a constant predictor: mean train.final_loss ≥ share · ln(classes)."""
    from ttrlab.report.aggregate import chance, task_type

    failed = []
    for cell in arms:
        if task_type(cell.kind) != "classification":
            continue
        clean = index.clean_trained(cell)
        if clean is None or not clean.final_loss:
            continue
        loss = float(np.mean(list(clean.final_loss.values())))
        limit = declared.params["max_loss_share_of_log_classes"] * math.log(1.0 / chance(clean))
        if loss >= limit:
            failed.append(f"{cell.method_label()} (training loss {loss:.3f} ≥ {limit:.3f})")
    if not failed:
        return None
    return f"did not learn the task when trained without poison: {', '.join(dict.fromkeys(failed))}"


def _implanted(arms: list[Cell], index: CellIndex, declared: Check) -> str | None:
    """The arms' mean ASR lift over their own clean runs is below `min_lift`."""
    from ttrlab.attacks import ATTACKS

    lifts = []
    for cell in arms:
        attack = cell.config.get("attack")
        if attack not in ATTACKS or not ATTACKS.get(attack).is_backdoor():
            continue
        lift = backdoor_lift(cell, index)
        if lift:
            lifts.append(float(np.mean(list(lift.values()))))
    if not lifts:
        return None
    mean = float(np.mean(lifts))
    if mean >= declared.params["min_lift"]:
        return None
    return f"the backdoor did not implant (mean ASR lift {100 * mean:+.1f} points < {100 * declared.params['min_lift']:g})"


def backdoor_lift(cell: Cell, index: CellIndex) -> dict:
    """{seed: the ASR the backdoor adds}: ASR minus the same attack's clean-run ASR at that seed
    (classification), or the generative runs' `backdoor_effect` (ASR minus the ASR without the
    trigger on the same prompts)."""
    if "backdoor_effect" in cell.values:
        return dict(cell.values["backdoor_effect"])
    clean = index.clean_counterpart(cell)
    if clean is None or "asr" not in cell.values or "asr" not in clean.values:
        return {}
    return {s: v - clean.values["asr"][s] for s, v in cell.values["asr"].items() if s in clean.values["asr"]}


CHECKS.register("learned")(ManipulationCheck("learned", _learned))
CHECKS.register("implanted")(ManipulationCheck("implanted", _implanted))
