"""`WorkQueue`: hands a sweep's work units to an executor one at a time, claiming each run in the
database first, so drivers sharing one database split the runs instead of computing each twice.

A driver takes the next unit (`take`) only when a worker is free. Each of its runs is claimed
(`ResultStore.claim`): runs that another driver has stored meanwhile are dropped, runs a live
driver holds are set aside, the rest form the unit. Drivers started on the same spec walk the
same units in the same order; after running into another driver's runs, a driver jumps to
another place in its list (drawn from its owner id), so two drivers soon work on different runs
instead of racing for each one (`benchmarks/store_load.py` measures it). Once nothing else is
left, the set-aside runs are looked at again every `poll` seconds: stored by their driver →
dropped; claim abandoned (its driver was killed) → taken over, regrouped into fused units, and
computed here.
While the driver lives a heartbeat thread renews its leases every `lease / 4` seconds; when it
stops (Ctrl-C, SIGTERM, a crash it survives) it releases its unfinished claims at once.

Without a store (`WorkQueue(units)`) nothing is claimed: the units are handed out as given.
"""
from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

from ttrlab.sweep.groups import Unit, work_units
from ttrlab.sweep.spec import PlannedRun
from ttrlab.sweep.store import BUSY, DEFAULT_LEASE_SECONDS, SETTLED, TAKEN_OVER, Owner, ResultStore


class WorkQueue:
    """The runs a driver still has to get done, as work units (largest first)."""

    def __init__(self, units: list[Unit], store: ResultStore | None = None, *, owner: Owner | None = None,
                 sweep_id: int | None = None, retry_failed: bool = False, fuse: bool = True,
                 lease: float = DEFAULT_LEASE_SECONDS, poll: float | None = None,
                 on_settled: Callable[[PlannedRun], None] | None = None):
        self._pending: list[Unit] = list(units)[::-1]  # a stack: pop() gives units in the order given
        self._waiting: list[PlannedRun] = []  # held by other live drivers
        self.store, self.owner = store, owner or Owner()
        self.sweep_id, self.retry_failed, self.fuse = sweep_id, retry_failed, fuse
        self.lease = lease
        self.poll = poll if poll is not None else min(5.0, lease / 4)
        self.on_settled = on_settled  # a run another driver stored: the driver counts it as done
        self.settled = self.taken_over = 0
        self._next_poll = 0.0
        self._collided = False  # the last claim met another driver's runs
        self._jumps = random.Random(self.owner.id)
        self._heartbeat: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def units(self) -> int:
        return len(self._pending) + (1 if self._waiting else 0)

    @property
    def exhausted(self) -> bool:
        """Nothing left to hand out, now or later."""
        return not self._pending and not self._waiting

    def take(self) -> Unit | None:
        """The next unit whose runs this driver now holds, or None when there is none right now
        (check `exhausted`: if False, ask again later; runs held elsewhere may come free)."""
        while self._pending:
            if self._collided and len(self._pending) > 1:
                cut = self._jumps.randrange(1, len(self._pending))
                self._pending = self._pending[cut:] + self._pending[:cut]  # go on from elsewhere
            self._collided = False
            unit = self._claimed(self._pending.pop())
            if unit:
                return unit
        if self._waiting and time.monotonic() >= self._next_poll:
            self._next_poll = time.monotonic() + self.poll
            waiting, self._waiting = self._waiting, []
            freed = self._claimed(waiting)
            if freed:
                self._pending.extend(work_units(freed, fuse=self.fuse)[::-1])
                return self._pending.pop()
        return None

    def _claimed(self, runs: list[PlannedRun]) -> list[PlannedRun]:
        """The runs of `runs` this driver could claim; the others are dropped (stored) or set aside (busy)."""
        if self.store is None:
            return list(runs)
        outcome = self.store.claim(runs[0].kind, [(run.run_key, f"{run.kind} {run.label()}") for run in runs],
                                   self.owner, sweep_id=self.sweep_id, lease=self.lease,
                                   retry_failed=self.retry_failed)
        mine = []
        for run in runs:
            found = outcome[run.run_key]
            self._collided |= found in (BUSY, SETTLED)
            if found == SETTLED:
                self.settled += 1
                if self.on_settled is not None:
                    self.on_settled(run)
            elif found == BUSY:
                self._waiting.append(run)
            else:
                self.taken_over += found == TAKEN_OVER
                mine.append(run)
        return mine

    # ---- the lease ----------------------------------------------------------------------------
    def __enter__(self) -> WorkQueue:
        if self.store is not None:
            self._heartbeat = threading.Thread(target=self._beat, name="ttrlab-heartbeat", daemon=True)
            self._heartbeat.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=10)
        if self.store is not None:
            try:
                self.store.release(self.owner)
            except Exception:  # e.g. the disk is full: the claims then expire with their lease
                pass

    def _beat(self) -> None:
        while not self._stop.wait(self.lease / 4):
            try:
                self.store.heartbeat(self.owner)
            except Exception:  # a busy or unreachable database: the next beat tries again
                pass
