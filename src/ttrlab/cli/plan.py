"""What a long job plans, said before its first run starts: the runs to do, those a database
already holds, and how long the rest should take.

The estimate comes from the spec's `expected_wall_time` where it gives minutes (a measured wall
time of the whole spec, scaled to the runs left and the workers used), else from the seconds the
database recorded for finished runs like these (same kind, model, method and steps; any run of the
kind where none is that alike), else there is none and the line says so. Reading the database
imports no torch: `ttrlab sweep` prints the plan before any worker starts.
"""
from __future__ import annotations

import json
import math
from typing import Any

SIMILAR_BY = ("model", "method", "max_steps")  # what a run's time depends on most, among its settings


def plan_line(spec, planned: dict[str, Any], db, workers: int | None, retry_failed: bool = False) -> str:
    """One line: the spec's runs, already finished, failed earlier, to run now, and the estimate.
    `planned` is `sweep.runner.plan`'s; `workers` None where the executor decides (Ray)."""
    todo, finished, failed = planned["todo"], planned["finished"], planned["failed"]
    total = len(planned["expansion"].runs)
    parts = [f"{total} runs", f"{len(finished)} already finished"]
    if failed:
        parts.append(f"{len(failed)} failed earlier" + (" (retried)" if retry_failed else " (skipped; --retry-failed redoes them)"))
    on = f" on {workers} worker{'s' if workers != 1 else ''}" if workers else ""
    parts.append(f"{len(todo)} to run{on}")
    estimate = "" if not todo else f"; {estimate_text(spec, total, todo, db, workers)}"
    return f"plan: sweep {spec.name!r}: {', '.join(parts)}{estimate}"


def estimate_text(spec, total: int, todo: list, db, workers: int | None) -> str:
    from_spec = _from_spec(spec, total, len(todo), workers)
    if from_spec is not None:
        return from_spec
    from_store = _from_store(spec.kind, todo, db, workers)
    if from_store is not None:
        return from_store
    return "no time estimate yet (the spec has no expected_wall_time and the database no finished run of this kind)"


def _from_spec(spec, total: int, left: int, workers: int | None) -> str | None:
    expected = spec.expected_wall_time
    if not isinstance(expected, dict) or not _positive(expected.get("minutes")):
        return None
    minutes = float(expected["minutes"]) * left / max(total, 1)
    measured_workers = expected.get("workers")
    scaled = ""
    if workers and _positive(measured_workers) and measured_workers != workers:
        minutes *= float(measured_workers) / workers
        scaled = f", scaled from its {measured_workers:g} workers"
    where = f" on {expected['machine']}" if expected.get("machine") else ""
    return (f"about {_duration(minutes * 60)} (the spec's expected_wall_time: {float(expected['minutes']):g} min for "
            f"all {total} runs{where}{scaled})")


def _from_store(kind: str, todo: list, db, workers: int | None) -> str | None:
    stored = _stored_seconds(kind, db)
    if not stored:
        return None
    by_setting: dict[tuple, list[float]] = {}
    for config, seconds in stored:
        by_setting.setdefault(_similar(config), []).append(seconds)
    every = [seconds for _, seconds in stored]
    alike = sum(_similar(run.config_dict) in by_setting for run in todo)
    total = sum(_mean(by_setting.get(_similar(run.config_dict), every)) for run in todo)
    wall = total / workers if workers else total
    basis = (f"{alike} of the {len(todo)} like finished runs stored" if alike
             else f"no stored run is that alike: the mean of {len(every)} {kind} runs stored")
    per = f" over {workers} workers" if workers else " of run time (the executor decides how many run at once)"
    return f"about {_duration(wall)}{per} (from the seconds the database recorded: {basis})"


def _stored_seconds(kind: str, db) -> list[tuple[dict, float]]:
    """(config, seconds) of the finished runs of `kind` in `db`; [] where there is no database yet."""
    from sqlalchemy import Text, cast, select

    from ttrlab.sweep.store import FINISHED, EmptyDatabase, ResultStore, Run, database_url, sqlite_path

    path = sqlite_path(database_url(db))
    if path is not None and not path.is_file():
        return []
    try:
        with ResultStore(db, create=False) as store, store.session() as s:
            rows = s.execute(select(cast(Run.config, Text), Run.seconds)
                             .where(Run.kind == kind, Run.status == FINISHED, Run.seconds.is_not(None))).all()
    except EmptyDatabase:
        return []
    stored = []
    for config, seconds in rows:
        try:
            parsed = json.loads(config)
        except (TypeError, ValueError):
            continue  # a damaged row: not a basis for an estimate
        if isinstance(parsed, dict) and isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds >= 0:
            stored.append((parsed, float(seconds)))
    return stored


def _similar(config: dict) -> tuple:
    return tuple(json.dumps(config.get(name), sort_keys=True, default=str) for name in SIMILAR_BY)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def local_workers(spec, executor: str, workers: int | None) -> int | None:
    """How many runs the executor starts at once here: `workers` if given; the local pool's own
    count (cores // resources.cpus, or one per GPU slot); 1 inline; None for Ray (the cluster's)."""
    if executor == "inline":
        return 1
    if workers is not None:
        return workers
    if executor != "local":
        return None
    if spec.resources.gpus > 0:
        return None  # the GPU slots: known once torch counts the GPUs, which a plan does not import
    from ttrlab.sweep.executors import available_cpus

    return max(1, int(available_cpus() // max(spec.resources.cpus, 1e-9)))
