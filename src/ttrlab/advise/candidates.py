"""The candidates to rank: the points of a sweep spec, or a small grid from the command line
(methods × ranks × init scales at one task, attack and rate). A candidate is a flat training
config; seeds do not make candidates (the probe has its own seed), and points that differ only
in knobs their method ignores (FF "at" rank 4 and 8) are one candidate."""
from __future__ import annotations

import itertools
from typing import Any

from ttrlab.core.errors import UserError


def from_spec(path: str, attack: str, rate: float) -> list[dict[str, Any]]:
    """The spec's points under `attack` at `rate` (a ranking compares candidates under one attack:
    its clean points and other attacks are left out)."""
    from ttrlab.sweep.spec import load_spec

    spec = load_spec(path)
    if spec.kind != "train":
        raise UserError(f"spec {path!r} is of kind {spec.kind!r}; allowed: a spec of kind 'train'")
    points = [run.config_dict for run in spec.expand().runs]
    chosen = [c for c in points if c["attack"] == attack and abs(float(c["rate"]) - rate) < 1e-12]
    if not chosen:
        offered = sorted({f"{c['attack']} {c['rate']:g}" for c in points if float(c["rate"]) > 0})
        raise UserError(f"spec {path!r} has no point under --attack {attack} --rate {rate:g}; allowed: "
                        f"{', '.join(offered) or 'none (it has only clean points)'}")
    return distinct(chosen)


def from_grid(base: dict[str, Any], methods: list[str], ranks: list[int], init_scales: list[float | None]) -> list[dict[str, Any]]:
    from ttrlab.kinds.classification.experiment import RunConfig

    points = []
    for method, rank, scale in itertools.product(methods, ranks, init_scales):
        points.append(RunConfig.load({**base, "method": method, "rank": rank, "init_scale": scale}).to_dict())
    return distinct(points)


def distinct(configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One config per configuration: the seed-0 run key of each decides (a method's run key
    ignores the knobs of other methods)."""
    from ttrlab.kinds.classification.experiment import RunConfig

    seen, kept = set(), []
    for values in configs:
        key = RunConfig.load({**values, "seed": 0}).run_key()
        if key not in seen:
            seen.add(key)
            kept.append({**values, "seed": 0})
    return kept
