"""What a sweep shows while it runs, in two forms, each where it reads well:

- live bars on stderr when stderr is a terminal: one bar for runs done/total (with ETA) and one
  line per worker with its current unit's step and loss (fed by the run's `progress` callback);
  a fused unit (`groups.work_units`) is one line, "5 runs fused: <first run's label> …";
- one plain line per finished run on stdout when stdout is not a terminal (a log file, a pipe,
  a batch job), flushed as each run ends, in the order they end (a fused unit's runs end
  together, one line each)::

      [3/20] finished  train sst2 ff upa ρ=0.1 seed 0  41.2 s
      [4/20] FAILED  train sst2 lora bpa ρ=0.2 r=8 seed 1  12.0 s: RuntimeError: CUDA out of memory
      [5/20] stored by another driver  train sst2 ff upa ρ=0.2 seed 1

Both can be on at once (`ttrlab sweep ... > log` in a terminal); `--quiet` turns both off.
"""
from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from rich.progress import TaskID

from ttrlab.core.progress import progress_bars

if TYPE_CHECKING:
    from ttrlab.sweep.outcome import Outcome
    from ttrlab.sweep.spec import PlannedRun


def _isatty(stream: TextIO | None) -> bool:
    return bool(stream is not None and getattr(stream, "isatty", None) and stream.isatty())


def finished_line(done: int, total: int, outcome: Outcome, seconds: float | None) -> str:
    """The line printed for a finished run (see the module docstring)."""
    run = outcome.run
    took = f"  {seconds:.1f} s" if seconds is not None else ""
    if outcome.ok:
        return f"[{done}/{total}] finished  {run.kind} {run.label()}{took}"
    return f"[{done}/{total}] FAILED  {run.kind} {run.label()}{took}: {outcome.last_error_line}"


class Monitor:
    """Call `start_run`, `event` and `finish_unit` (or `finish_run`) from the driver, once per
    work unit a worker holds. `bars` and `lines` default to
    "stderr is a terminal" and "stdout is not"; a disabled monitor prints nothing."""

    def __init__(self, total: int, enabled: bool = True, title: str = "runs",
                 bars: bool | None = None, lines: bool | None = None):
        self.total = total
        self.enabled = enabled
        self.bars = enabled and (_isatty(sys.stderr) if bars is None else bars)
        self.lines = enabled and (not _isatty(sys.stdout) if lines is None else lines)
        self.done = self.failed = 0
        self._out = sys.stdout  # taken now: live bars on a terminal redirect sys.stdout into themselves
        self._progress = progress_bars(self.bars)
        self._runs: TaskID | None = None
        self._title = title
        self._workers: dict[Any, TaskID] = {}
        self._started: dict[Any, float] = {}

    def __enter__(self) -> Monitor:
        self._progress.__enter__()
        self._runs = self._progress.add_task(self._title, total=self.total, info="")
        return self

    def __exit__(self, *exc) -> None:
        for task in self._workers.values():
            self._progress.remove_task(task)
        self._workers.clear()
        self._progress.__exit__(*exc)

    def start_run(self, worker: Any, label: str) -> None:
        if worker in self._workers:
            self._progress.remove_task(self._workers.pop(worker))
        self._workers[worker] = self._progress.add_task(f"  [{worker}] {label}", total=None, info="starting")
        self._started[worker] = time.monotonic()

    def event(self, worker: Any, event: str, info: dict[str, Any]) -> None:
        task = self._workers.get(worker)
        if task is None:
            return
        if event == "step" and "total" in info:
            loss = info.get("loss")
            text = f"loss {loss:.3f}" if isinstance(loss, (int, float)) else ""
            self._progress.update(task, total=info["total"], completed=info.get("step", 0), info=text)
        else:
            self._progress.update(task, info=event)

    def stored_elsewhere(self, run: PlannedRun) -> None:
        """A run this sweep planned was stored by another driver sharing the database."""
        self.done += 1
        if self.lines:
            print(f"[{self.done}/{self.total}] stored by another driver  {run.kind} {run.label()}", file=self._out,
                  flush=True)
        if self._runs is not None:
            self._progress.update(self._runs, advance=1)

    def finish_run(self, worker: Any, outcome: Outcome) -> None:
        self.finish_unit(worker, [outcome])

    def finish_unit(self, worker: Any, outcomes: list[Outcome]) -> None:
        """The unit `worker` held is done: its line goes, the runs count advances by its runs,
        and each run gets its own finished line."""
        started = self._started.pop(worker, None)
        if worker in self._workers:
            self._progress.remove_task(self._workers.pop(worker))
        # a run whose worker died has no time of its own: the driver's view of its unit then
        held = time.monotonic() - started if started is not None else None
        for outcome in outcomes:
            self.done += 1
            self.failed += 0 if outcome.ok else 1
            if self.lines:
                seconds = outcome.seconds if outcome.seconds is not None else held
                print(finished_line(self.done, self.total, outcome, seconds), file=self._out, flush=True)
        info = f"{self.failed} failed" if self.failed else ""
        if self._runs is not None:
            self._progress.update(self._runs, advance=len(outcomes), info=info)


class Throttle:
    """Pass at most one "step" event per `interval` seconds (the last step always passes)."""

    def __init__(self, interval: float = 0.5):
        self.interval = interval
        self._last = 0.0

    def __call__(self, event: str, info: dict[str, Any]) -> bool:
        if event != "step":
            return True
        now = time.monotonic()
        if now - self._last >= self.interval or info.get("step") == info.get("total"):
            self._last = now
            return True
        return False
