"""The matching rule between theory runs and training runs, and the measured robustness a
theory quantity is compared with.

A theory run and a training run describe the same configuration when they agree on every key of
`match_keys()` — the keys both kinds' run identities hold: what shapes the model at
initialisation θ₀, the data or the attack; a method's own settings (LoRA's rank, …) count only
for that method — and they are paired seed by seed:
the theory at seed s is computed at exactly the θ₀ (head, LoRA A) and on the data subset of the
training run with seed s. Training-only knobs (lr, steps, batch size, eval size, …) are not in
the theory config; the report keeps training runs that differ in them apart (one comparison
each).

The measured robustness of an attack is its family's (`Attack.robustness_measure()`): the ASR
for backdoors, the clean-accuracy drop against the same-seed clean run for untargeted poisoning.
"""
from __future__ import annotations

import json
import math
from functools import lru_cache
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ttrlab.core.errors import UserError
from ttrlab.methods import METHODS, method_settings
from ttrlab.attacks import AttackSettings
from ttrlab.report.aggregate import is_clean, kind_config, method_label, trains

THEORY_KIND = "theory"  # the run kind computed at initialisation
ATTACK_KEYS = AttackSettings.owned_names()  # what a run's attack is
# measured robustness -> how it is read from a training run ("clean_accuracy_drop" is derived)
MEASURES = {"asr": "asr", "clean_accuracy": "clean.accuracy", "clean_accuracy_drop": None}


@lru_cache(maxsize=None)
def match_keys() -> tuple[str, ...]:
    """The keys a theory run and a training run of the same configuration agree on: every key of
    the theory kind's run identity that the identity of the training kind of its task type holds
    too, bar the seed (the runs are paired by it) and the theory's own settings (what it
    computes), in the theory config's order."""
    from ttrlab.kinds.registry import RUN_KINDS

    theory = kind_config(THEORY_KIND)
    training = next(kind_config(k) for k in RUN_KINDS.registered()
                    if trains(k) and kind_config(k).TASK_TYPE == theory.TASK_TYPE)
    ours = {"seed", *(name for section in theory.sections()
                      if section is not theory and section not in training.sections() for name in section.owned_names())}
    shared = training().identity_values()
    return tuple(key for key in theory().identity_values() if key in shared and key not in ours)


def metric(run: Mapping[str, Any], name: str) -> float | None:
    """A metric by dotted name from a stored run (flat metrics) or a result document (nested)."""
    metrics = run.get("metrics") or {}
    if name in metrics:
        value = metrics[name]
        return None if value is None else float(value)
    node: Any = metrics
    for part in name.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return None if node is None or isinstance(node, Mapping) else float(node)


def not_own_settings(method: str) -> set[str]:
    """The method-owned setting names of every other method (FF has none of its own, so all
    of LoRA's): they do not describe a run of `method`."""
    own = METHODS.get(method).settings if method in METHODS else None
    return {name for section in method_settings() if section is not own for name in section.owned_names()}


def match_key(config: dict, on: Sequence[str] | None = None) -> tuple:
    """The configuration a run stands for on the keys `on` (default `match_keys()`), seed
    excluded (other methods' settings None)."""
    on = match_keys() if on is None else on
    ignored = not_own_settings(str(config.get("method")))
    return tuple(None if k in ignored else _hashable(config.get(k)) for k in on)


def _hashable(value):
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return round(float(value), 9)
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, default=str)
    return value


def is_full(config: dict) -> bool:
    """Whether the run's method trains every parameter (the baseline of comparisons)."""
    method = config.get("method")
    return method in METHODS and METHODS.get(method).is_full


def theory_value(document: dict, quantity: str) -> float | None:
    """A theory metric by name; `<name>_without_head` is the method's own parameters without the
    classification head: `<name>_body_only` for the full method, `<name>_adapters_only` else."""
    if quantity.endswith("_without_head"):
        base = quantity[: -len("_without_head")]
        part = "body_only" if is_full(document["config"]) else "adapters_only"
        return metric(document, f"{base}_{part}")
    return metric(document, quantity)


def measured_by_seed(training: Iterable[dict], measure: str, on: Sequence[str] | None = None) -> dict[tuple, dict[Any, float]]:
    """{match key: {seed: value}} from training runs (several runs of one key and seed are
    averaged). 'asr' and 'clean_accuracy' are the run's own metrics; 'clean_accuracy_drop' is
    the clean accuracy of the clean run (no attack or rate 0) of the same configuration and seed
    minus the clean accuracy under the attack — a seed whose clean run is missing is left out."""
    if measure not in MEASURES:
        raise UserError(f"unknown measure {measure!r}; allowed: {', '.join(MEASURES)}")
    training = list(training)
    values: dict[tuple, dict[Any, list[float]]] = {}
    if MEASURES[measure] is None:  # the accuracy drop against the same-seed clean run
        no_attack = {k: None for k in ATTACK_KEYS}
        clean: dict[tuple, dict[Any, list[float]]] = {}
        for r in training:
            acc = metric(r, "clean.accuracy")
            if is_clean(r["config"]) and acc is not None:
                clean.setdefault(match_key({**r["config"], **no_attack}, on), {}).setdefault(r["config"].get("seed"), []).append(acc)
        for r in training:
            acc = metric(r, "clean.accuracy")
            if is_clean(r["config"]) or acc is None:
                continue
            base = clean.get(match_key({**r["config"], **no_attack}, on), {}).get(r["config"].get("seed"))
            if base:
                values.setdefault(match_key(r["config"], on), {}).setdefault(r["config"].get("seed"), []).append(float(np.mean(base)) - acc)
    else:
        for r in training:
            value = metric(r, MEASURES[measure])
            if value is not None:
                values.setdefault(match_key(r["config"], on), {}).setdefault(r["config"].get("seed"), []).append(value)
    return {k: {seed: float(np.mean(v)) for seed, v in by_seed.items()} for k, by_seed in values.items()}


def point_label(config: dict) -> str:
    """'LoRA r=8, α=16 bpa 5%' — the rate in words: ρ is Spearman's in these figures."""
    rate = config.get("rate")
    label = method_label(config)
    return f"{label} {config.get('attack')} {100 * rate:g}%" if isinstance(rate, (int, float)) else label


def pair_points(theory: Iterable[dict], training: Iterable[dict], quantity: str, measure: str,
                on: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """One point per configuration that theory and training share: the computed `quantity` and
    the measured robustness, each the mean over the seeds that both sides hold."""
    on = match_keys() if on is None else on
    computed: dict[tuple, dict[Any, list[float]]] = {}
    configs: dict[tuple, dict] = {}
    for r in theory:
        value = theory_value(r, quantity)
        if value is None or not math.isfinite(value):
            continue
        key = match_key(r["config"], on)
        computed.setdefault(key, {}).setdefault(r["config"].get("seed"), []).append(value)
        configs.setdefault(key, r["config"])
    measured = measured_by_seed(training, measure, on)
    points = []
    for key, by_seed in computed.items():
        seeds = sorted(set(by_seed) & set(measured.get(key, {})), key=str)
        if not seeds:
            continue
        points.append({
            "key": dict(zip(on, key)),
            "label": point_label(configs[key]),
            "method": configs[key].get("method"),
            "full": is_full(configs[key]),
            "seeds": seeds,
            "computed": float(np.mean([np.mean(by_seed[s]) for s in seeds])),
            "measured": float(np.mean([measured[key][s] for s in seeds])),
        })
    return sorted(points, key=lambda p: (not p["full"], p["label"]))
