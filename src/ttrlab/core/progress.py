"""Rich progress bars on stderr: the columns every ttrlab command shows (`progress_bars`), and
`run_progress` for a single run (`ttrlab train`, `gen-train`, `theory ...`)."""
from __future__ import annotations

import sys
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def progress_bars(enabled: bool = True) -> Progress:
    """Bars on stderr: description, bar, done/total, an info field, elapsed time, ETA.
    Disabled: no output at all."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(file=sys.stderr),
        disable=not enabled,
        transient=False,
    )


@contextmanager
def run_progress(total_runs: int, enabled: bool = True):
    """Yields (start_run(label) -> step_callback, finish_run()). Disabled: no output at all."""
    progress = progress_bars(enabled)
    with progress:
        runs = progress.add_task("runs", total=total_runs, info="")
        current: dict[str, int] = {}

        def start_run(label: str):
            if "task" in current:
                progress.remove_task(current["task"])
            current["task"] = progress.add_task(f"  {label}", total=None, info="loading")

            def on_event(event: str, **info) -> None:
                if event == "step":
                    progress.update(current["task"], total=info["total"], completed=info["step"], info=f"loss {info['loss']:.3f}")
                else:
                    progress.update(current["task"], info=event)

            return on_event

        def finish_run() -> None:
            progress.advance(runs)

        yield start_run, finish_run
        if "task" in current:
            progress.remove_task(current["task"])
