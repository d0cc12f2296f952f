"""What the advisor predicts: the harm an attack does to a configuration, measured on stored
training runs. One target per attack family (`attacks.base.AttackFamily`), registered by name;
higher harm = less robust, so a ranking by predicted harm puts the most robust candidate first.

A configuration is a stored training config without its seed (and device): every seed of it is
one run of the same configuration. Its harm is the mean over its seeds of the per-seed harm,
each against the clean run of the same configuration and the same seed (same training subset,
same θ₀), as `docs/claims.md` compares lifts. A seed counts only where that clean run learned the
task: the claims' *learned* check (mean training loss over the last steps below 0.8·ln(classes));
a model that learned nothing (MiniLM on CoLA at 200 steps predicts the majority class) shows no
harm whatever the configuration, and would only add ties.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ttrlab.core.registry import Registry

ATTACK_KEYS = ("attack", "rate", "trigger", "trigger_position", "target_label", "attack_options")
NOT_CONFIGURATION = ("seed", "device")  # a seed is a replicate; the device does not change the numbers


@dataclass(frozen=True)
class Target:
    name: str
    family: str  # the attack family it measures (`AttackFamily.name`)
    summary: str
    harm: Callable[[dict, dict], float | None]  # (poisoned run metrics, clean run metrics) -> harm
    clean_same_attack: bool = False  # a backdoor's clean run is the same attack at rate 0 (its triggered test set)


TARGETS: Registry[Target] = Registry("target")


def _register(target: Target) -> None:
    TARGETS.register(target.name)(target)


def _lift(poisoned: dict, clean: dict) -> float | None:
    return None if "asr" not in poisoned or "asr" not in clean else poisoned["asr"] - clean["asr"]


def _drop(poisoned: dict, clean: dict) -> float | None:
    key = "clean.accuracy"
    return None if key not in poisoned or key not in clean else clean[key] - poisoned[key]


def _error(poisoned: dict, clean: dict) -> float | None:
    return 1.0 - poisoned["clean.accuracy"] if "clean.accuracy" in poisoned else None


_register(Target("asr_lift", "backdoor", "ASR minus the ASR of the same configuration trained clean (same seed)",
                 _lift, clean_same_attack=True))
_register(Target("accuracy_drop", "untargeted", "clean accuracy of the same configuration trained clean minus "
                 "the clean accuracy under poisoning (same seed)", _drop))
_register(Target("error_under_poison", "untargeted", "1 - clean accuracy under poisoning", _error))

# The target each family is judged on first (the issue's: UPA accuracy drop, BPA ASR lift).
PRIMARY = {"backdoor": "asr_lift", "untargeted": "accuracy_drop"}


@dataclass
class Configuration:
    key: str  # the stored config without seed and device, as canonical JSON
    config: dict[str, Any]  # one of its runs' configs (seed as stored)
    family: str
    harm: float  # mean over `seeds` of the per-seed harm
    seeds: list[int]
    run_keys: list[str] = field(default_factory=list)  # the poisoned runs measured
    clean_run_keys: list[str] = field(default_factory=list)
    seconds: float = 0.0  # the stored training seconds of its poisoned runs, all seeds

    @property
    def mean_seconds(self) -> float:
        return self.seconds / max(len(self.run_keys), 1)


def configuration_key(config: dict[str, Any], drop: Iterable[str] = ()) -> str:
    kept = {k: v for k, v in config.items() if k not in NOT_CONFIGURATION and k not in drop}
    return json.dumps(kept, sort_keys=True, default=str)


def family_of(attack: str) -> str:
    from ttrlab.attacks import ATTACKS

    return ATTACKS.get(attack).family.name


LEARNED_SHARE = 0.8  # of ln(classes): the claims' "learned" check (docs/claims.md)


def learned(run: dict) -> bool:
    from ttrlab.data.tasks import get_task

    loss = ((run.get("result") or {}).get("train") or {}).get("final_loss")
    return loss is not None and loss < LEARNED_SHARE * math.log(get_task(run["config"]["task"]).num_labels)


def configurations(runs: Iterable[dict], target: Target) -> list[Configuration]:
    """The poisoned configurations of `target`'s family among finished training runs without a
    defense, each with its measured harm over the seeds whose clean run learned the task."""
    from ttrlab.report.matching import is_clean

    runs = [r for r in runs if r.get("kind") == "train" and r["config"].get("defense", "none") == "none"]
    clean: dict[tuple[str, Any], list[dict]] = {}
    for r in runs:
        if is_clean(r["config"]) and learned(r):
            drop = ("rate",) if target.clean_same_attack else ATTACK_KEYS
            clean.setdefault((configuration_key(r["config"], drop), r["config"]["seed"]), []).append(r)
    by_config: dict[str, list[dict]] = {}
    for r in runs:
        if not is_clean(r["config"]) and family_of(r["config"]["attack"]) == target.family:
            by_config.setdefault(configuration_key(r["config"]), []).append(r)
    found = []
    for key, members in sorted(by_config.items()):
        per_seed: dict[int, list[float]] = {}
        used, used_clean, seconds = [], [], 0.0
        for r in members:
            drop = ("rate",) if target.clean_same_attack else ATTACK_KEYS
            twins = clean.get((configuration_key(r["config"], drop), r["config"]["seed"]), [])
            clean_metrics = _mean_metrics([t["metrics"] for t in twins]) if twins else None
            value = target.harm(r["metrics"], clean_metrics) if clean_metrics else None
            if value is None:
                continue
            per_seed.setdefault(r["config"]["seed"], []).append(value)
            used.append(r["run_key"])
            used_clean += [t["run_key"] for t in twins]
            seconds += float(r.get("seconds") or 0.0)
        if per_seed:
            found.append(Configuration(key, members[0]["config"], target.family,
                                       float(np.mean([np.mean(v) for v in per_seed.values()])), sorted(per_seed),
                                       sorted(used), sorted(set(used_clean)), seconds))
    return found


def _mean_metrics(metrics: list[dict]) -> dict[str, float]:
    """Several clean runs of one configuration and seed (e.g. BPA and MT at rate 0: the same data)."""
    names = set.intersection(*(set(m) for m in metrics))
    return {n: float(np.mean([m[n] for m in metrics])) for n in names}
