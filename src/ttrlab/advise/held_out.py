"""The held-out table: how well each predictor, alone and in the combined models, ranks the
configurations of a results database that were left out of its fit — per target, pooled and
within each candidate set (same task, attack and rate), with the prediction's cost beside the
training's. `ttrlab advise --calibrate` prints it; the report's Advisor section shows it.

    table = held_out_table(runs, ProbeCache("probes.jsonl"), ProbeSettings(), cached_only=True)

With `cached_only` only stored probes are used (nothing is computed and no model is loaded), and
the configurations without one are counted in the table's notes.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import numpy as np

from ttrlab.advise.cache import ProbeCache, probe_all
from ttrlab.advise.calibrate import evaluate, feature_matrix, spearman_interval
from ttrlab.advise.predictors import BASELINE, PREDICTORS, THEORY
from ttrlab.advise.targets import PRIMARY, TARGETS, Configuration, configurations

COMBINED = ("theory", "baselines", "all")  # models of several predictors, besides each predictor alone
MIN_CANDIDATE_SET = 5  # configurations sharing task, attack and rate, for a within-set ρ


def model_names(name: str) -> list[str]:
    """The predictors of a combined model, or [name] for one predictor."""
    sources = {"theory": (THEORY,), "baselines": (BASELINE,), "all": (THEORY, BASELINE)}
    if name in sources:
        return [n for n in PREDICTORS.registered() if PREDICTORS.get(n).source in sources[name]]
    return [name]


def probed_configurations(runs: Iterable, target_name: str, probes: ProbeCache, settings, *, cached_only: bool = False,
                          progress: Callable | None = None, notes: list[str] | None = None, runtime=None
                          ) -> tuple[list[Configuration], list[dict[str, Any]]]:
    """(configurations, their probe records) of one target on `runs`; what is left out goes to `notes`."""
    from ttrlab.advise.probe import probe_key

    notes = notes if notes is not None else []
    found = configurations(runs, TARGETS.get(target_name))
    if cached_only:
        held = [c for c in found if probes.get(probe_key(c.config, settings)) is not None]
        if len(held) < len(found):
            notes.append(f"{target_name}: {len(found) - len(held)} of {len(found)} configurations left out (no stored probe)")
        found = held
    skipped: list = []
    records = probe_all([c.config for c in found], settings, probes, progress=progress, skipped=skipped,
                        runtime=runtime)
    for values, reason in skipped:
        notes.append(f"{target_name}: left out {values['method']} {values['attack']} {values['rate']:g}: {reason}")
    kept = [i for i, r in enumerate(records) if r is not None]
    return [found[i] for i in kept], [records[i] for i in kept]


def training_estimate(record: dict, steps: int, batch_size: int) -> float:
    """Seconds to train one seed: the probe's full-batch step time per example × the examples a run
    trains on (steps × batch size). Same machine, same load as the probe; evaluation left out."""
    return record["step_seconds"] / record["probe"]["n"] * steps * batch_size


def candidate_sets(found: list[Configuration]) -> dict[str, list[int]]:
    """Configurations sharing task, attack and rate (what a user ranks among), enough of them."""
    sets: dict[str, list[int]] = {}
    for i, c in enumerate(found):
        sets.setdefault(f"{c.config['task']} {c.config['attack']} {c.config['rate']:g}", []).append(i)
    return {label: m for label, m in sets.items() if len(m) >= MIN_CANDIDATE_SET}


def held_out_table(runs: list, probes: ProbeCache, settings, *, targets: list[str] | None = None,
                   folds: int | None = None, cached_only: bool = False, steps: int = 200, batch_size: int = 8,
                   progress: Callable | None = None, runtime=None) -> dict[str, Any]:
    """Per target: its configurations, held-out ρ of every model and predictor (pooled and within
    each candidate set), and the cost of the probes against training the configurations."""
    notes: list[str] = []
    document: dict[str, Any] = {"probe": {"n": settings.n, "steps": settings.steps, "seed": settings.seed},
                                "cached_only": cached_only, "folds": folds or "leave one configuration out",
                                "targets": {}, "notes": notes}
    for target_name in targets or TARGETS.registered():
        TARGETS.get(target_name)  # an unknown name: one line, with the allowed ones
        found, records = probed_configurations(runs, target_name, probes, settings, cached_only=cached_only,
                                               progress=progress, notes=notes, runtime=runtime)
        if not found:
            continue
        harm = np.array([c.harm for c in found])
        groups = [c.key for c in found]
        probe_seconds = sum(r["seconds"] for r in records)
        sets = candidate_sets(found)
        rows = {}
        for name in [*COMBINED, *PREDICTORS.registered()]:
            result = evaluate(records, harm, groups, model_names(name), k=folds)
            x = feature_matrix(records, model_names(name))
            within = {}
            for label, members in sets.items():
                if np.nanmax(np.ptp(x[members], axis=0)) == 0:
                    # constant within the set (the rate): it ranks nothing there; what its held-out
                    # score would vary by is the fold's fit, not the candidate
                    within[label] = {"rho": None, "n": len(members), "constant": True}
                    continue
                within[label] = spearman_interval(result["predicted"][members], harm[members])
            rows[name] = {k: v for k, v in result.items() if k != "predicted"} | {"within": within}
        target = TARGETS.get(target_name)
        document["targets"][target_name] = {
            "family": target.family, "primary": PRIMARY.get(target.family) == target_name,
            "configurations": len(found), "runs": sum(len(c.run_keys) for c in found),
            "candidate_sets": {label: len(m) for label, m in sets.items()},
            "cost": {"probe_seconds": probe_seconds,
                     "probe_theory_seconds": sum(r["theory_seconds"] for r in records),  # load, samples, the NTK
                     "probe_baseline_steps_seconds": probe_seconds - sum(r["theory_seconds"] for r in records),
                     "stored_training_seconds_all_seeds": sum(c.seconds for c in found),
                     "stored_training_seconds_one_seed": sum(c.mean_seconds for c in found),
                     "extrapolated_training_seconds_one_seed": sum(training_estimate(r, steps, batch_size)
                                                                   for r in records)},
            "models": rows,
        }
    return document


def cell(summary: dict) -> str:
    """One table cell: ρ [interval], or why there is none."""
    if summary.get("constant"):
        return "n/a (constant here)"
    if summary.get("rho") is None:
        return f"n/a (n={summary.get('n', 0)})"
    return f"{summary['rho']:+.2f} [{summary['low']:+.2f}, {summary['high']:+.2f}]"


def cost_ratio(table: dict) -> float:
    """Training the configurations once (stored seconds, mean over seeds) over probing them all."""
    cost = table["cost"]
    return cost["stored_training_seconds_one_seed"] / cost["probe_seconds"] if cost["probe_seconds"] else math.nan


def markdown(name: str, table: dict) -> str:
    """One target's table as the CLI prints it and docs/advise/ publishes it."""
    sets = list(table["candidate_sets"])
    lines = [f"\n## {name} ({table['family']}): {table['configurations']} configurations, {table['runs']} runs",
             "held-out Spearman rho [95% bootstrap over configurations]; pooled = all configurations, "
             "then within each candidate set (same task, attack, rate)",
             "| predictor | pooled | " + " | ".join(f"within {s} (n={table['candidate_sets'][s]})" for s in sets) + " |",
             "|---|---|" + "---|" * len(sets)]
    for model, row in table["models"].items():
        lines.append(f"| {model} | {cell(row)} | " + " | ".join(cell(row["within"][s]) for s in sets) + " |")
    cost = table["cost"]
    lines.append(
        f"cost: probes {cost['probe_seconds']:.0f} s for all configurations (load + theory "
        f"{cost['probe_theory_seconds']:.0f} s, the baselines' k steps {cost['probe_baseline_steps_seconds']:.0f} s); "
        f"training them once (stored seconds, mean over seeds) {cost['stored_training_seconds_one_seed']:.0f} s "
        f"({cost_ratio(table):.1f}x), all stored seeds {cost['stored_training_seconds_all_seeds']:.0f} s; training "
        f"extrapolated from the probe's own step time {cost['extrapolated_training_seconds_one_seed']:.0f} s")
    return "\n".join(lines)
