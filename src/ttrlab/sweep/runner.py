"""`run_sweep`: spec → planned runs → skip what the database already holds → work units (fused
groups, `groups.work_units`) → execute → store.

The driver writes every outcome to the database the moment it arrives, one transaction per
run, so stopping at any point (Ctrl-C, SIGKILL, a crash) loses at most the runs in flight.
"""
from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

from ttrlab.errors import UserError
from ttrlab.sweep.executors import EXECUTORS, Outcome
from ttrlab.sweep.groups import work_units
from ttrlab.sweep.monitor import Monitor
from ttrlab.sweep.spec import PlannedRun, SweepSpec, load_spec
from ttrlab.sweep.store import FAILED, FINISHED, ResultStore, database_url, redacted


def plan(spec: SweepSpec, db: str | os.PathLike | None, retry_failed: bool = False) -> dict[str, Any]:
    """What a sweep would do against a database, without running or writing anything."""
    expansion = spec.expand()
    statuses: dict[str, str] = {}
    if db is not None:
        url = database_url(db)
        exists = not url.startswith("sqlite:///") or Path(url[len("sqlite:///"):]).is_file()
        if exists:
            with ResultStore(db) as store:
                statuses = store.statuses(spec.kind, [r.run_key for r in expansion.runs])
    finished = [r for r in expansion.runs if statuses.get(r.run_key) == FINISHED]
    failed = [r for r in expansion.runs if statuses.get(r.run_key) == FAILED]
    todo = [r for r in expansion.runs
            if statuses.get(r.run_key) != FINISHED and (retry_failed or statuses.get(r.run_key) != FAILED)]
    return {
        "expansion": expansion,
        "finished": finished,
        "failed": failed,
        "todo": todo,
    }


def check_devices(runs: list[PlannedRun]) -> None:
    """UserError if a run asks for a device (or precision) this machine does not have: one line
    before the sweep starts, not one failed run per config."""
    from ttrlab.runtime import Runtime

    for device, precision in sorted({(r.config.device, r.config.precision) for r in runs if hasattr(r.config, "device")}):
        Runtime.resolve(device, precision)


def run_sweep(
    spec: SweepSpec | str | os.PathLike | dict,
    db: str | os.PathLike,
    executor: str = "local",
    workers: int | None = None,
    progress: bool = True,
    retry_failed: bool = False,
    ray_address: str | None = None,
    fuse: bool = True,
) -> dict[str, Any]:
    """Run every planned run of `spec` that `db` does not hold yet; return a summary dict:
    planned, duplicates_dropped, already_finished, skipped_failed, ran, finished, failed,
    interrupted, seconds, failures [(label, last error line)], db. With `fuse`, runs whose kind
    gives them the same fusion key train together in one worker (`groups.work_units`); each
    run is still stored on its own."""
    if not isinstance(spec, SweepSpec):
        spec = load_spec(spec)
    chosen = EXECUTORS.get(executor)
    if workers is not None and workers < 1:
        raise UserError(f"workers {workers} must be >= 1")
    planned = plan(spec, db, retry_failed)
    todo: list[PlannedRun] = planned["todo"]
    if todo:
        chosen.check(spec.resources, workers)  # e.g. no GPU visible: one line, nothing written
        if chosen.on_this_machine:
            check_devices(todo)
    expansion = planned["expansion"]
    summary: dict[str, Any] = {
        "sweep": spec.name,
        "db": redacted(database_url(db)),
        "planned": len(expansion.runs),
        "duplicates_dropped": expansion.duplicates,
        "already_finished": len(planned["finished"]),
        "skipped_failed": 0 if retry_failed else len(planned["failed"]),
        "ran": 0, "finished": 0, "failed": 0, "interrupted": False, "seconds": 0.0, "failures": [],
    }
    started = time.perf_counter()
    with ResultStore(db) as store:
        sweep_id = store.register_sweep(spec.name, spec.sha256, spec.source_text, spec.source_path,
                                        planned_runs=len(expansion.runs))
        store.link(sweep_id, spec.kind, [r.run_key for r in planned["finished"]])
        host = platform.node()

        def on_outcome(outcome: Outcome) -> None:
            run = outcome.run
            store.record(sweep_id=sweep_id, kind=run.kind, run_key=run.run_key, config=run.config_dict,
                         result=outcome.result, error=outcome.error, started_at=outcome.started_at,
                         seconds=outcome.seconds, host=host)
            summary["ran"] += 1
            if outcome.ok:
                summary["finished"] += 1
            else:
                summary["failed"] += 1
                summary["failures"].append((run.label(), outcome.last_error_line))

        with Monitor(len(todo), enabled=progress and bool(todo), title=f"{spec.name}") as monitor:
            try:
                chosen.run(work_units(todo, fuse=fuse), on_outcome, monitor, spec.resources, workers=workers,
                           ray_address=ray_address)
            except KeyboardInterrupt:
                summary["interrupted"] = True
    summary["seconds"] = round(time.perf_counter() - started, 2)
    return summary
