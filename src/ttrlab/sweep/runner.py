"""`run_sweep`: spec → planned runs → skip what the database already holds → work units (fused
groups, `groups.work_units`) → claim each unit's runs as it is dispatched (`claims.WorkQueue`)
→ execute → store.

The driver writes every outcome to the database the moment it arrives, one transaction per
run, so stopping at any point (Ctrl-C, SIGTERM, SIGKILL, a crash) loses at most the runs in
flight. Drivers sharing a database split the runs through their claims; a run whose driver
was killed is taken over by another (`claims.WorkQueue`).

If the database cannot take a result (the disk is full, the server went away), the sweep stops
at once with one line: what is stored stays stored, and re-running resumes.
"""
from __future__ import annotations

import os
import platform
import signal
import threading
import time
from contextlib import contextmanager
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import DBAPIError

from ttrlab.core.errors import UserError, first_line
from ttrlab.sweep.claims import WorkQueue
from ttrlab.sweep.executors import EXECUTORS
from ttrlab.sweep.outcome import Outcome
from ttrlab.sweep.groups import work_units
from ttrlab.sweep.monitor import Monitor
from ttrlab.sweep.spec import PlannedRun, SweepSpec, load_spec
from ttrlab.sweep.store import (
    DEFAULT_LEASE_SECONDS,
    FAILED,
    FINISHED,
    EmptyDatabase,
    Owner,
    ResultStore,
    database_url,
    redacted,
    sqlite_path,
    without_secrets,
)


class Terminated(KeyboardInterrupt):
    """SIGTERM (a batch system's stop, `kill`) or SIGHUP (the terminal or SSH session closed):
    handled exactly like Ctrl-C. `signal_name` says which."""

    def __init__(self, signal_name: str = "SIGTERM"):
        super().__init__(signal_name)
        self.signal_name = signal_name


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


@contextmanager
def _stop_signals_as_interrupt():
    """In the main thread, turn SIGTERM and SIGHUP into `Terminated` for the duration of a sweep,
    so the driver stops as on Ctrl-C: results that arrived are stored, its claims are released."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        raise Terminated(signal.Signals(signum).name)

    previous = {number: signal.signal(number, terminate) for number in STOP_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def plan(spec: SweepSpec, db: str | os.PathLike | None, retry_failed: bool = False) -> dict[str, Any]:
    """What a sweep would do against a database, without running or writing anything."""
    expansion = spec.expand()
    statuses: dict[str, str] = {}
    if db is not None:
        path = sqlite_path(database_url(db))
        if path is None or path.is_file():
            try:
                with ResultStore(db, create=False) as store:  # a plan writes nothing, not even tables
                    statuses = store.statuses(spec.kind, [r.run_key for r in expansion.runs])
            except EmptyDatabase:
                pass
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
    from ttrlab.models.runtime import Runtime

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
    fuse: bool = False,
    lease: float = DEFAULT_LEASE_SECONDS,
    announce: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run every planned run of `spec` that `db` does not hold yet; return a summary dict:
    planned, duplicates_dropped, already_finished, skipped_failed, ran, finished, failed,
    stored_elsewhere (runs another driver on the same database stored meanwhile), taken_over
    (runs claimed from a driver that is gone: its lease expired, or its process no longer runs
    on this host), interrupted (None, "SIGINT", "SIGTERM" or "SIGHUP"), seconds, failures [(label, last
    error line)], db. With `fuse`, runs whose kind
    gives them the same fusion key train together in one worker (`groups.work_units`); each
    run is still stored on its own. `lease`: seconds without a heartbeat after which another
    driver may take this one's runs over. `announce(planned)` (`plan`'s dict) is called once the
    inputs are checked and the database is open, before the first run: where a command says what
    it will do (`ttrlab.cli.plan`), so bad input still fails with its one line alone."""
    if not isinstance(spec, SweepSpec):
        spec = load_spec(spec)
    chosen = EXECUTORS.get(executor)
    if workers is not None and workers < 1:
        raise UserError(f"workers {workers} must be >= 1")
    if not (1.0 <= lease <= 86400.0):
        raise UserError(f"lease {lease!r} must be between 1 and 86400 seconds")
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
        "ran": 0, "finished": 0, "failed": 0, "stored_elsewhere": 0, "taken_over": 0, "interrupted": None,
        "seconds": 0.0, "failures": [],
    }
    started = time.perf_counter()
    owner = Owner()
    with ResultStore(db) as store:
        sweep_id = store.register_sweep(spec.name, spec.sha256, spec.source_text, spec.source_path,
                                        planned_runs=len(expansion.runs))
        store.link(sweep_id, spec.kind, [r.run_key for r in planned["finished"]])
        if announce is not None:
            announce(planned)
        host = platform.node()

        def on_outcome(outcome: Outcome) -> None:
            run = outcome.run
            try:
                store.record(sweep_id=sweep_id, kind=run.kind, run_key=run.run_key, config=run.config_dict,
                             result=outcome.result, error=outcome.error, started_at=outcome.started_at,
                             seconds=outcome.seconds, host=host, owner=owner)
            except DBAPIError as error:
                detail = without_secrets(first_line(error.orig or error), store.url)
                raise UserError(f"cannot store run {run.label()!r} in database {summary['db']!r}: "
                                f"{detail}; the runs stored before are intact, re-run the same "
                                "command to resume") from None
            summary["ran"] += 1
            if outcome.ok:
                summary["finished"] += 1
            else:
                summary["failed"] += 1
                summary["failures"].append((run.label(), outcome.last_error_line))

        stored_elsewhere: list[str] = []  # linked to this sweep in one transaction at the end

        with Monitor(len(todo), enabled=progress and bool(todo), title=f"{spec.name}") as monitor:
            def on_settled(run: PlannedRun) -> None:
                stored_elsewhere.append(run.run_key)
                monitor.stored_elsewhere(run)

            queue = WorkQueue(work_units(todo, fuse=fuse), store, owner=owner, sweep_id=sweep_id,
                              retry_failed=retry_failed, fuse=fuse, lease=lease, on_settled=on_settled)
            try:
                with _stop_signals_as_interrupt(), queue:
                    chosen.run(queue, on_outcome, monitor, spec.resources, workers=workers, ray_address=ray_address)
            except KeyboardInterrupt as interrupt:
                summary["interrupted"] = interrupt.signal_name if isinstance(interrupt, Terminated) else "SIGINT"
            finally:
                try:
                    store.link(sweep_id, spec.kind, stored_elsewhere)
                except DBAPIError:  # the database is what stopped the sweep: the links are the least of it
                    pass
            summary["stored_elsewhere"], summary["taken_over"] = queue.settled, queue.taken_over
    summary["seconds"] = round(time.perf_counter() - started, 2)
    return summary
